#include <gtest/gtest.h>

#include <vector>

#include "csm/alloc/process_heap.h"

namespace csm::alloc {
namespace {

// Hands out address ranges without memory: ProcessHeap never touches the bytes.
class FakeSource : public ArenaSource {
 public:
  Result<Grant> AllocateArena(uint64_t min_size, bool dedicated) override {
    if (fail_next) return CapacityExceeded("full");
    uint64_t size = dedicated ? min_size : 64 << 20;
    Grant g{next_id++, next_addr, size};
    next_addr += size;
    granted.push_back(g.arena_id);
    return g;
  }
  void ReleaseArena(uint64_t id) override { released.push_back(id); }
  uint64_t next_id = 1, next_addr = 0x200000000000;
  bool fail_next = false;
  std::vector<uint64_t> granted, released;
};

TEST(ProcessHeapTest, CarvesChunksAndReleasesExhaustedArenas) {
  FakeSource source;
  {
    ProcessHeap heap(&source, 64 << 20);
    auto a = heap.Carve(100, 4096);
    auto b = heap.Carve(100, 8 << 20);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(a->arena_id, b->arena_id);
    EXPECT_EQ(a->size, 4096u);
    EXPECT_EQ(b->addr, a->addr + 4096);
    // Large requests get an arena of their own, released when the chunk is done.
    auto big = heap.Carve(100 << 20, 100 << 20);
    ASSERT_TRUE(big.ok());
    EXPECT_NE(big->arena_id, a->arena_id);
    EXPECT_EQ(big->size, 100u << 20);
    heap.Done(*big);
    EXPECT_EQ(source.released, std::vector<uint64_t>{big->arena_id});
    // Fill the first arena: the tail is used, then a new arena is taken; the old one
    // goes back only once its chunks are done.
    std::vector<Chunk> chunks;
    for (int i = 0; i < 8; ++i) chunks.push_back(*heap.Carve(8 << 20, 8 << 20));
    EXPECT_EQ(source.granted.size(), 3u);
    EXPECT_EQ(source.released.size(), 1u);
    heap.Done(*a);
    heap.Done(*b);
    for (const auto& c : chunks) {
      if (c.arena_id == a->arena_id) heap.Done(c);
    }
    EXPECT_EQ(source.released.size(), 2u);
    source.fail_next = true;
    auto refused = heap.Carve(60 << 20, 60 << 20);
    EXPECT_TRUE(refused.status().IsCapacityExceeded());
  }
  EXPECT_EQ(source.released.size(), 3u) << "the destructor releases the rest";
}

}  // namespace
}  // namespace csm::alloc
