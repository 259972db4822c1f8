// ClusterDirectory: what every node of a cluster agrees on — who the members are, which
// node owns which segments of the window, and who is alive.
//
// Backends: the embedded coordinator (directory/coordinator.h: hosted by one node's
// csmd, the others join it over an authenticated TCP channel) and, later, etcd. The
// daemon holds one ClusterDirectory and knows nothing of the backend behind it.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "csm/config.h"
#include "csm/object/object_layout.h"
#include "csm/status.h"

namespace csm::cluster {

// The most copies of one object a commit may ask for (its owner's included).
inline constexpr uint32_t kMaxCopies = 16;

struct SegmentLease {
  uint64_t first;  // segment index
  uint64_t count;
};

// Where a node's memory lies on a shared-memory fabric (CXL memory shared by several
// hosts, ThymesisFlow, or /dev/shm on one machine; docs/fabric.md). Nodes of one
// `domain` with the same coherence and line size map each other's memory in place
// instead of copying it; an empty domain: the node is on no fabric.
struct FabricMemory {
  std::string domain;     // the nodes that can all map `path`
  std::string path;       // a DAX device or a file on a shared-memory file system
  std::string coherence;  // "coherent", "flush" (non-coherent caches) or "stale-model"
  uint32_t cache_line = 0;
  // Where the node lends its memory to others of the domain ("host:port"; empty: it
  // lends none). Not part of what makes two nodes share a fabric.
  std::string lend_address;
  bool on_fabric() const { return !domain.empty(); }
  // Whether a node with `other` maps this node's memory in place.
  bool Shares(const FabricMemory& other) const {
    return on_fabric() && domain == other.domain && coherence == other.coherence &&
           cache_line == other.cache_line;
  }
};

struct NodeInfo {
  uint32_t node_id = 0;
  std::string cluster;       // cluster name: nodes of different clusters refuse each other
  std::string peer_address;  // where its transport serves object bytes ("host:port")
  WindowConfig window{};
  uint64_t fingerprint = 0;      // protocol::BuildFingerprint() of its csmd
  std::string fingerprint_text;  // for error messages
  uint64_t incarnation = 0;      // random per csmd start: a restart vs a re-registration
  FabricMemory memory;           // its memory's place on a shared-memory fabric, if any
  // Filled in by Members():
  bool alive = false;
  int64_t last_seen_ms_ago = 0;
  std::vector<SegmentLease> leases;
};

// Where a committed object lives, cluster-wide: what a node needs to bring its bytes
// to the same addresses. Its size does not grow with the data, only with the number of
// extents.
struct ObjectRecord {
  std::string key;
  uint32_t owner_node = 0;
  uint64_t object_id = 0;  // the owner's id for it
  uint64_t type_id = 0;
  std::string type_name;
  uint64_t header = 0, root = 0, size = 0, checksum = 0;
  bool arrow_validated = false;    // its producer ran Arrow's full validation (object_layout.h)
  bool checksum_deferred = false;  // no checksum: verify a copy against the owner's digest
  std::vector<object::ObjectExtent> extents;
  std::vector<object::ObjectExtent> arenas;  // the owner's arenas those extents lie in
  // On a shared-memory fabric: the owner's memory, and where in it each arena lies
  // (byte offsets into memory.path, one per arena); empty otherwise.
  FabricMemory memory;
  std::vector<uint64_t> arena_offsets;
  // For each arena, the memory it lies in when another node lent it ("" or absent: the
  // owner's memory.path).
  std::vector<std::string> arena_paths;
  const std::string& ArenaPath(size_t i) const {
    return i < arena_paths.size() && !arena_paths[i].empty() ? arena_paths[i] : memory.path;
  }
  int64_t commit_time_ns = 0;
  // Replicas (docs/cluster.md, "Replicas"): how many nodes are to hold the object (1: its
  // owner alone); the other nodes the directory chose to hold a copy, each fetching it
  // as it hears the record; and the node whose segments its addresses lie in (0: the
  // owner). When the owner dies, the first live node of `replicas` takes the object
  // over: it becomes the owner, the addresses stay the origin's.
  uint32_t copies = 1;
  std::vector<uint32_t> replicas;
  uint32_t origin_node = 0;
  uint32_t origin() const { return origin_node != 0 ? origin_node : owner_node; }
  bool HasReplica(uint32_t node) const {
    for (uint32_t n : replicas) {
      if (n == node) return true;
    }
    return false;
  }
  // Filled in by Lookup/List:
  std::string owner_address;  // the owner's peer address
  bool owner_alive = false;
  bool cached = false;  // answered from this node's record cache: may be a moment stale
};

// How a node's cache of pushed records (directory/record_cache.h) is doing.
struct RecordCacheStats {
  uint64_t records = 0;
  uint64_t hits = 0;    // lookups answered from the cache
  uint64_t misses = 0;  // lookups that went to the directory
};

enum class Freshness {
  kCachedOk,  // a record from the node's cache of pushed records will do
  kFresh,     // ask the directory itself (e.g. after a cached record failed)
};

// What a node hears of the cluster's records as they change, pushed by the directory
// (the stream that keeps its record cache): `record` is the record now under `key`
// (owner address and liveness filled in), or null once the key is removed. Called on
// the directory's own thread, in the order of the changes: it must only hand work on.
using RecordListener = std::function<void(const std::string& key, const ObjectRecord* record)>;

class ClusterDirectory {
 public:
  virtual ~ClusterDirectory() = default;
  // Set before Join; every backend with a push stream calls it for every change after
  // that (none is called for changes missed while the stream was broken).
  virtual void SetRecordListener(RecordListener listener) { listener_ = std::move(listener); }
  // Joins as `self`. FailedPrecondition if its window or build differs from the
  // cluster's; AlreadyExists if a live member has the same id. A node that rejoins
  // after dying starts afresh: its old leases are dropped (its memory is gone).
  virtual Status Join(const NodeInfo& self) = 0;
  // Leases `count` consecutive free segments to this node; returns the first index.
  virtual Result<uint64_t> LeaseSegments(uint64_t count) = 0;
  // Tells the cluster this node is alive; nodes silent longer than the cluster's
  // dead-after interval are reported dead. NotFound when the directory does not know
  // this node (the embedded coordinator restarted): the node then calls Rejoin.
  virtual Status Heartbeat() = 0;
  // Registers this node again, with what it holds: the segments it leased and the
  // records of its live objects. Called when the directory forgot the node (a restarted
  // coordinator), and when the node's csmd restarted and took its memory back
  // (--state-dir: `self.incarnation` is then its memory's, the one the directory knew);
  // what it holds replaces what the directory had for it, even while its earlier csmd
  // is still counted alive. Keys another live node published meanwhile are left to
  // that node and returned in `conflicts` (the caller stops serving them under that
  // key). FailedPrecondition if its segments were leased to another node meanwhile
  // (it was away too long: restart it afresh), AlreadyExists if a live node of another
  // incarnation has its id.
  virtual Status Rejoin(const NodeInfo& self, const std::vector<SegmentLease>& leases,
                        const std::vector<ObjectRecord>& records, std::vector<std::string>* conflicts) {
    (void)self, (void)leases, (void)records, (void)conflicts;
    return FailedPrecondition("this cluster directory does not take re-registrations");
  }
  virtual Result<std::vector<NodeInfo>> Members() = 0;

  // Publishes a committed object under its key. AlreadyExists if the key is taken
  // anywhere in the cluster. For an object of several copies the directory names its
  // replicas, and says which in `replicas` (if given).
  virtual Status Publish(const ObjectRecord& record, std::vector<uint32_t>* replicas = nullptr) = 0;
  // Removes the key if `owner_node` owns it.
  virtual Status Unpublish(const std::string& key, uint32_t owner_node) = 0;
  // The record under `key`; NotFound if none. With kCachedOk a backend that keeps a
  // cache of pushed records may answer from it (the record's `cached` is then set).
  virtual Result<ObjectRecord> Lookup(const std::string& key, Freshness freshness) = 0;
  // Lookup(key, kCachedOk)'s answer when this node has it without asking anyone (its
  // cache of pushed records, or a coordinator in this process); nullopt when only the
  // directory can answer (then call Lookup, which may wait up to the directory's timeout).
  virtual std::optional<Result<ObjectRecord>> LookupHere(const std::string& key) = 0;
  // The record cache's counters; zeros for a backend without one.
  virtual RecordCacheStats cache_stats() const { return {}; }
  // Up to `limit` records with keys after `after`, in key order; `more` says if others follow.
  virtual Result<std::vector<ObjectRecord>> List(const std::string& after, uint32_t limit,
                                                 bool* more) = 0;
  // Of these (key, object id, owner) triples, the ones no longer published as they were
  // (deleted, replaced, or owned by a dead node): replicas of them must go.
  // A copy stays good while its object is published with the same id and its owner, or
  // one of its replicas, lives (an owner's death alone does not end it: a replica takes
  // the object over).
  struct Held {
    std::string key;
    uint64_t object_id;
    uint32_t owner_node;
    bool replica = false;  // held as one of the object's replicas (for TakeOver)
  };
  virtual Result<std::vector<std::string>> Stale(const std::vector<Held>& held) = 0;
  // Of these copies, held here as replicas of their objects, the ones whose owner is
  // dead and of which this node is the first live replica: each is taken over (its
  // record names this node as owner, the rest of k made up from live nodes, and the
  // dead owner's segment leases under its arenas move to this node). Returns the
  // records as they now are.
  virtual Result<std::vector<ObjectRecord>> TakeOver(const std::vector<Held>& held) = 0;
  // Names `replicas` the nodes to hold the copies of this node's object `object_id`
  // under `key` (its owner chose them again: one died, or more nodes live now). NotFound
  // if the key holds no such object of this node's.
  virtual Status SetReplicas(const std::string& key, uint64_t object_id, const std::vector<uint32_t>& replicas) = 0;

 protected:
  void Heard(const std::string& key, const ObjectRecord* record) const {
    if (listener_) listener_(key, record);
  }

 private:
  RecordListener listener_;
};

}  // namespace csm::cluster
