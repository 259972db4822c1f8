// Nodes whose memory lies on one shared-memory fabric (docs/fabric.md), each in its own
// network namespace, with files under /dev/shm as their memory: objects built on any of
// them are read on the others where they lie, and no byte of them crosses the network;
// the stale-cache model passes with the protocol and fails with a step of it left out;
// one cluster mixes the fabric with tcp; a dead owner's objects become Unavailable.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "csm/client.h"
#include "harness.h"
#include "workload.h"

namespace csm {
namespace {

using nlohmann::json;

std::string Helper() { return testing::BinaryDir() + "/csm_test_helper"; }

// Each host's memory: a file under /dev/shm of this test process's own.
std::string MemoryPath(int host) {
  return "/dev/shm/csm-fabric-test-" + std::to_string(::getpid()) + "-" + std::to_string(host);
}

// Removes the memory files of nodes that were killed (a node stopped removes its own).
struct RemoveMemoryFiles {
  ~RemoveMemoryFiles() {
    for (int host = 1; host <= 3; ++host) ::unlink(MemoryPath(host).c_str());
  }
};

json Info(testing::Node& node) {
  auto c = Client::Connect(node.ClientConfig());
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  if (!c.ok()) return json::object();
  auto text = (*c)->InfoJson();
  EXPECT_TRUE(text.ok()) << text.status().ToString();
  return text.ok() ? json::parse(*text) : json::object();
}

std::vector<std::string> OnFabric(int host, const std::string& coherence, const std::string& fault = "") {
  std::vector<std::string> f = {"--shared-memory", MemoryPath(host), "--coherence", coherence};
  if (!fault.empty()) f.insert(f.end(), {"--fabric-fault", fault});
  return f;
}

// Parameter: the fabric's coherence setting.
class FabricTest : public ::testing::TestWithParam<std::string> {};

TEST_P(FabricTest, ObjectsAreReadInPlaceAndNoByteCrossesTheNetwork) {
  if (std::string why = testing::NetworkLab::Unavailable(); !why.empty()) GTEST_SKIP() << why;
  RemoveMemoryFiles cleanup;
  const std::string coherence = GetParam();
  testing::LabCluster lab(3, "embedded_tcp", [&](int host) { return OnFabric(host, coherence); });
  auto run = [&](int host, std::vector<std::string> args) {
    return lab.Run(Helper(), host, args, args[0].starts_with("produce") ? "committed" : "verified");
  };
  // A map built on node 1, and one built by a process on node 2 (in node 2's memory).
  const std::string on1 = run(1, {"produce", "fab/map", "100000"});
  const std::string on2 = run(2, {"produce", "fab/two", "20000"});
  for (int host : {2, 3}) {
    EXPECT_EQ(testing::Field(run(host, {"consume", "fab/map", "100000"}), "root"), testing::Field(on1, "root"));
  }
  for (int host : {1, 3}) {
    EXPECT_EQ(testing::Field(run(host, {"consume", "fab/two", "20000"}), "root"), testing::Field(on2, "root"));
  }
  run(3, {"consume", "fab/map", "100000"});  // a second reader finds it mapped already

  for (int host : {1, 2, 3}) {
    json info = Info(lab.node(host));
    ASSERT_TRUE(info.contains("fabric")) << info;
    const json& f = info["fabric"];
    EXPECT_EQ(f["coherence"], coherence);
    EXPECT_EQ(info["peer_bytes_served"], 0) << "node " << host << ": object bytes crossed the network";
    EXPECT_EQ(info["fetches"], 0) << "node " << host;
    if (host == 3) {
      EXPECT_EQ(info["used"], 0) << "what it reads takes no memory here";
    }
    EXPECT_EQ(f["read_failures"], 0) << "node " << host;
    EXPECT_EQ(f["read_retries"], 0) << "node " << host;
    // Node 3 read both; nodes 1 and 2 each read the other's.
    EXPECT_EQ(f["reads_in_place"], host == 3 ? 2 : 1) << "node " << host;
    if (host != 3 && coherence != "coherent") {
      EXPECT_GT(f["written_back_bytes"].get<uint64_t>(), 0u) << "node " << host << " published without writing back";
    }
  }
  // An owner dies (node 2; node 1 hosts the coordinator): its objects become
  // Unavailable on the others, and the mappings of its memory there go.
  lab.node(2).Kill(SIGKILL);
  auto c = Client::Connect(lab.node(3).ClientConfig());
  ASSERT_TRUE(c.ok());
  Status s;
  EXPECT_TRUE(testing::Eventually([&] {
    s = (*c)->Get<workload::HeapMap>("fab/two").status();
    return s.IsUnavailable();
  }, 10000)) << s.ToString();
  auto map = (*c)->Get<workload::HeapMap>("fab/map");
  ASSERT_TRUE(map.ok()) << map.status().ToString();
  EXPECT_EQ(workload::Verify(**map, 100000), "");
  EXPECT_EQ(Info(lab.node(3))["fabric"]["reads_in_place"], 2) << "still the mapping made before";
}

// Processes build in another node's memory (the paper's remote memory pool): on node 2
// in node 1's, on node 3 in node 2's. Their objects are read in place everywhere, a
// table whose parts lie in the three nodes' memory is read with nothing copied, and a
// dead borrower's loan comes back to its lender while the objects a dead lender held go.
TEST_P(FabricTest, ProcessesBuildInAnotherNodesMemory) {
  if (std::string why = testing::NetworkLab::Unavailable(); !why.empty()) GTEST_SKIP() << why;
  RemoveMemoryFiles cleanup;
  const std::string coherence = GetParam();
  testing::LabCluster lab(3, "embedded_tcp", [&](int host) { return OnFabric(host, coherence); });
  // Runs `argv` as a client of node `host` building in node `home`'s memory.
  auto in_memory_of = [&](int host, int home, std::vector<std::string> argv, const std::string& expect) {
    std::vector<std::string> env = lab.node(host).Env();
    env.push_back("CSM_HOME_NODE=" + std::to_string(home));
    auto p = testing::Process::Spawn(argv, env);
    std::string line = p->WaitForLine(expect, 120000);
    EXPECT_EQ(p->Wait(), 0) << p->output();
    return line;
  };
  const std::string by2 = in_memory_of(2, 1, {Helper(), "produce", "loan/by2", "50000"}, "committed");
  in_memory_of(3, 2, {Helper(), "produce", "loan/by3", "20000"}, "committed");
  for (int host : {1, 3}) {
    EXPECT_EQ(testing::Field(lab.Run(Helper(), host, {"consume", "loan/by2", "50000"}, "verified"), "root"),
              testing::Field(by2, "root"));
  }
  for (int host : {1, 2}) lab.Run(Helper(), host, {"consume", "loan/by3", "20000"}, "verified");

  // A table of three parts: built on node 2 in node 1's memory, on node 3 in its own,
  // on node 1 in node 2's; read on node 3.
  const std::string dir = ::testing::TempDir();
  for (int part = 1; part <= 3; ++part) {
    std::ofstream csv(dir + "/part" + std::to_string(part) + ".csv");
    csv << "id,name\n";
    for (int i = 0; i < 10000; ++i) csv << part * 100000 + i << ",row" << i << "\n";
  }
  const std::string csm = testing::BinaryDir() + "/csm";
  in_memory_of(2, 1, {csm, "put", "--append", "--key", "loan/table", dir + "/part1.csv"}, "");
  in_memory_of(3, 3, {csm, "put", "--append", "--key", "loan/table", dir + "/part2.csv"}, "");
  in_memory_of(1, 2, {csm, "put", "--append", "--key", "loan/table", dir + "/part3.csv"}, "");
  testing::CommandResult got = testing::Run({csm, "get", "loan/table"}, lab.node(3).Env());
  ASSERT_EQ(got.exit_code, 0) << got.err;
  EXPECT_NE(got.out.find("rows:    30000"), std::string::npos) << got.out;

  for (int host : {1, 2, 3}) {
    json info = Info(lab.node(host));
    EXPECT_EQ(info["peer_bytes_served"], 0) << "node " << host << ": object bytes crossed the network";
    EXPECT_EQ(info["fetches"], 0) << "node " << host;
    EXPECT_EQ(info["fabric"]["read_failures"], 0) << "node " << host;
    if (host != 3) {
      EXPECT_GT(info["fabric"]["lent_bytes"].get<uint64_t>(), 0u) << "node " << host;
      EXPECT_GT(info["fabric"]["borrowed_bytes"].get<uint64_t>(), 0u) << "node " << host;
    }
  }
  // Node 2 dies: node 1 takes back what node 2 borrowed; the object node 3 built in
  // node 2's memory goes with it, and node 3's own part stays.
  lab.node(2).Kill(SIGKILL);
  EXPECT_TRUE(testing::Eventually([&] { return Info(lab.node(1))["fabric"]["loans"] == 0; }, 15000))
      << Info(lab.node(1));
  auto c = Client::Connect(lab.node(3).ClientConfig());
  ASSERT_TRUE(c.ok());
  Status s;
  EXPECT_TRUE(testing::Eventually([&] {
    s = (*c)->Get<workload::HeapMap>("loan/by3").status();
    return s.IsNotFound() || s.IsUnavailable();
  }, 15000)) << s.ToString();
  EXPECT_EQ(Info(lab.node(3))["fabric"]["borrowed_bytes"], 0) << "its arena in node 2's memory went";
}

INSTANTIATE_TEST_SUITE_P(Coherence, FabricTest, ::testing::Values("coherent", "flush", "stale-model"),
                         [](const auto& param_info) {
                           std::string name = param_info.param;
                           std::erase(name, '-');
                           return name;
                         });

// The stale-cache model (node/shared_memory.h): node 2 sees node 1's memory through a
// snapshot that only the invalidate step refreshes, and node 1's writes reach its memory
// only through the write-back step. Node 2 reads k1, node 1 deletes it and builds k2 in
// the same memory, node 2 reads k2. Parameter: the step left out ("" for none).
class FabricModelTest : public ::testing::TestWithParam<std::string> {};

TEST_P(FabricModelTest, TheStaleCacheModelCatchesAProtocolWithAStepLeftOut) {
  if (std::string why = testing::NetworkLab::Unavailable(); !why.empty()) GTEST_SKIP() << why;
  RemoveMemoryFiles cleanup;
  const std::string fault = GetParam();
  testing::LabCluster lab(2, "embedded_tcp", [&](int host) {
    const bool writer_fault = fault == "skip-write-back" && host == 1;
    const bool reader_fault = fault == "skip-invalidate" && host == 2;
    return OnFabric(host, "stale-model", writer_fault || reader_fault ? fault : "");
  });
  // Built by helper processes on node 1; read by this process on node 2 (a process
  // attaches to one node).
  auto reader = testing::Attach(lab.node(2));
  ASSERT_TRUE(reader);
  auto build = [&](const std::string& key, int32_t keys) {
    lab.Run(Helper(), 1, {"produce", key, std::to_string(keys)}, "committed");
  };
  // k2 differs from k1 (another size): stale lines of k1 cannot pass for it.
  auto read = [&](const std::string& key, int32_t keys) -> Status {
    auto ref = reader->Get<workload::HeapMap>(key);
    if (!ref.ok()) return ref.status();
    std::string wrong = workload::Verify(**ref, keys);
    return wrong.empty() ? Status::OK() : Corruption(wrong);
  };
  build("model/k1", 2000);
  Status k1 = read("model/k1", 2000);
  testing::CommandResult rm = testing::Run({testing::BinaryDir() + "/csm", "rm", "model/k1"}, lab.node(1).Env());
  ASSERT_EQ(rm.exit_code, 0) << rm.err;
  // The copy on node 2 goes once the delete is heard; node 1's memory is reused.
  ASSERT_TRUE(testing::Eventually([&] { return Info(lab.node(2))["objects"] == 0; }, 10000));
  build("model/k2", 2500);
  Status k2 = read("model/k2", 2500);
  const json f = Info(lab.node(2))["fabric"];
  if (fault.empty()) {
    EXPECT_TRUE(k1.ok()) << k1.ToString();
    EXPECT_TRUE(k2.ok()) << k2.ToString();
    EXPECT_EQ(f["read_failures"], 0);
  } else if (fault == "skip-write-back") {
    // Nothing the writer built ever reaches its memory.
    EXPECT_TRUE(k1.IsCorruption()) << k1.ToString();
    EXPECT_TRUE(k2.IsCorruption()) << k2.ToString();
    EXPECT_GT(f["read_failures"].get<uint64_t>(), 0u);
  } else {
    // The first object is read where node 2 never looked before; the second, in reused
    // memory, shows the first one's stale lines.
    EXPECT_TRUE(k1.ok()) << k1.ToString();
    EXPECT_TRUE(k2.IsCorruption()) << k2.ToString();
    EXPECT_GT(f["read_retries"].get<uint64_t>(), 0u);
    EXPECT_GT(f["read_failures"].get<uint64_t>(), 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(Faults, FabricModelTest, ::testing::Values("", "skip-write-back", "skip-invalidate"),
                         [](const auto& param_info) {
                           std::string name = param_info.param.empty() ? "protocol" : param_info.param;
                           std::erase(name, '-');
                           return name;
                         });

// Nodes 1 and 2 share a fabric; node 3 is on none: it reads node 1's objects over tcp,
// as node 1 reads its own, while node 2 maps them.
TEST(FabricMixedTest, OneClusterMixesTheFabricWithTcp) {
  if (std::string why = testing::NetworkLab::Unavailable(); !why.empty()) GTEST_SKIP() << why;
  RemoveMemoryFiles cleanup;
  testing::LabCluster lab(3, "embedded_tcp", [&](int host) {
    return host == 3 ? std::vector<std::string>{} : OnFabric(host, "flush");
  });
  {
    auto c = Client::Connect(lab.node(3).ClientConfig());
    ASSERT_TRUE(c.ok());
    json fabrics = json::parse(*(*c)->NodesJson())["fabrics"];
    auto fabric = [&](int reader, int owner) {
      for (const auto& f : fabrics) {
        if (f["reader"] == reader && f["owner"] == owner) return f["fabric"].get<std::string>();
      }
      return std::string("?");
    };
    EXPECT_EQ(fabric(2, 1), "shm");
    EXPECT_EQ(fabric(1, 2), "shm");
    EXPECT_EQ(fabric(3, 1), "tcp");
    EXPECT_EQ(fabric(1, 3), "tcp");
  }
  const std::string root = testing::Field(lab.Run(Helper(), 1, {"produce", "mix/map", "100000"}, "committed"), "root");
  for (int host : {2, 3}) {
    EXPECT_EQ(testing::Field(lab.Run(Helper(), host, {"consume", "mix/map", "100000"}, "verified"), "root"), root);
  }
  lab.Run(Helper(), 3, {"produce", "mix/three", "1000"}, "committed");
  lab.Run(Helper(), 1, {"consume", "mix/three", "1000"}, "verified");
  json one = Info(lab.node(1)), two = Info(lab.node(2)), three = Info(lab.node(3));
  EXPECT_GT(one["peer_bytes_served"].get<uint64_t>(), 0u) << "node 3 fetched over tcp";
  EXPECT_EQ(two["fabric"]["reads_in_place"], 1);
  // Node 3's small object is copied ahead to both others over tcp (copies_ahead).
  EXPECT_EQ(two["fetches"].get<uint64_t>() - two["copies_ahead"].get<uint64_t>(), 0u);
  EXPECT_EQ(three["fetches"], 1);
  EXPECT_FALSE(three.contains("fabric"));
  EXPECT_EQ(one["fetches"], 1) << "node 1 fetched node 3's object over tcp";
}

}  // namespace
}  // namespace csm
