// csmd in a cluster: joining, segment leases, re-registering with a restarted
// coordinator, the member list; see daemon_impl.h and docs/cluster.md.
#include <algorithm>

#include "csm/node/daemon_impl.h"

namespace csm::node {

Result<alloc::AddressAllocator::Run> Daemon::Impl::LeaseSegments(uint64_t count) {
  if (cluster_ != nullptr) return LeaseFromCluster(count);  // rare: see HandleAllocArena
  auto run = segments_.Lease(node_id_, count);
  if (!run) {
    return CapacityExceeded("the global heap window has no run of " + std::to_string(count) +
                            " free segments: raise heap_size");
  }
  std::lock_guard<std::mutex> lock(leases_mu_);
  leases_.push_back({*run, count});
  leased_segments_ += count;
  return alloc::AddressAllocator::Run{config_.window.base + *run * config_.window.segment_size,
                                      count * config_.window.segment_size};
}

Result<alloc::AddressAllocator::Run> Daemon::Impl::LeaseFromCluster(uint64_t count) {
  // Large ranges, so the coordinator is asked rarely (the JVM paper's design).
  uint64_t leased = std::max(count, options_.cluster.lease_segments);
  auto run = cluster_->LeaseSegments(leased);
  if (!run.ok() && leased > count) run = cluster_->LeaseSegments(leased = count);
  if (!run.ok()) return run.status();
  {
    std::lock_guard<std::mutex> lock(leases_mu_);
    leases_.push_back({*run, leased});
    leased_segments_ += leased;
  }
  SaveStanding();  // before any arena is made in the segments
  return alloc::AddressAllocator::Run{config_.window.base + *run * config_.window.segment_size,
                                      leased * config_.window.segment_size};
}

Status Daemon::Impl::JoinCluster() {
  const ClusterOptions& co = options_.cluster;
  if (co.secret.empty()) {
    return InvalidArgument("a cluster needs a shared secret: pass --cluster-secret (or set "
                           "CSM_CLUSTER_SECRET) on every node");
  }
  if (!co.coordinate.empty() + !co.join.empty() + !co.etcd.empty() != 1) {
    return InvalidArgument("choose one directory: host the coordinator (--coordinate), join "
                           "one (--join), or use etcd (--etcd)");
  }
  CSM_ASSIGN_OR_RETURN(transport::TransportKind kind, transport::ParseTransportKind(co.transport));
  CSM_RETURN_IF_ERROR(fetcher_.TransportFor(kind).status());
  std::string peer_address = co.peer_address;
  if (!peer_address.empty()) {
    // Serves our own arenas to nodes that fetch our objects (spilled ones restored first).
    if (spill_ != nullptr) peers_.SetRestorer([this](uint64_t id) { return RestoreForPeer(id); });
    CSM_RETURN_IF_ERROR(peers_.Start(kind, peer_address, {co.secret, co.timeout_ms}));
    if (recovered_) ServeTakenBack();
    // With port 0 the system picked one: advertise the real one, with its scheme.
    peer_address = transport::JoinPeerAddress(
        kind, peer_address.substr(0, peer_address.rfind(':') + 1) + std::to_string(peers_.port()));
  }
  if (!co.coordinate.empty()) {
    coordinator_ = std::make_unique<cluster::Coordinator>(
        co.name, config_.window, protocol::BuildFingerprint(), protocol::BuildFingerprintText(), co.dead_after_ms,
        co.heartbeat_ms);
    CSM_ASSIGN_OR_RETURN(coordinator_server_,
                         cluster::CoordinatorServer::Start(co.coordinate, co.secret,
                                                             co.timeout_ms, coordinator_.get()));
    cluster_ = std::make_unique<cluster::LocalCoordinatorDirectory>(coordinator_.get(), node_id_);
  } else if (!co.etcd.empty()) {
    cluster::EtcdOptions eo{co.etcd, co.name, co.secret,
                              std::max(1, (co.dead_after_ms + 999) / 1000), co.timeout_ms};
    CSM_ASSIGN_OR_RETURN(cluster_, cluster::EtcdDirectory::Connect(eo, node_id_));
  } else {
    cluster_ = std::make_unique<cluster::RemoteCoordinator>(co.join, co.secret, co.timeout_ms,
                                                              node_id_);
  }
  // Changes to other nodes' records: copies made stale go at once, and small objects
  // are copied ahead of their first Get (docs/cluster.md, "Copying ahead").
  cluster_->SetRecordListener([this](const std::string& key, const cluster::ObjectRecord* r) {
    RecordHeard heard{key,          r != nullptr, r ? r->owner_node : 0, r ? r->object_id : 0, r ? r->size : 0,
                      r ? r->copies : 1, r ? r->replicas : std::vector<uint32_t>{}};
    Post([this, heard = std::move(heard)] { OnRecordHeard(heard); });
  });
  cluster::NodeInfo& self = self_;
  self.node_id = node_id_;
  self.cluster = co.name;
  self.peer_address = peer_address;
  self.window = config_.window;
  self.fingerprint = protocol::BuildFingerprint();
  self.fingerprint_text = protocol::BuildFingerprintText();
  self.incarnation = memory_incarnation_;
  if (shm_ != nullptr) {
    self.memory = shm_->memory();
    loan_client_ = std::make_unique<LoanClient>(co.secret, co.timeout_ms);
    // Other nodes of the fabric borrow memory here to build in (docs/fabric.md), on the
    // host the node serves peers from.
    if (!peer_address.empty() && shm_->lend_limit() > 0) {
      auto host_port = transport::SplitPeerAddress(peer_address);
      if (!host_port.ok()) return host_port.status();
      const std::string host = host_port->second.substr(0, host_port->second.rfind(':'));
      CSM_ASSIGN_OR_RETURN(loan_server_,
                           LoanServer::Start(host + ":0", co.secret, co.timeout_ms,
                                             {[this](const BorrowRequest& r) { return Lend(r); },
                                              [this](uint32_t borrower, uint64_t addr) {
                                                return TakeBackLoan(borrower, addr);
                                              }}));
      self.memory.lend_address = host + ":" + std::to_string(loan_server_->port());
    }
  }
  if (recovered_) {
    CSM_RETURN_IF_ERROR(ResumeInCluster());
  } else {
    CSM_RETURN_IF_ERROR(cluster_->Join(self).WithContext("joining cluster '" + co.name + "'"));
  }
  SaveStanding();
  membership_ = std::make_unique<Membership>(
      cluster_.get(), co.heartbeat_ms,
      Membership::Hooks{[this] { Post([this] { StartRejoin(); }); },
                        [this](std::vector<std::string> keys) {
                          Post([this, keys = std::move(keys)] { DropStaleReplicas(keys); });
                        },
                        [this](std::vector<cluster::ObjectRecord> records) {
                          Post([this, records = std::move(records)] { TakeOverCopies(records); });
                        },
                        [this](std::vector<uint32_t> live) {
                          Post([this, live = std::move(live)] { ChooseReplicasAgain(live); });
                        }});
  membership_->Start();
  CSM_LOG_INFO("node %u joined cluster '%s'%s", node_id_, co.name.c_str(),
               coordinator_ ? " (hosting its coordinator)" : "");
  return Status::OK();
}

Status Daemon::Impl::ResumeInCluster() {
  std::vector<cluster::ObjectRecord> records;
  std::set<std::string> keys;
  objects_.ForEachLive([&](const Object& o) {
    if (o.is_copy()) return;
    records.push_back(RecordOf(o));
    keys.insert(o.key);
  });
  std::vector<std::string> conflicts;
  CSM_RETURN_IF_ERROR(cluster_->Rejoin(self_, Leases(), records, &conflicts)
                          .WithContext("rejoining cluster '" + options_.cluster.name + "' with the objects taken back"));
  // Records the earlier csmd published but did not keep: it ended between publishing
  // and listing an object, or between unlisting and unpublishing one, or the object was
  // dropped as damaged. No other node may fetch them.
  size_t unpublished = 0;
  std::string after;
  for (bool more = true; more;) {
    CSM_ASSIGN_OR_RETURN(std::vector<cluster::ObjectRecord> page, cluster_->List(after, 1000, &more));
    for (const cluster::ObjectRecord& r : page) {
      after = r.key;
      if (r.owner_node != node_id_ || keys.count(r.key) != 0) continue;
      if (cluster_->Unpublish(r.key, node_id_).ok()) ++unpublished;
    }
    if (page.empty()) break;
  }
  for (const std::string& key : conflicts) {
    CSM_LOG_WARN("'%s' was published by another node while this node's csmd was down: this node's "
                 "object no longer answers for the key", key.c_str());
    DeleteLocally(key);
  }
  CSM_LOG_INFO("rejoined cluster '%s' with %zu objects and %zu segment leases taken back (%zu records of "
               "objects not kept removed, %zu keys lost to other nodes)",
               options_.cluster.name.c_str(), records.size() - conflicts.size(), Leases().size(), unpublished,
               conflicts.size());
  return Status::OK();
}

void Daemon::Impl::StartRejoin() {
  // What this node holds, as of now; commits and deletes after this point reach the
  // directory after the re-registration (one directory thread, in order).
  std::vector<cluster::ObjectRecord> records;
  objects_.ForEachLive([&](const Object& o) {
    if (!o.is_copy()) records.push_back(RecordOf(o));
  });
  CSM_LOG_WARN("the cluster directory does not know this node (its coordinator restarted): "
               "re-registering %zu segment leases and %zu objects",
               Leases().size(), records.size());
  boost::asio::post(DirectoryThread(), [this, self = self_, leases = Leases(), records = std::move(records),
                                        held = membership_->held()] {
    std::vector<std::string> conflicts;
    Status s = cluster_->Rejoin(self, leases, records, &conflicts);
    // Copies of objects the restarted directory no longer lists (their owner restarted
    // too, or deleted them meanwhile) go now, within the recovery window: before their
    // keys can be given to new objects.
    if (s.ok()) membership_->CheckStale(held);
    Post([this, s, conflicts = std::move(conflicts)] {
      membership_->Rejoined();
      if (!s.ok()) {
        CSM_LOG_WARN("re-registering with the cluster directory: %s", s.ToString().c_str());
        return;
      }
      for (const std::string& key : conflicts) {
        // Another node's object holds the key now: ours must not answer for it.
        CSM_LOG_WARN("'%s' was published by another node while the coordinator restarted: "
                     "this node's object no longer answers for the key", key.c_str());
        DeleteLocally(key);
      }
      CSM_LOG_INFO("re-registered with the cluster directory");
    });
  });
}

Status Daemon::Impl::HandleNodes(Session& c) {
  if (cluster_ == nullptr) {
    cluster::NodeInfo self;
    self.node_id = node_id_;
    self.alive = true;
    self.leases = Leases();
    return ReplyNodes(c, std::vector<cluster::NodeInfo>{self});
  }
  // Asked on the directory thread: the loop goes on serving everyone else.
  auto members = std::make_shared<Result<std::vector<cluster::NodeInfo>>>(Unavailable("not asked"));
  AwaitDirectory(
      c,
      [this, members] {
        *members = cluster_->Members();
        return members->status();
      },
      [this, members](Session* waiting, const Status&) {
        if (waiting != nullptr && !ReplyNodes(*waiting, *members).ok()) sessions_.Drop(waiting->id);
      });
  return Status::OK();
}

Status Daemon::Impl::ReplyNodes(Session& c, const Result<std::vector<cluster::NodeInfo>>& members) {
  if (!members.ok()) return Sessions::ReplyJson(c, members.status());
  return Sessions::ReplyJson(c, NodesJson(node_id_, options_.cluster.name, config_.window, *members).dump());
}

}  // namespace csm::node
