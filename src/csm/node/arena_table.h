// ArenaTable: the arenas csmd has made, by id, by address and in the order they were made.
//
// An arena is a memfd (or a range of the node's shared-memory fabric device) that appears at a fixed address of the window in every process
// given it: a writer's (granted to one process, read by all), or a replica (a copy of
// another node's arena at that node's addresses). Its sequence number orders arenas for
// the processes that map them: a process that has mapped up to seq N asks only for the
// ones after (SyncArenas). Arenas never overlap.
//
// Owner: the daemon's event loop. Thread-safety: none (the loop only).
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include "csm/os/fd.h"
#include "csm/os/shared_view.h"
#include "csm/os/unique_path.h"

namespace csm::node {

struct Arena {
  uint64_t id = 0;
  uint64_t seq = 0;
  uint64_t addr = 0;
  uint64_t size = 0;
  os::UniqueFd fd;
  uint64_t fd_offset = 0;  // where its bytes start in fd (non-zero in a fabric device)
  // Where it lies in this node's shared-memory fabric device (SharedMemory), for other
  // nodes to map; kNoFabric if nowhere.
  static constexpr uint64_t kNoFabric = ~uint64_t{0};
  uint64_t fabric_offset = kNoFabric;
  // Another node's arena mapped in place from its fabric memory (nothing copied, nothing
  // charged here; in the stale-cache model, from this node's snapshot of that memory);
  // replica_of says whose.
  bool mapped = false;
  // A replica arena served to peers: it holds an object this node took over from its
  // dead owner (docs/cluster.md, "Replicas").
  bool served = false;
  // In memory node `lent_by` lent this node (a process here builds in it): where to give
  // it back, the incarnation that lent it, its device, and (stale-cache model) the
  // device read-write for the write-back.
  uint32_t lent_by = 0;
  std::string lender_address, lender_path;
  uint64_t lender_incarnation = 0;
  std::shared_ptr<os::UniqueFd> lent_device;
  // csmd's own mapping of a replica (fetches write through it), kept with the memory
  // when it goes spare; null for arenas no fetch wrote.
  std::shared_ptr<os::SharedView> view;
  // Its memory is the node's state file for this address (NodeState::ArenaPath); a copy
  // in memory kept spare in a named file holds that file's name in `spare_name`.
  bool named = false;
  os::UniquePath spare_name;
  // Taken back by a restarted csmd and not yet claimed by the process that was building
  // in it (ClaimArenas) nor given up when the wait for it ended.
  bool recovered = false;
  uint64_t owner = 0;  // client id; 0 once released or its process is gone
  bool dedicated = false;
  uint64_t charged = 0;  // bytes counted against capacity
  // Of its committed objects' whole pages, those punched out because the object is
  // spilled (not charged; PunchUncommitted leaves them out).
  uint64_t spilled = 0;
  // Committed extents inside this arena: start → end. Objects never overlap.
  std::map<uint64_t, uint64_t> committed;
  uint32_t objects = 0;     // committed objects (live or deleted-but-pinned) touching it
  uint32_t replica_of = 0;  // a copy of that node's arena (its addresses are not ours)
  uint32_t fetching = 0;    // fetches writing into this replica now
};

class ArenaTable {
 public:
  // A new arena at [addr, +size) backed by `fd`, with the next id (or `id`: one an
  // earlier csmd gave it) and the next sequence number. The caller made sure it overlaps
  // none (FirstOverlapping).
  Arena& Add(uint64_t addr, uint64_t size, os::UniqueFd fd, uint64_t id = 0);
  // New ids from now on are at least `id` (a restarted csmd's never repeat an earlier
  // one's: processes know arenas by id).
  void StartIdsAt(uint64_t id) { next_id_ = std::max(next_id_, id); }
  // The id the next Add without one will give.
  uint64_t NextId() const { return next_id_; }
  void Remove(uint64_t id);

  Arena* Find(uint64_t id);
  const Arena* Find(uint64_t id) const { return const_cast<ArenaTable*>(this)->Find(id); }
  Arena& at(uint64_t id) { return arenas_.at(id); }
  const Arena& at(uint64_t id) const { return arenas_.at(id); }
  // The arena holding address `addr`, or null.
  Arena* At(uint64_t addr);
  // The lowest arena overlapping [addr, +size), or null.
  Arena* FirstOverlapping(uint64_t addr, uint64_t size);
  // Sequence numbers from now on are above `seq` (a restarted csmd's, above its
  // predecessor's: processes that mapped up to some seq still ask for what is new).
  void ContinueAfter(uint64_t seq) { next_seq_ = std::max(next_seq_, seq + 1); }
  // The newest sequence number given (0 before any arena).
  uint64_t newest_seq() const { return next_seq_ - 1; }
  size_t size() const { return arenas_.size(); }

  // Arenas made after sequence number `seq`, oldest first: fn(const Arena&) → false stops.
  template <typename Fn>
  void ForEachAfter(uint64_t seq, Fn&& fn) const {
    for (auto it = by_seq_.upper_bound(seq); it != by_seq_.end(); ++it) {
      if (!fn(arenas_.at(it->second))) return;
    }
  }

 private:
  std::unordered_map<uint64_t, Arena> arenas_;  // by id
  std::map<uint64_t, uint64_t> by_addr_;        // addr → id
  std::map<uint64_t, uint64_t> by_seq_;         // seq → id
  uint64_t next_id_ = 1, next_seq_ = 1;
};

}  // namespace csm::node
