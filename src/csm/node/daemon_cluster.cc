// csmd in a cluster: membership, segment leases, serving peers, remote gets; see
// daemon_impl.h and docs/cluster.md.
#include "csm/node/daemon_impl.h"

namespace csm::node {

Result<alloc::AddressAllocator::Run> Daemon::Impl::LeaseSegments(uint64_t count) {
  const uint64_t seg = config_.window.segment_size;
  uint64_t first = 0, leased = count;
  if (cluster_ == nullptr) {
    auto run = segments_.Lease(node_id_, count);
    if (!run) {
      return CapacityExceeded("the global heap window has no run of " + std::to_string(count) +
                              " free segments: raise heap_size");
    }
    first = *run;
  } else {
    // Large ranges, so the coordinator is asked rarely (the JVM paper's design).
    leased = std::max(count, options_.cluster.lease_segments);
    auto run = cluster_->LeaseSegments(leased);
    if (!run.ok() && leased > count) run = cluster_->LeaseSegments(leased = count);
    if (!run.ok()) return run.status().WithContext("leasing segments from the cluster");
    first = *run;
  }
  leases_.push_back({first, leased});
  leased_segments_ += leased;
  return alloc::AddressAllocator::Run{config_.window.base + first * seg, leased * seg};
}

Status Daemon::Impl::JoinCluster() {
  const ClusterOptions& co = options_.cluster;
  if (co.secret.empty()) {
    return InvalidArgument("a cluster needs a shared secret: pass --cluster-secret (or set "
                           "CSM_CLUSTER_SECRET) on every node");
  }
  if (!co.coordinate.empty() && !co.join.empty()) {
    return InvalidArgument("a node either hosts the coordinator (--coordinate) or joins one "
                           "(--join), not both");
  }
  if (!co.coordinate.empty()) {
    coordinator_ = std::make_unique<directory::Coordinator>(
        co.name, config_.window, BuildFingerprint(), BuildFingerprintText(), co.dead_after_ms);
    CSM_ASSIGN_OR_RETURN(coordinator_server_,
                         directory::CoordinatorServer::Start(co.coordinate, co.secret,
                                                             co.timeout_ms, coordinator_.get()));
    cluster_ = std::make_unique<directory::LocalCoordinatorDirectory>(coordinator_.get(), node_id_);
  } else {
    cluster_ = std::make_unique<directory::RemoteCoordinator>(co.join, co.secret, co.timeout_ms,
                                                              node_id_);
  }
  directory::NodeInfo self;
  self.node_id = node_id_;
  self.cluster = co.name;
  self.peer_address = co.peer_address;
  self.window = config_.window;
  self.fingerprint = BuildFingerprint();
  self.fingerprint_text = BuildFingerprintText();
  CSM_RETURN_IF_ERROR(cluster_->Join(self).WithContext("joining cluster '" + co.name + "'"));
  heartbeat_ = std::thread([this] { HeartbeatLoop(); });
  CSM_LOG_INFO("node %u joined cluster '%s'%s", node_id_, co.name.c_str(),
               coordinator_ ? " (hosting its coordinator)" : "");
  return Status::OK();
}

void Daemon::Impl::HeartbeatLoop() {
  bool failing = false;
  std::unique_lock<std::mutex> lock(heartbeat_mu_);
  while (!heartbeat_cv_.wait_for(lock, std::chrono::milliseconds(options_.cluster.heartbeat_ms),
                                 [&] { return heartbeat_stop_; })) {
    lock.unlock();
    Status s = cluster_->Heartbeat();
    if (!s.ok() && !failing) CSM_LOG_WARN("heartbeat failed: %s", s.ToString().c_str());
    if (s.ok() && failing) CSM_LOG_INFO("heartbeats reach the cluster again");
    failing = !s.ok();
    lock.lock();
  }
}

void Daemon::Impl::StopHeartbeat() {
  {
    std::lock_guard<std::mutex> lock(heartbeat_mu_);
    heartbeat_stop_ = true;
  }
  heartbeat_cv_.notify_all();
  if (heartbeat_.joinable()) heartbeat_.join();
}

Status Daemon::Impl::HandleNodes(Client& c) {
  nlohmann::json j;
  j["node_id"] = node_id_;
  j["cluster"] = options_.cluster.name;
  j["members"] = nlohmann::json::array();
  std::vector<directory::NodeInfo> members;
  if (cluster_ != nullptr) {
    auto m = cluster_->Members();
    if (!m.ok()) {
      WireWriter out(MessageType::kJsonReply);
      out.PutStatus(m.status());
      out.PutString("");
      return Reply(c, out);
    }
    members = std::move(*m);
  } else {
    directory::NodeInfo self;
    self.node_id = node_id_;
    self.alive = true;
    self.leases = leases_;
    members.push_back(self);
  }
  for (const auto& n : members) {
    nlohmann::json leases = nlohmann::json::array();
    for (const auto& l : n.leases) {
      leases.push_back({{"first_segment", l.first}, {"segments", l.count},
                        {"addr", Hex(config_.window.base + l.first * config_.window.segment_size)}});
    }
    j["members"].push_back({{"node_id", n.node_id}, {"peer_address", n.peer_address},
                            {"alive", n.alive}, {"last_seen_ms_ago", n.last_seen_ms_ago},
                            {"leases", leases}});
  }
  WireWriter out(MessageType::kJsonReply);
  out.PutStatus(Status::OK());
  out.PutString(j.dump());
  return Reply(c, out);
}


}  // namespace csm::node
