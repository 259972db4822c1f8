// Replicas of an object on other nodes (docs/cluster.md, "Replicas"): which nodes hold
// them, when a copy is still good, and when a replica takes a dead owner's object over.
// The rules every directory backend applies to its own view of who is alive.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "csm/cluster/cluster_directory.h"

namespace csm::cluster {

using IsAlive = std::function<bool(uint32_t node)>;

// The nodes to hold the copies of an object `owner` holds, `copies` in all: the live
// nodes of `keep` first (those holding copies already), then live nodes in the order
// of their ids after the owner's (so one node's objects go to the same neighbours).
// Fewer when fewer nodes live.
std::vector<uint32_t> ChooseReplicas(uint32_t owner, uint32_t copies, const std::vector<uint32_t>& live,
                                     const std::vector<uint32_t>& keep);

// Whether a copy of `r` held as `object_id` still shows the object: the same object,
// and its owner or one of its replicas alive.
bool CopyStillGood(const ObjectRecord& r, uint64_t object_id, const IsAlive& alive);

// Whether `self`, holding a copy of `r` as `object_id`, is the one to take it over: the
// same object, its owner dead, and `self` the first live node among its replicas.
bool ShouldTakeOver(const ObjectRecord& r, uint64_t object_id, uint32_t self, const IsAlive& alive);

// `r` once `self` took it over: owned by `self`, its addresses still the origin's, its
// replicas made up to r.copies from `live`.
ObjectRecord TakenOver(const ObjectRecord& r, uint32_t self, const std::vector<uint32_t>& live);

// The segments [first, last] that r's arenas lie in: disjoint ranges, in order.
std::vector<std::pair<uint64_t, uint64_t>> SegmentsOf(const ObjectRecord& r, const WindowConfig& window);

}  // namespace csm::cluster
