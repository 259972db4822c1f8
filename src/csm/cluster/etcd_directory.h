// The etcd cluster directory: membership, segment leases and object records kept in a
// real etcd (3.4+) through its JSON gateway (POST /v3/..., keys and values base64).
// No node is special: any node may die and the directory survives. docs/cluster.md
// lists the keys.
//
// Liveness rides on an etcd lease: the node's member key and its segment leases are
// attached to it and vanish when the node stops renewing it (heartbeats), so a dead
// node's segments become free and its objects Unavailable cluster-wide. Every write
// that could race (join, segment leases, publishing a key) is a compare-and-set txn.
//
// Once joined, a thread watches the cluster's keys (etcd's watch stream through the
// gateway) into a RecordCache and a map of live members, so most lookups need no request.
//
// Thread-safety: every method may be called from any thread (one HTTP client, locked).
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "csm/cluster/cluster_directory.h"
#include "csm/cluster/record_cache.h"

namespace httplib {
class Client;
}

namespace csm::cluster {

struct EtcdOptions {
  std::string endpoint;    // "http://host:port" of an etcd client URL
  std::string cluster;     // keys live under /csm/<cluster>/
  std::string secret;      // the cluster secret (etcd keeps only a verifier of it)
  int ttl_seconds = 3;     // the node counts as dead this long after its last heartbeat
  int timeout_ms = 10000;  // bound on every request
};

class EtcdDirectory : public ClusterDirectory {
 public:
  // Checks that etcd answers; Unavailable with the endpoint if not.
  static Result<std::unique_ptr<EtcdDirectory>> Connect(const EtcdOptions& options,
                                                        uint32_t node_id);
  ~EtcdDirectory() override;  // stops watching, revokes the lease: the node leaves at once

  Status Join(const NodeInfo& self) override;
  Result<uint64_t> LeaseSegments(uint64_t count) override;
  Status Heartbeat() override;
  // A node whose csmd restarted with its memory: takes over its member key (from the
  // earlier csmd's lease, if still alive) and its segment runs in one transaction, then
  // publishes its records again.
  Status Rejoin(const NodeInfo& self, const std::vector<SegmentLease>& leases,
                const std::vector<ObjectRecord>& records, std::vector<std::string>* conflicts) override;
  Result<std::vector<NodeInfo>> Members() override;
  Status Publish(const ObjectRecord& record, std::vector<uint32_t>* replicas = nullptr) override;
  Status Unpublish(const std::string& key, uint32_t owner_node) override;
  Result<ObjectRecord> Lookup(const std::string& key, Freshness freshness) override;
  std::optional<Result<ObjectRecord>> LookupHere(const std::string& key) override;
  Result<std::vector<ObjectRecord>> List(const std::string& after, uint32_t limit,
                                         bool* more) override;
  Result<std::vector<std::string>> Stale(const std::vector<Held>& held) override;
  Result<std::vector<ObjectRecord>> TakeOver(const std::vector<Held>& held) override;
  Status SetReplicas(const std::string& key, uint64_t object_id, const std::vector<uint32_t>& replicas) override;
  RecordCacheStats cache_stats() const override { return cache_.stats(); }

 private:
  EtcdDirectory(EtcdOptions options, uint32_t node_id);
  // POSTs to /v3/<path>; the reply's JSON, or Unavailable / the error etcd reports.
  Result<nlohmann::json> Post(const std::string& path, const nlohmann::json& body);
  std::string Key(const std::string& suffix) const { return prefix_ + suffix; }
  // The members that hold a live lease, by id; with `revision`, etcd's revision they are of.
  Result<std::map<uint32_t, NodeInfo>> LiveMembers(int64_t* revision = nullptr);
  // The cluster's window and build: set by the first node, checked by the others.
  Status CheckConfig(const NodeInfo& self);
  // Puts `record` under its key unless a live node other than this one holds the key
  // (AlreadyExists). `again`: this node's own record under the key may be replaced
  // (Rejoin); else any live owner's record is kept.
  Status Place(const ObjectRecord& record, bool again);
  // Opens the watch once (Join, Rejoin).
  void StartWatch();

  // ---- the watch (a thread started by Join) ----
  void WatchLoop();
  // Streams every change to the cluster's keys until the stream breaks or is stopped,
  // into cache_ and peers_, resuming after *revision (moved on as changes apply).
  Status WatchOnce(int64_t* revision);
  Status ApplyWatchMessage(const std::string& line, int64_t* revision);
  RecordCache cache_{100000};
  std::unique_ptr<httplib::Client> watch_http_;  // the watch stream's own connection
  std::thread watcher_;
  std::mutex watch_mu_;  // guards what follows
  std::condition_variable watch_cv_;
  bool watching_ = false;  // a stream is open: cache_ and peers_ are current
  bool watch_stopping_ = false;
  bool watch_done_ = false;  // the watcher has returned
  std::map<uint32_t, std::string> peers_;  // live members' peer addresses, by id

  EtcdOptions options_;
  uint32_t node_id_;
  std::string prefix_;
  std::mutex mu_;  // guards http_
  std::unique_ptr<httplib::Client> http_;
  int64_t lease_id_ = 0;
  uint64_t segment_count_ = 0;  // of the window, known from Join
  WindowConfig window_{};       // known from Join
  static std::vector<uint32_t> LiveIds(const std::map<uint32_t, NodeInfo>& live);
};

}  // namespace csm::cluster
