// csm::HeapMemoryPool; see csm/arrow.h.
#include <algorithm>
#include <cstring>

#include "csm/arrow.h"

namespace csm {
namespace {

// What a zero-byte allocation returns (Arrow's pools do the same): never written.
alignas(64) uint8_t zero_size_area[64];

void NoteAllocation(std::atomic<int64_t>& now, std::atomic<int64_t>& peak, int64_t delta) {
  int64_t value = now.fetch_add(delta) + delta;
  int64_t seen = peak.load();
  while (value > seen && !peak.compare_exchange_weak(seen, value)) {
  }
}

}  // namespace

arrow::Status HeapMemoryPool::Allocate(int64_t size, int64_t alignment, uint8_t** out) {
  if (size < 0) return arrow::Status::Invalid("negative allocation size");
  if (size == 0) {
    *out = zero_size_area;
    return arrow::Status::OK();
  }
  const size_t align = static_cast<size_t>(std::max<int64_t>(alignment, 64));
  void* p = nullptr;
  std::lock_guard<std::mutex> lock(mu_);
  Status s = builder_->Populate([&] { p = internal::Allocate(static_cast<size_t>(size), align); });
  if (!s.ok()) return arrow::Status::OutOfMemory("csm global heap: ", s.ToString());
  *out = static_cast<uint8_t*>(p);
  NoteAllocation(bytes_allocated_, max_memory_, size);
  total_allocated_ += size;
  ++num_allocations_;
  return arrow::Status::OK();
}

arrow::Status HeapMemoryPool::Reallocate(int64_t old_size, int64_t new_size, int64_t alignment,
                                         uint8_t** ptr) {
  if (new_size < 0) return arrow::Status::Invalid("negative allocation size");
  if (*ptr == zero_size_area || old_size == 0) return Allocate(new_size, alignment, ptr);
  if (new_size <= old_size) {  // shrinking: keep the block (the rest goes with the object)
    NoteAllocation(bytes_allocated_, max_memory_, new_size - old_size);
    return arrow::Status::OK();
  }
  // The latest allocation grows in place when its chunk has room (a growing builder).
  bool grown = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Status s = builder_->Populate([&] {
      internal::BumpRegion* r = internal::t_region;
      const auto at = reinterpret_cast<uintptr_t>(*ptr);
      if (r != nullptr && at + static_cast<uint64_t>(old_size) == r->cur &&
          r->end - at >= static_cast<uint64_t>(new_size)) {
        r->cur = at + static_cast<uint64_t>(new_size);
        grown = true;
      }
    });
    if (!s.ok()) return arrow::Status::OutOfMemory("csm global heap: ", s.ToString());
  }
  if (grown) {
    NoteAllocation(bytes_allocated_, max_memory_, new_size - old_size);
    total_allocated_ += new_size - old_size;
    return arrow::Status::OK();
  }
  uint8_t* fresh = nullptr;
  ARROW_RETURN_NOT_OK(Allocate(new_size, alignment, &fresh));
  std::memcpy(fresh, *ptr, static_cast<size_t>(old_size));
  NoteAllocation(bytes_allocated_, max_memory_, -old_size);  // the old block is abandoned
  *ptr = fresh;
  return arrow::Status::OK();
}

void HeapMemoryPool::Free(uint8_t* buffer, int64_t size, int64_t /*alignment*/) {
  // Nothing to give back: the memory belongs to the object (and the Builder may be
  // gone by the time Arrow frees its buffers).
  if (buffer != zero_size_area) NoteAllocation(bytes_allocated_, max_memory_, -size);
}

}  // namespace csm
