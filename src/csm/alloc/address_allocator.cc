// AddressAllocator; see address_allocator.h.
#include "csm/alloc/address_allocator.h"

#include "csm/base/log.h"

namespace csm::alloc {

AddressAllocator::AddressAllocator(Leaser leaser, uint64_t segment_size)
    : leaser_(std::move(leaser)), segment_size_(segment_size) {}

Result<uint64_t> AddressAllocator::Allocate(uint64_t size) {
  CSM_DCHECK(size % kArenaAlignment == 0 && size > 0);
  for (int attempt = 0; attempt < 2; ++attempt) {
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->second < size) continue;
      uint64_t addr = it->first;
      uint64_t rest = it->second - size;
      free_.erase(it);
      if (rest > 0) free_.emplace(addr + size, rest);
      free_bytes_ -= size;
      return addr;
    }
    // Nothing fits: lease enough consecutive segments and try once more.
    CSM_ASSIGN_OR_RETURN(Run run, leaser_(SegmentsFor(size)));
    Free(run.addr, run.bytes);
  }
  return Internal("a freshly leased run did not fit the request");
}

bool AddressAllocator::Fits(uint64_t size) const {
  for (const auto& [addr, length] : free_) {
    if (length >= size) return true;
  }
  return false;
}

void AddressAllocator::Free(uint64_t addr, uint64_t size) {
  free_bytes_ += size;
  auto next = free_.lower_bound(addr);
  if (next != free_.end() && addr + size == next->first) {
    size += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == addr) {
      prev->second += size;
      return;
    }
  }
  free_.emplace(addr, size);
}

bool AddressAllocator::Reserve(uint64_t addr, uint64_t size) {
  auto it = free_.upper_bound(addr);
  if (it == free_.begin()) return false;
  --it;
  const uint64_t start = it->first, length = it->second;
  if (addr + size > start + length) return false;
  free_.erase(it);
  if (addr > start) free_.emplace(start, addr - start);
  if (start + length > addr + size) free_.emplace(addr + size, start + length - addr - size);
  free_bytes_ -= size;
  return true;
}

}  // namespace csm::alloc
