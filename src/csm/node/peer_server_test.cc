// PeerServer's table without a transport: what a peer may read, by object id and range.
#include "csm/node/peer_server.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vector>

#include "csm/os/fd.h"

namespace csm::node {
namespace {

constexpr uint64_t kArena = 0x200000000000;
constexpr uint64_t kSize = 1 << 20;

class PeerServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    memfd_.Reset(::memfd_create("peer-server-test", MFD_CLOEXEC));
    ASSERT_TRUE(memfd_.valid());
    ASSERT_EQ(::ftruncate(memfd_.get(), kSize), 0);
    peers_.ServeWithoutTransport();
    peers_.AddArena(kArena, kSize, memfd_.get());
    peers_.AddObject(7, {{kArena + 4096, 8192}, {kArena + 65536, 100}});
  }
  os::UniqueFd memfd_;
  PeerServer peers_{3};
};

TEST_F(PeerServerTest, ARangeInsideAnExtentIsServedFromItsArena) {
  auto r = peers_.Range(7, kArena + 4096 + 10, 8000);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->offset, 4096u + 10);
  // Its own descriptor of the arena, not the one it was given.
  EXPECT_NE(r->fd, memfd_.get());
  struct stat a{}, b{};
  ASSERT_EQ(::fstat(r->fd, &a), 0);
  ASSERT_EQ(::fstat(memfd_.get(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
  EXPECT_TRUE(peers_.Range(7, kArena + 65536, 100).ok());
}

TEST_F(PeerServerTest, RangesOutsideTheObjectAreRefused) {
  auto across = peers_.Range(7, kArena + 4096, 8193);  // one byte past the extent
  EXPECT_TRUE(across.status().code() == StatusCode::kInvalidArgument) << across.status().ToString();
  EXPECT_NE(across.status().message().find("only the extents of committed objects"), std::string::npos);
  EXPECT_TRUE(peers_.Range(7, kArena, 10).status().code() == StatusCode::kInvalidArgument) << "the arena, not the object";
  EXPECT_TRUE(peers_.Range(7, UINT64_MAX - 1, 4).status().code() == StatusCode::kInvalidArgument) << "wrapping";
  auto unknown = peers_.Range(8, kArena + 4096, 10);
  EXPECT_TRUE(unknown.status().IsNotFound()) << unknown.status().ToString();
  EXPECT_NE(unknown.status().message().find("look the key up again"), std::string::npos);
}

TEST_F(PeerServerTest, ADeletedObjectIsNoLongerServed) {
  peers_.RemoveObject(7);
  EXPECT_TRUE(peers_.Range(7, kArena + 4096, 10).status().IsNotFound());
}

TEST_F(PeerServerTest, AnObjectOutsideTheNodesArenasIsNotServed) {
  // An extent this node recorded but whose arena is gone (or was never its own).
  peers_.AddObject(9, {{kArena + kSize, 4096}});
  auto r = peers_.Range(9, kArena + kSize, 4096);
  EXPECT_TRUE(r.status().IsNotFound()) << r.status().ToString();
  EXPECT_NE(r.status().message().find("own segments"), std::string::npos);
}

TEST_F(PeerServerTest, AnArenaRemovedDuringASendStaysOpenForIt) {
  auto sending = peers_.Range(7, kArena + 4096, 100);
  ASSERT_TRUE(sending.ok());
  EXPECT_TRUE(peers_.RemoveArena(kArena)) << "a peer is being served from it";
  EXPECT_GE(::fcntl(sending->fd, F_GETFD), 0) << "the sender's descriptor is still open";
  EXPECT_TRUE(peers_.Range(7, kArena + 4096, 100).status().IsNotFound()) << "no new sends";
  EXPECT_FALSE(peers_.RemoveArena(kArena)) << "gone already";
}

// A spilled object is served after the restorer brings it back; its error otherwise.
TEST(PeerServerSpillTest, ASpilledObjectIsRestoredForAPeerBeforeItIsServed) {
  PeerServer peers(3);
  os::UniqueFd fd(::memfd_create("peer-server-test", MFD_CLOEXEC));
  ASSERT_EQ(::ftruncate(fd.get(), kSize), 0);
  peers.ServeWithoutTransport();
  peers.AddArena(kArena, kSize, fd.get());
  peers.AddObject(7, {{kArena + 4096, 8192}});
  peers.AddObject(8, {{kArena + 65536, 4096}});
  std::vector<uint64_t> asked;
  peers.SetRestorer([&](uint64_t id) {
    asked.push_back(id);
    if (id == 8) return Corruption("spill file damaged");
    peers.AddObject(id, {{kArena + 4096, 8192}});  // as csmd does once the bytes are back
    return Status::OK();
  });
  peers.MarkSpilled(7);
  peers.MarkSpilled(8);
  EXPECT_TRUE(peers.Range(7, kArena + 4096, 100).ok());
  auto lost = peers.Range(8, kArena + 65536, 100);
  EXPECT_EQ(lost.status().code(), StatusCode::kCorruption) << lost.status().ToString();
  EXPECT_NE(lost.status().message().find("for a peer"), std::string::npos);
  EXPECT_EQ(asked, (std::vector<uint64_t>{7, 8}));
  EXPECT_TRUE(peers.Range(7, kArena + 4096, 100).ok()) << "served from memory now";
  EXPECT_EQ(asked.size(), 2u);
  peers.RemoveObject(8);  // deleted: not restored, not served
  EXPECT_TRUE(peers.Range(8, kArena + 65536, 100).status().IsNotFound());
  EXPECT_EQ(asked.size(), 2u);
}

TEST(PeerServerAloneTest, ANodeThatServesNoPeersKeepsNothing) {
  PeerServer peers(1);
  os::UniqueFd fd(::memfd_create("peer-server-test", MFD_CLOEXEC));
  peers.AddArena(kArena, kSize, fd.get());
  peers.AddObject(1, {{kArena, 10}});
  EXPECT_FALSE(peers.serving());
  EXPECT_TRUE(peers.Range(1, kArena, 10).status().IsNotFound());
  EXPECT_FALSE(peers.RemoveArena(kArena));
}

}  // namespace
}  // namespace csm::node
