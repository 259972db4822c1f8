// Hash64 and Checksum give libxxhash's own XXH3-64 for every size and split, whichever
// build of XXH3 this CPU runs (AVX2 or portable): checksums taken on one node are
// compared on another, and keys hashed by one process are looked up by all.
#include "csm/base/hash.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <random>
#include <string>

namespace csm {
namespace {

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

TEST(HashTest, Hash64IsXxh3OfTheLibraryForEverySize) {
  const std::string bytes = RandomBytes(1 << 20, 7);
  for (size_t n : {0, 1, 3, 8, 16, 17, 128, 129, 240, 241, 1024, 4095, 65536, 1 << 20}) {
    EXPECT_EQ(Hash64(bytes.data(), n), XXH3_64bits(bytes.data(), n)) << n;
    EXPECT_EQ(Hash64(bytes.data(), n, 42), XXH3_64bits_withSeed(bytes.data(), n, 42)) << n;
  }
  EXPECT_EQ(Hash64("trades/2026-12-02"), XXH3_64bits("trades/2026-12-02", 17));
}

TEST(HashTest, AChecksumOverPiecesIsTheHashOfTheWhole) {
  const std::string bytes = RandomBytes(3 << 20, 9);
  std::mt19937 rng(11);
  for (int round = 0; round < 20; ++round) {
    Checksum sum;
    for (size_t at = 0; at < bytes.size();) {
      const size_t n = std::min<size_t>(bytes.size() - at, rng() % (300 << 10));
      sum.Update(bytes.data() + at, n);
      at += n;
    }
    ASSERT_EQ(sum.Digest(), XXH3_64bits(bytes.data(), bytes.size())) << round;
  }
  EXPECT_EQ(Checksum().Digest(), XXH3_64bits(nullptr, 0));
}

}  // namespace
}  // namespace csm
