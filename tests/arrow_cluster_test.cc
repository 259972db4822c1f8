// An Arrow table spanning three nodes, each csmd in its own network namespace joined by
// veth (the cluster directory embedded in node 1, or a real etcd in the hub namespace):
// every node appends a part built in its own heap, every node reads the whole table
// with its rows in append order, a part's copy on another node is known valid as it
// lands (its producer validated it), and a dead node's part makes the table Unavailable
// instead of silently shorter.
#include <gtest/gtest.h>
#include <signal.h>

#include "csm/arrow.h"
#include "csm/arrow/arrow_layout.h"
#include "cluster_fixture.h"
#include "harness.h"

namespace csm {
namespace {


std::string Helper() { return testing::BinaryDir() + "/csm_arrow_helper"; }

// Parameter: "<directory>_<transport>".
class ArrowClusterTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ArrowClusterTest, ATableSpansThreeNodes) {
  if (std::string why = testing::NetworkLab::Unavailable(); !why.empty()) GTEST_SKIP() << why;
  testing::LabCluster lab(3, GetParam());
  auto run = [&](int host, std::vector<std::string> args, const std::string& expect) {
    return lab.Run(Helper(), host, std::move(args), expect);
  };

  // Parts of 30000, 20000 and 50000 rows, appended by nodes 1, 2 and 3 in turn.
  const int64_t rows[] = {30000, 20000, 50000};
  int64_t first = 0;
  for (int host = 1; host <= 3; ++host) {
    std::string line = run(host, {"append", "lab/table", std::to_string(first), std::to_string(rows[host - 1])},
                           "committed");
    EXPECT_EQ(testing::Field(line, "key"), "lab/table#" + std::to_string(host - 1)) << line;
    EXPECT_EQ(testing::Field(line, "copied"), "0") << "built in the heap: nothing to copy";
    first += rows[host - 1];
  }
  // Each appender ran Arrow's full validation on its part: the mark travels with the
  // record, so node 2's copy of node 1's part is known valid the moment it lands, before
  // any Arrow reader on node 2 has seen it (none will validate it again).
  {
    auto c2 = Client::Connect(lab.node(2).ClientConfig());
    ASSERT_TRUE(c2.ok()) << c2.status().ToString();
    auto copy = (*c2)->Get<ArrowDescriptor>("lab/table#0", std::chrono::seconds(10));
    ASSERT_TRUE(copy.ok()) << copy.status().ToString();
    auto info = (*c2)->Lookup("lab/table#0");
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    EXPECT_EQ(info->owner_node, 1u);
    EXPECT_TRUE(info->arrow_validated);
  }
  // Every node reads every row in order; the parts stay where they were built.
  std::string values_on_1;
  for (int host : {1, 2, 3}) {
    std::string line = run(host, {"consume", "lab/table", std::to_string(first)}, "verified");
    EXPECT_EQ(testing::Field(line, "owners"), "1,2,3") << line;
    EXPECT_EQ(testing::Field(line, "chunks"), "3") << line;
    if (host == 1) values_on_1 = testing::Field(line, "values");
    EXPECT_EQ(testing::Field(line, "values"), values_on_1) << "the same addresses on every node";
  }
  // The CLI says where each part lives.
  auto get = testing::Run({testing::BinaryDir() + "/csm", "get", "lab/table", "--rows", "2"}, lab.node(2).Env());
  ASSERT_EQ(get.exit_code, 0) << get.err;
  EXPECT_NE(get.out.find("rows:    100000"), std::string::npos) << get.out;
  EXPECT_NE(get.out.find("parts:   3"), std::string::npos) << get.out;
  EXPECT_NE(get.out.find("on node 3"), std::string::npos) << get.out;

  // Node 3 dies: its part goes with it, and the table says so rather than lose rows.
  lab.node(3).process().Kill(SIGKILL);
  auto c = Client::Connect(lab.node(2).ClientConfig());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  Status s;
  EXPECT_TRUE(testing::Eventually([&] {
    s = GetTable(**c, "lab/table").status();
    return s.IsUnavailable();
  }, 10000)) << s.ToString();
  EXPECT_NE(s.message().find("part 2 of table 'lab/table'"), std::string::npos) << s.ToString();
}

// A table on another node got on demand (docs/lazy.md): GetTable returns with its
// descriptor, and summing one int64 column of four moves that column's pages, not the
// table's.
class ArrowLazyTest : public testing::ClusterTest {
 protected:
  static constexpr int64_t kRows = 4 << 20;  // 32 MiB per column, 128 MiB in all
  static constexpr uint64_t kTableBytes = uint64_t{4} * kRows * 8;

  // Two nodes; node 2 holds a table of four int64 columns. False: no lazy copies here.
  bool StartWithWideTable() {
    a_ = Start(1);
    b_ = Start(2);
    if (!Lazy(*a_).value("enabled", false)) return false;
    auto produce = testing::Run({Helper(), "produce-wide", "wide", std::to_string(kRows)}, b_->Env(), 120000);
    EXPECT_EQ(produce.exit_code, 0) << produce.out << produce.err;
    return true;
  }
  // Node 1 sums column 0 (helper `mode`); what it printed.
  std::string SumOnNodeOne(const std::string& mode) {
    auto sum = testing::Run({Helper(), mode, "wide", std::to_string(kRows)}, a_->Env(), 120000);
    EXPECT_EQ(sum.exit_code, 0) << sum.out << sum.err;
    EXPECT_NE(sum.out.find("sum="), std::string::npos) << sum.out;
    return sum.out;
  }
  static nlohmann::json Lazy(const testing::Node& node) {
    auto c = Client::Connect(node.ClientConfig());
    return nlohmann::json::parse(*(*c)->InfoJson())["lazy"];
  }
};

TEST_P(ArrowLazyTest, SummingOneColumnOfALazyTableMovesThatColumn) {
  if (!StartWithWideTable()) GTEST_SKIP() << "this kernel cannot serve lazy copies (userfaultfd on shared memory, Linux >= 6.6)";
  SumOnNodeOne("sum-lazily");
  const uint64_t arrived = Lazy(*a_)["arrived_bytes"].get<uint64_t>();
  EXPECT_LE(arrived, kTableBytes * 30 / 100) << "one column of four, and its neighbours' edge blocks";
  EXPECT_GE(arrived, kTableBytes / 4) << "the column itself";
}

// A query that knows its column asks for it whole (csm::Prefetch): it comes in few
// requests, and the scan then stops at no page.
TEST_P(ArrowLazyTest, APrefetchedColumnComesAloneAndIsReadWithoutAFault) {
  if (!StartWithWideTable()) GTEST_SKIP() << "this kernel cannot serve lazy copies (userfaultfd on shared memory, Linux >= 6.6)";
  const std::string out = SumOnNodeOne("prefetch-sum");
  EXPECT_NE(out.find("faults while summing=0\n"), std::string::npos) << out;
  const uint64_t arrived = Lazy(*a_)["arrived_bytes"].get<uint64_t>();
  EXPECT_LE(arrived, kTableBytes * 30 / 100);
  EXPECT_GE(arrived, kTableBytes / 4);
}

INSTANTIATE_TEST_SUITE_P(Directories, ArrowLazyTest,
                         ::testing::ValuesIn(testing::BuiltTransports({"embedded_tcp"})),
                         [](const auto& param_info) { return param_info.param; });

INSTANTIATE_TEST_SUITE_P(Directories, ArrowClusterTest, ::testing::ValuesIn(testing::BuiltTransports({"embedded_tcp", "etcd_ucx"})),
                         [](const auto& param_info) { return param_info.param; });

}  // namespace
}  // namespace csm
