#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "csm/base/hash.h"
#include "csm/directory/directory_table.h"

namespace csm::directory {
namespace {

SlotData Entry(const std::string& key, uint64_t id) {
  SlotData d{};
  d.object_id = id;
  d.key_hash = Hash64(key);
  d.state = static_cast<uint8_t>(SlotState::kLive);
  d.key_length = static_cast<uint16_t>(key.size());
  std::memcpy(d.key, key.data(), key.size());
  return d;
}

TEST(DirectoryTableTest, InsertFindDeleteReuse) {
  std::vector<uint64_t> mem(DirectoryBytes(64) / 8);
  DirectoryTable t(mem.data(), 64);
  t.Init(1);
  ASSERT_TRUE(t.Validate().ok());
  for (int i = 0; i < 40; ++i) ASSERT_TRUE(t.Insert(Entry("k" + std::to_string(i), i + 1)).ok());
  EXPECT_EQ(t.header().live_objects.load(), 40u);
  auto f = t.Find("k7");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->data.object_id, 8u);
  EXPECT_FALSE(t.Find("k99"));
  EXPECT_TRUE(t.Insert(Entry("k7", 100)).status().IsAlreadyExists());
  t.MarkDeleted(f->index);
  EXPECT_FALSE(t.Find("k7"));
  EXPECT_TRUE(t.Find("k8")) << "probing continues past tombstones";
  auto again = t.Insert(Entry("k7", 101));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(t.Find("k7")->data.object_id, 101u);
  for (int i = 40; i < 56; ++i) (void)t.Insert(Entry("k" + std::to_string(i), i + 1));
  EXPECT_TRUE(t.Insert(Entry("overflow", 999)).status().IsCapacityExceeded());
}

// A deleted object's tombstone stays while readers may still pin it (a restarted csmd
// finds it there): only once its memory is reclaimed may a new entry take the slot.
TEST(DirectoryTableTest, ATombstoneIsReusedOnlyOnceItsMemoryIsReclaimed) {
  std::vector<uint64_t> mem(DirectoryBytes(64) / 8);
  DirectoryTable t(mem.data(), 64);
  t.Init(1);
  auto first = t.Insert(Entry("k", 1));
  ASSERT_TRUE(first.ok());
  t.MarkDeleted(*first);
  auto second = t.Insert(Entry("k", 2));
  ASSERT_TRUE(second.ok());
  EXPECT_NE(*second, *first) << "the first object may still be pinned";
  EXPECT_EQ(t.ReadSlot(*first).object_id, 1u);
  t.MarkDeleted(*second);
  t.MarkReclaimed(*first, 1);
  auto third = t.Insert(Entry("k", 3));
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(*third, *first) << "its memory was reclaimed: the slot is free";
  EXPECT_EQ(t.ReadSlot(*second).object_id, 2u) << "still waiting";
}

TEST(DirectoryTableTest, RejectsForeignMemory) {
  std::vector<uint64_t> mem(DirectoryBytes(64) / 8, 0);
  DirectoryTable t(mem.data(), 64);
  EXPECT_TRUE(t.Validate().IsCorruption());
}

}  // namespace
}  // namespace csm::directory
