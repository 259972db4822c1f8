// Three csmd nodes, each in its own network namespace joined by veth to a bridge, the
// cluster directory either embedded (node 1) or a real etcd in the hub namespace: an
// object built on node 1 is used at the same addresses on nodes 2 and 3 over the
// network, one fetch per node, and a killed owner's objects become Unavailable.
#include <gtest/gtest.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include "csm/client.h"
#include "harness.h"
#include "workload.h"

namespace csm {
namespace {

using nlohmann::json;
using testing::Node;

std::string Helper() { return testing::BinaryDir() + "/csm_test_helper"; }

// Parameter: "<directory>_<transport>", e.g. "etcd_ucx".
class NetnsClusterTest : public ::testing::TestWithParam<std::string> {};

TEST_P(NetnsClusterTest, ObjectsCrossTheNetworkAtTheSameAddresses) {
  testing::NetworkLab lab(3);
  std::unique_ptr<testing::Etcd> etcd;
  const std::string transport = GetParam().substr(GetParam().find('_') + 1);
  if (GetParam().starts_with("etcd")) etcd = std::make_unique<testing::Etcd>(lab.Namespace(0), lab.Ip(0));
  std::string coordinator = lab.Ip(1) + ":7401";
  auto flags = [&](int host) {
    std::vector<std::string> f = {"--node-id", std::to_string(host), "--cluster-secret", "lab-secret",
                                  "--dead-after-ms", "1000", "--peer-address", lab.Ip(host) + ":7400",
                                  "--transport", transport, "--arena-size", "8M"};
    if (etcd) {
      f.insert(f.end(), {"--etcd", etcd->endpoint()});
    } else if (host == 1) {
      f.insert(f.end(), {"--coordinate", coordinator});
    } else {
      f.insert(f.end(), {"--join", coordinator});
    }
    return f;
  };
  std::vector<std::unique_ptr<Node>> nodes;
  for (int host = 1; host <= 3; ++host) nodes.push_back(std::make_unique<Node>(flags(host), lab.Namespace(host)));

  auto run = [&](int host, std::vector<std::string> args) {
    args.insert(args.begin(), Helper());
    auto p = testing::Process::Spawn(args, nodes[host - 1]->Env());
    std::string line = p->WaitForLine(args[1] == "produce" ? "committed" : "verified", 120000);
    EXPECT_EQ(p->Wait(), 0) << p->output();
    return line;
  };
  {  // every member advertises the transport it serves with
    auto c = Client::Connect(nodes[0]->ClientConfig());
    ASSERT_TRUE(c.ok());
    auto members = json::parse(*(*c)->NodesJson())["members"];
    ASSERT_EQ(members.size(), 3u);
    for (const auto& m : members) {
      EXPECT_EQ(m["peer_address"].get<std::string>().starts_with("ucx://"), transport == "ucx") << m;
    }
  }
  std::string produced = run(1, {"produce", "lab/map", "100000"});
  run(3, {"produce", "lab/other", "1000"});
  for (int host : {2, 3}) {
    std::string consumed = run(host, {"consume", "lab/map", "100000"});
    EXPECT_EQ(testing::Field(produced, "root"), testing::Field(consumed, "root"));
    EXPECT_NE(testing::Field(consumed, "root"), "");
  }
  // Four more readers on node 2 find the copy already there: no second fetch.
  for (int i = 0; i < 4; ++i) run(2, {"consume", "lab/map", "100000"});
  for (int host : {2, 3}) {
    auto c = Client::Connect(nodes[host - 1]->ClientConfig());
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(json::parse(*(*c)->InfoJson())["fetches"].get<int>(), 1) << "node " << host;
  }
  // Node 3 dies: its object is Unavailable on node 2 within the bound; node 1's is not.
  nodes[2]->process().Kill(SIGKILL);
  auto c = Client::Connect(nodes[1]->ClientConfig());
  ASSERT_TRUE(c.ok());
  Status s;
  EXPECT_TRUE(testing::Eventually([&] {
    s = (*c)->Get<workload::HeapMap>("lab/other").status();
    return s.IsUnavailable();
  }, 10000)) << s.ToString();
  auto still = (*c)->Get<workload::HeapMap>("lab/map");
  ASSERT_TRUE(still.ok()) << still.status().ToString();
  EXPECT_EQ(workload::Verify(**still, 100000), "");
}

INSTANTIATE_TEST_SUITE_P(Directories, NetnsClusterTest,
                         ::testing::Values("embedded_tcp", "etcd_tcp", "embedded_ucx", "etcd_ucx"),
                         [](const auto& param_info) { return param_info.param; });

}  // namespace
}  // namespace csm
