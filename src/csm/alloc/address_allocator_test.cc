#include <gtest/gtest.h>

#include "csm/alloc/address_allocator.h"
#include "csm/space/segment_table.h"

namespace csm::alloc {
namespace {

constexpr uint64_t kMiB = 1 << 20, kGiB = 1ULL << 30;

TEST(AddressAllocatorTest, FirstFitReuseAndMultiSegment) {
  WindowConfig w{0x200000000000ULL, 16 * kGiB, kGiB};
  space::SegmentTable segments(w);
  AddressAllocator a(
      [&](uint64_t count) -> Result<AddressAllocator::Run> {
        auto first = segments.Lease(1, count);
        if (!first) return CapacityExceeded("window full");
        return AddressAllocator::Run{segments.SegmentAddress(*first), count * kGiB};
      },
      kGiB);
  auto x = a.Allocate(64 * kMiB);
  auto y = a.Allocate(64 * kMiB);
  ASSERT_TRUE(x.ok() && y.ok());
  EXPECT_EQ(*x, w.base);
  EXPECT_EQ(*y, w.base + 64 * kMiB);
  EXPECT_EQ(segments.leased_count(), 1u);
  a.Free(*x, 64 * kMiB);
  EXPECT_EQ(*a.Allocate(32 * kMiB), w.base) << "freed addresses come back first";
  // 5 GiB does not fit in the first segment: a run of consecutive segments is leased,
  // and it coalesces with the free tail of the first one into one contiguous range.
  auto big = a.Allocate(5 * kGiB);
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(*big, w.base + 128 * kMiB);
  EXPECT_EQ(segments.leased_count(), 6u);
  a.Free(*big, 5 * kGiB);
  a.Free(w.base, 32 * kMiB);
  a.Free(*y, 64 * kMiB);
  EXPECT_EQ(a.free_bytes(), 6 * kGiB) << "everything coalesced back";
  EXPECT_TRUE(a.Allocate(11 * kGiB).status().IsCapacityExceeded()) << "the window is 16 GiB";
}

TEST(AddressAllocatorTest, ReserveTakesARangeBackOnlyIfFree) {
  AddressAllocator a([](uint64_t) -> Result<AddressAllocator::Run> { return CapacityExceeded("none"); }, kGiB);
  const uint64_t base = 0x200000000000ULL;
  a.AddRun({base, kGiB});
  EXPECT_TRUE(a.Reserve(base + 64 * kMiB, 2 * kMiB));
  EXPECT_FALSE(a.Reserve(base + 63 * kMiB, 2 * kMiB)) << "half of it is taken";
  EXPECT_FALSE(a.Reserve(base + kGiB - kMiB, 2 * kMiB)) << "past the run";
  EXPECT_EQ(a.free_bytes(), kGiB - 2 * kMiB);
  EXPECT_EQ(*a.Allocate(64 * kMiB), base) << "what is before it";
  EXPECT_EQ(*a.Allocate(2 * kMiB), base + 66 * kMiB) << "and after it stay free";
}

}  // namespace
}  // namespace csm::alloc
