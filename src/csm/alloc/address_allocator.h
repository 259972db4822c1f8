// AddressAllocator: places arenas inside the segments this node has leased.
//
// First fit over a map of free ranges, coalescing on free. When nothing fits it leases
// more consecutive segments from the SegmentTable. Freed ranges are reused, so a deleted
// object's addresses come back for new arenas.
//
// Thread-safety: none; owned by the csmd event loop.
#pragma once

#include <cstdint>
#include <map>
#include <optional>

#include "csm/space/segment_table.h"

namespace csm::alloc {

class AddressAllocator {
 public:
  AddressAllocator(space::SegmentTable* segments, space::NodeId node, uint64_t segment_size);

  // An address for `size` bytes (a multiple of `kArenaAlignment`), or nullopt when the
  // window has no room left.
  std::optional<uint64_t> Allocate(uint64_t size);
  void Free(uint64_t addr, uint64_t size);

  uint64_t free_bytes() const { return free_bytes_; }

  static constexpr uint64_t kArenaAlignment = 2ULL << 20;

 private:
  space::SegmentTable* segments_;
  space::NodeId node_;
  uint64_t segment_size_;
  std::map<uint64_t, uint64_t> free_;  // start → length, disjoint, coalesced
  uint64_t free_bytes_ = 0;
};

}  // namespace csm::alloc
