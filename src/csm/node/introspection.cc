// Introspection; see introspection.h.
#include "csm/node/introspection.h"

#include "csm/base/hex.h"
#include "csm/directory/directory_table.h"

namespace csm::node {

nlohmann::json InfoJson(const NodeFacts& n) {
  nlohmann::json j;
  j["node_id"] = n.node_id;
  j["socket"] = n.socket;
  j["window"] = {{"base", Hex(n.window.base)}, {"size", n.window.size},
                 {"segment_size", n.window.segment_size}};
  j["segments_leased"] = n.segments_leased;
  j["capacity"] = n.capacity;
  j["connections_dropped"] = n.connections_dropped;
  j["used"] = n.used;
  j["objects"] = n.objects;
  j["objects_awaiting_unpin"] = n.objects_awaiting_unpin;
  j["fetches"] = n.fetches;
  j["copies_ahead"] = n.copies_ahead;
  j["replicas_evicted"] = n.replicas_evicted;
  j["replica_bytes_evicted"] = n.replica_bytes_evicted;
  j["replicas"] = {{"default_copies", n.default_copies}, {"held", n.replicas_held},
                   {"held_bytes", n.replica_bytes},     {"fetches", n.replica_fetches},
                   {"taken_over", n.taken_over}};
  j["lazy"] = {{"enabled", n.lazy_enabled},
               {"default_fetch", n.default_fetch},
               {"started", n.lazy_started},
               {"under_way", n.lazy.copies},
               {"bytes", n.lazy.bytes},
               {"arrived_bytes", n.lazy.verified_bytes},
               {"faults", n.lazy.faults},
               {"blocks_fetched", n.lazy.blocks_fetched},
               {"blocks_failed", n.lazy.blocks_failed},
               {"copies_failed", n.lazy.copies_failed},
               {"readers", n.lazy.readers}};
  j["fetches_in_flight"] = n.fetches_in_flight;
  j["transfers"] = nlohmann::json::array();
  for (const auto& t : n.transfers) {
    j["transfers"].push_back({{"key", t.key}, {"bytes", t.bytes}, {"received", t.received}});
  }
  j["peer_bytes_served"] = n.peer_bytes_served;
  if (n.fabric) {
    const FabricFacts& f = *n.fabric;
    j["fabric"] = {{"domain", f.memory.domain},
                   {"path", f.memory.path},
                   {"coherence", f.memory.coherence},
                   {"cache_line", f.memory.cache_line},
                   {"size", f.size},
                   {"allocated", f.allocated},
                   {"written_back_bytes", f.written_back_bytes},
                   {"reads_in_place", f.reads_in_place},
                   {"read_retries", f.read_retries},
                   {"read_failures", f.read_failures},
                   {"lent_bytes", f.lent_bytes},
                   {"loans", f.loans},
                   {"lend_limit", f.lend_limit},
                   {"borrowed_bytes", f.borrowed_bytes}};
  }
  j["directory_requests_waiting"] = n.directory_requests_waiting;
  j["spare_memory_bytes"] = n.spare.bytes;                // destroyed arenas' memory kept for reuse
  j["spare_memory_zeroed_bytes"] = n.spare.zeroed_bytes;  // of which ready for local arenas
  j["spare_memory_reused"] = n.spare.reuses;              // arenas that reused it
  if (!n.spill.dir.empty()) {
    const auto& sp = n.spill;
    j["spill"] = {{"dir", sp.dir},
                  {"high_percent", sp.high_percent},
                  {"low_percent", sp.low_percent},
                  {"objects", sp.objects},
                  {"bytes", sp.bytes},
                  {"writing_bytes", sp.writing_bytes},
                  {"spills", sp.spills},
                  {"restores", sp.restores},
                  {"lost", sp.lost},
                  {"bytes_written", sp.bytes_written},
                  {"bytes_read", sp.bytes_read},
                  {"waiting_for_room", sp.waiting_for_room}};
  }
  // Builders' arenas ask for 2 MiB pages (--huge-pages) and the host allows them.
  j["huge_pages"] = {{"setting", n.huge_pages_setting},
                     {"asked", n.huge_pages_asked},
                     {"used", n.huge_pages_used}};
  if (n.record_cache) {  // records pushed by the directory, answering lookups here
    j["record_cache"] = {{"records", n.record_cache->records},
                         {"hits", n.record_cache->hits},
                         {"misses", n.record_cache->misses}};
  }
  j["arenas"] = n.arenas;
  j["max_objects"] = n.max_objects;
  j["clients"] = nlohmann::json::array();
  for (const SessionFacts& c : n.clients) {
    j["clients"].push_back({{"pid", c.pid}, {"arenas", c.arenas}, {"pins", c.pins}});
  }
  return j;
}

nlohmann::json StatJson(const Object& o, uint32_t node_id, uint64_t pins) {
  nlohmann::json j;
  j["key"] = o.key;
  j["object_id"] = o.id;
  j["owner_node"] = o.owner(node_id);
  if (o.is_copy()) j["owner_object_id"] = o.remote_id;
  j["type_name"] = o.type_name;
  j["type_id"] = Hex(o.type_id);
  j["size"] = o.header.data_size;
  j["checksum"] = Hex(o.header.checksum);
  j["header"] = Hex(o.header_addr);
  j["root"] = Hex(o.header.root);
  j["producer_pid"] = o.producer_pid;
  j["commit_time_ns"] = o.commit_time_ns;
  j["pins"] = pins;
  j["spilled"] = o.spill == Object::Spill::kSpilled || o.spill == Object::Spill::kReading;
  j["copies"] = o.copies;
  j["replicas"] = o.replicas;        // the other nodes chosen to hold one, as last heard
  j["replica_here"] = o.replica;     // a copy held as one of them
  j["taken_over"] = o.taken_over;    // taken over from its dead owner (its origin)
  if (o.taken_over) j["origin_node"] = o.owner_node;
  if (!o.spill_lost.ok()) j["spill_lost"] = o.spill_lost.ToString();
  j["descriptor_bytes"] = sizeof(directory::DirectorySlot);
  j["extents"] = nlohmann::json::array();
  for (const auto& e : o.extents) j["extents"].push_back({{"addr", Hex(e.addr)}, {"length", e.length}});
  j["arenas"] = o.arena_ids;
  return j;
}

nlohmann::json ListEntry(const Object& o, uint32_t node_id, uint64_t pins) {
  return {{"key", o.key},
          {"type_name", o.type_name},
          {"type_id", Hex(o.type_id)},
          {"size", o.header.data_size},
          {"owner_node", o.owner(node_id)},
          {"owner_alive", true},
          {"here", true},
          {"pins", pins},
          {"producer_pid", o.producer_pid},
          {"commit_time_ns", o.commit_time_ns},
          {"spilled", o.spill == Object::Spill::kSpilled || o.spill == Object::Spill::kReading},
          {"copies", o.copies},
          {"replica", o.replica}};
}

nlohmann::json ListEntry(const cluster::ObjectRecord& r, bool here, uint64_t pins) {
  return {{"key", r.key},
          {"type_name", r.type_name},
          {"type_id", Hex(r.type_id)},
          {"size", r.size},
          {"owner_node", r.owner_node},
          {"owner_alive", r.owner_alive},
          {"pins", pins},
          {"here", here},
          {"commit_time_ns", r.commit_time_ns},
          {"copies", r.copies},
          {"replicas", r.replicas}};
}

nlohmann::json NodesJson(uint32_t node_id, const std::string& cluster, const WindowConfig& window,
                         const std::vector<cluster::NodeInfo>& members) {
  nlohmann::json j;
  j["node_id"] = node_id;
  j["cluster"] = cluster;
  j["members"] = nlohmann::json::array();
  for (const auto& n : members) {
    nlohmann::json leases = nlohmann::json::array();
    for (const auto& l : n.leases) {
      leases.push_back({{"first_segment", l.first}, {"segments", l.count},
                        {"addr", Hex(window.base + l.first * window.segment_size)}});
    }
    nlohmann::json m = {{"node_id", n.node_id}, {"peer_address", n.peer_address},
                        {"alive", n.alive}, {"last_seen_ms_ago", n.last_seen_ms_ago},
                        {"leases", leases}};
    if (n.memory.on_fabric()) {
      m["memory"] = {{"domain", n.memory.domain}, {"path", n.memory.path},
                     {"coherence", n.memory.coherence}, {"cache_line", n.memory.cache_line}};
    }
    j["members"].push_back(std::move(m));
  }
  // How each member reads each other member's objects: in place over their shared
  // memory when both are on one fabric, else copied over the owner's transport.
  j["fabrics"] = nlohmann::json::array();
  for (const auto& reader : members) {
    for (const auto& owner : members) {
      if (reader.node_id == owner.node_id) continue;
      const std::string fabric = reader.memory.Shares(owner.memory)          ? "shm"
                                 : owner.peer_address.rfind("ucx://", 0) == 0 ? "ucx"
                                                                              : "tcp";
      j["fabrics"].push_back({{"reader", reader.node_id}, {"owner", owner.node_id}, {"fabric", fabric}});
    }
  }
  return j;
}

}  // namespace csm::node
