// The embedded coordinator; see coordinator.h and docs/cluster.md.
#include "csm/cluster/coordinator.h"

#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "csm/base/log.h"
#include "csm/cluster/records_json.h"
#include "csm/os/memory.h"

namespace csm::cluster {
namespace {

using nlohmann::json;

json Reply(const Status& s) { return {{"status", static_cast<int>(s.code())}, {"message", s.message()}}; }

}  // namespace

// ---- Coordinator --------------------------------------------------------------------

Coordinator::Coordinator(std::string cluster, const WindowConfig& window, uint64_t fingerprint,
                         std::string fingerprint_text, int dead_after_ms, int heartbeat_ms)
    : cluster_(std::move(cluster)),
      window_(window),
      fingerprint_(fingerprint),
      fingerprint_text_(std::move(fingerprint_text)),
      dead_after_ns_(int64_t{dead_after_ms} * 1000000),
      recovery_end_ns_(os::MonotonicNanos() +
                       std::min<int64_t>(int64_t{4} * heartbeat_ms, dead_after_ms) * 1000000),
      segments_(window) {}

int64_t Coordinator::RecoveryLeftMs() {
  return std::max<int64_t>(0, (recovery_end_ns_ - os::MonotonicNanos() + 999999) / 1000000);
}

bool Coordinator::AwaitRecovery(std::unique_lock<std::mutex>& lock) {
  while (!stopping_ && os::MonotonicNanos() < recovery_end_ns_) {
    changed_.wait_for(lock, std::chrono::nanoseconds(recovery_end_ns_ - os::MonotonicNanos()));
  }
  return !stopping_;
}

bool Coordinator::Alive(const Member& m, int64_t now) const {
  return now - m.last_seen_ns < dead_after_ns_;
}

Status Coordinator::CheckJoin(const NodeInfo& node) const {
  if (node.node_id == 0) return InvalidArgument("node ids start at 1");
  if (node.cluster != cluster_) {
    return FailedPrecondition("node " + std::to_string(node.node_id) + " belongs to cluster '" +
                              node.cluster + "', this coordinator serves cluster '" + cluster_ + "'");
  }
  if (!(node.window == window_)) {
    return FailedPrecondition("node " + std::to_string(node.node_id) + " uses window " +
                              Describe(node.window) + " but the cluster uses " +
                              Describe(window_) + ": start every node with the same heap_base, "
                              "heap_size and segment_size");
  }
  if (node.fingerprint != fingerprint_) {
    return FailedPrecondition("node " + std::to_string(node.node_id) + " runs a different csm "
                              "build (" + node.fingerprint_text + ") than the cluster (" +
                              fingerprint_text_ + "): objects are shared in place only "
                              "between identical builds");
  }
  auto it = members_.find(node.node_id);
  if (it != members_.end() && Alive(it->second, os::MonotonicNanos()) &&
      (it->second.info.incarnation != node.incarnation || node.incarnation == 0)) {
    // Even a restart of the same node must wait: until the old incarnation is seen dead,
    // its segments may still hold objects others rely on.
    const std::string& at = it->second.info.peer_address;
    return AlreadyExists("node id " + std::to_string(node.node_id) + " is taken by a live node" +
                         (at.empty() ? "" : " at " + at) + ": give every node its own --node-id "
                         "(a restarted node can rejoin " + std::to_string(dead_after_ns_ / 1000000) +
                         " ms after its old incarnation went silent)");
  }
  return Status::OK();
}

Status Coordinator::Join(const NodeInfo& node) {
  std::lock_guard<std::mutex> lock(mu_);
  CSM_RETURN_IF_ERROR(CheckJoin(node));
  int64_t now = os::MonotonicNanos();
  auto it = members_.find(node.node_id);
  if (it != members_.end() && it->second.info.incarnation == node.incarnation && node.incarnation != 0) {
    it->second.last_seen_ns = now;  // the same incarnation joining again: nothing is lost
    return Status::OK();
  }
  if (it != members_.end()) {
    // A new incarnation: whatever the old one owned died with it.
    for (const auto& l : it->second.info.leases) segments_.Release(l.first, l.count);
    for (auto o = objects_.begin(); o != objects_.end();) {
      if (o->second.owner_node != node.node_id) {
        ++o;
        continue;
      }
      Changed(o->first, nullptr, now);
      o = objects_.erase(o);
    }
  }
  Member m{node, now};
  m.info.leases.clear();
  members_[node.node_id] = std::move(m);
  CSM_LOG_INFO("coordinator: node %u joined (%s)", node.node_id, node.peer_address.c_str());
  return Status::OK();
}

Status Coordinator::Rejoin(const NodeInfo& node, const std::vector<SegmentLease>& leases) {
  std::lock_guard<std::mutex> lock(mu_);
  CSM_RETURN_IF_ERROR(CheckJoin(node));
  auto it = members_.find(node.node_id);
  if (it != members_.end() && it->second.info.incarnation != node.incarnation) {
    return FailedPrecondition("node " + std::to_string(node.node_id) + " has joined again since: "
                              "restart this node");
  }
  std::vector<SegmentLease> claimed;
  for (const auto& l : leases) {
    if (!segments_.Claim(node.node_id, l.first, l.count)) {
      for (const auto& c : claimed) segments_.Release(c.first, c.count);
      return FailedPrecondition("node " + std::to_string(node.node_id) + " holds segments " +
                                std::to_string(l.first) + "+" + std::to_string(l.count) +
                                " that the restarted coordinator has leased to another node: it was "
                                "away too long to re-register; restart it");
    }
    claimed.push_back(l);
  }
  Member m{node, os::MonotonicNanos()};
  m.info.leases = leases;
  members_[node.node_id] = std::move(m);
  CSM_LOG_INFO("coordinator: node %u re-registered (%s) with %zu segment leases", node.node_id,
               node.peer_address.c_str(), leases.size());
  return Status::OK();
}

Status Coordinator::Reregister(uint32_t node_id, const std::vector<ObjectRecord>& records,
                               std::vector<std::string>* conflicts) {
  std::lock_guard<std::mutex> lock(mu_);
  if (members_.find(node_id) == members_.end()) {
    return NotFound("node " + std::to_string(node_id) + " is not a member: rejoin first");
  }
  int64_t now = os::MonotonicNanos();
  for (const auto& r : records) {
    if (r.owner_node != node_id) return PermissionDenied("a node re-registers only its own objects");
    auto it = objects_.find(r.key);
    if (it != objects_.end()) {
      if (it->second.owner_node == node_id && it->second.object_id == r.object_id) continue;
      auto owner = members_.find(it->second.owner_node);
      if (owner != members_.end() && Alive(owner->second, now)) {
        conflicts->push_back(r.key);
        continue;
      }
    }
    objects_[r.key] = r;
    Changed(r.key, &r, now);
  }
  return Status::OK();
}

Result<uint64_t> Coordinator::Lease(uint32_t node_id, uint64_t count) {
  std::unique_lock<std::mutex> lock(mu_);
  // Segments a re-registering node holds must be known before any is handed out.
  if (!AwaitRecovery(lock)) return Unavailable("the coordinator is stopping");
  auto it = members_.find(node_id);
  if (it == members_.end()) return FailedPrecondition("node " + std::to_string(node_id) + " has not joined");
  auto first = segments_.Lease(node_id, count);
  if (!first) {
    return CapacityExceeded("the cluster's window has no run of " + std::to_string(count) +
                            " free segments left (" + std::to_string(segments_.leased_count()) +
                            " of " + std::to_string(segments_.segment_count()) +
                            " leased): raise heap_size on every node");
  }
  it->second.info.leases.push_back({*first, count});
  it->second.last_seen_ns = os::MonotonicNanos();
  return *first;
}

Status Coordinator::Heartbeat(uint32_t node_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = members_.find(node_id);
  if (it == members_.end()) {
    return NotFound("node " + std::to_string(node_id) + " is not a member (the coordinator may "
                    "have restarted): join again");
  }
  it->second.last_seen_ns = os::MonotonicNanos();
  return Status::OK();
}

std::vector<NodeInfo> Coordinator::Members() {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t now = os::MonotonicNanos();
  std::vector<NodeInfo> out;
  for (const auto& [id, m] : members_) {
    NodeInfo n = m.info;
    n.alive = Alive(m, now);
    n.last_seen_ms_ago = (now - m.last_seen_ns) / 1000000;
    out.push_back(std::move(n));
  }
  return out;
}

ObjectRecord Coordinator::Annotated(const ObjectRecord& r, int64_t now) const {
  ObjectRecord out = r;
  auto m = members_.find(r.owner_node);
  out.owner_alive = m != members_.end() && Alive(m->second, now);
  out.owner_address = m != members_.end() ? m->second.info.peer_address : "";
  return out;
}

Status Coordinator::Publish(const ObjectRecord& record) {
  std::unique_lock<std::mutex> lock(mu_);
  // Keys a re-registering node holds must be known before any is given to another.
  if (!AwaitRecovery(lock)) return Unavailable("the coordinator is stopping");
  int64_t now = os::MonotonicNanos();
  auto it = objects_.find(record.key);
  if (it != objects_.end()) {
    auto owner = members_.find(it->second.owner_node);
    bool owner_alive = owner != members_.end() && Alive(owner->second, now);
    if (owner_alive) {
      return AlreadyExists("key '" + record.key + "' is already committed on node " +
                           std::to_string(it->second.owner_node) +
                           ": objects are immutable; delete it first or choose another key");
    }
    // Its owner is dead and the object with it: the key is free again.
  }
  objects_[record.key] = record;
  Changed(record.key, &record, now);
  return Status::OK();
}

Status Coordinator::Unpublish(const std::string& key, uint32_t owner_node) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = objects_.find(key);
  if (it == objects_.end() || it->second.owner_node != owner_node) {
    return NotFound("node " + std::to_string(owner_node) + " publishes no object '" + key + "'");
  }
  objects_.erase(it);
  Changed(key, nullptr, os::MonotonicNanos());
  return Status::OK();
}

void Coordinator::Changed(const std::string& key, const ObjectRecord* record, int64_t now) {
  RecordChange c{++revision_, key, std::nullopt};
  if (record != nullptr) c.record = Annotated(*record, now);
  if (listener_) listener_(key, c.record ? &*c.record : nullptr);
  history_.push_back(std::move(c));
  while (history_.size() > kWatchHistory) history_.pop_front();
  changed_.notify_all();
}

RecordChanges Coordinator::Watch(uint64_t after, int wait_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  RecordChanges out;
  if (after != kWatchFromNow) {
    changed_.wait_for(lock, std::chrono::milliseconds(wait_ms),
                      [&] { return stopping_ || revision_ > after; });
  }
  out.revision = revision_;
  if (after == kWatchFromNow || revision_ == after) return out;
  // The changes after `after` must all still be kept (a watcher from another
  // coordinator's life may claim a revision this one never reached).
  if (after > revision_ || history_.empty() || history_.front().revision > after + 1) {
    out.reset = true;
    return out;
  }
  auto first = history_.begin() + static_cast<std::ptrdiff_t>(after + 1 - history_.front().revision);
  for (auto c = first; c != history_.end() && out.changes.size() < kWatchBatch; ++c) {
    out.changes.push_back(*c);
  }
  out.revision = out.changes.back().revision;
  return out;
}

void Coordinator::SetListener(RecordListener listener) {
  std::lock_guard<std::mutex> lock(mu_);
  listener_ = std::move(listener);
}

void Coordinator::StopWatches() {
  std::lock_guard<std::mutex> lock(mu_);
  stopping_ = true;
  changed_.notify_all();
}

Result<ObjectRecord> Coordinator::Lookup(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = objects_.find(key);
  const int64_t now = os::MonotonicNanos();
  if (it == objects_.end() && now < recovery_end_ns_) {
    return Unavailable("the coordinator restarted and nodes are re-registering their objects for " +
                       std::to_string((recovery_end_ns_ - now) / 1000000 + 1) + " ms more: '" + key +
                       "' may be among them; ask again");
  }
  if (it == objects_.end()) return NotFound("no object under key '" + key + "' in the cluster");
  return Annotated(it->second, os::MonotonicNanos());
}

std::vector<ObjectRecord> Coordinator::List(const std::string& after, uint32_t limit, bool* more) {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t now = os::MonotonicNanos();
  std::vector<ObjectRecord> out;
  for (auto it = objects_.upper_bound(after); it != objects_.end(); ++it) {
    if (out.size() == limit) {
      *more = true;
      return out;
    }
    out.push_back(Annotated(it->second, now));
  }
  *more = false;
  return out;
}

std::vector<std::string> Coordinator::Stale(const std::vector<ClusterDirectory::Held>& held) {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t now = os::MonotonicNanos();
  std::vector<std::string> stale;
  for (const auto& h : held) {
    auto it = objects_.find(h.key);
    bool same = it != objects_.end() && it->second.object_id == h.object_id &&
                it->second.owner_node == h.owner_node;
    auto owner = members_.find(h.owner_node);
    bool alive = owner != members_.end() && Alive(owner->second, now);
    if (!same || !alive) stale.push_back(h.key);
  }
  return stale;
}

// ---- CoordinatorServer --------------------------------------------------------------

Result<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(const std::string& address,
                                                                    std::string secret,
                                                                    int timeout_ms,
                                                                    Coordinator* coordinator) {
  if (secret.empty()) return InvalidArgument("the cluster secret must not be empty");
  std::unique_ptr<CoordinatorServer> s(new CoordinatorServer(std::move(secret), timeout_ms, coordinator));
  // Every other node keeps two connections: its requests and its record watch.
  os::TcpServerOptions o;
  o.name = "coordinator";
  o.secret = s->secret_;
  o.service_magic = kCoordinatorMagic;
  o.handshake_timeout_ms = std::min(timeout_ms, 2000);
  o.max_connections = 1024;
  CSM_ASSIGN_OR_RETURN(s->server_, os::TcpServer::Start(address, std::move(o),
                                                        [raw = s.get()](int fd) { raw->Serve(fd); }));
  return s;
}

void CoordinatorServer::Serve(int fd) {
  for (;;) {
    auto request = os::ReceiveFrame(fd, 16 << 20, timeout_ms_);
    if (!request.ok()) return;
    std::string reply;
    try {
      reply = Handle(*request);
    } catch (const json::exception& e) {  // a field of the wrong type
      reply = Reply(Corruption(std::string("malformed coordinator request: ") + e.what())).dump();
    }
    if (!os::SendFrame(fd, reply, timeout_ms_).ok()) return;
  }
}

std::string CoordinatorServer::Handle(const std::string& text) {
  json req = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (req.is_discarded() || !req.is_object() || !req.contains("op") || !req["op"].is_string() ||
      !req.contains("node_id") || !req["node_id"].is_number_unsigned()) {
    return Reply(Corruption("malformed coordinator request")).dump();
  }
  std::string op = req["op"].get<std::string>();
  uint32_t node_id = req["node_id"].get<uint32_t>();
  if (op == "join") {
    if (!req.contains("node")) return Reply(Corruption("join without node")).dump();
    auto node = NodeFromJson(req["node"]);
    if (!node.ok()) return Reply(node.status()).dump();
    return Reply(coordinator_->Join(*node)).dump();
  }
  if (op == "rejoin" || op == "reregister") {
    std::vector<SegmentLease> leases;
    std::vector<ObjectRecord> records;
    try {
      for (const auto& l : req.value("leases", json::array())) {
        leases.push_back({l.at(0).get<uint64_t>(), l.at(1).get<uint64_t>()});
      }
      for (const auto& j : req.value("records", json::array())) {
        auto r = RecordFromJson(j);
        if (!r.ok()) return Reply(r.status()).dump();
        records.push_back(*std::move(r));
      }
    } catch (const json::exception& e) {
      return Reply(Corruption(std::string("malformed ") + op + " request: " + e.what())).dump();
    }
    if (op == "rejoin") {
      if (!req.contains("node")) return Reply(Corruption("rejoin without node")).dump();
      auto node = NodeFromJson(req["node"]);
      if (!node.ok()) return Reply(node.status()).dump();
      if (node->node_id != node_id) return Reply(PermissionDenied("a node rejoins only as itself")).dump();
      return Reply(coordinator_->Rejoin(*node, leases)).dump();
    }
    std::vector<std::string> conflicts;
    json r = Reply(coordinator_->Reregister(node_id, records, &conflicts));
    r["conflicts"] = conflicts;
    return r.dump();
  }
  if (op == "lease") {
    if (!req.contains("count") || !req["count"].is_number_unsigned()) {
      return Reply(Corruption("lease without count")).dump();
    }
    auto first = coordinator_->Lease(node_id, req["count"].get<uint64_t>());
    json r = Reply(first.status());
    if (first.ok()) r["first"] = *first;
    return r.dump();
  }
  if (op == "heartbeat") return Reply(coordinator_->Heartbeat(node_id)).dump();
  if (op == "members") {
    json r = Reply(Status::OK());
    r["members"] = json::array();
    for (const auto& n : coordinator_->Members()) r["members"].push_back(ToJson(n));
    return r.dump();
  }
  if (op == "publish") {
    if (!req.contains("record")) return Reply(Corruption("publish without record")).dump();
    auto record = RecordFromJson(req["record"]);
    if (!record.ok()) return Reply(record.status()).dump();
    if (record->owner_node != node_id) return Reply(PermissionDenied("a node publishes only its own objects")).dump();
    return Reply(coordinator_->Publish(*record)).dump();
  }
  if (op == "unpublish" || op == "lookup") {
    if (!req.contains("key") || !req["key"].is_string()) return Reply(Corruption(op + " without key")).dump();
    std::string key = req["key"].get<std::string>();
    if (op == "unpublish") return Reply(coordinator_->Unpublish(key, node_id)).dump();
    auto record = coordinator_->Lookup(key);
    json r = Reply(record.status());
    if (record.ok()) r["record"] = ToJson(*record);
    return r.dump();
  }
  if (op == "list") {
    bool more = false;
    std::string after = req.value("after", std::string());
    uint32_t limit = std::clamp<uint32_t>(req.value("limit", 1000u), 1, 1000);
    json r = Reply(Status::OK());
    r["records"] = json::array();
    for (const auto& rec : coordinator_->List(after, limit, &more)) r["records"].push_back(ToJson(rec));
    r["more"] = more;
    return r.dump();
  }
  if (op == "watch") {  // a long poll: answered at the first change or after wait_ms
    if (!req.contains("after") || !req["after"].is_number_unsigned()) {
      return Reply(Corruption("watch without after")).dump();
    }
    const int64_t wait_ms = std::clamp<int64_t>(req.value("wait_ms", int64_t{0}), 0, timeout_ms_ / 2);
    RecordChanges changes = coordinator_->Watch(req["after"].get<uint64_t>(), static_cast<int>(wait_ms));
    json r = Reply(Status::OK());
    r["revision"] = changes.revision;
    r["reset"] = changes.reset;
    r["changes"] = json::array();
    for (const auto& c : changes.changes) {
      json j = {{"revision", c.revision}, {"key", c.key}};
      if (c.record) j["record"] = ToJson(*c.record);
      r["changes"].push_back(std::move(j));
    }
    return r.dump();
  }
  if (op == "stale") {
    std::vector<ClusterDirectory::Held> held;
    try {
      for (const auto& h : req.at("held")) {
        held.push_back({h.at(0).get<std::string>(), h.at(1).get<uint64_t>(), h.at(2).get<uint32_t>()});
      }
    } catch (const json::exception& e) {
      return Reply(Corruption(std::string("malformed stale request: ") + e.what())).dump();
    }
    json r = Reply(Status::OK());
    r["stale"] = coordinator_->Stale(held);
    return r.dump();
  }
  return Reply(InvalidArgument("unknown coordinator request '" + op + "'")).dump();
}

// ---- RemoteCoordinator --------------------------------------------------------------

Result<std::string> RemoteCoordinator::Call(const std::string& request) {
  auto context = [&](const Status& s) {
    return s.IsUnavailable() || s.IsTimeout()
               ? s.WithContext("the cluster's coordinator at " + address_ +
                               " is unreachable (this node serves what it holds meanwhile)")
               : s.WithContext("coordinator at " + address_);
  };
  std::string reply;
  for (int attempt = 0;; ++attempt) {
    auto leased = attempt == 0 ? pool_.Acquire(address_) : pool_.Dial(address_);
    if (!leased.ok()) return context(leased.status());
    os::ConnectionPool::Lease conn = *std::move(leased);
    // The coordinator hangs up only connections idle past its timeout, before reading a
    // request: a reused connection that fails so was not acted on, and may be retried.
    Status sent = os::SendFrame(conn.fd.get(), request, timeout_ms_);
    auto received = sent.ok() ? os::ReceiveFrame(conn.fd.get(), 16 << 20, timeout_ms_)
                              : Result<std::string>(sent);
    if (!received.ok() && conn.reused && received.status().IsUnavailable()) continue;
    if (!received.ok()) return context(received.status());
    reply = std::move(*received);
    pool_.Release(address_, std::move(conn.fd));
    break;
  }
  json r = json::parse(reply, nullptr, false);
  if (r.is_discarded() || !r.is_object() || !r.contains("status") || !r["status"].is_number_integer()) {
    return Corruption("malformed reply from the coordinator at " + address_);
  }
  Status s = os::StatusFromWire(r["status"].get<int32_t>(), r.value("message", std::string()));
  CSM_RETURN_IF_ERROR(s);
  return reply;
}

RemoteCoordinator::~RemoteCoordinator() {
  {
    std::lock_guard<std::mutex> lock(watch_mu_);
    watch_stopping_ = true;
    if (watch_fd_ >= 0) ::shutdown(watch_fd_, SHUT_RDWR);  // ends a long poll now
  }
  watch_cv_.notify_all();
  if (watcher_.joinable()) watcher_.join();
}

Status RemoteCoordinator::Join(const NodeInfo& self) {
  json req = {{"op", "join"}, {"node_id", self.node_id}, {"node", ToJson(self)}};
  CSM_RETURN_IF_ERROR(Call(req.dump()).status());
  if (watcher_.joinable()) return Status::OK();
  // The watch starts before Join returns: every record published after it is pushed.
  uint64_t revision = kWatchFromNow;
  os::UniqueFd fd;
  auto dialed = os::DialAuthenticated(address_, secret_, kCoordinatorMagic, timeout_ms_);
  if (dialed.ok() && WatchOnce(dialed->get(), &revision).ok()) {
    fd = std::move(*dialed);
    std::lock_guard<std::mutex> lock(watch_mu_);
    watch_fd_ = fd.get();
  } else {
    revision = kWatchFromNow;  // the watcher keeps trying
  }
  watcher_ = std::thread([this, fd = std::move(fd), revision]() mutable {
    WatchLoop(std::move(fd), revision);
  });
  return Status::OK();
}

void RemoteCoordinator::WatchLoop(os::UniqueFd fd, uint64_t revision) {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(watch_mu_);
      if (watch_stopping_) break;
    }
    if (!fd.valid()) {
      auto dialed = os::DialAuthenticated(address_, secret_, kCoordinatorMagic, timeout_ms_);
      std::unique_lock<std::mutex> lock(watch_mu_);
      if (!dialed.ok()) {  // lookups go to the coordinator meanwhile (and report why)
        watch_cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return watch_stopping_; });
        continue;
      }
      if (watch_stopping_) break;
      fd = std::move(*dialed);
      watch_fd_ = fd.get();
      revision = kWatchFromNow;  // what changed while no one watched is not cached
    }
    Status s = WatchOnce(fd.get(), &revision);
    if (!s.ok()) {
      // Changes may have been missed: forget every cached record, watch afresh.
      std::lock_guard<std::mutex> lock(watch_mu_);
      cache_.Clear();
      if (!watch_stopping_) CSM_LOG_DEBUG("record watch: %s; watching again", s.ToString().c_str());
      watch_fd_ = -1;
      fd.Reset();
    }
  }
  std::lock_guard<std::mutex> lock(watch_mu_);
  watch_fd_ = -1;
}

Status RemoteCoordinator::WatchOnce(int fd, uint64_t* revision) {
  json req = {{"op", "watch"}, {"node_id", node_id_}, {"after", *revision},
              {"wait_ms", std::min(1000, timeout_ms_ / 2)}};
  CSM_RETURN_IF_ERROR(os::SendFrame(fd, req.dump(), timeout_ms_));
  CSM_ASSIGN_OR_RETURN(std::string reply, os::ReceiveFrame(fd, 64 << 20, timeout_ms_));
  json r = json::parse(reply, nullptr, false);
  if (r.is_discarded() || !r.is_object() || !r.contains("status") || !r["status"].is_number_integer()) {
    return Corruption("malformed watch reply");
  }
  CSM_RETURN_IF_ERROR(os::StatusFromWire(r["status"].get<int32_t>(), r.value("message", std::string())));
  try {
    if (r.at("reset").get<bool>()) cache_.Clear();
    for (const auto& c : r.at("changes")) {
      if (c.contains("record")) {
        CSM_ASSIGN_OR_RETURN(ObjectRecord record, RecordFromJson(c["record"]));
        if (record.key != c.at("key").get<std::string>()) return Corruption("watch change names two keys");
        cache_.Put(record);
        Heard(record.key, &record);  // after the cache has it: the listener may look it up
      } else {
        const std::string key = c.at("key").get<std::string>();
        cache_.Erase(key);
        Heard(key, nullptr);
      }
    }
    *revision = r.at("revision").get<uint64_t>();
  } catch (const json::exception& e) {
    return Corruption(std::string("malformed watch reply: ") + e.what());
  }
  return Status::OK();
}

Status RemoteCoordinator::Rejoin(const NodeInfo& self, const std::vector<SegmentLease>& leases,
                                 const std::vector<ObjectRecord>& records,
                                 std::vector<std::string>* conflicts) {
  json l = json::array();
  for (const auto& lease : leases) l.push_back({lease.first, lease.count});
  CSM_RETURN_IF_ERROR(
      Call(json{{"op", "rejoin"}, {"node_id", node_id_}, {"node", ToJson(self)}, {"leases", l}}.dump()).status());
  // Records in batches: a frame holds 16 MiB, a node up to millions of records.
  constexpr size_t kBatch = 1000;
  for (size_t first = 0; first < records.size(); first += kBatch) {
    json batch = json::array();
    for (size_t i = first; i < std::min(records.size(), first + kBatch); ++i) batch.push_back(ToJson(records[i]));
    CSM_ASSIGN_OR_RETURN(std::string reply,
                         Call(json{{"op", "reregister"}, {"node_id", node_id_}, {"records", batch}}.dump()));
    json r = json::parse(reply, nullptr, false);
    try {
      for (const auto& k : r.at("conflicts")) conflicts->push_back(k.get<std::string>());
    } catch (const json::exception& e) {
      return Corruption(std::string("malformed reregister reply: ") + e.what());
    }
  }
  return Status::OK();
}

Result<uint64_t> RemoteCoordinator::LeaseSegments(uint64_t count) {
  json req = {{"op", "lease"}, {"node_id", node_id_}, {"count", count}};
  CSM_ASSIGN_OR_RETURN(std::string reply, Call(req.dump()));
  json r = json::parse(reply);
  if (!r.contains("first") || !r["first"].is_number_unsigned()) {
    return Corruption("lease reply without a segment");
  }
  return r["first"].get<uint64_t>();
}

Status RemoteCoordinator::Heartbeat() {
  return Call(json{{"op", "heartbeat"}, {"node_id", node_id_}}.dump()).status();
}

Status RemoteCoordinator::Publish(const ObjectRecord& record) {
  return Call(json{{"op", "publish"}, {"node_id", node_id_}, {"record", ToJson(record)}}.dump()).status();
}

Status RemoteCoordinator::Unpublish(const std::string& key, uint32_t owner_node) {
  (void)owner_node;  // the coordinator takes the caller's own id
  return Call(json{{"op", "unpublish"}, {"node_id", node_id_}, {"key", key}}.dump()).status();
}

std::optional<Result<ObjectRecord>> RemoteCoordinator::LookupHere(const std::string& key) {
  if (auto cached = cache_.Find(key)) return Result<ObjectRecord>(std::move(*cached));
  return std::nullopt;
}

Result<ObjectRecord> RemoteCoordinator::Lookup(const std::string& key, Freshness freshness) {
  if (freshness == Freshness::kCachedOk) {
    if (auto here = LookupHere(key)) return std::move(*here);
  }
  const uint64_t mark = cache_.Mark();
  CSM_ASSIGN_OR_RETURN(std::string reply,
                       Call(json{{"op", "lookup"}, {"node_id", node_id_}, {"key", key}}.dump()));
  json r = json::parse(reply);
  if (!r.contains("record")) return Corruption("lookup reply without a record");
  CSM_ASSIGN_OR_RETURN(ObjectRecord record, RecordFromJson(r["record"]));
  // Kept while the watch runs (its changes keep the record current from now on), unless
  // a change to the key arrived while the lookup was on its way.
  std::lock_guard<std::mutex> lock(watch_mu_);
  if (watch_fd_ >= 0) cache_.KeepAnswer(record, mark);
  return record;
}

Result<std::vector<ObjectRecord>> RemoteCoordinator::List(const std::string& after,
                                                          uint32_t limit, bool* more) {
  CSM_ASSIGN_OR_RETURN(std::string reply, Call(json{{"op", "list"}, {"node_id", node_id_},
                                                    {"after", after}, {"limit", limit}}.dump()));
  json r = json::parse(reply);
  if (!r.contains("records") || !r["records"].is_array()) return Corruption("list reply without records");
  std::vector<ObjectRecord> out;
  for (const auto& j : r["records"]) {
    CSM_ASSIGN_OR_RETURN(ObjectRecord rec, RecordFromJson(j));
    out.push_back(std::move(rec));
  }
  *more = r.value("more", false);
  return out;
}

Result<std::vector<std::string>> RemoteCoordinator::Stale(const std::vector<Held>& held) {
  json h = json::array();
  for (const auto& x : held) h.push_back({x.key, x.object_id, x.owner_node});
  CSM_ASSIGN_OR_RETURN(std::string reply, Call(json{{"op", "stale"}, {"node_id", node_id_}, {"held", h}}.dump()));
  json r = json::parse(reply);
  std::vector<std::string> out;
  try {
    for (const auto& k : r.at("stale")) out.push_back(k.get<std::string>());
  } catch (const json::exception& e) {
    return Corruption(std::string("malformed stale reply: ") + e.what());
  }
  return out;
}

Result<std::vector<NodeInfo>> RemoteCoordinator::Members() {
  CSM_ASSIGN_OR_RETURN(std::string reply, Call(json{{"op", "members"}, {"node_id", node_id_}}.dump()));
  json r = json::parse(reply);
  std::vector<NodeInfo> out;
  if (!r.contains("members") || !r["members"].is_array()) return Corruption("members reply without members");
  for (const auto& m : r["members"]) {
    CSM_ASSIGN_OR_RETURN(NodeInfo n, NodeFromJson(m));
    out.push_back(std::move(n));
  }
  return out;
}

}  // namespace csm::cluster
