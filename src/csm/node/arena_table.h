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

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include "csm/os/fd.h"
#include "csm/os/shared_view.h"

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
  uint64_t owner = 0;  // client id; 0 once released or its process is gone
  bool dedicated = false;
  uint64_t charged = 0;  // bytes counted against capacity
  // Committed extents inside this arena: start → end. Objects never overlap.
  std::map<uint64_t, uint64_t> committed;
  uint32_t objects = 0;     // committed objects (live or deleted-but-pinned) touching it
  uint32_t replica_of = 0;  // a copy of that node's arena (its addresses are not ours)
  uint32_t fetching = 0;    // fetches writing into this replica now
};

class ArenaTable {
 public:
  // A new arena at [addr, +size) backed by `fd`, with the next id and sequence number.
  // The caller made sure it overlaps none (FirstOverlapping).
  Arena& Add(uint64_t addr, uint64_t size, os::UniqueFd fd);
  void Remove(uint64_t id);

  Arena* Find(uint64_t id);
  Arena& at(uint64_t id) { return arenas_.at(id); }
  const Arena& at(uint64_t id) const { return arenas_.at(id); }
  // The arena holding address `addr`, or null.
  Arena* At(uint64_t addr);
  // The lowest arena overlapping [addr, +size), or null.
  Arena* FirstOverlapping(uint64_t addr, uint64_t size);
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
