// The embedded coordinator; see coordinator.h and docs/cluster.md.
#include "csm/directory/coordinator.h"

#include <cstdio>
#include <nlohmann/json.hpp>

#include "csm/base/log.h"
#include "csm/os/memory.h"

namespace csm::directory {
namespace {

using nlohmann::json;

std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string Describe(const WindowConfig& w) {
  return "base " + Hex(w.base) + ", size " + FormatSize(w.size) + ", segments of " +
         FormatSize(w.segment_size);
}

json ToJson(const NodeInfo& n) {
  json leases = json::array();
  for (const auto& l : n.leases) leases.push_back({l.first, l.count});
  return {{"node_id", n.node_id},
          {"cluster", n.cluster},
          {"peer_address", n.peer_address},
          {"window", {n.window.base, n.window.size, n.window.segment_size}},
          {"fingerprint", n.fingerprint},
          {"fingerprint_text", n.fingerprint_text},
          {"alive", n.alive},
          {"last_seen_ms_ago", n.last_seen_ms_ago},
          {"leases", leases}};
}

// Peer input: every field checked; a wrong type is Corruption, not an exception.
Result<NodeInfo> NodeFromJson(const json& j) {
  NodeInfo n;
  try {
    n.node_id = j.at("node_id").get<uint32_t>();
    n.cluster = j.at("cluster").get<std::string>();
    n.peer_address = j.at("peer_address").get<std::string>();
    const auto& w = j.at("window");
    n.window = {w.at(0).get<uint64_t>(), w.at(1).get<uint64_t>(), w.at(2).get<uint64_t>()};
    n.fingerprint = j.at("fingerprint").get<uint64_t>();
    n.fingerprint_text = j.at("fingerprint_text").get<std::string>();
    n.alive = j.value("alive", false);
    n.last_seen_ms_ago = j.value("last_seen_ms_ago", int64_t{0});
    for (const auto& l : j.value("leases", json::array())) {
      n.leases.push_back({l.at(0).get<uint64_t>(), l.at(1).get<uint64_t>()});
    }
  } catch (const json::exception& e) {
    return Corruption(std::string("malformed node description: ") + e.what());
  }
  return n;
}

json Reply(const Status& s) { return {{"status", static_cast<int>(s.code())}, {"message", s.message()}}; }

}  // namespace

// ---- Coordinator --------------------------------------------------------------------

Coordinator::Coordinator(std::string cluster, const WindowConfig& window, uint64_t fingerprint,
                         std::string fingerprint_text, int dead_after_ms)
    : cluster_(std::move(cluster)),
      window_(window),
      fingerprint_(fingerprint),
      fingerprint_text_(std::move(fingerprint_text)),
      dead_after_ns_(int64_t{dead_after_ms} * 1000000),
      segments_(window) {}

bool Coordinator::Alive(const Member& m, int64_t now) const {
  return now - m.last_seen_ns < dead_after_ns_;
}

Status Coordinator::Join(const NodeInfo& node) {
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
  std::lock_guard<std::mutex> lock(mu_);
  int64_t now = os::MonotonicNanos();
  auto it = members_.find(node.node_id);
  if (it != members_.end() && Alive(it->second, now)) {
    // Even a restart of the same node must wait: until the old incarnation is seen dead,
    // its segments may still hold objects others rely on.
    const std::string& at = it->second.info.peer_address;
    return AlreadyExists("node id " + std::to_string(node.node_id) + " is taken by a live node" +
                         (at.empty() ? "" : " at " + at) + ": give every node its own --node-id "
                         "(a restarted node can rejoin " + std::to_string(dead_after_ns_ / 1000000) +
                         " ms after its old incarnation went silent)");
  }
  if (it != members_.end()) {
    // A new incarnation: whatever the old one owned died with it.
    for (const auto& l : it->second.info.leases) segments_.Release(l.first, l.count);
  }
  Member m{node, now};
  m.info.leases.clear();
  members_[node.node_id] = std::move(m);
  CSM_LOG_INFO("coordinator: node %u joined (%s)", node.node_id, node.peer_address.c_str());
  return Status::OK();
}

Result<uint64_t> Coordinator::Lease(uint32_t node_id, uint64_t count) {
  std::lock_guard<std::mutex> lock(mu_);
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
    return FailedPrecondition("node " + std::to_string(node_id) + " is not a member: join first");
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

// ---- CoordinatorServer --------------------------------------------------------------

Result<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(const std::string& address,
                                                                    std::string secret,
                                                                    int timeout_ms,
                                                                    Coordinator* coordinator) {
  if (secret.empty()) return InvalidArgument("the cluster secret must not be empty");
  std::unique_ptr<CoordinatorServer> s(new CoordinatorServer(std::move(secret), timeout_ms, coordinator));
  CSM_ASSIGN_OR_RETURN(s->server_, os::TcpServer::Start(address, [raw = s.get()](int fd) { raw->Serve(fd); }));
  return s;
}

void CoordinatorServer::Serve(int fd) {
  Status auth = os::AcceptAuthenticated(fd, secret_, kCoordinatorMagic, timeout_ms_);
  if (!auth.ok()) {
    if (auth.code() == StatusCode::kPermissionDenied) CSM_LOG_WARN("coordinator: %s", auth.message().c_str());
    return;
  }
  for (;;) {
    auto request = os::ReceiveFrame(fd, 1 << 16, timeout_ms_);
    if (!request.ok()) return;
    if (!os::SendFrame(fd, Handle(*request), timeout_ms_).ok()) return;
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
  return Reply(InvalidArgument("unknown coordinator request '" + op + "'")).dump();
}

// ---- RemoteCoordinator --------------------------------------------------------------

Result<std::string> RemoteCoordinator::Call(const std::string& request) {
  auto context = [&](const Status& s) { return s.WithContext("coordinator at " + address_); };
  CSM_ASSIGN_OR_RETURN(os::UniqueFd sock,
                       os::DialAuthenticated(address_, secret_, kCoordinatorMagic, timeout_ms_));
  CSM_RETURN_IF_ERROR(context(os::SendFrame(sock.get(), request, timeout_ms_)));
  CSM_ASSIGN_OR_RETURN(std::string reply, os::ReceiveFrame(sock.get(), 16 << 20, timeout_ms_));
  json r = json::parse(reply, nullptr, false);
  if (r.is_discarded() || !r.is_object() || !r.contains("status") || !r["status"].is_number_integer()) {
    return Corruption("malformed reply from the coordinator at " + address_);
  }
  Status s = os::StatusFromWire(r["status"].get<int32_t>(), r.value("message", std::string()));
  CSM_RETURN_IF_ERROR(s);
  return reply;
}

Status RemoteCoordinator::Join(const NodeInfo& self) {
  json req = {{"op", "join"}, {"node_id", self.node_id}, {"node", ToJson(self)}};
  return Call(req.dump()).status();
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

}  // namespace csm::directory
