// Window reservation; see window.h.
#include "csm/space/window.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstdio>

#include "csm/os/memory.h"

namespace csm::space {

Result<std::unique_ptr<Window>> Window::Reserve(const WindowConfig& config) {
  void* want = reinterpret_cast<void*>(config.base);
  void* p = ::mmap(want, config.size, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
  if (p == MAP_FAILED || p != want) {
    int err = errno;
    if (p != MAP_FAILED) ::munmap(p, config.size);  // old kernels ignore NOREPLACE
    std::string in_the_way = os::FirstMappingIn(config.base, config.size);
    char range[96];
    std::snprintf(range, sizeof(range), "[0x%llx, 0x%llx)",
                  static_cast<unsigned long long>(config.base),
                  static_cast<unsigned long long>(config.base + config.size));
    std::string msg = std::string("cannot reserve the global heap window ") + range;
    if (!in_the_way.empty()) {
      msg += ": already taken by the mapping '" + in_the_way + "'";
    } else {
      msg += ": " + ErrnoError("mmap", err).message();
    }
    msg += ". Choose another heap_base (CSM_HEAP_BASE) for every node and process of the "
           "cluster, or reserve the window before anything else maps memory.";
    return Status(StatusCode::kFailedPrecondition, msg);
  }
  return std::unique_ptr<Window>(new Window(config));
}

Window::~Window() { ::munmap(reinterpret_cast<void*>(config_.base), config_.size); }

}  // namespace csm::space
