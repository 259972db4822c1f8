// A node's view of a coordinator hosted by another node: requests, the watch that
// pushes records here; see coordinator.h and docs/cluster.md.
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

using nlohmann::json;

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

Status RemoteCoordinator::Publish(const ObjectRecord& record, std::vector<uint32_t>* replicas) {
  CSM_ASSIGN_OR_RETURN(std::string reply,
                       Call(json{{"op", "publish"}, {"node_id", node_id_}, {"record", ToJson(record)}}.dump()));
  if (replicas != nullptr) {
    replicas->clear();
    json r = json::parse(reply);
    try {
      for (const auto& n : r.value("replicas", json::array())) replicas->push_back(Integer<uint32_t>(n));
    } catch (const json::exception& e) {
      return Corruption(std::string("malformed publish reply: ") + e.what());
    }
  }
  return Status::OK();
}

Status RemoteCoordinator::Unpublish(const std::string& key, uint32_t owner_node) {
  (void)owner_node;  // the coordinator takes the caller's own id
  return Call(json{{"op", "unpublish"}, {"node_id", node_id_}, {"key", key}}.dump()).status();
}

std::optional<Result<ObjectRecord>> RemoteCoordinator::LookupHere(const std::string& key) {
  std::optional<Result<ObjectRecord>> out;
  if (std::optional<ObjectRecord> cached = cache_.Find(key)) out.emplace(std::move(*cached));
  return out;
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

Result<std::vector<ObjectRecord>> RemoteCoordinator::TakeOver(const std::vector<Held>& held) {
  json h = json::array();
  for (const auto& x : held) h.push_back({x.key, x.object_id, x.owner_node});
  CSM_ASSIGN_OR_RETURN(std::string reply,
                       Call(json{{"op", "take_over"}, {"node_id", node_id_}, {"held", h}}.dump()));
  json r = json::parse(reply);
  if (!r.contains("records") || !r["records"].is_array()) return Corruption("take_over reply without records");
  std::vector<ObjectRecord> out;
  for (const auto& j : r["records"]) {
    CSM_ASSIGN_OR_RETURN(ObjectRecord rec, RecordFromJson(j));
    out.push_back(std::move(rec));
  }
  return out;
}

Status RemoteCoordinator::SetReplicas(const std::string& key, uint64_t object_id,
                                      const std::vector<uint32_t>& replicas) {
  return Call(json{{"op", "set_replicas"}, {"node_id", node_id_}, {"key", key}, {"object_id", object_id},
                   {"replicas", replicas}}
                  .dump())
      .status();
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
