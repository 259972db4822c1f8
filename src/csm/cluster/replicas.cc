// Replica rules shared by the directory backends; see replicas.h.
#include "csm/cluster/replicas.h"

#include <algorithm>

namespace csm::cluster {

std::vector<uint32_t> ChooseReplicas(uint32_t owner, uint32_t copies, const std::vector<uint32_t>& live,
                                     const std::vector<uint32_t>& keep) {
  std::vector<uint32_t> out;
  if (copies <= 1) return out;
  auto listed = [&](uint32_t n) { return n == owner || std::find(out.begin(), out.end(), n) != out.end(); };
  auto is_live = [&](uint32_t n) { return std::find(live.begin(), live.end(), n) != live.end(); };
  for (uint32_t n : keep) {
    if (out.size() + 1 >= copies) return out;
    if (is_live(n) && !listed(n)) out.push_back(n);
  }
  std::vector<uint32_t> ring = live;
  std::sort(ring.begin(), ring.end());
  // Ids after the owner's first, then from the lowest: a ring.
  std::stable_partition(ring.begin(), ring.end(), [&](uint32_t n) { return n > owner; });
  for (uint32_t n : ring) {
    if (out.size() + 1 >= copies) break;
    if (!listed(n)) out.push_back(n);
  }
  return out;
}

bool CopyStillGood(const ObjectRecord& r, uint64_t object_id, const IsAlive& alive) {
  if (r.object_id != object_id) return false;
  if (alive(r.owner_node)) return true;
  return std::any_of(r.replicas.begin(), r.replicas.end(), alive);
}

bool ShouldTakeOver(const ObjectRecord& r, uint64_t object_id, uint32_t self, const IsAlive& alive) {
  if (r.object_id != object_id || r.owner_node == self || alive(r.owner_node)) return false;
  for (uint32_t n : r.replicas) {
    if (n == self) return true;
    if (alive(n)) return false;  // an earlier replica takes it
  }
  return false;
}

ObjectRecord TakenOver(const ObjectRecord& r, uint32_t self, const std::vector<uint32_t>& live) {
  ObjectRecord out = r;
  out.origin_node = r.origin();
  out.owner_node = self;
  std::vector<uint32_t> keep;
  for (uint32_t n : r.replicas) {
    if (n != self) keep.push_back(n);
  }
  out.replicas = ChooseReplicas(self, r.copies, live, keep);
  return out;
}

std::vector<std::pair<uint64_t, uint64_t>> SegmentsOf(const ObjectRecord& r, const WindowConfig& window) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  for (const auto& a : r.arenas) {
    if (a.length == 0 || a.addr < window.base) continue;
    const uint64_t first = (a.addr - window.base) / window.segment_size;
    const uint64_t last = (a.addr + a.length - 1 - window.base) / window.segment_size;
    out.emplace_back(first, last);
  }
  // Arenas often share a segment: each segment once (one etcd transaction may not put
  // a key twice).
  std::sort(out.begin(), out.end());
  std::vector<std::pair<uint64_t, uint64_t>> merged;
  for (const auto& range : out) {
    if (!merged.empty() && range.first <= merged.back().second) {
      merged.back().second = std::max(merged.back().second, range.second);
    } else {
      merged.push_back(range);
    }
  }
  return merged;
}

}  // namespace csm::cluster
