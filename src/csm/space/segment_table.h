// SegmentTable: which node owns each segment of the window.
//
// The window is cut into fixed-size segments; each has at most one owner node at a time.
// A node leases runs of consecutive segments (so one arena of several GiB is contiguous)
// and places arenas inside them. In a one-machine cluster the table is the node's own;
// in a cluster the directory hands the leases out and this table mirrors them.
//
// Thread-safety: none; owned and used by the csmd event loop.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "csm/config.h"

namespace csm::space {

using NodeId = uint32_t;
inline constexpr NodeId kNoNode = 0;

class SegmentTable {
 public:
  explicit SegmentTable(const WindowConfig& window);

  // Leases `count` consecutive free segments to `node`; returns the first index, or
  // nullopt if no run that long is free.
  std::optional<uint64_t> Lease(NodeId node, uint64_t count);
  void Release(uint64_t first, uint64_t count);
  // Records that `node` holds segments [first, first + count) (a node re-registering
  // what it leased before the table was rebuilt). False, and nothing changed, if the
  // range is outside the window or any of it is leased to another node.
  bool Claim(NodeId node, uint64_t first, uint64_t count);

  NodeId OwnerOf(uint64_t addr) const;
  uint64_t SegmentAddress(uint64_t index) const { return window_.base + index * window_.segment_size; }
  uint64_t segment_count() const { return owners_.size(); }
  uint64_t leased_count() const { return leased_; }

 private:
  WindowConfig window_;
  std::vector<NodeId> owners_;
  uint64_t leased_ = 0;
  uint64_t search_from_ = 0;  // first index that may be free
};

}  // namespace csm::space
