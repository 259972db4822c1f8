// The blocks and pages of a lazy copy: what is fetched first and what a reader may see.
#include "csm/node/lazy_copy.h"

#include <gtest/gtest.h>

namespace csm::node {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kBlock = 4 * kPage;  // small blocks, to see pages shared by two
constexpr uint64_t kBase = 0x200000000000;

// One extent of 10 pages plus 100 bytes, then one of 2 pages at a lower address: the
// stream is header (64) + bytes; blocks are kBlock bytes of the stream after the header.
LazyCopy TwoExtents() {
  return LazyCopy({{kBase + 16 * kPage, 10 * kPage + 100}, {kBase, 2 * kPage}}, kPage, kBlock);
}

TEST(LazyCopyTest, BlocksCutTheStreamAfterTheHeaderAsTheChecksumDoes) {
  LazyCopy c = TwoExtents();
  const uint64_t total = 12 * kPage + 100;
  EXPECT_EQ(c.bytes(), total);
  EXPECT_EQ(c.blocks(), (total - 64 + kBlock - 1) / kBlock);
  // Block 0: the header and the block's bytes after it, in the first extent.
  EXPECT_EQ(c.PiecesOf(0), (std::vector<AddrRange>{{kBase + 16 * kPage, 64 + kBlock}}));
  EXPECT_EQ(c.HashSkipOf(0), 64u);
  EXPECT_EQ(c.HashSkipOf(1), 0u);
  // Block 2 runs from the first extent's end into the second; block 3 is the rest.
  ASSERT_EQ(c.blocks(), 4u);
  const uint64_t first_extent = 10 * kPage + 100, into_second = 64 + 3 * kBlock - first_extent;
  std::vector<AddrRange> pieces = c.PiecesOf(2);
  ASSERT_EQ(pieces.size(), 2u);
  EXPECT_EQ(pieces[1], (AddrRange{kBase, into_second}));
  EXPECT_EQ(c.PiecesOf(3), (std::vector<AddrRange>{{kBase + into_second, 2 * kPage - into_second}}));
  uint64_t sum = 0;
  for (size_t k = 0; k < c.blocks(); ++k) sum += c.BytesOf(k);
  EXPECT_EQ(sum, total);
  EXPECT_EQ(c.BlockAt(kBase + 16 * kPage), std::optional<size_t>(0));
  EXPECT_EQ(c.BlockAt(kBase + 16 * kPage + 64 + kBlock), std::optional<size_t>(1));
  EXPECT_EQ(c.BlockAt(kBase + 5 * kPage), std::nullopt) << "between the extents";
  EXPECT_EQ(c.Pages(), (std::vector<AddrRange>{{kBase, 2 * kPage}, {kBase + 16 * kPage, 11 * kPage}}));
}

TEST(LazyCopyTest, APageIsShownOnlyOnceEveryBlockOnItPassed) {
  LazyCopy c = TwoExtents();
  // The page where block 0 ends holds block 1's first bytes too (the header shifts it).
  const uint64_t shared = kBase + 16 * kPage + 4 * kPage;
  EXPECT_EQ(c.BlocksOn(shared), (std::vector<size_t>{0, 1}));
  std::vector<AddrRange> shown = c.Verified(0);
  EXPECT_EQ(shown, (std::vector<AddrRange>{{kBase + 16 * kPage, 4 * kPage}}));
  EXPECT_FALSE(c.Visible(shared));
  shown = c.Verified(1);
  EXPECT_TRUE(c.Visible(shared));
  EXPECT_EQ(shown.front().addr, shared) << "shown with the block that completed it";
  EXPECT_TRUE(c.Verified(1).empty()) << "once";
  for (size_t k = 2; k < c.blocks(); ++k) c.Verified(k);
  EXPECT_TRUE(c.complete());
  EXPECT_TRUE(c.HiddenPages().empty());
}

TEST(LazyCopyTest, AWaitingReadersBlocksComeFirstThenTheRestInOrder) {
  LazyCopy c = TwoExtents();
  EXPECT_TRUE(c.Want(kBase + kPage));  // in the second extent: on blocks 2 and 3
  const size_t last = c.blocks() - 1;
  EXPECT_EQ(c.Take(4, true), (std::vector<size_t>{2, 3}));
  EXPECT_EQ(c.Take(4, true), (std::vector<size_t>{0, 1})) << "then the rest in order";
  EXPECT_EQ(c.Take(1, false), (std::vector<size_t>{})) << "nothing wanted, no prefetch";
  // A failed block is fetched again, first if a reader waits for it.
  EXPECT_EQ(c.Failed(last), 1);
  EXPECT_EQ(c.Take(4, false), (std::vector<size_t>{last}));
  EXPECT_EQ(c.Failed(1), 1);
  EXPECT_EQ(c.Take(1, true), (std::vector<size_t>{1})) << "prefetch goes back for it";
  EXPECT_FALSE(c.Want(kBase + 3 * kPage)) << "no bytes of the object there";
}

TEST(LazyCopyTest, AFaultFetchesItsOwnBlockAndTheReadAheadAskedForNoMore) {
  LazyCopy c = TwoExtents();
  EXPECT_TRUE(c.Want(kBase + 16 * kPage + 64));  // block 0 only
  EXPECT_EQ(c.Take(4, false), (std::vector<size_t>{0})) << "a random read moves one block";
  c.WantBlock(1);
  c.WantBlock(2);
  EXPECT_EQ(c.Take(4, false), (std::vector<size_t>{1, 2})) << "read-ahead: the blocks asked for";
  c.WantBlock(0);  // in flight: nothing more
  EXPECT_EQ(c.Take(4, false), (std::vector<size_t>{}));
}

TEST(LazyCopyTest, WantedBlocksFarApartComeInOneRequestInTheOrderAsked) {
  LazyCopy c = TwoExtents();
  c.WantBlock(2);
  c.WantBlock(0);  // not next to block 2: still the same request
  EXPECT_EQ(c.Take(4, true), (std::vector<size_t>{2, 0}));
  c.WantBlock(1);
  c.WantBlock(3);
  EXPECT_EQ(c.Take(1, false), (std::vector<size_t>{1})) << "no more than asked for per request";
  EXPECT_EQ(c.Take(4, false), (std::vector<size_t>{3}));
}

TEST(LazyCopyTest, HiddenPagesAreThoseNotShownYet) {
  LazyCopy c = TwoExtents();
  c.Verified(0);
  std::vector<AddrRange> hidden = c.HiddenPages();
  EXPECT_EQ(hidden.front(), (AddrRange{kBase, 2 * kPage}));
  EXPECT_EQ(hidden.back().addr, kBase + 20 * kPage);
}

TEST(LazyCopyTest, AnObjectOfAHeaderAloneIsOneBlock) {
  LazyCopy c({{kBase, 64}}, kPage, kBlock);
  EXPECT_EQ(c.blocks(), 1u);
  EXPECT_EQ(c.BytesOf(0), 64u);
  EXPECT_EQ(c.Verified(0), (std::vector<AddrRange>{{kBase, kPage}}));
}

}  // namespace
}  // namespace csm::node
