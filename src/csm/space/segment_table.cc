// SegmentTable; see segment_table.h.
#include "csm/space/segment_table.h"

namespace csm::space {

SegmentTable::SegmentTable(const WindowConfig& window)
    : window_(window), owners_(window.size / window.segment_size, kNoNode) {}

std::optional<uint64_t> SegmentTable::Lease(NodeId node, uint64_t count) {
  if (count == 0 || count > owners_.size()) return std::nullopt;
  uint64_t run = 0;
  for (uint64_t i = search_from_; i < owners_.size(); ++i) {
    run = owners_[i] == kNoNode ? run + 1 : 0;
    if (run == count) {
      uint64_t first = i + 1 - count;
      for (uint64_t j = first; j <= i; ++j) owners_[j] = node;
      leased_ += count;
      if (first == search_from_) search_from_ = i + 1;
      return first;
    }
  }
  return std::nullopt;
}

void SegmentTable::Release(uint64_t first, uint64_t count) {
  for (uint64_t j = first; j < first + count && j < owners_.size(); ++j) {
    if (owners_[j] != kNoNode) --leased_;
    owners_[j] = kNoNode;
  }
  if (first < search_from_) search_from_ = first;
}

bool SegmentTable::Claim(NodeId node, uint64_t first, uint64_t count) {
  if (node == kNoNode || count == 0 || first >= owners_.size() || count > owners_.size() - first) return false;
  for (uint64_t j = first; j < first + count; ++j) {
    if (owners_[j] != kNoNode && owners_[j] != node) return false;
  }
  for (uint64_t j = first; j < first + count; ++j) {
    if (owners_[j] == kNoNode) ++leased_;
    owners_[j] = node;
  }
  return true;
}

NodeId SegmentTable::OwnerOf(uint64_t addr) const {
  if (addr < window_.base) return kNoNode;
  uint64_t i = (addr - window_.base) / window_.segment_size;
  return i < owners_.size() ? owners_[i] : kNoNode;
}

}  // namespace csm::space
