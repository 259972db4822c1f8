// Introspection: what `csm info`, `csm stat`, `csm ls` and `csm nodes` print, as JSON
// built from plain facts the daemon gathers. Nothing here reads the daemon's state.
//
// The field names are a contract: Client::Info reads NodeStatus from InfoJson's, the csm
// tool prints them, docs/operations.md lists them. Unit-tested (introspection_test.cc).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "csm/cluster/cluster_directory.h"
#include "csm/config.h"
#include "csm/node/lazy_copies.h"
#include "csm/node/object.h"
#include "csm/node/replica_fetch.h"
#include "csm/node/spare_memory.h"

namespace csm::node {

// One attached process, for `csm info`.
struct SessionFacts {
  int pid = 0;
  uint64_t arenas = 0;  // arenas it may write
  uint64_t pins = 0;    // objects it holds Refs to
};

// The node's memory on a shared-memory fabric (SharedMemory), for `csm info`.
struct FabricFacts {
  cluster::FabricMemory memory;
  uint64_t size = 0, allocated = 0;  // of the node's part of the device
  uint64_t written_back_bytes = 0;   // by the writer's step of the protocol
  uint64_t reads_in_place = 0;       // other nodes' objects mapped here, nothing copied
  uint64_t read_retries = 0;         // invalidated again: the bytes differed from the record
  uint64_t read_failures = 0;        // still differed after every retry: reported to the reader
  uint64_t lent_bytes = 0, loans = 0, lend_limit = 0;  // this node's memory other nodes build in
  uint64_t borrowed_bytes = 0;                         // other nodes' memory this node's processes build in
};

// The node as it is now, for `csm info`.
struct NodeFacts {
  uint32_t node_id = 0;
  std::string socket;
  WindowConfig window{};
  uint64_t segments_leased = 0;
  uint64_t capacity = 0;
  uint64_t used = 0;
  uint64_t connections_dropped = 0;  // never said Hello in time, or made room for newer ones
  uint64_t objects = 0;
  uint64_t objects_awaiting_unpin = 0;
  uint64_t max_objects = 0;
  uint64_t arenas = 0;
  uint64_t fetches = 0;            // objects brought from other nodes
  uint64_t copies_ahead = 0;       // of those fetches, started before anyone asked
  uint64_t replicas_evicted = 0;   // copies dropped to make room for others
  uint64_t replica_bytes_evicted = 0;  // and their bytes
  // Replicas (docs/cluster.md, "Replicas"): copies held here as one of their object's
  // replicas (count, bytes), fetches started for that, objects taken over from dead
  // owners, and the node's default copies per commit.
  uint64_t replicas_held = 0, replica_bytes = 0;
  uint64_t replica_fetches = 0;
  uint64_t taken_over = 0;
  uint32_t default_copies = 1;
  // Lazy copies (docs/lazy.md): off if the kernel cannot serve them; the node's --fetch.
  bool lazy_enabled = false;
  std::string default_fetch;
  uint64_t lazy_started = 0;
  LazyCopies::Totals lazy;
  uint64_t fetches_in_flight = 0;
  std::vector<TransferProgress> transfers;  // copies arriving now
  uint64_t peer_bytes_served = 0;  // object bytes sent to other nodes by the transport
  std::optional<FabricFacts> fabric;
  uint64_t directory_requests_waiting = 0;  // commits, deletes, leases, listings
  SpareMemory::Stats spare;
  // Spilling (--spill-dir); empty dir: the node does not spill.
  struct Spill {
    std::string dir;
    uint64_t objects = 0, bytes = 0;     // spilled now (bytes: memory they gave back)
    uint64_t writing_bytes = 0;          // spills under way
    uint64_t spills = 0, restores = 0;   // since start
    uint64_t lost = 0;                   // objects whose spill file turned out damaged
    uint64_t bytes_written = 0, bytes_read = 0;
    uint64_t waiting_for_room = 0;       // arenas and restores waiting for spilling to make room
    int high_percent = 0, low_percent = 0;
  } spill;
  std::string huge_pages_setting;  // the host's shmem_enabled
  bool huge_pages_asked = false;
  bool huge_pages_used = false;
  std::optional<cluster::RecordCacheStats> record_cache;  // in a cluster
  std::vector<SessionFacts> clients;
};

nlohmann::json InfoJson(const NodeFacts& node);
// `csm stat`: one object held here (its own or a copy), pinned `pins` times.
nlohmann::json StatJson(const Object& o, uint32_t node_id, uint64_t pins);
// A `csm ls` entry for an object held here (a lone node lists only these).
nlohmann::json ListEntry(const Object& o, uint32_t node_id, uint64_t pins);
// A `csm ls` entry for a cluster's record; `here` if this node holds it (pinned `pins` times).
nlohmann::json ListEntry(const cluster::ObjectRecord& r, bool here, uint64_t pins);
// `csm nodes`: the members, as the directory lists them.
nlohmann::json NodesJson(uint32_t node_id, const std::string& cluster, const WindowConfig& window,
                         const std::vector<cluster::NodeInfo>& members);

}  // namespace csm::node
