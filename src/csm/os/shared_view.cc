// See shared_view.h.
#include "csm/os/shared_view.h"

#include <sys/mman.h>

#include <cerrno>

namespace csm::os {

Result<std::shared_ptr<SharedView>> SharedView::Map(int fd, size_t size, uint64_t offset, bool writable,
                                                    bool populate) {
  void* p = ::mmap(nullptr, size, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED | (populate ? MAP_POPULATE : 0),
                   fd, static_cast<off_t>(offset));
  if (p == MAP_FAILED) return ErrnoError("mapping shared memory (mmap)", errno);
  return std::shared_ptr<SharedView>(new SharedView(static_cast<char*>(p), size));
}

SharedView::~SharedView() { ::munmap(data_, size_); }

}  // namespace csm::os
