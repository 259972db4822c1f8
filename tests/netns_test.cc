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

std::string Helper() { return testing::BinaryDir() + "/csm_test_helper"; }

// Parameter: "<directory>_<transport>", e.g. "etcd_ucx".
class NetnsClusterTest : public ::testing::TestWithParam<std::string> {};

TEST_P(NetnsClusterTest, ObjectsCrossTheNetworkAtTheSameAddresses) {
  if (std::string why = testing::NetworkLab::Unavailable(); !why.empty()) GTEST_SKIP() << why;
  testing::LabCluster lab(3, GetParam());
  auto run = [&](int host, std::vector<std::string> args) {
    return lab.Run(Helper(), host, args, args[0] == "produce" ? "committed" : "verified");
  };
  {  // every member advertises the transport it serves with
    auto c = Client::Connect(lab.node(1).ClientConfig());
    ASSERT_TRUE(c.ok());
    auto members = json::parse(*(*c)->NodesJson())["members"];
    ASSERT_EQ(members.size(), 3u);
    for (const auto& m : members) {
      EXPECT_EQ(m["peer_address"].get<std::string>().starts_with("ucx://"), lab.transport() == "ucx") << m;
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
    auto c = Client::Connect(lab.node(host).ClientConfig());
    ASSERT_TRUE(c.ok());
    auto info = (*c)->Info();
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    // lab/other (~190 KiB) was copied ahead as it was published; lab/map fetched once.
    EXPECT_EQ(info->fetches - info->copies_ahead, 1u) << "node " << host;
  }
  // Node 3 dies: its object is Unavailable on node 2 within the bound; node 1's is not.
  lab.node(3).process().Kill(SIGKILL);
  auto c = Client::Connect(lab.node(2).ClientConfig());
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
                         ::testing::ValuesIn(testing::BuiltTransports({"embedded_tcp", "etcd_tcp", "embedded_ucx", "etcd_ucx"})),
                         [](const auto& param_info) { return param_info.param; });

}  // namespace
}  // namespace csm
