// AddressAllocator: places arenas inside the segments this node has leased.
//
// First fit over a map of free ranges, coalescing on free. When nothing fits it leases
// more consecutive segments (from the node's own SegmentTable on one machine, from the
// cluster directory in a cluster). Freed ranges are reused, so a deleted object's
// addresses come back for new arenas.
//
// Thread-safety: none; owned by the csmd event loop.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>

#include "csm/status.h"

namespace csm::alloc {

class AddressAllocator {
 public:
  // A run of segments leased to this node: its first address and its length in bytes.
  struct Run {
    uint64_t addr;
    uint64_t bytes;
  };
  // Leases at least `count` consecutive segments for this node.
  using Leaser = std::function<Result<Run>(uint64_t count)>;

  AddressAllocator(Leaser leaser, uint64_t segment_size);

  // An address for `size` bytes (a multiple of `kArenaAlignment`), or the leaser's
  // error when no more segments can be had.
  Result<uint64_t> Allocate(uint64_t size);
  // Whether Allocate(size) would succeed without leasing.
  bool Fits(uint64_t size) const;
  // Segments to lease for `size` bytes.
  uint64_t SegmentsFor(uint64_t size) const { return (size + segment_size_ - 1) / segment_size_; }
  // Adds a run leased elsewhere (the caller leased it itself, e.g. off its event loop).
  void AddRun(const Run& run) { Free(run.addr, run.bytes); }
  void Free(uint64_t addr, uint64_t size);
  // Takes [addr, +size) out of the free ranges (an arena a restarted csmd takes back).
  // False, and nothing changed, unless all of it is free.
  bool Reserve(uint64_t addr, uint64_t size);

  uint64_t free_bytes() const { return free_bytes_; }

  static constexpr uint64_t kArenaAlignment = 2ULL << 20;

 private:
  Leaser leaser_;
  uint64_t segment_size_;
  std::map<uint64_t, uint64_t> free_;  // start → length, disjoint, coalesced
  uint64_t free_bytes_ = 0;
};

}  // namespace csm::alloc
