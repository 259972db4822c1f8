#include "csm/os/cache_lines.h"

#include <gtest/gtest.h>

#include <numeric>
#include <vector>

namespace csm::os {
namespace {

TEST(CacheLinesTest, BestIsWhatTheCpuHasAndRefusesLinesItWouldMiss) {
  auto best = CacheLines::Best(64);
  ASSERT_TRUE(best.ok()) << best.status().ToString();
  EXPECT_TRUE(Supports(best->write_back()));
  EXPECT_TRUE(Supports(best->invalidate()));
  EXPECT_NE(best->invalidate(), LineInstruction::kClwb) << "clwb keeps lines: it cannot invalidate";
  EXPECT_FALSE(CacheLines::Best(48).ok()) << "not a power of two";
  EXPECT_FALSE(CacheLines::Best(CacheLines::HardwareLine() * 2).ok()) << "would step over lines";
  EXPECT_TRUE(CacheLines::Best(CacheLines::HardwareLine() / 2).ok()) << "finer steps are only slower";
}

TEST(CacheLinesTest, EveryInstructionLeavesTheBytesAsWritten) {
  std::vector<char> bytes(1 << 16);
  for (LineInstruction i : {LineInstruction::kClwb, LineInstruction::kClflushopt, LineInstruction::kClflush,
                            LineInstruction::kDcbf, LineInstruction::kDcCivac}) {
    auto lines = CacheLines::With(i, 64);
    if (!Supports(i)) {
      EXPECT_FALSE(lines.ok()) << Name(i);
      continue;
    }
    ASSERT_TRUE(lines.ok()) << Name(i) << ": " << lines.status().ToString();
    std::iota(bytes.begin(), bytes.end(), static_cast<char>(i));
    std::vector<char> expected = bytes;
    lines->WriteBack(bytes.data() + 3, bytes.size() - 7);  // unaligned both ends
    lines->Invalidate(bytes.data() + 1, bytes.size() - 1);
    lines->WriteBack(bytes.data(), 0);
    EXPECT_EQ(bytes, expected) << Name(i);
  }
}

TEST(CacheLinesTest, NonTemporalCopyIsExactForEveryAlignmentAndLength) {
  std::vector<char> src(4096 + 64), dst(4096 + 64);
  std::iota(src.begin(), src.end(), 1);
  for (size_t dst_off : {0, 1, 15, 16, 17, 63}) {
    for (size_t len : {0, 1, 15, 16, 63, 64, 65, 127, 1000, 4096}) {
      std::fill(dst.begin(), dst.end(), 0);
      CopyNonTemporal(dst.data() + dst_off, src.data() + 5, len);
      for (size_t i = 0; i < dst.size(); ++i) {
        const bool inside = i >= dst_off && i < dst_off + len;
        ASSERT_EQ(dst[i], inside ? src[5 + i - dst_off] : 0) << "offset " << dst_off << " length " << len << " at " << i;
      }
    }
  }
}

}  // namespace
}  // namespace csm::os
