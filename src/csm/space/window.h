// Window: this process's reservation of the global heap's address range.
//
// Every csm process (csmd and clients) reserves the whole window PROT_NONE |
// MAP_NORESERVE at the configured base before it starts threads, so that no other
// mapping (a thread stack, a malloc arena, a shared library) can land inside it. Arenas
// are later mapped over the reservation with MAP_FIXED.
//
// Owner: main() or Client::Connect. Lifetime: the reservation is released in the
// destructor. Thread-safety: immutable after Reserve().
#pragma once

#include <cstdint>
#include <memory>

#include "csm/base/range.h"
#include "csm/config.h"
#include "csm/status.h"

namespace csm::space {

class Window {
 public:
  // Fails with a clear message naming the mapping that is in the way.
  static Result<std::unique_ptr<Window>> Reserve(const WindowConfig& config);
  ~Window();
  Window(const Window&) = delete;
  Window& operator=(const Window&) = delete;

  const WindowConfig& config() const { return config_; }
  uint64_t base() const { return config_.base; }
  uint64_t end() const { return config_.base + config_.size; }
  bool Contains(uint64_t addr, uint64_t len) const {
    return RangeWithin(addr, len, base(), config_.size);
  }

 private:
  explicit Window(const WindowConfig& config) : config_(config) {}
  WindowConfig config_;
};

}  // namespace csm::space
