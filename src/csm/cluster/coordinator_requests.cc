// The coordinator's requests, JSON in and out; see coordinator.h (AnswerCoordinatorRequest)
// and docs/cluster.md. Everything a request holds is untrusted: a missing or mistyped
// field is a Corruption reply, never an exception out of here.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "csm/cluster/coordinator.h"
#include "csm/cluster/records_json.h"

namespace csm::cluster {
namespace {

using nlohmann::json;

json Reply(const Status& s) { return {{"status", static_cast<int>(s.code())}, {"message", s.message()}}; }

std::string Answer(Coordinator& coordinator, const std::string& text, int longest_watch_ms) {
  json req = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (req.is_discarded() || !req.is_object() || !req.contains("op") || !req["op"].is_string() ||
      !req.contains("node_id") || !req["node_id"].is_number_unsigned()) {
    return Reply(Corruption("malformed coordinator request")).dump();
  }
  std::string op = req["op"].get<std::string>();
  uint32_t node_id = Integer<uint32_t>(req["node_id"]);
  if (op == "join") {
    if (!req.contains("node")) return Reply(Corruption("join without node")).dump();
    auto node = NodeFromJson(req["node"]);
    if (!node.ok()) return Reply(node.status()).dump();
    return Reply(coordinator.Join(*node)).dump();
  }
  if (op == "rejoin" || op == "reregister") {
    std::vector<SegmentLease> leases;
    std::vector<ObjectRecord> records;
    try {
      for (const auto& l : req.value("leases", json::array())) {
        leases.push_back({Integer<uint64_t>(l.at(0)), Integer<uint64_t>(l.at(1))});
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
      return Reply(coordinator.Rejoin(*node, leases)).dump();
    }
    std::vector<std::string> conflicts;
    json r = Reply(coordinator.Reregister(node_id, records, &conflicts));
    r["conflicts"] = conflicts;
    return r.dump();
  }
  if (op == "lease") {
    if (!req.contains("count") || !req["count"].is_number_unsigned()) {
      return Reply(Corruption("lease without count")).dump();
    }
    auto first = coordinator.Lease(node_id, Integer<uint64_t>(req["count"]));
    json r = Reply(first.status());
    if (first.ok()) r["first"] = *first;
    return r.dump();
  }
  if (op == "heartbeat") return Reply(coordinator.Heartbeat(node_id)).dump();
  if (op == "members") {
    json r = Reply(Status::OK());
    r["members"] = json::array();
    for (const auto& n : coordinator.Members()) r["members"].push_back(ToJson(n));
    return r.dump();
  }
  if (op == "publish") {
    if (!req.contains("record")) return Reply(Corruption("publish without record")).dump();
    auto record = RecordFromJson(req["record"]);
    if (!record.ok()) return Reply(record.status()).dump();
    if (record->owner_node != node_id) return Reply(PermissionDenied("a node publishes only its own objects")).dump();
    std::vector<uint32_t> replicas;
    Status published = coordinator.Publish(*record, &replicas);
    json r = Reply(published);
    if (published.ok()) r["replicas"] = replicas;
    return r.dump();
  }
  if (op == "unpublish" || op == "lookup") {
    if (!req.contains("key") || !req["key"].is_string()) return Reply(Corruption(op + " without key")).dump();
    std::string key = req["key"].get<std::string>();
    if (op == "unpublish") return Reply(coordinator.Unpublish(key, node_id)).dump();
    auto record = coordinator.Lookup(key);
    json r = Reply(record.status());
    if (record.ok()) r["record"] = ToJson(*record);
    return r.dump();
  }
  if (op == "list") {
    bool more = false;
    std::string after = req.value("after", std::string());
    uint32_t limit = std::clamp<uint32_t>(IntegerOr<uint32_t>(req, "limit", 1000u), 1, 1000);
    json r = Reply(Status::OK());
    r["records"] = json::array();
    for (const auto& rec : coordinator.List(after, limit, &more)) r["records"].push_back(ToJson(rec));
    r["more"] = more;
    return r.dump();
  }
  if (op == "watch") {  // a long poll: answered at the first change or after wait_ms
    if (!req.contains("after") || !req["after"].is_number_unsigned()) {
      return Reply(Corruption("watch without after")).dump();
    }
    const int64_t wait_ms = std::clamp<int64_t>(IntegerOr<int64_t>(req, "wait_ms", 0), 0, longest_watch_ms);
    RecordChanges changes = coordinator.Watch(Integer<uint64_t>(req["after"]), static_cast<int>(wait_ms));
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
  if (op == "set_replicas") {
    std::vector<uint32_t> replicas;
    for (const auto& n : req.at("replicas")) replicas.push_back(Integer<uint32_t>(n));
    return Reply(coordinator.SetReplicas(node_id, req.at("key").get<std::string>(),
                                         Integer<uint64_t>(req.at("object_id")), replicas))
        .dump();
  }
  if (op == "stale" || op == "take_over") {
    std::vector<ClusterDirectory::Held> held;
    try {
      for (const auto& h : req.at("held")) {
        held.push_back({h.at(0).get<std::string>(), Integer<uint64_t>(h.at(1)), Integer<uint32_t>(h.at(2))});
      }
    } catch (const json::exception& e) {
      return Reply(Corruption("malformed " + op + " request: " + e.what())).dump();
    }
    json r = Reply(Status::OK());
    if (op == "stale") {
      r["stale"] = coordinator.Stale(held);
    } else {
      r["records"] = json::array();
      for (const ObjectRecord& taken : coordinator.TakeOver(node_id, held)) r["records"].push_back(ToJson(taken));
    }
    return r.dump();
  }
  return Reply(InvalidArgument("unknown coordinator request '" + op + "'")).dump();
}

}  // namespace

std::string AnswerCoordinatorRequest(Coordinator& coordinator, const std::string& request,
                                     int longest_watch_ms) {
  try {
    return Answer(coordinator, request, longest_watch_ms);
  } catch (const json::exception& e) {  // a field of the wrong type
    return Reply(Corruption(std::string("malformed coordinator request: ") + e.what())).dump();
  }
}

}  // namespace csm::cluster
