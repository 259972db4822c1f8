#include <gtest/gtest.h>

#include <vector>

#include "csm/alloc/process_heap.h"

namespace csm::alloc {
namespace {

// Hands out address ranges without memory: ProcessHeap never touches the bytes. Sizes as
// csmd gives them: dedicated arenas fit, shared ones are what was asked (≤ 64 MiB).
class FakeSource : public ArenaSource {
 public:
  Result<Grant> AllocateArena(uint64_t min_size, ArenaUse use) override {
    if (fail_next) return CapacityExceeded("full");
    Grant g{next_id++, next_addr, min_size};
    next_addr += min_size;
    granted.push_back(g.arena_id);
    sizes.push_back(min_size);
    (void)use;
    return g;
  }
  void ReleaseArena(uint64_t id) override { released.push_back(id); }
  uint64_t next_id = 1, next_addr = 0x200000000000;
  bool fail_next = false;
  std::vector<uint64_t> granted, released, sizes;
};

constexpr uint64_t kMiB = 1 << 20;

TEST(ProcessHeapTest, CarvesChunksAndReleasesExhaustedArenas) {
  FakeSource source;
  {
    ProcessHeap heap(&source, 64 * kMiB);
    auto a = heap.Carve(100, 4096);
    auto b = heap.Carve(100, 1 * kMiB);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(a->arena_id, b->arena_id);
    EXPECT_EQ(a->size, 4096u);
    EXPECT_EQ(b->addr, a->addr + 4096);
    // Large requests get an arena of their own, released when the chunk is done.
    auto big = heap.Carve(100 * kMiB, 100 * kMiB);
    ASSERT_TRUE(big.ok());
    EXPECT_NE(big->arena_id, a->arena_id);
    EXPECT_EQ(big->size, 100 * kMiB);
    heap.Done(*big);
    EXPECT_EQ(source.released, std::vector<uint64_t>{big->arena_id});
    // Fill the first arena (2 MiB): then a new, larger one is taken; the old one goes
    // back only once its chunks are done.
    std::vector<Chunk> chunks;
    for (int i = 0; i < 4; ++i) chunks.push_back(*heap.Carve(1 * kMiB, 1 * kMiB));
    EXPECT_EQ(source.granted.size(), 3u);
    EXPECT_EQ(source.released.size(), 1u);
    heap.Done(*a);
    heap.Done(*b);
    for (const auto& c : chunks) {
      if (c.arena_id == a->arena_id) heap.Done(c);
    }
    EXPECT_EQ(source.released.size(), 2u);
    source.fail_next = true;
    auto refused = heap.Carve(15 * kMiB, 15 * kMiB);
    EXPECT_TRUE(refused.status().IsCapacityExceeded());
  }
  EXPECT_EQ(source.released.size(), 3u) << "the destructor releases the rest";
}

TEST(ProcessHeapTest, SharedArenasGrowFromTwoMiBToArenaSize) {
  FakeSource source;
  ProcessHeap heap(&source, 16 * kMiB);
  // Each arena filled by 1 MiB chunks (below the 4 MiB dedicated threshold).
  for (int i = 0; i < 2 + 4 + 8 + 16 + 16; ++i) ASSERT_TRUE(heap.Carve(1 * kMiB, 1 * kMiB).ok());
  EXPECT_EQ(source.sizes, (std::vector<uint64_t>{2 * kMiB, 4 * kMiB, 8 * kMiB, 16 * kMiB, 16 * kMiB}));
}

TEST(ProcessHeapTest, SmallObjectsArePackedAndPagesSealedWhenAllAreDone) {
  FakeSource source;
  ProcessHeap heap(&source, 64 * kMiB, 4096);
  // An object that used 320 bytes of its 4 KiB chunk gives the rest back.
  auto first = heap.Carve(64, 4096);
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(heap.Done(*first, first->addr + 300, /*small=*/true).empty()) << "its page is not whole yet";
  auto second = heap.Carve(64, 4096);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->addr, first->addr + 320) << "packed right after, cache-line aligned";
  // Two builders at once: the second's tail cannot go back (the third was carved after
  // it), and no page is sealed while a builder still writes on it.
  auto third = heap.Carve(64, 8192);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->addr, second->addr + 4096);
  // The second's tail stays carved, so page 0 is whole: sealed. Page 1 is not while the
  // third writes on it.
  std::vector<PageRange> sealed = heap.Done(*second, second->addr + 100, /*small=*/true);
  ASSERT_EQ(sealed.size(), 1u);
  EXPECT_EQ(sealed[0].addr, first->addr);
  EXPECT_EQ(sealed[0].size, 4096u);
  // Page 1 is whole once the third is done; page 2 holds its end and the free tail.
  sealed = heap.Done(*third, third->addr + 5000, /*small=*/true);
  ASSERT_EQ(sealed.size(), 1u);
  EXPECT_EQ(sealed[0].addr, first->addr + 4096);
  EXPECT_EQ(sealed[0].size, 4096u);
  auto fourth = heap.Carve(64, 4096);
  ASSERT_TRUE(fourth.ok());
  EXPECT_EQ(fourth->addr, third->addr + 5056) << "after the third's used end";
}

TEST(ProcessHeapTest, ObjectsOfAPageOrMoreEndOnAPageAndAreSealedWhole) {
  FakeSource source;
  ProcessHeap heap(&source, 64 * kMiB, 4096);
  auto c = heap.Carve(64, 16384);
  ASSERT_TRUE(c.ok());
  std::vector<PageRange> sealed = heap.Done(*c, c->addr + 5000, /*small=*/false);
  ASSERT_EQ(sealed.size(), 1u);
  EXPECT_EQ(sealed[0].addr, c->addr);
  EXPECT_EQ(sealed[0].size, 8192u) << "both pages it wrote on";
  auto next = heap.Carve(64, 4096);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->addr, c->addr + 8192) << "the rest of its chunk went back";
}

TEST(ProcessHeapTest, AHundredThousandSmallObjectsFillFewPages) {
  FakeSource source;
  ProcessHeap heap(&source, 64 * kMiB, 4096);
  uint64_t sealed_bytes = 0;
  const uint64_t object = 64 + 248 + 32;  // header, payload, extent table
  for (int i = 0; i < 100000; ++i) {
    auto c = heap.Carve(64, 4096);
    ASSERT_TRUE(c.ok());
    for (const PageRange& r : heap.Done(*c, c->addr + object, /*small=*/true)) sealed_bytes += r.size;
  }
  uint64_t granted = 0;
  for (uint64_t s : source.sizes) granted += s;
  EXPECT_LE(granted, 64 * kMiB) << "100k objects of ~350 B need ~35 MB of arenas";
  EXPECT_GE(sealed_bytes, 100000 * 384 - 4096) << "every page but the last is sealed";
}

}  // namespace
}  // namespace csm::alloc
