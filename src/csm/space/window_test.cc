#include <gtest/gtest.h>
#include <sys/mman.h>

#include "csm/config.h"
#include "csm/os/memory.h"
#include "csm/space/segment_table.h"
#include "csm/space/window.h"

namespace csm::space {
namespace {

// Just past the default window: free in every build (TSan leaves only low addresses).
WindowConfig TestWindow() {
  WindowConfig d = DefaultConfig().window;
  return {d.base + d.size + (64ULL << 30), 64ULL << 30, 1ULL << 30};
}

TEST(WindowTest, ReservesAtTheFixedAddressAndReleases) {
  {
    auto w = Window::Reserve(TestWindow());
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    EXPECT_NE(os::MappingAt(TestWindow().base), "");
    EXPECT_TRUE((*w)->Contains(TestWindow().base, 4096));
    EXPECT_FALSE((*w)->Contains(TestWindow().base + TestWindow().size, 1));
    // A second reservation of the same range fails and names the first.
    auto again = Window::Reserve(TestWindow());
    ASSERT_FALSE(again.ok());
    char expected[64];
    std::snprintf(expected, sizeof(expected), "already taken by the mapping '%llx-",
                  static_cast<unsigned long long>(TestWindow().base));
    EXPECT_NE(again.status().message().find(expected), std::string::npos)
        << again.status().ToString();
  }
  EXPECT_EQ(os::MappingAt(TestWindow().base), "") << "released on destruction";
}

TEST(SegmentTableTest, LeasesDisjointRuns) {
  SegmentTable t({0x200000000000ULL, 64ULL << 30, 1ULL << 30});
  ASSERT_EQ(t.segment_count(), 64u);
  auto a = t.Lease(1, 4);
  auto b = t.Lease(2, 1);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(*a, 0u);
  EXPECT_EQ(*b, 4u);
  EXPECT_EQ(t.OwnerOf(t.SegmentAddress(3) + 5), 1u);
  EXPECT_EQ(t.OwnerOf(t.SegmentAddress(4)), 2u);
  EXPECT_EQ(t.OwnerOf(t.SegmentAddress(5)), kNoNode);
  t.Release(0, 4);
  EXPECT_EQ(*t.Lease(3, 2), 0u) << "released segments are leased again";
  EXPECT_FALSE(t.Lease(1, 63)) << "no run that long is free";
  EXPECT_EQ(t.leased_count(), 3u);
}

}  // namespace
}  // namespace csm::space
