// Replicas (docs/cluster.md, "Replicas"): objects committed with k copies are fetched by
// k-1 other nodes as they are published; when the owner is killed, the first live
// replica takes each object over at the same addresses, readers' Gets on the other nodes
// go on, and a new replica restores k. Real csmd nodes with each directory backend.
#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>

#include "cluster_fixture.h"

namespace csm {
namespace {

using nlohmann::json;
using testing::ClusterTest;
using testing::Helper;
using testing::RunHelper;

class ReplicaTest : public ClusterTest {
 protected:
  static json StatOf(const testing::Node& node, const std::string& key) {
    auto c = Client::Connect(node.ClientConfig());
    if (!c.ok()) return json::object();
    auto s = (*c)->StatJson(key);
    return s.ok() ? json::parse(*s) : json::object();
  }
  static json Info(const testing::Node& node) {
    auto c = Client::Connect(node.ClientConfig());
    return json::parse(*(*c)->InfoJson());
  }
  // Whether `node` holds `key` as one of its replicas.
  static bool HoldsReplica(const testing::Node& node, const std::string& key) {
    return StatOf(node, key).value("replica_here", false);
  }
};

constexpr int kMaps = 10;
constexpr int kEntries = 3000;

TEST_P(ReplicaTest, AKilledOwnersObjectsStayReadableAtTheSameAddressesAndGetANewReplica) {
  // Node 2 owns the objects (node 1 hosts the embedded coordinator, which must live);
  // with two copies the directory names node 3 (the next id) their replica.
  a_ = Start(1);
  b_ = Start(2, {"--replicas", "2"});
  c_ = Start(3);
  for (int i = 0; i < kMaps; ++i) RunHelper(*b_, {"produce", "r/" + std::to_string(i), std::to_string(kEntries)});
  RunHelper(*b_, {"big", "r/big", "20"});  // over several 8 MiB arenas
  // One asking for no replica (as large as the others: not copied ahead).
  auto one = testing::Process::Spawn({Helper(), "produce", "single", std::to_string(kEntries), "1"}, b_->Env());
  ASSERT_EQ(one->Wait(), 0) << one->output();
  for (int i = 0; i < kMaps; ++i) {
    const std::string key = "r/" + std::to_string(i);
    ASSERT_TRUE(testing::Eventually([&] { return HoldsReplica(*c_, key); }, 20000)) << StatOf(*c_, key).dump();
    EXPECT_FALSE(HoldsReplica(*a_, key));
  }
  ASSERT_TRUE(testing::Eventually([&] { return HoldsReplica(*c_, "r/big"); }, 20000));
  EXPECT_EQ(StatOf(*b_, "r/0").value("replicas", json::array()), json::array({3})) << StatOf(*b_, "r/0").dump();
  EXPECT_EQ(StatOf(*b_, "r/0").value("copies", 0), 2);
  EXPECT_EQ(StatOf(*b_, "single").value("copies", 0), 1);
  EXPECT_TRUE(StatOf(*c_, "single").empty()) << "one copy asked: none made elsewhere";
  EXPECT_EQ(Info(*c_)["replicas"]["held"].get<int>(), kMaps + 1);

  // Readers on node 1 and node 3 in the middle of their Gets when the owner dies: node
  // 1's fetch most keys after it, from node 3 once it has taken them over.
  auto reader1 = testing::Process::Spawn(
      {Helper(), "consume-keys", "r", std::to_string(kEntries), std::to_string(kMaps)}, a_->Env());
  auto reader3 = testing::Process::Spawn(
      {Helper(), "consume-keys", "r", std::to_string(kEntries), std::to_string(kMaps)}, c_->Env());
  ASSERT_NE(reader1->WaitForLine("got 1", 60000), "") << reader1->output();
  ASSERT_NE(reader3->WaitForLine("got 1", 60000), "") << reader3->output();
  b_->Kill(SIGKILL);
  EXPECT_EQ(reader1->Wait(120000), 0) << reader1->output();
  EXPECT_EQ(reader3->Wait(120000), 0) << reader3->output();

  // Node 3 owns them now; node 1, the only other live node, was named their replica.
  for (int i = 0; i < kMaps; ++i) {
    const std::string key = "r/" + std::to_string(i);
    ASSERT_TRUE(testing::Eventually([&] { return HoldsReplica(*a_, key); }, 20000)) << StatOf(*a_, key).dump();
    json s = StatOf(*c_, key);
    EXPECT_TRUE(s.value("taken_over", false)) << s.dump();
    EXPECT_EQ(s.value("owner_node", 0), 3);
    EXPECT_EQ(s.value("origin_node", 0), 2);
  }
  EXPECT_EQ(Info(*c_)["replicas"]["taken_over"].get<int>(), kMaps + 1);
  RunHelper(*a_, {"check-big", "r/big", "20"});
  // The object that asked for one copy died with its owner.
  auto single = testing::Process::Spawn({Helper(), "consume", "single", std::to_string(kEntries)}, a_->Env());
  EXPECT_NE(single->Wait(), 0);
  EXPECT_NE(single->output().find("not alive"), std::string::npos) << single->output();

  // A new incarnation of node 2 builds in segments of its own: the taken-over objects'
  // addresses stay out of every new lease, and they still read back whole.
  b_.reset();
  b_ = Start(2);
  for (int i = 0; i < 4; ++i) RunHelper(*b_, {"big", "new/" + std::to_string(i), "8"});
  for (int i = 0; i < 4; ++i) RunHelper(*a_, {"check-big", "new/" + std::to_string(i), "8"});
  auto again = testing::Process::Spawn({Helper(), "consume-keys", "r", std::to_string(kEntries), std::to_string(kMaps)},
                                       b_->Env());
  EXPECT_EQ(again->Wait(120000), 0) << again->output();

  // The node that took them over deletes them; every copy goes.
  auto c = Client::Connect(c_->ClientConfig());
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE((*c)->Delete("r/0").ok());
  EXPECT_TRUE(testing::Eventually([&] { return StatOf(*a_, "r/0").empty(); }, 20000));
}

TEST_P(ReplicaTest, ACopyTakenOverIsServedWhenTheFirstReplicaIsDeadToo) {
  // Three copies: nodes 3 and 1 hold replicas of node 2's object. Node 2 dies, then
  // node 3 (which took it over): node 1 takes it over in turn.
  a_ = Start(1);
  b_ = Start(2, {"--replicas", "3"});
  c_ = Start(3);
  RunHelper(*b_, {"produce", "k3", std::to_string(kEntries)});
  ASSERT_TRUE(testing::Eventually([&] { return HoldsReplica(*a_, "k3") && HoldsReplica(*c_, "k3"); }, 20000));
  b_->Kill(SIGKILL);
  ASSERT_TRUE(testing::Eventually([&] { return StatOf(*c_, "k3").value("taken_over", false); }, 20000))
      << StatOf(*c_, "k3").dump();
  c_->Kill(SIGKILL);
  ASSERT_TRUE(testing::Eventually([&] { return StatOf(*a_, "k3").value("taken_over", false); }, 20000))
      << StatOf(*a_, "k3").dump();
  RunHelper(*a_, {"consume", "k3", std::to_string(kEntries)});
}

TEST_P(ReplicaTest, ADeadReplicaIsReplacedWhileItsOwnerLives) {
  a_ = Start(1);
  b_ = Start(2, {"--replicas", "2"});
  c_ = Start(3);
  RunHelper(*b_, {"produce", "k", std::to_string(kEntries)});
  ASSERT_TRUE(testing::Eventually([&] { return HoldsReplica(*c_, "k"); }, 20000));
  c_->Kill(SIGKILL);
  // The owner names node 1 instead, which fetches its copy; two copies again.
  ASSERT_TRUE(testing::Eventually([&] { return HoldsReplica(*a_, "k"); }, 20000)) << StatOf(*a_, "k").dump();
  EXPECT_EQ(StatOf(*b_, "k").value("replicas", json::array()), json::array({1})) << StatOf(*b_, "k").dump();
  // Node 3 back (afresh): node 1 stays the replica.
  c_.reset();
  c_ = Start(3);
  RunHelper(*c_, {"consume", "k", std::to_string(kEntries)});
  EXPECT_EQ(StatOf(*b_, "k").value("replicas", json::array()), json::array({1}));
  EXPECT_TRUE(HoldsReplica(*a_, "k"));
}

TEST_P(ReplicaTest, ANodeOnASharedMemoryFabricRefusesReplicasAndSaysWhy) {
  char dir[] = "/dev/shm/csm-replica-fabric-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string memory = std::string(dir) + "/memory";
  ASSERT_EQ(::close(::open(memory.c_str(), O_CREAT | O_RDWR, 0600)), 0);
  ASSERT_EQ(::truncate(memory.c_str(), 64 << 20), 0);
  std::vector<std::string> argv = {testing::Csmd(), "--socket", std::string(dir) + "/node.sock"};
  for (const std::string& f : Flags(1, {"--shared-memory", memory, "--capacity", "64M", "--replicas", "2"})) {
    argv.push_back(f);
  }
  auto refused = testing::Run(argv, {}, 20000);
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE((refused.out + refused.err).find("replicas are not kept on a shared-memory fabric"), std::string::npos)
      << refused.out << refused.err;
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Directories, ReplicaTest,
                         ::testing::ValuesIn(testing::BuiltTransports({"embedded_tcp", "etcd_tcp"})),
                         [](const auto& param_info) { return param_info.param; });

}  // namespace
}  // namespace csm
