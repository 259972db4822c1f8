// The fixture of the cluster tests (cluster_test.cc, cluster_restart_test.cc): real csmd
// nodes of one cluster on loopback, with each directory backend (the embedded
// coordinator hosted by node 1, or a real etcd server the test starts), and helpers
// that run processes on them and read what csmd reports.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "csm/client.h"
#include "harness.h"

namespace csm::testing {

using nlohmann::json;

inline std::string Helper() { return BinaryDir() + "/csm_test_helper"; }
inline std::string Csmd() { return BinaryDir() + "/csmd"; }
inline std::string CsmCli() { return BinaryDir() + "/csm"; }

inline int RunHelper(const Node& node, std::vector<std::string> args) {
  args.insert(args.begin(), Helper());
  auto p = Process::Spawn(args, node.Env());
  int status = p->Wait(120000);
  EXPECT_EQ(status, 0) << p->output();
  return status;
}

inline json Nodes(const Node& node) {
  auto c = Client::Connect(node.ClientConfig());
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  auto j = (*c)->NodesJson();
  EXPECT_TRUE(j.ok()) << j.status().ToString();
  return json::parse(*j);
}

// Node `id`'s entry ({} if it is not a member).
inline json Member(const json& nodes, int id) {
  for (const auto& m : nodes.at("members")) {
    if (m.at("node_id").get<int>() == id) return m;
  }
  return json::object();
}
inline bool Alive(const json& nodes, int id) { return Member(nodes, id).value("alive", false); }

inline uint64_t Fetches(const Node& node) {
  auto c = Client::Connect(node.ClientConfig());
  return json::parse(*(*c)->InfoJson())["fetches"].get<uint64_t>();
}

// Parameter: "<directory>_<transport>", e.g. "etcd_tcp".
class ClusterTest : public ::testing::TestWithParam<std::string> {
 protected:
  bool etcd() const { return GetParam().starts_with("etcd"); }
  std::string transport() const { return GetParam().substr(GetParam().find('_') + 1); }

  // Flags that put a node in this test's cluster (node 1 hosts the coordinator).
  std::vector<std::string> DirectoryFlags(int id) {
    if (etcd()) {
      if (!etcd_) etcd_ = std::make_unique<Etcd>();
      return {"--etcd", etcd_->endpoint()};
    }
    if (id == 1) return {"--coordinate", "127.0.0.1:" + coordinate_port_};
    return {"--join", coordinator_};
  }

  std::vector<std::string> Flags(int id, std::vector<std::string> more = {}) {
    std::vector<std::string> f = {"--node-id", std::to_string(id), "--cluster-secret", "test-secret",
                                  "--dead-after-ms", dead_after_ms_, "--peer-address", "127.0.0.1:0",
                                  "--transport", transport(),
                                  // small arenas: objects span several, as large ones do
                                  "--arena-size", "8M"};
    auto dir = DirectoryFlags(id);
    f.insert(f.end(), dir.begin(), dir.end());
    f.insert(f.end(), more.begin(), more.end());
    return f;
  }

  // `keeps_state`: the node keeps its objects in a --state-dir across restarts.
  std::unique_ptr<Node> Start(int id, std::vector<std::string> more = {}, bool keeps_state = false) {
    auto node = std::make_unique<Node>(Flags(id, std::move(more)), "", keeps_state);
    if (!etcd() && id == 1) {
      const std::string& out = node->process().output();
      auto at = out.find("csmd coordinator port ");
      EXPECT_NE(at, std::string::npos) << out;
      coordinator_ = "127.0.0.1:" + std::to_string(std::atoi(out.c_str() + at + 22));
    }
    return node;
  }

  void StartThree() {
    a_ = Start(1);
    b_ = Start(2);
    c_ = Start(3);
  }

  std::unique_ptr<Etcd> etcd_;  // first: outlives the nodes
  std::string coordinator_;
  std::string coordinate_port_ = "0";  // a fixed one for a coordinator that restarts
  std::string dead_after_ms_ = "1000";
  std::unique_ptr<Node> a_, b_, c_;
};

// How many lines of `csm ls` on `node` list `key`.
inline int Listed(const Node& node, const std::string& key) {
  auto ls = Run({CsmCli(), "ls"}, node.Env());
  EXPECT_EQ(ls.exit_code, 0) << ls.err;
  int n = 0;
  size_t at = 0;
  while ((at = ls.out.find("\n" + key + " ", at)) != std::string::npos) {
    ++n;
    ++at;
  }
  return n + (ls.out.rfind(key + " ", 0) == 0 ? 1 : 0);
}

}  // namespace csm::testing
