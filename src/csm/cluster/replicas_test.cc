// The replica rules every directory backend applies (cluster/replicas.h).
#include "csm/cluster/replicas.h"

#include <gtest/gtest.h>

#include <set>

namespace csm::cluster {
namespace {

IsAlive AliveAmong(std::set<uint32_t> live) {
  return [live](uint32_t n) { return live.count(n) != 0; };
}

ObjectRecord Replicated(uint32_t owner, uint32_t copies, std::vector<uint32_t> replicas) {
  ObjectRecord r;
  r.key = "k";
  r.owner_node = owner;
  r.object_id = 77;
  r.copies = copies;
  r.replicas = std::move(replicas);
  r.arenas = {{0x200000000000 + (uint64_t{3} << 30) + 4096, 8 << 20}};  // segment 3 of 1 GiB ones
  return r;
}

TEST(ReplicaRulesTest, ReplicasAreTheNodesAfterTheOwnerInARing) {
  EXPECT_EQ(ChooseReplicas(2, 2, {1, 2, 3, 4}, {}), (std::vector<uint32_t>{3}));
  EXPECT_EQ(ChooseReplicas(4, 3, {1, 2, 3, 4}, {}), (std::vector<uint32_t>{1, 2})) << "wraps around";
  EXPECT_EQ(ChooseReplicas(2, 1, {1, 2, 3}, {}), (std::vector<uint32_t>{})) << "one copy: the owner's";
  EXPECT_EQ(ChooseReplicas(2, 4, {2, 3}, {}), (std::vector<uint32_t>{3})) << "fewer when fewer nodes live";
  EXPECT_EQ(ChooseReplicas(3, 3, {1, 2, 3, 4}, {1, 9}), (std::vector<uint32_t>{1, 4}))
      << "live holders kept first, dead ones not";
}

TEST(ReplicaRulesTest, ACopyStaysGoodWhileItsOwnerOrAReplicaLives) {
  const ObjectRecord r = Replicated(2, 2, {3});
  EXPECT_TRUE(CopyStillGood(r, 77, AliveAmong({1, 2, 3})));
  EXPECT_TRUE(CopyStillGood(r, 77, AliveAmong({1, 3}))) << "node 3 takes it over";
  EXPECT_FALSE(CopyStillGood(r, 77, AliveAmong({1})));
  EXPECT_FALSE(CopyStillGood(r, 78, AliveAmong({1, 2, 3}))) << "another object under the key";
}

TEST(ReplicaRulesTest, TheFirstLiveReplicaTakesADeadOwnersObjectOver) {
  const ObjectRecord r = Replicated(2, 3, {3, 1});
  EXPECT_FALSE(ShouldTakeOver(r, 77, 3, AliveAmong({1, 2, 3}))) << "its owner lives";
  EXPECT_TRUE(ShouldTakeOver(r, 77, 3, AliveAmong({1, 3})));
  EXPECT_FALSE(ShouldTakeOver(r, 77, 1, AliveAmong({1, 3}))) << "node 3 comes first";
  EXPECT_TRUE(ShouldTakeOver(r, 77, 1, AliveAmong({1}))) << "node 3 dead too";
  EXPECT_FALSE(ShouldTakeOver(r, 77, 4, AliveAmong({1, 3, 4}))) << "not a replica";
  EXPECT_FALSE(ShouldTakeOver(r, 76, 3, AliveAmong({1, 3}))) << "a copy of another object";

  ObjectRecord taken = TakenOver(r, 3, {1, 3, 4});
  EXPECT_EQ(taken.owner_node, 3u);
  EXPECT_EQ(taken.origin(), 2u) << "its addresses are still node 2's";
  EXPECT_EQ(taken.object_id, 77u) << "the same object: copies elsewhere stay good";
  EXPECT_EQ(taken.replicas, (std::vector<uint32_t>{1, 4})) << "node 1 kept, node 4 added: three copies again";
  // Taken over again: the origin stays the first owner.
  EXPECT_EQ(TakenOver(taken, 1, {1, 4}).origin(), 2u);
}

TEST(ReplicaRulesTest, SegmentsUnderAnObjectsArenas) {
  const WindowConfig window{0x200000000000, uint64_t{1} << 40, uint64_t{1} << 30};
  ObjectRecord r = Replicated(2, 2, {3});
  EXPECT_EQ(SegmentsOf(r, window), (std::vector<std::pair<uint64_t, uint64_t>>{{3, 3}}));
  r.arenas.push_back({window.base + (uint64_t{5} << 30) - 4096, 8192});  // across a boundary
  EXPECT_EQ(SegmentsOf(r, window).back(), (std::pair<uint64_t, uint64_t>{4, 5}));
  r.arenas.push_back({window.base + (uint64_t{3} << 30) + (16 << 20), 8 << 20});  // segment 3 again
  EXPECT_EQ(SegmentsOf(r, window), (std::vector<std::pair<uint64_t, uint64_t>>{{3, 3}, {4, 5}})) << "each once";
}

}  // namespace
}  // namespace csm::cluster
