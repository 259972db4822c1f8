// Several real csmd processes forming one cluster through the embedded coordinator:
// membership, disjoint segment leases, refusals at join, death detection.
#include <gtest/gtest.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include "csm/client.h"
#include "csm/os/memory.h"
#include "harness.h"
#include "workload.h"

namespace csm {
namespace {

using testing::Node;
using nlohmann::json;

std::string Helper() { return testing::BinaryDir() + "/csm_test_helper"; }
std::string Csmd() { return testing::BinaryDir() + "/csmd"; }

std::vector<std::string> Flags(int id, const std::string& role, const std::string& addr,
                               std::vector<std::string> more = {}) {
  std::vector<std::string> f = {"--node-id", std::to_string(id), role, addr,
                                "--cluster-secret", "test-secret", "--dead-after-ms", "1000"};
  f.insert(f.end(), more.begin(), more.end());
  return f;
}

// The coordinator's address, from the line csmd prints when it hosts one.
std::string CoordinatorAddress(Node& node) {
  const std::string& out = node.process().output();
  auto at = out.find("csmd coordinator port ");
  EXPECT_NE(at, std::string::npos) << out;
  return "127.0.0.1:" + std::to_string(std::atoi(out.c_str() + at + 22));
}

json Nodes(const Node& node) {
  auto c = Client::Connect(node.ClientConfig());
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  auto j = (*c)->NodesJson();
  EXPECT_TRUE(j.ok()) << j.status().ToString();
  return json::parse(*j);
}

// Node `id`'s entry ({} if it is not a member).
json Member(const json& nodes, int id) {
  for (const auto& m : nodes.at("members")) {
    if (m.at("node_id").get<int>() == id) return m;
  }
  return json::object();
}

TEST(ClusterTest, NodesLeaseDisjointSegmentsAndBuildInThem) {
  Node a(Flags(1, "--coordinate", "127.0.0.1:0"));
  std::string coordinator = CoordinatorAddress(a);
  Node b(Flags(2, "--join", coordinator));
  Node c(Flags(3, "--join", coordinator));
  std::vector<Node*> nodes = {&a, &b, &c};
  for (size_t i = 0; i < nodes.size(); ++i) {
    auto p = testing::Process::Spawn({Helper(), "big", "obj-" + std::to_string(i + 1), "8"}, nodes[i]->Env());
    ASSERT_EQ(p->Wait(), 0) << p->output();
  }
  json members = Nodes(b);
  ASSERT_EQ(members["members"].size(), 3u) << members.dump();
  const uint64_t seg = DefaultConfig().window.segment_size, base = DefaultConfig().window.base;
  std::vector<std::pair<uint64_t, uint64_t>> all;  // [begin, end) of every lease
  for (int id = 1; id <= 3; ++id) {
    json m = Member(members, id);
    ASSERT_FALSE(m.empty()) << members.dump();
    EXPECT_TRUE(m["alive"].get<bool>());
    ASSERT_FALSE(m["leases"].empty()) << "node " << id << " built an object, so it leased";
    auto client = Client::Connect(nodes[id - 1]->ClientConfig());
    ASSERT_TRUE(client.ok());
    uint64_t header = (*client)->Lookup("obj-" + std::to_string(id))->header;
    bool inside = false;
    for (const auto& l : m["leases"]) {
      uint64_t begin = base + l["first_segment"].get<uint64_t>() * seg;
      uint64_t end = begin + l["segments"].get<uint64_t>() * seg;
      inside |= header >= begin && header < end;
      for (const auto& [b0, e0] : all) EXPECT_TRUE(end <= b0 || begin >= e0) << "leases overlap";
      all.push_back({begin, end});
    }
    EXPECT_TRUE(inside) << "node " << id << "'s object lies in its own segments";
  }
}

TEST(ClusterTest, JoinRefusalsSayWhy) {
  Node a(Flags(1, "--coordinate", "127.0.0.1:0"));
  std::string coordinator = CoordinatorAddress(a);
  Node b(Flags(2, "--join", coordinator));
  auto refused = [&](std::vector<std::string> flags, const std::string& why) {
    std::vector<std::string> argv = {Csmd(), "--socket", "/tmp/csm-test-refused.sock"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    auto r = testing::Run(argv, {}, 20000);
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_NE(r.err.find(why), std::string::npos) << r.err;
  };
  refused(Flags(3, "--join", coordinator, {"--heap-size", "8T"}), "start every node with the same heap_base");
  refused({"--node-id", "3", "--join", coordinator, "--cluster-secret", "guess"}, "refused our cluster secret");
  refused(Flags(3, "--join", coordinator, {"--cluster", "other"}), "belongs to cluster 'other'");
  refused(Flags(2, "--join", coordinator), "node id 2 is taken by a live node");
  refused({"--node-id", "3", "--join", coordinator}, "needs a shared secret");
  refused(Flags(3, "--join", "127.0.0.1:1"), "unreachable");
  EXPECT_EQ(Nodes(a)["members"].size(), 2u) << "no refused node became a member";
}

TEST(ClusterTest, DeadNodeIsReportedAndItsIdCanRejoin) {
  Node a(Flags(1, "--coordinate", "127.0.0.1:0"));
  std::string coordinator = CoordinatorAddress(a);
  Node b(Flags(2, "--join", coordinator));
  auto c = std::make_unique<Node>(Flags(3, "--join", coordinator));
  auto p = testing::Process::Spawn({Helper(), "big", "obj", "8"}, c->Env());
  ASSERT_EQ(p->Wait(), 0);
  ASSERT_TRUE(Member(Nodes(a), 3).value("alive", false)) << Nodes(a).dump();
  c->process().Kill(SIGKILL);
  EXPECT_TRUE(testing::Eventually([&] { return !Member(Nodes(a), 3).value("alive", true); }, 5000));
  EXPECT_TRUE(Member(Nodes(a), 2).value("alive", false)) << "the others stay alive";
  c.reset();
  // A new incarnation of node 3 starts afresh: alive, and none of the dead one's leases.
  Node again(Flags(3, "--join", coordinator));
  json m = Member(Nodes(a), 3);
  ASSERT_FALSE(m.empty());
  EXPECT_TRUE(m.value("alive", false));
  EXPECT_TRUE(m.at("leases").empty());
}

// Three nodes that serve peers (each transport on a port of its own choosing).
struct ThreeNodes {
  ThreeNodes()
      : a(Flags(1, "--coordinate", "127.0.0.1:0", {"--peer-address", "127.0.0.1:0"})),
        coordinator(CoordinatorAddress(a)),
        b(Flags(2, "--join", coordinator, {"--peer-address", "127.0.0.1:0"})),
        c(Flags(3, "--join", coordinator, {"--peer-address", "127.0.0.1:0"})) {}
  Node a;
  std::string coordinator;
  Node b, c;
};

uint64_t Fetches(const Node& node) {
  auto c = Client::Connect(node.ClientConfig());
  return json::parse(*(*c)->InfoJson())["fetches"].get<uint64_t>();
}

TEST(ClusterTest, MapBuiltOnOneNodeIsReadAtTheSameAddressOnTheOthers) {
  ThreeNodes cluster;
  auto producer = testing::Process::Spawn({Helper(), "produce", "shared/map", "100000"}, cluster.a.Env());
  std::string produced = producer->WaitForLine("committed", 120000);
  ASSERT_EQ(producer->Wait(), 0) << producer->output();
  for (Node* reader : {&cluster.b, &cluster.c}) {
    auto consumer = testing::Process::Spawn({Helper(), "consume", "shared/map", "100000"}, reader->Env());
    std::string consumed = consumer->WaitForLine("verified", 120000);
    EXPECT_EQ(consumer->Wait(), 0) << consumer->output();
    // Same address on the other node, mapped from that node's own (replica) memory.
    auto root = [](const std::string& line) { return line.substr(line.find("root="), 20); };
    EXPECT_EQ(root(produced), root(consumed));
    EXPECT_NE(consumed.find("csm-replica-"), std::string::npos) << consumed;
    EXPECT_EQ(Fetches(*reader), 1u);
  }
  // csm ls on any node lists the object with its owner.
  auto ls = testing::Run({testing::BinaryDir() + "/csm", "ls"}, cluster.c.Env());
  EXPECT_NE(ls.out.find("shared/map"), std::string::npos) << ls.out;
}

TEST(ClusterTest, ConcurrentReadersOnANodeCauseOneFetch) {
  ThreeNodes cluster;
  auto producer = testing::Process::Spawn({Helper(), "big", "blob", "64"}, cluster.a.Env());
  ASSERT_EQ(producer->Wait(), 0) << producer->output();
  std::vector<std::unique_ptr<testing::Process>> readers;
  for (int i = 0; i < 4; ++i) {
    readers.push_back(testing::Process::Spawn({Helper(), "check-big", "blob", "64"}, cluster.b.Env()));
  }
  for (auto& r : readers) EXPECT_EQ(r->Wait(), 0) << r->output();
  EXPECT_EQ(Fetches(cluster.b), 1u) << "one fetch per node however many readers";
  EXPECT_EQ(Fetches(cluster.c), 0u);
}

TEST(ClusterTest, DeadOwnersObjectsAreUnavailableOthersStayReadable) {
  ThreeNodes cluster;  // A hosts the coordinator; C is the owner that dies
  ASSERT_EQ(testing::Process::Spawn({Helper(), "produce", "on-c", "1000"}, cluster.c.Env())->Wait(), 0);
  ASSERT_EQ(testing::Process::Spawn({Helper(), "produce", "on-a", "1000"}, cluster.a.Env())->Wait(), 0);
  // B already holds a copy of C's object: it must not outlive C either.
  ASSERT_EQ(testing::Process::Spawn({Helper(), "consume", "on-c", "1000"}, cluster.b.Env())->Wait(), 0);
  cluster.c.process().Kill(SIGKILL);
  auto client = Client::Connect(cluster.b.ClientConfig());
  ASSERT_TRUE(client.ok());
  int64_t start = os::MonotonicNanos();
  Status s;
  EXPECT_TRUE(testing::Eventually([&] {
    s = (*client)->Get<workload::HeapMap>("on-c").status();
    return s.IsUnavailable();
  }, 10000)) << s.ToString();
  EXPECT_LT(os::MonotonicNanos() - start, 10'000'000'000) << "bounded by dead-after + heartbeat";
  EXPECT_NE(s.message().find("not alive"), std::string::npos) << s.ToString();
  auto other = (*client)->Get<workload::HeapMap>("on-a");
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  EXPECT_EQ(workload::Verify(**other, 1000), "");
}

TEST(ClusterTest, DeletingOnTheOwnerRemovesTheCopies) {
  ThreeNodes cluster;
  ASSERT_EQ(testing::Process::Spawn({Helper(), "produce", "k", "1000"}, cluster.a.Env())->Wait(), 0);
  ASSERT_EQ(testing::Process::Spawn({Helper(), "consume", "k", "1000"}, cluster.b.Env())->Wait(), 0);
  std::string csm = testing::BinaryDir() + "/csm";
  auto refused = testing::Run({csm, "rm", "k"}, cluster.b.Env());
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("delete it on that node"), std::string::npos) << refused.err;
  EXPECT_EQ(testing::Run({csm, "rm", "k"}, cluster.a.Env()).exit_code, 0);
  auto client = Client::Connect(cluster.b.ClientConfig());
  EXPECT_TRUE(testing::Eventually([&] {
    return (*client)->Get<workload::HeapMap>("k").status().IsNotFound();
  }, 5000));
  // The key is free across the cluster again.
  EXPECT_EQ(testing::Process::Spawn({Helper(), "produce", "k", "10"}, cluster.c.Env())->Wait(), 0);
}

}  // namespace
}  // namespace csm
