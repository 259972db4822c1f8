// The embedded cluster directory: one node's csmd hosts the Coordinator (membership,
// segment leases, liveness) and serves it on its own port; every other node reaches it
// through a RemoteCoordinator. Messages are JSON frames on an authenticated TCP channel
// (os/tcp_channel.h); docs/cluster.md has the message list.
#pragma once

#include <map>
#include <memory>
#include <mutex>

#include "csm/directory/cluster_directory.h"
#include "csm/os/connection_pool.h"
#include "csm/os/tcp_channel.h"
#include "csm/space/segment_table.h"

namespace csm::directory {

inline constexpr uint32_t kCoordinatorMagic = 0x44434d43;  // "CMCD"

// The state. Thread-safety: internally locked.
class Coordinator {
 public:
  // The cluster's window and build are those of the node that hosts it.
  Coordinator(std::string cluster, const WindowConfig& window, uint64_t fingerprint,
              std::string fingerprint_text, int dead_after_ms);
  Status Join(const NodeInfo& node);
  Result<uint64_t> Lease(uint32_t node_id, uint64_t count);
  Status Heartbeat(uint32_t node_id);
  std::vector<NodeInfo> Members();
  Status Publish(const ObjectRecord& record);
  Status Unpublish(const std::string& key, uint32_t owner_node);
  Result<ObjectRecord> Lookup(const std::string& key);
  std::vector<ObjectRecord> List(const std::string& after, uint32_t limit, bool* more);
  std::vector<std::string> Stale(const std::vector<ClusterDirectory::Held>& held);

 private:
  struct Member {
    NodeInfo info;
    int64_t last_seen_ns;
  };
  bool Alive(const Member& m, int64_t now) const;

  const std::string cluster_;
  const WindowConfig window_;
  const uint64_t fingerprint_;
  const std::string fingerprint_text_;
  const int64_t dead_after_ns_;
  std::mutex mu_;
  space::SegmentTable segments_;
  std::map<uint32_t, Member> members_;
  std::map<std::string, ObjectRecord> objects_;  // key → record
  // With mu_ held: the record as readers see it (owner address and liveness filled in).
  ObjectRecord Annotated(const ObjectRecord& r, int64_t now) const;
};

// Serves a Coordinator to the other nodes.
class CoordinatorServer {
 public:
  static Result<std::unique_ptr<CoordinatorServer>> Start(const std::string& address,
                                                          std::string secret, int timeout_ms,
                                                          Coordinator* coordinator);
  uint16_t port() const { return server_->port(); }

 private:
  CoordinatorServer(std::string secret, int timeout_ms, Coordinator* coordinator)
      : secret_(std::move(secret)), timeout_ms_(timeout_ms), coordinator_(coordinator) {}
  void Serve(int fd);
  std::string Handle(const std::string& request);

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
  Status Join(const NodeInfo& self) override { return coordinator_->Join(self); }
  Result<uint64_t> LeaseSegments(uint64_t count) override {
    return coordinator_->Lease(node_id_, count);
  }
  Status Heartbeat() override { return coordinator_->Heartbeat(node_id_); }
  Result<std::vector<NodeInfo>> Members() override { return coordinator_->Members(); }
  Status Publish(const ObjectRecord& r) override { return coordinator_->Publish(r); }
  Status Unpublish(const std::string& key, uint32_t owner) override {
    return coordinator_->Unpublish(key, owner);
  }
  Result<ObjectRecord> Lookup(const std::string& key) override { return coordinator_->Lookup(key); }
  Result<std::vector<ObjectRecord>> List(const std::string& after, uint32_t limit,
                                         bool* more) override {
    return coordinator_->List(after, limit, more);
  }
  Result<std::vector<std::string>> Stale(const std::vector<Held>& held) override {
    return coordinator_->Stale(held);
  }

 private:
  Coordinator* coordinator_;
  uint32_t node_id_;
};

// Every other node's view: one request per connection to the coordinator's address.
class RemoteCoordinator : public ClusterDirectory {
 public:
  RemoteCoordinator(std::string address, std::string secret, int timeout_ms, uint32_t node_id)
      : address_(std::move(address)), timeout_ms_(timeout_ms), node_id_(node_id),
        pool_(std::move(secret), kCoordinatorMagic, timeout_ms, timeout_ms / 2) {}
  Status Join(const NodeInfo& self) override;
  Result<uint64_t> LeaseSegments(uint64_t count) override;
  Status Heartbeat() override;
  Result<std::vector<NodeInfo>> Members() override;
  Status Publish(const ObjectRecord& record) override;
  Status Unpublish(const std::string& key, uint32_t owner_node) override;
  Result<ObjectRecord> Lookup(const std::string& key) override;
  Result<std::vector<ObjectRecord>> List(const std::string& after, uint32_t limit,
                                         bool* more) override;
  Result<std::vector<std::string>> Stale(const std::vector<Held>& held) override;

 private:
  // Sends one JSON request, returns the reply's JSON text once its status is OK.
  // Connections are kept for the next call (heartbeats keep one warm).
  Result<std::string> Call(const std::string& request);
  std::string address_;
  int timeout_ms_;
  uint32_t node_id_;
  os::ConnectionPool pool_;
};

}  // namespace csm::directory
