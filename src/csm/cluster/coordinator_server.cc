// The embedded coordinator's server: JSON requests from nodes over authenticated TCP;
// see coordinator.h and docs/cluster.md.
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

}  // namespace csm::cluster
