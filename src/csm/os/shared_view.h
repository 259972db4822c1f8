// SharedView: a shared mapping of a memfd (or of a range of a shared-memory fabric
// device) at an address the kernel picks, undone when the last owner lets go.
//
// csmd keeps one per replica arena (and hands it on with the memfd when the arena's
// memory is kept as spare) so that the page tables built while a fetch writes the bytes
// survive for the next fetch into the same memory. On the VMs csm is measured on,
// mapping 1 GiB of a memfd's existing 4 KiB pages again costs ~250 ms of page-table work
// (~500 ms as write faults), about what the link needs to move it (docs/benchmarks.md).
//
// Thread-safety: immutable once made; share it with std::shared_ptr.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "csm/status.h"

namespace csm::os {

class SharedView {
 public:
  // Maps [offset, +size) of `fd` readable, and writable unless told. No pages are
  // touched, unless `populate`: then the page tables are built now for pages the file
  // has (cheaper than a fault per page when every page will be read).
  static Result<std::shared_ptr<SharedView>> Map(int fd, size_t size, uint64_t offset = 0, bool writable = true,
                                                 bool populate = false);
  ~SharedView();
  SharedView(const SharedView&) = delete;
  SharedView& operator=(const SharedView&) = delete;

  char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  SharedView(char* data, size_t size) : data_(data), size_(size) {}
  char* const data_;
  const size_t size_;
};

}  // namespace csm::os
