// Checking a record from another node and fetching its copy; see replica_fetch.h.
#include "csm/node/replica_fetch.h"

#include <utility>

#include "csm/alloc/address_allocator.h"
#include "csm/base/log.h"
#include "csm/base/range.h"
#include "csm/node/fetch_companion.h"
#include "csm/object/object_layout.h"
#include "csm/os/memory.h"

namespace csm::node {

Status CheckRecord(const cluster::ObjectRecord& r, const WindowConfig& w,
                   const std::vector<cluster::SegmentLease>& ours,
                   const std::function<bool(uint64_t addr, uint64_t size)>& lent_to_owner) {
  constexpr uint64_t kAlign = alloc::AddressAllocator::kArenaAlignment;
  auto overlaps_ours = [&](uint64_t addr, uint64_t size) {
    for (const auto& l : ours) {
      uint64_t b = w.base + l.first * w.segment_size, e = b + l.count * w.segment_size;
      if (addr < e && addr + size > b) return true;
    }
    return false;
  };
  for (const auto& a : r.arenas) {
    if (a.length == 0 || a.addr % kAlign || a.length % kAlign || !RangeWithin(a.addr, a.length, w.base, w.size) ||
        (overlaps_ours(a.addr, a.length) && !(lent_to_owner && lent_to_owner(a.addr, a.length)))) {
      return Corruption("object '" + r.key + "' names an arena outside node " + std::to_string(r.owner_node) +
                        "'s part of the window");
    }
  }
  if (r.memory.on_fabric()) {  // where each arena lies in the owner's shared memory
    if (r.arena_offsets.size() != r.arenas.size()) {
      return Corruption("object '" + r.key + "' does not say where each of its arenas lies in shared memory");
    }
    for (size_t i = 0; i < r.arenas.size(); ++i) {
      const uint64_t offset = r.arena_offsets[i];
      if (offset % kAlign != 0 || offset > UINT64_MAX / 2 || r.arenas[i].length > UINT64_MAX / 2) {
        return Corruption("object '" + r.key + "' names an unaligned place in its owner's shared memory");
      }
    }
  }
  if (r.extents.empty()) return Corruption("object '" + r.key + "' has no extents");
  uint64_t total = 0;
  bool root_inside = false;
  for (const auto& e : r.extents) {
    bool inside = false;
    for (const auto& a : r.arenas) inside |= e.length > 0 && RangeWithin(e.addr, e.length, a.addr, a.length);
    if (!inside) return Corruption("object '" + r.key + "' has an extent outside its arenas");
    total += e.length;
    root_inside |= r.root >= e.addr && r.root - e.addr < e.length;
  }
  if (total != r.size || r.extents.front().addr != r.header || !root_inside ||
      r.extents.front().length < sizeof(object::ObjectHeader)) {
    return Corruption("object '" + r.key + "' has inconsistent sizes, header or root");
  }
  return Status::OK();
}

void FetchReplica(const cluster::ObjectRecord& r, const std::vector<ReplicaTarget>& targets,
                  transport::Transport& transport, const std::string& address,
                  const std::function<void(Status)>& done, std::atomic<uint64_t>* received) {
  const int64_t t_start = os::MonotonicNanos();
  Status s;
  auto locate = [&](uint64_t addr, uint64_t len) -> Result<char*> {
    for (const auto& tg : targets) {
      if (tg.view != nullptr && tg.view->size() >= tg.size && RangeWithin(addr, len, tg.addr, tg.size)) {
        return tg.view->data() + (addr - tg.addr);
      }
    }
    return Corruption("extent outside the replica arenas");
  };
  // Bytes are hashed as they land, and pages faulted in ahead of the transfer
  // (FetchCompanion; no faulting thread for an object of 8 MiB or less, where starting it
  // costs more than it saves). An object committed without a checksum is checked against
  // the owner's digest of the bytes it served instead (every byte, header included).
  std::vector<char*> dests;
  for (const auto& e : r.extents) {
    if (!s.ok()) break;
    auto dest = locate(e.addr, e.length);
    if (dest.ok()) dests.push_back(*dest);
    s = dest.status();
  }
  FetchCompanion companion(r.extents, dests, r.checksum_deferred ? 0 : sizeof(object::ObjectHeader));
  if (s.ok() && r.size > (8u << 20)) companion.Start();
  const transport::ArrivalObserver arrived = [&companion, received](const char* data, uint64_t length) {
    companion.Arrived(data, length);
    if (received != nullptr) received->fetch_add(length, std::memory_order_relaxed);
  };
  const int64_t t_prepared = os::MonotonicNanos();
  uint64_t peer_digest = 0;
  if (s.ok()) {
    s = transport.Fetch(address, r.object_id, r.extents, locate, r.checksum_deferred ? &peer_digest : nullptr,
                        &arrived);
  }
  const int64_t t_moved = os::MonotonicNanos();
  const uint64_t digest = companion.Finish(s.ok());
  if (s.ok() && digest != (r.checksum_deferred ? peer_digest : r.checksum)) {  // the bytes committed?
    s = Corruption("the bytes of '" + r.key + "' fetched from node " + std::to_string(r.owner_node) +
                   " do not match its checksum");
  }
  if (s.ok()) {
    const int64_t t_end = os::MonotonicNanos();
    CSM_LOG_DEBUG("fetched '%s' (%s) from node %u in %.2f ms: prepare %.2f, transfer %.2f, verify %.2f",
                  r.key.c_str(), FormatSize(r.size).c_str(), r.owner_node, (t_end - t_start) / 1e6,
                  (t_prepared - t_start) / 1e6, (t_moved - t_prepared) / 1e6, (t_end - t_moved) / 1e6);
  }
  done(s);
}

}  // namespace csm::node
