// ArenaTable: arenas by id, by address and in the order they were made.
#include "csm/node/arena_table.h"

#include <gtest/gtest.h>

#include <vector>

namespace csm::node {
namespace {

constexpr uint64_t kBase = 0x200000000000;
constexpr uint64_t kMiB = 1 << 20;

TEST(ArenaTableTest, ArenasAreFoundByIdAndByAnyAddressInside) {
  ArenaTable t;
  Arena& a = t.Add(kBase, 2 * kMiB, os::UniqueFd());
  Arena& b = t.Add(kBase + 4 * kMiB, 2 * kMiB, os::UniqueFd());
  EXPECT_NE(a.id, b.id);
  EXPECT_LT(a.seq, b.seq);
  EXPECT_EQ(t.newest_seq(), b.seq);
  EXPECT_EQ(t.At(kBase), &a);
  EXPECT_EQ(t.At(kBase + 2 * kMiB - 1), &a);
  EXPECT_EQ(t.At(kBase + 2 * kMiB), nullptr) << "the gap between them";
  EXPECT_EQ(t.At(kBase - 1), nullptr);
  EXPECT_EQ(t.At(kBase + 5 * kMiB), &b);
  EXPECT_EQ(t.Find(b.id), &b);
  EXPECT_EQ(t.Find(999), nullptr);
  EXPECT_EQ(t.size(), 2u);
}

TEST(ArenaTableTest, OverlapsAreFoundFromEitherSide) {
  ArenaTable t;
  Arena& a = t.Add(kBase + 2 * kMiB, 2 * kMiB, os::UniqueFd());
  EXPECT_EQ(t.FirstOverlapping(kBase, 2 * kMiB), nullptr) << "ends where it starts";
  EXPECT_EQ(t.FirstOverlapping(kBase, 2 * kMiB + 1), &a);
  EXPECT_EQ(t.FirstOverlapping(kBase + 3 * kMiB, 8 * kMiB), &a) << "starts inside it";
  EXPECT_EQ(t.FirstOverlapping(kBase + 4 * kMiB, kMiB), nullptr);
  EXPECT_EQ(t.FirstOverlapping(kBase, 16 * kMiB), &a) << "contains it";
}

TEST(ArenaTableTest, ASyncListsWhatCameAfterItsSequenceNumberInOrder) {
  ArenaTable t;
  std::vector<uint64_t> seqs;
  for (int i = 0; i < 5; ++i) seqs.push_back(t.Add(kBase + i * 2 * kMiB, 2 * kMiB, os::UniqueFd()).seq);
  t.Remove(t.At(kBase + 4 * kMiB)->id);  // the third goes
  std::vector<uint64_t> listed;
  t.ForEachAfter(seqs[0], [&](const Arena& a) {
    listed.push_back(a.seq);
    return true;
  });
  EXPECT_EQ(listed, (std::vector<uint64_t>{seqs[1], seqs[3], seqs[4]}));
  listed.clear();
  t.ForEachAfter(0, [&](const Arena& a) {
    listed.push_back(a.seq);
    return listed.size() < 2;  // the caller stops early
  });
  EXPECT_EQ(listed.size(), 2u);
  EXPECT_EQ(t.At(kBase + 4 * kMiB), nullptr);
  t.Remove(12345);  // not there: nothing happens
  EXPECT_EQ(t.size(), 4u);
  // A new arena where one was removed gets a new id and a newer sequence number.
  Arena& again = t.Add(kBase + 4 * kMiB, 2 * kMiB, os::UniqueFd());
  EXPECT_GT(again.seq, seqs[4]);
}

}  // namespace
}  // namespace csm::node
