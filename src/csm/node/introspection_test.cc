// Introspection's JSON: the fields the client (Client::Info), the csm tool and the docs
// rely on, with the values given.
#include "csm/node/introspection.h"

#include <gtest/gtest.h>

namespace csm::node {
namespace {

TEST(IntrospectionTest, InfoCarriesEveryFieldOfNodeStatus) {
  NodeFacts n;
  n.node_id = 3;
  n.capacity = 1000;
  n.used = 400;
  n.objects = 7;
  n.objects_awaiting_unpin = 2;
  n.fetches = 5;
  n.copies_ahead = 4;
  n.fetches_in_flight = 1;
  n.connections_dropped = 9;
  n.clients = {{101, 2, 3}, {102, 0, 0}};
  const nlohmann::json j = InfoJson(n);
  // What Client::Info reads (client.cc): a missing or retyped field breaks every client.
  EXPECT_EQ(j.at("node_id").get<uint32_t>(), 3u);
  EXPECT_EQ(j.at("capacity").get<uint64_t>(), 1000u);
  EXPECT_EQ(j.at("used").get<uint64_t>(), 400u);
  EXPECT_EQ(j.at("objects").get<uint64_t>(), 7u);
  EXPECT_EQ(j.at("objects_awaiting_unpin").get<uint64_t>(), 2u);
  EXPECT_EQ(j.at("fetches").get<uint64_t>(), 5u);
  EXPECT_EQ(j.at("copies_ahead").get<uint64_t>(), 4u);
  EXPECT_EQ(j.at("fetches_in_flight").get<uint64_t>(), 1u);
  EXPECT_EQ(j.at("connections_dropped").get<uint64_t>(), 9u);
  ASSERT_EQ(j.at("clients").size(), 2u);
  EXPECT_EQ(j["clients"][0].at("pid").get<int>(), 101);
  EXPECT_EQ(j["clients"][0].at("pins").get<uint64_t>(), 3u);
  // What csm info prints.
  for (const char* field : {"socket", "window", "segments_leased", "replicas_evicted",
                            "directory_requests_waiting", "spare_memory_bytes", "huge_pages",
                            "arenas", "max_objects"}) {
    EXPECT_TRUE(j.contains(field)) << field;
  }
  EXPECT_FALSE(j.contains("record_cache")) << "a lone node has none";
  n.record_cache = cluster::RecordCacheStats{10, 8, 2};
  EXPECT_EQ(InfoJson(n).at("record_cache").at("hits").get<uint64_t>(), 8u);
}

Object Copy() {
  Object o;
  o.key = "k";
  o.id = 40;
  o.owner_node = 2;  // a copy of node 2's object 77
  o.remote_id = 77;
  o.type_name = "T";
  o.header.data_size = 8192;
  o.extents = {{0x1000, 8192}};
  o.arena_ids = {5};
  return o;
}

TEST(IntrospectionTest, StatNamesTheOwnerOfACopyAndItsIdThere) {
  const nlohmann::json j = StatJson(Copy(), /*node_id=*/1, /*pins=*/2);
  EXPECT_EQ(j.at("owner_node").get<uint32_t>(), 2u) << "not this node";
  EXPECT_EQ(j.at("owner_object_id").get<uint64_t>(), 77u);
  EXPECT_EQ(j.at("object_id").get<uint64_t>(), 40u);
  EXPECT_EQ(j.at("pins").get<uint64_t>(), 2u);
  EXPECT_EQ(j.at("size").get<uint64_t>(), 8192u);
  ASSERT_EQ(j.at("extents").size(), 1u);
  EXPECT_EQ(j["extents"][0].at("length").get<uint64_t>(), 8192u);
  Object own = Copy();
  own.owner_node = 0;
  const nlohmann::json mine = StatJson(own, 1, 0);
  EXPECT_EQ(mine.at("owner_node").get<uint32_t>(), 1u) << "its own: this node";
  EXPECT_FALSE(mine.contains("owner_object_id"));
}

TEST(IntrospectionTest, ListEntriesLookTheSameForLocalObjectsAndClusterRecords) {
  cluster::ObjectRecord r;
  r.key = "k";
  r.owner_node = 2;
  r.owner_alive = false;
  r.size = 8192;
  const nlohmann::json remote = ListEntry(r, /*here=*/false, 0);
  const nlohmann::json local = ListEntry(Copy(), /*node_id=*/1, 1);
  for (const char* field : {"key", "type_name", "type_id", "size", "owner_node", "owner_alive",
                            "pins", "here", "commit_time_ns"}) {
    EXPECT_TRUE(remote.contains(field)) << field;
    EXPECT_TRUE(local.contains(field)) << field;
  }
  EXPECT_FALSE(remote.at("owner_alive").get<bool>());
  EXPECT_EQ(local.at("owner_node").get<uint32_t>(), 2u);
}

TEST(IntrospectionTest, NodesGiveEachLeaseItsAddress) {
  const WindowConfig window{0x200000000000, uint64_t{1} << 40, uint64_t{1} << 30};
  cluster::NodeInfo m;
  m.node_id = 2;
  m.alive = true;
  m.leases = {{3, 2}};
  const nlohmann::json j = NodesJson(1, "c", window, {m});
  EXPECT_EQ(j.at("cluster").get<std::string>(), "c");
  ASSERT_EQ(j.at("members").size(), 1u);
  const auto& lease = j["members"][0].at("leases").at(0);
  EXPECT_EQ(lease.at("addr").get<std::string>(), "0x2000c0000000");
  EXPECT_EQ(lease.at("segments").get<uint64_t>(), 2u);
}

}  // namespace
}  // namespace csm::node
