#include "csm/node/node_state.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

namespace csm::node {
namespace {

class NodeStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/dev/shm/csm-state-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { (void)std::system(("rm -rf " + dir_).c_str()); }
  std::string dir_;
};

TEST_F(NodeStateTest, OneCsmdAtATimeKeepsArenasDirectoryAndTypes) {
  {
    auto state = NodeState::Open(dir_, false);
    ASSERT_TRUE(state.ok()) << state.status().ToString();
    EXPECT_TRUE(NodeState::Open(dir_, false).status().code() == StatusCode::kFailedPrecondition) << "the lock is held";
    bool existed = true;
    ASSERT_TRUE((*state)->OpenDirectory(1 << 16, &existed).ok());
    EXPECT_FALSE(existed);
    ASSERT_TRUE((*state)->CreateArena(0x200000000000, 7, 2 << 20).ok());
    ASSERT_TRUE((*state)->CreateArena(0x200000400000, 9, 4 << 20).ok());
    // A destroyed arena kept as spare memory, then reused at another address.
    auto spare = (*state)->RetireArena(0x200000400000, 9);
    ASSERT_TRUE(spare.ok());
    ASSERT_TRUE((*state)->AdoptSpare(std::move(*spare), 0x200000800000, 11).ok());
    ASSERT_TRUE((*state)->RememberType(0xabc, "csm::map<int, int>").ok());
    ASSERT_TRUE((*state)->RememberType(0xabc, "written once").ok());
    // A spare nothing reused: gone with its owner.
    ASSERT_TRUE((*state)->CreateArena(0x200001000000, 12, 2 << 20).ok());
    ASSERT_TRUE((*state)->RetireArena(0x200001000000, 12).ok());
  }
  std::ofstream(dir_ + "/csm-arena-zz") << "a stray";
  std::ofstream(dir_ + "/types", std::ios::app) << "def std::vector<";  // cut short by a crash
  auto state = NodeState::Open(dir_, false);
  ASSERT_TRUE(state.ok()) << state.status().ToString();
  bool existed = false;
  ASSERT_TRUE((*state)->OpenDirectory(1 << 16, &existed).ok());
  EXPECT_TRUE(existed);
  EXPECT_TRUE((*state)->OpenDirectory(1 << 17, &existed).status().code() == StatusCode::kFailedPrecondition)
      << "another max_objects";
  auto arenas = (*state)->TakeArenas();
  ASSERT_TRUE(arenas.ok());
  ASSERT_EQ(arenas->size(), 2u);
  EXPECT_EQ((*arenas)[0].addr, 0x200000000000u);
  EXPECT_EQ((*arenas)[0].id, 7u);
  EXPECT_EQ((*arenas)[0].size, 2u << 20);
  EXPECT_EQ((*arenas)[1].addr, 0x200000800000u);
  EXPECT_EQ((*arenas)[1].id, 11u);
  EXPECT_EQ((*arenas)[1].size, 4u << 20);
  EXPECT_NE(::access((dir_ + "/csm-arena-zz").c_str(), F_OK), 0) << "strays are removed";
  EXPECT_EQ((*state)->TypeName(0xabc), "csm::map<int, int>");
  EXPECT_EQ((*state)->TypeName(0xdef), "std::vector<") << "what the cut line held";
  ASSERT_TRUE((*state)->RememberType(0x123, "after").ok());
  state->reset();
  state = NodeState::Open(dir_, false);
  ASSERT_TRUE(state.ok());
  EXPECT_EQ((*state)->TypeName(0x123), "after") << "a line after a cut one starts afresh";
  state->reset();
  state = NodeState::Open(dir_, /*fresh=*/true);
  ASSERT_TRUE(state.ok());
  EXPECT_TRUE((*state)->TakeArenas()->empty());
  EXPECT_EQ((*state)->TypeName(0xabc), "");
}

}  // namespace
}  // namespace csm::node
