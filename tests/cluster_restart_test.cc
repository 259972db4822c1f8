// A cluster node whose csmd is killed and restarted with its state (--state-dir): it
// rejoins as the same node, with its segment leases and objects, and every node reads
// them again at the same addresses; the node hosting the embedded coordinator too.
// docs/operations.md, "Restarting csmd", and docs/cluster.md.
#include <gtest/gtest.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include "cluster_fixture.h"
#include "csm/client.h"
#include "harness.h"
#include "workload.h"

namespace csm {
namespace {

using nlohmann::json;
using testing::Alive;
using testing::Attach;
using testing::ClusterTest;
using testing::Listed;
using testing::Member;
using testing::Nodes;
using testing::RunHelper;

// The tests of ClusterTest's fixture that restart nodes with their state.
class ClusterRestartTest : public ClusterTest {};

bool AllAlive(const testing::Node& asked) {
  json m = Nodes(asked);
  return Alive(m, 1) && Alive(m, 2) && Alive(m, 3);
}

TEST_P(ClusterRestartTest, ANodeRestartedWithItsStateRejoinsWithItsObjects) {
  a_ = Start(1);
  b_ = Start(2, {"--reattach-grace-ms", "1500"}, /*keeps_state=*/true);
  c_ = Start(3);
  RunHelper(*b_, {"produce", "on-2", "2000"});
  RunHelper(*b_, {"big", "large-on-2", "3"});  // over the copy-ahead size: fetched on a Get
  RunHelper(*a_, {"produce", "on-1", "1000"});
  RunHelper(*c_, {"consume", "on-2", "2000"});  // node 3 holds a copy
  const json leases = Member(Nodes(*a_), 2).at("leases");
  // This process reads on node 2 (a process has one attachment: the cluster's view is
  // asked of node 2 from here on).
  auto client = Attach(*b_);
  ASSERT_TRUE(client);
  auto members = [&] {
    Result<std::string> r = client->NodesJson();
    return r.ok() ? json::parse(*r) : json{{"members", json::array()}};
  };
  auto held = client->Get<workload::HeapMap>("on-2");
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  const uint64_t id = held->info().object_id;

  b_->Kill(SIGKILL);
  b_->Start();

  // The Ref held on node 2 never noticed; the node is the same member, with its leases.
  EXPECT_EQ(workload::Verify(**held, 2000), "");
  ASSERT_TRUE(testing::Eventually([&] {
    json m = members();
    return Alive(m, 1) && Alive(m, 2) && Alive(m, 3);
  }, 30000)) << members().dump();
  EXPECT_EQ(Member(members(), 2).at("leases"), leases);
  auto again = client->Get<workload::HeapMap>("on-2");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->info().object_id, id);
  // A node that never had them fetches them from the restarted owner; the copy's node
  // reads it too (kept, or fetched again).
  RunHelper(*a_, {"consume", "on-2", "2000"});
  RunHelper(*a_, {"check-big", "large-on-2", "3"});
  RunHelper(*c_, {"consume", "on-2", "2000"});
  RunHelper(*b_, {"consume", "on-1", "1000"});
  // It builds again, in segments no other node holds, and its new objects are served.
  RunHelper(*b_, {"produce", "after-restart", "100"});
  RunHelper(*c_, {"consume", "after-restart", "100"});
  for (const char* key : {"on-1", "on-2", "large-on-2", "after-restart"}) EXPECT_EQ(Listed(*c_, key), 1) << key;
}

// Objects of the restarted node deleted before it died, or damaged while it was down
// (a byte of its state changed), are gone everywhere: their records are removed, copies
// of the damaged one on other nodes dropped.
TEST_P(ClusterRestartTest, ObjectsDeletedOrDamagedBeforeARestartAreGoneEverywhere) {
  a_ = Start(1);
  b_ = Start(2, {}, /*keeps_state=*/true);
  c_ = Start(3);
  RunHelper(*b_, {"produce", "kept", "100"});
  RunHelper(*b_, {"produce", "gone", "100"});
  RunHelper(*b_, {"produce", "damaged", "2000"});
  RunHelper(*c_, {"consume", "damaged", "2000"});  // node 3 holds a copy
  ASSERT_EQ(testing::Run({testing::CsmCli(), "rm", "gone"}, b_->Env()).exit_code, 0);
  uint64_t root = 0;
  {
    auto c = Attach(*b_);
    ASSERT_TRUE(c);
    root = c->Lookup("damaged")->root;
  }
  b_->Kill(SIGKILL);
  ASSERT_TRUE(testing::FlipStateByte(*b_, root + 8));
  b_->Start();  // logs "restart: dropped 'damaged': its bytes no longer match the checksum …"
  ASSERT_TRUE(testing::Eventually([&] { return AllAlive(*a_); }, 30000)) << Nodes(*a_).dump();
  RunHelper(*a_, {"consume", "kept", "100"});
  for (testing::Node* n : {a_.get(), b_.get(), c_.get()}) {
    EXPECT_EQ(Listed(*n, "kept"), 1);
    EXPECT_EQ(Listed(*n, "gone"), 0);
    EXPECT_TRUE(testing::Eventually([&] { return Listed(*n, "damaged") == 0; })) << "a damaged object is listed";
  }
}

// A node's state belongs to the cluster it was made in: a csmd started on it alone, or
// in another cluster, is refused with what to do.
TEST_P(ClusterRestartTest, ANodesStateIsRefusedOutsideItsCluster) {
  a_ = Start(1);
  b_ = Start(2, {}, /*keeps_state=*/true);
  RunHelper(*b_, {"produce", "on-2", "10"});
  b_->Kill(SIGTERM);
  auto alone = testing::Run({testing::Csmd(), "--socket", b_->state_dir() + ".sock", "--node-id", "2",
                             "--state-dir", b_->state_dir()},
                            {}, 20000);
  EXPECT_NE(alone.exit_code, 0);
  EXPECT_NE(alone.err.find("cluster"), std::string::npos) << alone.err;
  EXPECT_NE(alone.err.find("--fresh"), std::string::npos) << alone.err;
  b_->Start();  // as before: taken back
  ASSERT_TRUE(testing::Eventually([&] { return Alive(Nodes(*a_), 2); }, 30000)) << Nodes(*a_).dump();
  RunHelper(*a_, {"consume", "on-2", "10"});
}

class EmbeddedCoordinatorRestartTest : public ClusterTest {};

// kill -9 of the node hosting the coordinator, restarted with its state: the new
// coordinator learns its node's objects from the node itself and the others' as they
// re-register; every node reads every object again.
TEST_P(EmbeddedCoordinatorRestartTest, TheCoordinatorsNodeRestartedWithItsStateKeepsItsObjects) {
  coordinate_port_ = std::to_string(testing::FreePort());
  a_ = Start(1, {}, /*keeps_state=*/true);
  b_ = Start(2);
  c_ = Start(3);
  RunHelper(*a_, {"produce", "on-1", "1000"});
  RunHelper(*a_, {"big", "large-on-1", "3"});
  RunHelper(*b_, {"produce", "on-2", "2000"});
  RunHelper(*c_, {"consume", "on-1", "1000"});
  a_->Kill(SIGKILL);
  a_->Start();
  ASSERT_TRUE(testing::Eventually([&] { return AllAlive(*c_); }, 30000)) << Nodes(*c_).dump();
  for (testing::Node* n : {a_.get(), b_.get(), c_.get()}) {
    RunHelper(*n, {"consume", "on-1", "1000"});
    RunHelper(*n, {"check-big", "large-on-1", "3"});
    RunHelper(*n, {"consume", "on-2", "2000"});
  }
  RunHelper(*a_, {"produce", "after-restart", "100"});
  RunHelper(*b_, {"consume", "after-restart", "100"});
  for (const char* key : {"on-1", "large-on-1", "on-2", "after-restart"}) EXPECT_EQ(Listed(*b_, key), 1) << key;
}

INSTANTIATE_TEST_SUITE_P(Directories, ClusterRestartTest, ::testing::ValuesIn(testing::BuiltTransports({"embedded_tcp", "etcd_tcp"})),
                         [](const auto& param_info) { return param_info.param; });
INSTANTIATE_TEST_SUITE_P(Embedded, EmbeddedCoordinatorRestartTest, ::testing::Values("embedded_tcp"),
                         [](const auto& param_info) { return param_info.param; });

}  // namespace
}  // namespace csm
