// JSON codecs for cluster-directory records; see records_json.h.
#include "csm/cluster/records_json.h"

#include "csm/base/hex.h"

#include <cstdio>

namespace csm::cluster {

using nlohmann::json;

namespace {

json ExtentsToJson(const std::vector<object::ObjectExtent>& v) {
  json a = json::array();
  for (const auto& e : v) a.push_back({e.addr, e.length});
  return a;
}
json FabricToJson(const FabricMemory& m) {
  json j = {{"domain", m.domain}, {"path", m.path}, {"coherence", m.coherence}, {"cache_line", m.cache_line}};
  if (!m.lend_address.empty()) j["lend_address"] = m.lend_address;
  return j;
}

// Absent from the JSON of a node on no fabric (and of older nodes).
FabricMemory FabricFromJson(const json& j) {
  FabricMemory m;
  if (!j.contains("memory")) return m;
  const json& f = j.at("memory");
  m.domain = f.at("domain").get<std::string>();
  m.path = f.at("path").get<std::string>();
  m.coherence = f.at("coherence").get<std::string>();
  m.cache_line = f.at("cache_line").get<uint32_t>();
  m.lend_address = f.value("lend_address", std::string());
  return m;
}
}  // namespace

std::string Describe(const WindowConfig& w) {
  return "base " + Hex(w.base) + ", size " + FormatSize(w.size) + ", segments of " +
         FormatSize(w.segment_size);
}

json ToJson(const NodeInfo& n) {
  json leases = json::array();
  for (const auto& l : n.leases) leases.push_back({l.first, l.count});
  json j = {{"node_id", n.node_id},
          {"cluster", n.cluster},
          {"peer_address", n.peer_address},
          {"window", {n.window.base, n.window.size, n.window.segment_size}},
          {"fingerprint", n.fingerprint},
          {"fingerprint_text", n.fingerprint_text},
          {"incarnation", n.incarnation},
          {"alive", n.alive},
          {"last_seen_ms_ago", n.last_seen_ms_ago},
          {"leases", leases}};
  if (n.memory.on_fabric()) j["memory"] = FabricToJson(n.memory);
  return j;
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
    n.incarnation = j.value("incarnation", uint64_t{0});
    n.alive = j.value("alive", false);
    n.last_seen_ms_ago = j.value("last_seen_ms_ago", int64_t{0});
    for (const auto& l : j.value("leases", json::array())) {
      n.leases.push_back({l.at(0).get<uint64_t>(), l.at(1).get<uint64_t>()});
    }
    n.memory = FabricFromJson(j);
  } catch (const json::exception& e) {
    return Corruption(std::string("malformed node description: ") + e.what());
  }
  return n;
}

json ToJson(const ObjectRecord& r) {
  json j = {{"key", r.key},           {"owner_node", r.owner_node},
          {"object_id", r.object_id}, {"type_id", r.type_id},
          {"type_name", r.type_name}, {"header", r.header},
          {"root", r.root},         {"size", r.size},
          {"checksum", r.checksum}, {"checksum_deferred", r.checksum_deferred},
          {"arrow_validated", r.arrow_validated},
          {"extents", ExtentsToJson(r.extents)},
          {"arenas", ExtentsToJson(r.arenas)}, {"owner_address", r.owner_address},
          {"commit_time_ns", r.commit_time_ns},
          {"owner_alive", r.owner_alive}};
  if (r.memory.on_fabric()) {
    j["memory"] = FabricToJson(r.memory);
    j["arena_offsets"] = r.arena_offsets;
    if (!r.arena_paths.empty()) j["arena_paths"] = r.arena_paths;
  }
  return j;
}

Result<ObjectRecord> RecordFromJson(const json& j) {
  ObjectRecord r;
  try {
    r.key = j.at("key").get<std::string>();
    r.owner_node = j.at("owner_node").get<uint32_t>();
    r.object_id = j.at("object_id").get<uint64_t>();
    r.type_id = j.at("type_id").get<uint64_t>();
    r.type_name = j.at("type_name").get<std::string>();
    r.header = j.at("header").get<uint64_t>();
    r.root = j.at("root").get<uint64_t>();
    r.size = j.at("size").get<uint64_t>();
    r.checksum = j.at("checksum").get<uint64_t>();
    r.checksum_deferred = j.at("checksum_deferred").get<bool>();
    for (const auto& e : j.at("extents")) r.extents.push_back({e.at(0).get<uint64_t>(), e.at(1).get<uint64_t>()});
    for (const auto& e : j.at("arenas")) r.arenas.push_back({e.at(0).get<uint64_t>(), e.at(1).get<uint64_t>()});
    r.owner_address = j.value("owner_address", std::string());
    r.commit_time_ns = j.value("commit_time_ns", int64_t{0});
    r.owner_alive = j.value("owner_alive", false);
    r.arrow_validated = j.value("arrow_validated", false);  // absent from older nodes' records
    r.memory = FabricFromJson(j);
    if (r.memory.on_fabric()) {
      r.arena_offsets = j.at("arena_offsets").get<std::vector<uint64_t>>();
      r.arena_paths = j.value("arena_paths", std::vector<std::string>());
    }
  } catch (const json::exception& e) {
    return Corruption(std::string("malformed object record: ") + e.what());
  }
  if (r.key.empty() || r.extents.empty() || r.extents.size() > object::kMaxExtents ||
      r.arenas.empty() || r.arenas.size() > object::kMaxExtents) {
    return Corruption("object record with no or too many extents");
  }
  if (r.memory.on_fabric() && (r.arena_offsets.size() != r.arenas.size() ||
                               (!r.arena_paths.empty() && r.arena_paths.size() != r.arenas.size()))) {
    return Corruption("object record on a shared-memory fabric without one memory offset per arena");
  }
  return r;
}

}  // namespace csm::cluster
