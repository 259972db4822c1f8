// Object: csmd's own record of one object it holds (committed here, or a copy of another
// node's), and its conversions to the other forms an object's descriptor takes, written
// once here:
//   - directory::SlotData: the node's shared directory slot readers look keys up in;
//   - cluster::ObjectRecord: what the cluster directory publishes for other nodes;
//   - an Object made from another node's record, for a copy fetched here.
// (The client turns a slot into the public csm::ObjectInfo; cluster/records_json.h turns
// a record into JSON and back.)
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "csm/cluster/cluster_directory.h"
#include "csm/directory/directory_layout.h"
#include "csm/object/object_layout.h"
#include "csm/status.h"

namespace csm::node {

struct Object {
  uint64_t id = 0;
  std::string key;
  uint32_t slot = 0;
  uint64_t type_id = 0;
  std::string type_name;
  object::ObjectHeader header{};
  uint64_t header_addr = 0;
  std::vector<object::ObjectExtent> extents;
  std::vector<uint64_t> arena_ids;
  bool deleted = false;
  pid_t producer_pid = 0;
  int64_t commit_time_ns = 0;
  uint32_t owner_node = 0;  // the node whose object this is a copy of (0: our own)
  uint64_t remote_id = 0;   // and that node's id for it

  // Replicas (docs/cluster.md, "Replicas"): the copies the commit asked for (this node's
  // included) and the nodes the directory chose for the others, as last heard; for a
  // copy, whether this node holds it as one of those replicas (never evicted); and a
  // copy this node took over when its owner died: this node answers and serves it now,
  // its addresses still its origin's (owner_node).
  uint32_t copies = 1;
  std::vector<uint32_t> replicas;
  bool replica = false;
  bool taken_over = false;
  // A lazy copy whose bytes are still arriving (daemon_lazy.cc): LazyCopies has it under
  // its id; readers register its pages before touching them.
  bool lazy = false;

  // Spilling (daemon_spill.cc): where its bytes are. kWriting: being written to the
  // spill directory (still in memory; a reader's Resolve cancels it); kSpilled: only
  // there (its whole pages punched out); kReading: being restored.
  enum class Spill : uint8_t { kNone, kWriting, kSpilled, kReading };
  Spill spill = Spill::kNone;
  uint64_t spill_generation = 0;  // names its spill file (SpillStore::Name)
  Status spill_lost;              // its spill file turned out damaged: the bytes are lost
  // For choosing what to spill, least recently used first: commit, restore, or a
  // reader's Get seen by csmd.
  int64_t last_used_ns = 0;

  bool is_copy() const { return owner_node != 0 && !taken_over; }
  // The node that owns it, given this node's id.
  uint32_t owner(uint32_t self) const { return is_copy() ? owner_node : self; }
  // Its id in the cluster's records (and to peers that fetch it from here).
  uint64_t published_id() const { return owner_node != 0 ? remote_id : id; }
};

// Its slot in the node's directory; `arena_seq_max`: the newest of its arenas' sequence
// numbers (a reader maps arenas up to it before reading).
directory::SlotData SlotOf(const Object& o, uint32_t self, uint64_t arena_seq_max);

// The record this node publishes for its own object `o`; `arenas`: the arenas its
// extents lie in.
cluster::ObjectRecord RecordOf(const Object& o, uint32_t self, std::vector<object::ObjectExtent> arenas);

// A copy of another node's object `r`, held here as `id` in the replica arenas `arena_ids`.
Object CopyOf(const cluster::ObjectRecord& r, uint64_t id, std::vector<uint64_t> arena_ids);

}  // namespace csm::node
