// See shared_view.h.
#include "csm/os/shared_view.h"

#include <sys/mman.h>

#include <cerrno>

namespace csm::os {

Result<std::shared_ptr<SharedView>> SharedView::Map(int fd, size_t size) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return ErrnoError("mapping a memfd (mmap)", errno);
  return std::shared_ptr<SharedView>(new SharedView(static_cast<char*>(p), size));
}

SharedView::~SharedView() { ::munmap(data_, size_); }

}  // namespace csm::os
