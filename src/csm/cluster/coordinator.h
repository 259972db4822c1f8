// The embedded cluster directory: one node's csmd hosts the Coordinator (membership,
// segment leases, liveness) and serves it on its own port; every other node reaches it
// through a RemoteCoordinator. Messages are JSON frames on an authenticated TCP channel
// (os/tcp_channel.h); docs/cluster.md has the message list.
#pragma once

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "csm/cluster/cluster_directory.h"
#include "csm/cluster/record_cache.h"
#include "csm/os/connection_pool.h"
#include "csm/os/tcp_channel.h"
#include "csm/space/segment_table.h"

namespace csm::cluster {

inline constexpr uint32_t kCoordinatorMagic = 0x44434d43;  // "CMCD"

// A change to the published records, pushed to the nodes that cache them (Watch).
struct RecordChange {
  uint64_t revision = 0;
  std::string key;
  std::optional<ObjectRecord> record;  // the record now under key; nullopt: removed
};
struct RecordChanges {
  uint64_t revision = 0;  // the coordinator's revision after these changes
  bool reset = false;     // the watcher fell behind the kept history: drop what it cached
  std::vector<RecordChange> changes;
};
// Watch(kWatchFromNow, …): no changes, only the revision a new watcher starts after.
inline constexpr uint64_t kWatchFromNow = ~uint64_t{0};

// The state. Thread-safety: internally locked.
//
// It lives in the hosting node's csmd and dies with it. When that node comes back, the
// new Coordinator knows nothing: the live nodes find out at their next heartbeat
// (NotFound) and re-register their leases and records (Rejoin, Reregister). Until they
// have had the time to (the recovery window: four heartbeats, at most dead_after),
// nothing that could collide with what they hold is handed out: Lease and Publish wait
// for the window to end, and a Lookup that finds nothing says Unavailable rather than
// NotFound. docs/cluster.md, "Restarting the coordinator's node".
class Coordinator {
 public:
  // The cluster's window and build are those of the node that hosts it.
  Coordinator(std::string cluster, const WindowConfig& window, uint64_t fingerprint,
              std::string fingerprint_text, int dead_after_ms, int heartbeat_ms);
  Status Join(const NodeInfo& node);
  // A node that the coordinator does not know (it restarted), or one whose csmd
  // restarted with its memory (the same incarnation), registers again with the segments
  // it holds (replacing those it held); then its records follow with Reregister.
  Status Rejoin(const NodeInfo& node, const std::vector<SegmentLease>& leases);
  // Records of a re-registered node's live objects (replacing its own records under the
  // same keys). A key another live node published meanwhile is left to it and appended
  // to `conflicts`.
  Status Reregister(uint32_t node_id, const std::vector<ObjectRecord>& records,
                    std::vector<std::string>* conflicts);
  // Milliseconds left of the recovery window (0 once over).
  int64_t RecoveryLeftMs();
  Result<uint64_t> Lease(uint32_t node_id, uint64_t count);
  Status Heartbeat(uint32_t node_id);
  std::vector<NodeInfo> Members();
  Status Publish(const ObjectRecord& record, std::vector<uint32_t>* replicas = nullptr);
  Status Unpublish(const std::string& key, uint32_t owner_node);
  Result<ObjectRecord> Lookup(const std::string& key);
  std::vector<ObjectRecord> List(const std::string& after, uint32_t limit, bool* more);
  std::vector<std::string> Stale(const std::vector<ClusterDirectory::Held>& held);
  // ClusterDirectory::TakeOver for `node_id`.
  std::vector<ObjectRecord> TakeOver(uint32_t node_id, const std::vector<ClusterDirectory::Held>& held);
  // ClusterDirectory::SetReplicas for `node_id`.
  Status SetReplicas(uint32_t node_id, const std::string& key, uint64_t object_id,
                     const std::vector<uint32_t>& replicas);
  // The changes after revision `after` (at most kWatchBatch), waiting up to wait_ms for
  // one; reset if changes after it are no longer kept (the last kWatchHistory are).
  RecordChanges Watch(uint64_t after, int wait_ms);
  // Ends every Watch now and from then on without waiting (the server is stopping).
  void StopWatches();
  // Told every change as it happens, with the coordinator's lock held (the hosting
  // node's record listener: it only hands work on). Null: no one.
  void SetListener(RecordListener listener);

  static constexpr size_t kWatchHistory = 8192;
  static constexpr size_t kWatchBatch = 1024;

 private:
  struct Member {
    NodeInfo info;
    int64_t last_seen_ns;
  };
  bool Alive(const Member& m, int64_t now) const;
  // With mu_ held (as `lock`): waits out the recovery window; false if stopping.
  bool AwaitRecovery(std::unique_lock<std::mutex>& lock);
  // With mu_ held: the checks every Join and Rejoin makes.
  Status CheckJoin(const NodeInfo& node) const;
  // With mu_ held: the ids of the live members.
  std::vector<uint32_t> LiveIds(int64_t now) const;
  // With mu_ held: objects_[key] (held here as `record`) taken over by `node_id`; the
  // dead owners' leases under its arenas move to it.
  void TakeOverLocked(ObjectRecord& record, uint32_t node_id, int64_t now);

  const std::string cluster_;
  const WindowConfig window_;
  const uint64_t fingerprint_;
  const std::string fingerprint_text_;
  const int64_t dead_after_ns_;
  const int64_t recovery_end_ns_;  // see the class comment
  std::mutex mu_;
  space::SegmentTable segments_;
  std::map<uint32_t, Member> members_;
  std::map<std::string, ObjectRecord> objects_;  // key → record
  uint64_t revision_ = 0;                         // one more per change to objects_
  std::deque<RecordChange> history_;              // the last kWatchHistory changes
  std::condition_variable changed_;
  bool stopping_ = false;
  RecordListener listener_;
  // With mu_ held: the record as readers see it (owner address and liveness filled in).
  ObjectRecord Annotated(const ObjectRecord& r, int64_t now) const;
  // With mu_ held: notes a change to objects_[key] (record: its new value, or null).
  void Changed(const std::string& key, const ObjectRecord* record, int64_t now);
};

// The reply to one request of a node (JSON text, as CoordinatorServer receives it): what
// the coordinator answered, or Corruption for a request that is not one. A watch waits at
// most `longest_watch_ms`. Any text is safe here (fuzz/coordinator_request_fuzz.cc).
std::string AnswerCoordinatorRequest(Coordinator& coordinator, const std::string& request,
                                     int longest_watch_ms);

// Serves a Coordinator to the other nodes.
class CoordinatorServer {
 public:
  static Result<std::unique_ptr<CoordinatorServer>> Start(const std::string& address,
                                                          std::string secret, int timeout_ms,
                                                          Coordinator* coordinator);
  // Ends the watches first: server_ then joins handlers that are no longer waiting.
  ~CoordinatorServer() { coordinator_->StopWatches(); }
  uint16_t port() const { return server_->port(); }

 private:
  CoordinatorServer(std::string secret, int timeout_ms, Coordinator* coordinator)
      : secret_(std::move(secret)), timeout_ms_(timeout_ms), coordinator_(coordinator) {}
  void Serve(int fd);

  std::string secret_;
  int timeout_ms_;
  Coordinator* coordinator_;
  std::unique_ptr<os::TcpServer> server_;  // last: stopped first
};

// The hosting node's own view: calls the Coordinator directly.
class LocalCoordinatorDirectory : public ClusterDirectory {
 public:
  LocalCoordinatorDirectory(Coordinator* coordinator, uint32_t node_id)
      : coordinator_(coordinator), node_id_(node_id) {}
  ~LocalCoordinatorDirectory() override { coordinator_->SetListener(nullptr); }
  // Changes happen in the coordinator, on whichever thread serves the node that made
  // them: the listener is handed to it (under its lock).
  void SetRecordListener(RecordListener listener) override { coordinator_->SetListener(std::move(listener)); }
  Status Join(const NodeInfo& self) override { return coordinator_->Join(self); }
  Result<uint64_t> LeaseSegments(uint64_t count) override {
    return coordinator_->Lease(node_id_, count);
  }
  Status Heartbeat() override { return coordinator_->Heartbeat(node_id_); }
  // The hosting node's csmd restarted with its memory: the coordinator is new.
  Status Rejoin(const NodeInfo& self, const std::vector<SegmentLease>& leases,
                const std::vector<ObjectRecord>& records, std::vector<std::string>* conflicts) override {
    CSM_RETURN_IF_ERROR(coordinator_->Rejoin(self, leases));
    return coordinator_->Reregister(node_id_, records, conflicts);
  }
  Result<std::vector<NodeInfo>> Members() override { return coordinator_->Members(); }
  Status Publish(const ObjectRecord& r, std::vector<uint32_t>* replicas = nullptr) override {
    return coordinator_->Publish(r, replicas);
  }
  Status Unpublish(const std::string& key, uint32_t owner) override {
    return coordinator_->Unpublish(key, owner);
  }
  // The coordinator is in this process: nothing to cache.
  Result<ObjectRecord> Lookup(const std::string& key, Freshness) override {
    return coordinator_->Lookup(key);
  }
  std::optional<Result<ObjectRecord>> LookupHere(const std::string& key) override {
    return coordinator_->Lookup(key);
  }
  Result<std::vector<ObjectRecord>> List(const std::string& after, uint32_t limit,
                                         bool* more) override {
    return coordinator_->List(after, limit, more);
  }
  Result<std::vector<std::string>> Stale(const std::vector<Held>& held) override {
    return coordinator_->Stale(held);
  }
  Result<std::vector<ObjectRecord>> TakeOver(const std::vector<Held>& held) override {
    return coordinator_->TakeOver(node_id_, held);
  }
  Status SetReplicas(const std::string& key, uint64_t object_id, const std::vector<uint32_t>& replicas) override {
    return coordinator_->SetReplicas(node_id_, key, object_id, replicas);
  }

 private:
  Coordinator* coordinator_;
  uint32_t node_id_;
};

// Every other node's view: requests on kept connections to the coordinator's address.
// Once joined, a thread watches the coordinator's record changes (a long poll on its
// own connection) into a RecordCache, so most lookups are answered without a round trip.
class RemoteCoordinator : public ClusterDirectory {
 public:
  RemoteCoordinator(std::string address, std::string secret, int timeout_ms, uint32_t node_id,
                    size_t cache_records = 100000)
      : address_(std::move(address)), secret_(secret), timeout_ms_(timeout_ms), node_id_(node_id),
        pool_(std::move(secret), kCoordinatorMagic, timeout_ms, timeout_ms / 2),
        cache_(cache_records) {}
  ~RemoteCoordinator() override;
  Status Join(const NodeInfo& self) override;
  Result<uint64_t> LeaseSegments(uint64_t count) override;
  Status Heartbeat() override;
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
  // Long polls on `fd` (redialed when it breaks) from `revision` until destroyed.
  void WatchLoop(os::UniqueFd fd, uint64_t revision);
  // One long poll on `fd`: the changes after *revision, applied to the cache.
  Status WatchOnce(int fd, uint64_t* revision);
  // Sends one JSON request, returns the reply's JSON text once its status is OK.
  // Connections are kept for the next call (heartbeats keep one warm).
  Result<std::string> Call(const std::string& request);
  std::string address_;
  std::string secret_;
  int timeout_ms_;
  uint32_t node_id_;
  os::ConnectionPool pool_;
  RecordCache cache_;
  std::thread watcher_;  // started by the first successful Join
  std::mutex watch_mu_;
  std::condition_variable watch_cv_;
  bool watch_stopping_ = false;
  int watch_fd_ = -1;  // the watcher's connection, shut down to end a long poll
};

}  // namespace csm::cluster
