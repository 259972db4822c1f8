// Several real csmd processes forming one cluster through the embedded coordinator:
// membership, disjoint segment leases, refusals at join, death detection.
#include <gtest/gtest.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include "csm/client.h"
#include "harness.h"

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
  for (Node* n : nodes) {
    auto p = testing::Process::Spawn({Helper(), "big", "obj", "8"}, n->Env());
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
    uint64_t header = (*client)->Lookup("obj")->header;
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

}  // namespace
}  // namespace csm
