// Lazy Gets (docs/lazy.md): a Get of another node's object returns once its memory
// exists here, and its pages arrive, checked, as they are read. Real csmd nodes; the
// readers are csm_test_helper processes.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include "cluster_fixture.h"
#include "csm/base/hash.h"

namespace csm {
namespace {

using nlohmann::json;
using testing::ClusterTest;
using testing::Helper;
using testing::RunHelper;

class LazyTest : public ClusterTest {
 protected:
  void SetUp() override {
    a_ = Start(1);
    b_ = Start(2);
    if (!Info(*a_)["lazy"].value("enabled", false)) {
      GTEST_SKIP() << "this kernel cannot serve lazy copies (userfaultfd on shared memory, Linux >= 6.6)";
    }
  }
  static json Info(const testing::Node& node) {
    auto c = Client::Connect(node.ClientConfig());
    return json::parse(*(*c)->InfoJson());
  }
  std::unique_ptr<testing::Process> Reader(const std::vector<std::string>& args, std::vector<std::string> env = {}) {
    std::vector<std::string> argv = {Helper()};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<std::string> e = a_->Env();
    e.insert(e.end(), env.begin(), env.end());
    return testing::Process::Spawn(argv, e);
  }
};

constexpr int kEntries = 100000;  // a map of several MiB: many blocks

TEST_P(LazyTest, EveryByteOfALazyCopyArrivesCheckedAndEveryProcessSharesIt) {
  RunHelper(*b_, {"produce", "m", std::to_string(kEntries)});
  RunHelper(*b_, {"big", "big", "48"});
  // Two readers of each at once on node 1: one copy, the same faults served for both.
  auto r1 = Reader({"consume-lazy", "m", std::to_string(kEntries), "lazy"});
  auto r2 = Reader({"consume-lazy", "m", std::to_string(kEntries), "on-demand"});
  auto r3 = Reader({"check-big-lazy", "big", "48", "on-demand"});
  auto r4 = Reader({"check-big-lazy", "big", "48", "lazy"});
  for (auto* r : {r1.get(), r2.get(), r3.get(), r4.get()}) {
    EXPECT_EQ(r->Wait(120000), 0) << r->output();
    EXPECT_NE(r->output().find("verified"), std::string::npos) << r->output();
  }
  json lazy = Info(*a_)["lazy"];
  EXPECT_GE(lazy["started"].get<int>(), 1) << lazy.dump();
  EXPECT_LE(lazy["started"].get<int>(), 2) << "one copy per object, whoever reads it: " << lazy.dump();
  EXPECT_EQ(lazy["copies_failed"], 0) << lazy.dump();
  // Whole now: a later Get is an ordinary local one.
  ASSERT_TRUE(testing::Eventually([&] { return Info(*a_)["lazy"]["under_way"] == 0; }, 30000));
  RunHelper(*a_, {"check-big-lazy", "big", "48", "whole"});
}

TEST_P(LazyTest, OnDemandMovesOnlyThePagesRead) {
  RunHelper(*b_, {"big", "big", "64"});
  auto r = Reader({"touch-lazy", "big", "64", "on-demand"});
  ASSERT_EQ(r->Wait(60000), 0) << r->output();
  // Three pages read: their blocks (and the header's) came, not the 64 MiB.
  json lazy = Info(*a_)["lazy"];
  const uint64_t block = Checksum::kBlockSize;
  EXPECT_LE(lazy["arrived_bytes"].get<uint64_t>(), 16 * block) << lazy.dump();
  EXPECT_GE(lazy["arrived_bytes"].get<uint64_t>(), 3 * block) << lazy.dump();
  EXPECT_LE(Info(*b_)["peer_bytes_served"].get<uint64_t>(), 16 * block);
  EXPECT_GE(lazy["faults"].get<uint64_t>(), 3u) << lazy.dump();
  // A Get that wants it whole makes the on-demand copy fetch the rest, and returns then.
  RunHelper(*a_, {"check-big-lazy", "big", "64", "whole"});
  EXPECT_EQ(Info(*a_)["lazy"]["under_way"], 0);
}

TEST_P(LazyTest, APrefetchHintBringsThatRangeFirstAndOnlyIt) {
  RunHelper(*b_, {"big", "big", "64"});
  auto r = Reader({"prefetch-lazy", "big", "64", "on-demand"});
  ASSERT_EQ(r->Wait(60000), 0) << r->output();
  EXPECT_NE(r->output().find("read"), std::string::npos) << r->output();
  // The header's block, the vector's, and the 2 MiB asked for (and the blocks at its edges).
  json lazy = Info(*a_)["lazy"];
  EXPECT_GE(lazy["arrived_bytes"].get<uint64_t>(), uint64_t{2} << 20) << lazy.dump();
  EXPECT_LE(lazy["arrived_bytes"].get<uint64_t>(), uint64_t{6} << 20) << lazy.dump();
}

TEST_P(LazyTest, PagesThatWillNeverComeRaiseSigbusWhenTheOwnerDiesMidRead) {
  RunHelper(*b_, {"big", "big", "64"});
  const std::string go = ::testing::TempDir() + "csm-lazy-go-" + std::to_string(::getpid());
  ::unlink(go.c_str());
  auto r = Reader({"read-lazy-after-go", "big", "64", "on-demand"}, {"CSM_TEST_GO=" + go});
  ASSERT_FALSE(r->WaitForLine("read page 0").empty()) << r->output();
  b_->Kill(SIGKILL);
  ASSERT_EQ(::close(::open(go.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600)), 0);
  const int status = r->Wait(60000);
  ::unlink(go.c_str());
  ASSERT_TRUE(WIFSIGNALED(status)) << "status " << status << ": " << r->output();
  EXPECT_EQ(WTERMSIG(status), SIGBUS) << r->output();
  EXPECT_EQ(r->output().find("read all"), std::string::npos) << "never bytes that did not come";
  // The copy is dropped: a Get now says the owner is gone, not half an object.
  ASSERT_TRUE(testing::Eventually([&] { return Info(*a_)["lazy"]["copies_failed"].get<int>() >= 1; }, 30000));
  auto again = testing::Run({Helper(), "check-big-lazy", "big", "64", "lazy"}, a_->Env(), 60000);
  EXPECT_NE(again.exit_code, 0) << again.out;
}

TEST_P(LazyTest, BytesThatNoLongerMatchTheirChecksumAreNeverSeen) {
  // The owner's memory changes after the commit (what a bad DIMM would do): the block
  // digests it sends do not add up to the commit checksum, so no page is ever shown.
  auto damaged = testing::Process::Spawn({Helper(), "produce-damaged", "d", std::to_string(kEntries)}, b_->Env());
  ASSERT_EQ(damaged->Wait(), 0) << damaged->output();
  auto r = Reader({"consume-lazy", "d", std::to_string(kEntries), "lazy"});
  const int status = r->Wait(60000);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS) << "status " << status << ": " << r->output();
  EXPECT_EQ(r->output().find("verified"), std::string::npos);
  ASSERT_TRUE(testing::Eventually([&] { return Info(*a_)["lazy"]["copies_failed"].get<int>() >= 1; }, 30000));
}

INSTANTIATE_TEST_SUITE_P(Directories, LazyTest,
                         ::testing::ValuesIn(testing::BuiltTransports({"embedded_tcp", "etcd_tcp", "embedded_ucx"})),
                         [](const auto& param_info) { return param_info.param; });

}  // namespace
}  // namespace csm
