// Daemon: csmd, the node's owner of global-heap memory.
//
// It hands client processes arenas (memfds at fixed window addresses) over a Unix
// socket, publishes committed objects in the shared directory, tracks every process's
// pins, and frees memory when nothing can reach it any more:
//   - an arena is writable only by the process it was granted to; every other process
//     gets a read-only descriptor, so no reader can change a committed object;
//   - a committed object belongs to the node: it outlives the process that built it;
//   - when a process exits or dies its pins vanish and the parts of its arenas that hold
//     no committed object are returned (holes punched, arenas freed);
//   - a deleted object's memory is reused once no process pins it.
//
// csmd never maps the heap itself: it reads object headers with pread() on the arena
// memfds, so it needs no window reservation and can run beside clients in one process
// (tests do that).
//
// Owner: main() (tools/csmd.cc) or a test. Thread-safety: Run() on one thread; Stop()
// from any thread or a signal handler.
#pragma once

#include <memory>
#include <string>

#include "csm/config.h"
#include "csm/status.h"

namespace csm::node {

class Daemon {
 public:
  static Result<std::unique_ptr<Daemon>> Create(const Config& config, uint32_t node_id = 1);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Serves until Stop(). Returns an error only if the event loop itself fails.
  Status Run();
  // Async-signal-safe.
  void Stop();

  const Config& config() const;

 private:
  class Impl;
  explicit Daemon(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace csm::node
