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
  m.cache_line = Integer<uint32_t>(f.at("cache_line"));
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
    n.node_id = Integer<uint32_t>(j.at("node_id"));
    n.cluster = j.at("cluster").get<std::string>();
    n.peer_address = j.at("peer_address").get<std::string>();
    const auto& w = j.at("window");
    n.window = {Integer<uint64_t>(w.at(0)), Integer<uint64_t>(w.at(1)), Integer<uint64_t>(w.at(2))};
    n.fingerprint = Integer<uint64_t>(j.at("fingerprint"));
    n.fingerprint_text = j.at("fingerprint_text").get<std::string>();
    n.incarnation = IntegerOr<uint64_t>(j, "incarnation", 0);
    n.alive = j.value("alive", false);
    n.last_seen_ms_ago = IntegerOr<int64_t>(j, "last_seen_ms_ago", 0);
    for (const auto& l : j.value("leases", json::array())) {
      n.leases.push_back({Integer<uint64_t>(l.at(0)), Integer<uint64_t>(l.at(1))});
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
  if (r.copies > 1) {
    j["copies"] = r.copies;
    j["replicas"] = r.replicas;
  }
  if (r.origin_node != 0) j["origin_node"] = r.origin_node;
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
    r.owner_node = Integer<uint32_t>(j.at("owner_node"));
    r.object_id = Integer<uint64_t>(j.at("object_id"));
    r.type_id = Integer<uint64_t>(j.at("type_id"));
    r.type_name = j.at("type_name").get<std::string>();
    r.header = Integer<uint64_t>(j.at("header"));
    r.root = Integer<uint64_t>(j.at("root"));
    r.size = Integer<uint64_t>(j.at("size"));
    r.checksum = Integer<uint64_t>(j.at("checksum"));
    r.checksum_deferred = j.at("checksum_deferred").get<bool>();
    for (const auto& e : j.at("extents")) r.extents.push_back({Integer<uint64_t>(e.at(0)), Integer<uint64_t>(e.at(1))});
    for (const auto& e : j.at("arenas")) r.arenas.push_back({Integer<uint64_t>(e.at(0)), Integer<uint64_t>(e.at(1))});
    r.owner_address = j.value("owner_address", std::string());
    r.commit_time_ns = IntegerOr<int64_t>(j, "commit_time_ns", 0);
    r.owner_alive = j.value("owner_alive", false);
    r.arrow_validated = j.value("arrow_validated", false);  // absent from older nodes' records
    r.copies = IntegerOr<uint32_t>(j, "copies", 1);  // absent: no replicas
    if (j.contains("replicas")) {
      const json& replicas = j.at("replicas");
      if (!replicas.is_array()) return Corruption("malformed object record: replicas is not a list");
      for (const auto& n : replicas) r.replicas.push_back(Integer<uint32_t>(n));
    }
    r.origin_node = IntegerOr<uint32_t>(j, "origin_node", 0);
    r.memory = FabricFromJson(j);
    if (r.memory.on_fabric()) {
      const json& offsets = j.at("arena_offsets");
      if (!offsets.is_array()) return Corruption("malformed object record: arena_offsets is not a list");
      for (const auto& o : offsets) r.arena_offsets.push_back(Integer<uint64_t>(o));
      r.arena_paths = j.value("arena_paths", std::vector<std::string>());
    }
  } catch (const json::exception& e) {
    return Corruption(std::string("malformed object record: ") + e.what());
  }
  if (r.key.empty() || r.extents.empty() || r.extents.size() > object::kMaxExtents ||
      r.arenas.empty() || r.arenas.size() > object::kMaxExtents) {
    return Corruption("object record with no or too many extents");
  }
  if (r.copies == 0 || r.copies > kMaxCopies || r.replicas.size() >= r.copies) {
    return Corruption("object record asking for " + std::to_string(r.copies) + " copies with " +
                      std::to_string(r.replicas.size()) + " replicas (1 to " + std::to_string(kMaxCopies) +
                      " copies, fewer replicas than copies)");
  }
  if (r.memory.on_fabric() && (r.arena_offsets.size() != r.arenas.size() ||
                               (!r.arena_paths.empty() && r.arena_paths.size() != r.arenas.size()))) {
    return Corruption("object record on a shared-memory fabric without one memory offset per arena");
  }
  return r;
}

}  // namespace csm::cluster
