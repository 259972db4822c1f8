// Records from other nodes checked before any memory is made for them, and a copy's
// transfer verified, with a fake transport: no sockets, no processes.
#include "csm/node/replica_fetch.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "csm/base/hash.h"
#include "csm/node/fake_transport.h"
#include "csm/os/fd.h"
#include "csm/object/object_layout.h"

namespace csm::node {
namespace {

using namespace testing;  // NOLINT: the fakes

TEST(CheckRecordTest, ASoundRecordPasses) {
  EXPECT_TRUE(CheckRecord(Sound(), kWindow, {{0, 4}}).ok());
}

TEST(CheckRecordTest, HostileRecordsAreRefusedBeforeAnyMemoryIsMade) {
  auto refused = [](cluster::ObjectRecord r, std::vector<cluster::SegmentLease> ours = {}) {
    Status s = CheckRecord(r, kWindow, ours);
    EXPECT_TRUE(s.IsCorruption()) << s.ToString();
    return s.message();
  };
  EXPECT_NE(refused(Sound(), {{5, 1}}).find("outside node 2's part"), std::string::npos) << "our own segment";
  auto r = Sound();
  r.arenas[0].addr += 4096;  // not aligned
  refused(r);
  r = Sound();
  r.arenas[0].addr = kWindow.base - 2 * kMiB;  // below the window
  refused(r);
  r = Sound();
  r.arenas[0] = {kWindow.base + kWindow.size - 2 * kMiB, 4 * kMiB};  // past its end
  refused(r);
  r = Sound();
  r.extents[0].addr = r.arenas[0].addr + 2 * kMiB - 4096;  // runs out of its arena
  r.header = r.extents[0].addr;
  EXPECT_NE(refused(r).find("extent outside its arenas"), std::string::npos);
  r = Sound();
  r.extents[0].addr = UINT64_MAX - 100;  // wraps
  refused(r);
  r = Sound();
  r.extents.clear();
  refused(r);
  r = Sound();
  r.size = 4096;  // the extents hold more
  EXPECT_NE(refused(r).find("inconsistent"), std::string::npos);
  r = Sound();
  r.root = r.header + 8192;  // just past the object
  refused(r);
  r = Sound();
  r.header += 8;  // not where the first extent starts
  refused(r);
}

class FetchReplicaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    record_ = Sound();
    transport_.bytes.resize(8192);
    for (size_t i = 0; i < transport_.bytes.size(); ++i) transport_.bytes[i] = static_cast<char>(i * 7);
    record_.checksum = Checksum::Of(transport_.bytes.data() + sizeof(object::ObjectHeader),
                                    transport_.bytes.size() - sizeof(object::ObjectHeader));
    int fd = ::memfd_create("replica-fetch-test", MFD_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, 2 * kMiB), 0);
    fd_ = os::UniqueFd(fd);
    auto view = os::SharedView::Map(fd, 2 * kMiB);
    ASSERT_TRUE(view.ok()) << view.status().ToString();
    target_ = {record_.arenas[0].addr, 2 * kMiB, *view};
  }
  Status Fetch() {
    Status out = Internal("done was not called");
    FetchReplica(record_, {target_}, transport_, "peer:1", [&](Status s) { out = s; });
    return out;
  }
  std::string Copied(size_t n) {
    std::string got(n, '\0');
    EXPECT_EQ(::pread(fd_.get(), got.data(), n, 0), static_cast<ssize_t>(n));
    return got;
  }
  cluster::ObjectRecord record_;
  FakeTransport transport_;
  os::UniqueFd fd_;  // the replica's memfd; read back with pread
  ReplicaTarget target_;
};

TEST_F(FetchReplicaTest, BytesThatMatchTheChecksumLandInTheReplica) {
  Status s = Fetch();
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(Copied(8192), transport_.bytes);
}

TEST_F(FetchReplicaTest, BytesThatDoNotMatchAreRefused) {
  transport_.bytes[5000] ^= 1;
  Status s = Fetch();
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(s.message().find("do not match its checksum"), std::string::npos);
}

TEST_F(FetchReplicaTest, ADeferredChecksumIsCheckedAgainstTheOwnersDigest) {
  record_.checksum_deferred = true;
  record_.checksum = 0;
  transport_.digest = Checksum::Of(transport_.bytes.data(), transport_.bytes.size());  // header included
  EXPECT_TRUE(Fetch().ok());
  transport_.digest ^= 1;
  EXPECT_TRUE(Fetch().IsCorruption());
}

TEST_F(FetchReplicaTest, TheTransportsErrorIsTheAnswer) {
  transport_.fail = Unavailable("node 2 does not answer");
  Status s = Fetch();
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
}

TEST_F(FetchReplicaTest, AnExtentOutsideTheTargetsIsRefused) {
  target_.addr += 2 * kMiB;  // the replica arena is not where the extent is
  Status s = Fetch();
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
}

}  // namespace
}  // namespace csm::node
