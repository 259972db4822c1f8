// csmd restarted under running processes on a node that keeps its state (--state-dir):
// every committed object comes back, checked; readers, pins and Builders carry on; what
// dead builders left is freed; a damaged object is dropped alone. docs/operations.md,
// "Restarting csmd".
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "csm/client.h"
#include "harness.h"
#include "workload.h"

namespace csm {
namespace {

using testing::Attach;
using testing::CommitMap;
using testing::Node;
using testing::Process;
using workload::HeapMap;
using Longs = csm::vector<int64_t>;

std::string Helper() { return testing::BinaryDir() + "/csm_test_helper"; }

uint64_t Used(Client& c) { return nlohmann::json::parse(*c.InfoJson())["used"].get<uint64_t>(); }

Status Append(Builder& b, Longs* v, int64_t first, int n) {
  return b.Populate([&] {
    for (int i = 0; i < n; ++i) v->push_back(first + i);
  });
}

// A node that keeps its state; restarted processes give up what they do not claim
// back after 1.5 s.
Node StatefulNode() { return Node({"--reattach-grace-ms", "1500"}, "", /*keeps_state=*/true); }

TEST(RestartTest, ObjectsPinsAndBuildersOutliveAKilledCsmd) {
  Node node = StatefulNode();
  auto c = Attach(node);
  ASSERT_TRUE(c);
  ASSERT_TRUE(CommitMap(*c, "map", 3000).ok());
  for (long i = 0; i < 50; ++i) {
    ASSERT_TRUE(c->Put<workload::SmallObject>("small/" + std::to_string(i),
                                              [&](workload::SmallObject& o) { workload::FillSmall(o, i); })
                    .ok());
  }
  auto held = c->Get<HeapMap>("map");
  ASSERT_TRUE(held.ok());
  const uint64_t map_id = held->info().object_id;
  // A Builder of this process, half built; a builder process and a reader process.
  auto builder = c->NewBuilder();
  ASSERT_TRUE(builder.ok());
  Longs* longs = *builder->New<Longs>();
  ASSERT_TRUE(Append(*builder, longs, 0, 20000).ok());
  auto dead = Process::Spawn({Helper(), "build-forever", "x", "40"}, node.Env());
  ASSERT_FALSE(dead->WaitForLine("building").empty()) << dead->output();
  auto reader = Process::Spawn({Helper(), "pin", "map"}, node.Env());
  ASSERT_FALSE(reader->WaitForLine("pinned").empty()) << reader->output();

  node.Kill(SIGKILL);
  dead->Kill(SIGKILL);  // dies while no csmd runs: its arena is left to the next one
  node.Start();

  // The Ref held across the restart never noticed; a Get answers the same object.
  EXPECT_EQ(workload::Verify(**held, 3000), "");
  auto again = c->Get<HeapMap>("map");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->info().object_id, map_id);
  EXPECT_TRUE(again->Verify().ok());
  auto small = c->Get<workload::SmallObject>("small/49");
  ASSERT_TRUE(small.ok()) << small.status().ToString();
  EXPECT_TRUE(workload::VerifySmall(**small, 49));
  // The half-built object is finished in the arena claimed back, and committed.
  ASSERT_TRUE(Append(*builder, longs, 20000, 20000).ok());
  ASSERT_TRUE(builder->Commit("built-across").ok());
  auto consumer = Process::Spawn({Helper(), "consume", "map", "3000"}, node.Env());
  EXPECT_FALSE(consumer->WaitForLine("verified").empty()) << consumer->output();
  EXPECT_EQ(consumer->Wait(), 0);
  auto built = Attach(node)->Get<Longs>("built-across");
  ASSERT_TRUE(built.ok()) << built.status().ToString();
  ASSERT_EQ((*built)->size(), 40000u);
  EXPECT_EQ((**built)[39999], 39999);

  // The dead builder's 40 MiB arena is freed once no process claimed it.
  EXPECT_TRUE(testing::Eventually([&] { return Used(*c) < (40u << 20); })) << "used " << Used(*c);
  // Pins moved to the new csmd: a deleted object stays while this process and the
  // reader hold it, and goes when they let go.
  held->Reset();
  again->Reset();
  ASSERT_TRUE(c->Delete("map").ok());
  const uint64_t with_map = Used(*c);
  auto info = nlohmann::json::parse(*c->InfoJson());
  EXPECT_EQ(info["objects_awaiting_unpin"].get<uint64_t>(), 1u) << "the reader process pins it";
  reader->Kill(SIGKILL);
  EXPECT_TRUE(testing::Eventually([&] {
    return nlohmann::json::parse(*c->InfoJson())["objects_awaiting_unpin"].get<uint64_t>() == 0;
  }));
  EXPECT_LT(Used(*c), with_map);
}

// Restarted again and again while a process keeps reading and committing: no call fails
// for longer than the restart takes, nothing committed is lost.
TEST(RestartTest, AProcessKeepsWorkingAcrossRepeatedRestarts) {
  Node node = StatefulNode();
  auto c = Attach(node);
  ASSERT_TRUE(c);
  for (int round = 0; round < 5; ++round) {
    ASSERT_TRUE(CommitMap(*c, "round/" + std::to_string(round), 500).ok()) << round;
    node.Restart(round % 2 == 0 ? SIGKILL : SIGTERM);
    for (int seen = 0; seen <= round; ++seen) {
      auto m = c->Get<HeapMap>("round/" + std::to_string(seen));
      ASSERT_TRUE(m.ok()) << "round " << round << ", object " << seen << ": " << m.status().ToString();
      EXPECT_EQ(workload::Verify(**m, 500), "");
    }
  }
  auto info = nlohmann::json::parse(*c->InfoJson());
  EXPECT_EQ(info["objects"].get<uint64_t>(), 5u);
}

// A deleted object a reader still holds keeps its place in the directory even when its
// key is committed again, so a restarted csmd keeps it for that reader past the grace
// period (no page of it is freed while the Ref lives).
TEST(RestartTest, ADeletedObjectAReaderHoldsOutlivesARestartAfterItsKeyIsReused) {
  Node node = StatefulNode();
  auto c = Attach(node);
  ASSERT_TRUE(c);
  ASSERT_TRUE(CommitMap(*c, "k", 3000).ok());
  auto held = c->Get<HeapMap>("k");
  ASSERT_TRUE(held.ok());
  ASSERT_TRUE(c->Delete("k").ok());
  ASSERT_TRUE(CommitMap(*c, "k", 10).ok());  // the same key: the same first slot probed
  auto dead = Process::Spawn({Helper(), "build-forever", "x", "8"}, node.Env());
  ASSERT_FALSE(dead->WaitForLine("building").empty()) << dead->output();
  const uint64_t arenas = nlohmann::json::parse(*c->InfoJson())["arenas"].get<uint64_t>();
  node.Kill(SIGKILL);
  dead->Kill(SIGKILL);
  node.Start();
  // The grace period is over once the dead builder's arena is gone.
  ASSERT_TRUE(testing::Eventually([&] {
    auto info = c->InfoJson();
    return info.ok() && nlohmann::json::parse(*info)["arenas"].get<uint64_t>() < arenas;
  }, 30000));
  EXPECT_EQ(workload::Verify(**held, 3000), "");
  EXPECT_TRUE(held->Verify().ok());
  auto now = c->Get<HeapMap>("k");
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(workload::Verify(**now, 10), "");
}

// A builder that does not attach again within the grace period (stopped, here) loses
// the arena it was building in; its commit fails and says why.
TEST(RestartTest, ABuilderThatMissesTheGracePeriodIsToldWhyItsCommitFails) {
  Node node = StatefulNode();
  const std::string go = node.state_dir() + ".go";
  auto late = Process::Spawn({Helper(), "build-then-commit", "late", "4"}, {"CSM_SOCKET=" + node.socket(), "CSM_TEST_GO=" + go});
  ASSERT_FALSE(late->WaitForLine("building").empty()) << late->output();
  late->Kill(SIGSTOP);
  node.Kill(SIGKILL);
  node.Start();
  {
    auto c = Attach(node);
    ASSERT_TRUE(c);
    // The grace period over, its arena (no committed object on it) is gone.
    ASSERT_TRUE(testing::Eventually([&] { return nlohmann::json::parse(*c->InfoJson())["arenas"] == 0; }, 30000));
  }
  late->Kill(SIGCONT);
  ASSERT_EQ(::close(::open(go.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600)), 0);
  late->Wait(60000);
  ::unlink(go.c_str());
  EXPECT_NE(late->output().find("reattach-grace-ms"), std::string::npos) << late->output();
  EXPECT_EQ(late->output().find("committed"), std::string::npos) << late->output();
}

// Bytes changed in the state files while no csmd ran: that object is dropped (never
// served with other bytes than it was committed with); the others come back.
TEST(RestartTest, ADamagedObjectIsDroppedAloneWithAnError) {
  Node node = StatefulNode();
  {
    auto c = Attach(node);
    ASSERT_TRUE(c);
    ASSERT_TRUE(CommitMap(*c, "damaged", 2000).ok());
    ASSERT_TRUE(CommitMap(*c, "intact", 2000).ok());
    const ObjectInfo damaged = *c->Lookup("damaged");
    node.Kill(SIGKILL);
    ASSERT_TRUE(testing::FlipStateByte(node, damaged.root + 8));
    node.Start();  // logs "restart: dropped 'damaged': its bytes no longer match the checksum …"
  }
  auto c = Attach(node);
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->Lookup("damaged").status().IsNotFound());
  auto intact = c->Get<HeapMap>("intact");
  ASSERT_TRUE(intact.ok()) << intact.status().ToString();
  EXPECT_EQ(workload::Verify(**intact, 2000), "");
  EXPECT_TRUE(c->Put<HeapMap>("damaged", [](HeapMap& m) { workload::Fill(m, 10); }).ok()) << "its key is free again";
}

// Starting afresh, or as another node, loses nothing by surprise: a client of the old
// node is told, and a csmd with other settings refuses the state instead of reading it.
TEST(RestartTest, AnotherNodeOnTheSameStateIsRefusedAndFreshStartsEmpty) {
  Node node = StatefulNode();
  {
    auto c = Attach(node);
    ASSERT_TRUE(c);
    ASSERT_TRUE(CommitMap(*c, "k", 100).ok());
  }
  node.Kill(SIGKILL);
  auto other = Process::Spawn({testing::BinaryDir() + "/csmd", "--socket", node.socket() + ".2", "--state-dir",
                               node.state_dir(), "--max-objects", "1024"},
                              {}, /*with_stderr=*/true);
  EXPECT_NE(other->Wait(), 0);
  EXPECT_NE(other->output().find("--max-objects"), std::string::npos) << other->output();
  node.Start();
  auto c = Attach(node);
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->Get<HeapMap>("k").ok());
  auto second = Process::Spawn({testing::BinaryDir() + "/csmd", "--socket", node.socket() + ".2", "--state-dir",
                                node.state_dir()},
                               {}, /*with_stderr=*/true);
  EXPECT_NE(second->Wait(), 0);
  EXPECT_NE(second->output().find("another csmd keeps"), std::string::npos) << second->output();
  // Wiped: the old client is told its node is gone.
  auto held = c->Get<HeapMap>("k");
  ASSERT_TRUE(held.ok());
  node.Kill(SIGKILL);
  node.Wipe();
  node.Start();
  auto after = c->Get<HeapMap>("k");
  EXPECT_TRUE(after.status().IsUnavailable()) << after.status().ToString();
  EXPECT_EQ(workload::Verify(**held, 100), "") << "what it holds stays readable";
}

}  // namespace
}  // namespace csm
