// Hash64 and Checksum give libxxhash's own XXH3-64 (Checksum: of its 1 MiB blocks'
// XXH3-64s) for every size and split, whichever build of XXH3 this CPU runs (AVX2 or
// portable): checksums taken on one node are compared on another, and keys hashed by one
// process are looked up by all.
#include "csm/base/hash.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <random>
#include <string>
#include <vector>

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

// What Checksum promises, from libxxhash alone: XXH3 of the 1 MiB blocks' XXH3s.
uint64_t BlockChecksum(const std::string& bytes) {
  std::vector<uint64_t> digests;
  for (size_t at = 0; at < bytes.size(); at += Checksum::kBlockSize) {
    digests.push_back(XXH3_64bits(bytes.data() + at, std::min(Checksum::kBlockSize, bytes.size() - at)));
  }
  return XXH3_64bits(digests.data(), digests.size() * sizeof(uint64_t));
}

TEST(HashTest, AChecksumIsTheHashOfItsBlocksHashesForAnySplit) {
  for (size_t size : {size_t{0}, size_t{1}, size_t{4096}, Checksum::kBlockSize - 1, Checksum::kBlockSize,
                      Checksum::kBlockSize + 1, 2 * Checksum::kBlockSize, size_t{(3 << 20) + 12345}}) {
    const std::string bytes = RandomBytes(size, 9);
    std::mt19937 rng(11);
    for (int round = 0; round < 8; ++round) {
      Checksum sum;
      for (size_t at = 0; at < bytes.size();) {
        const size_t n = std::min<size_t>(bytes.size() - at, rng() % (300 << 10));
        sum.Update(bytes.data() + at, n);
        at += n;
      }
      ASSERT_EQ(sum.Digest(), BlockChecksum(bytes)) << size << " round " << round;
      ASSERT_EQ(sum.Digest(), sum.Digest());  // Digest leaves the stream as it was
    }
  }
  EXPECT_EQ(Checksum().Digest(), XXH3_64bits(nullptr, 0));
}

TEST(HashTest, AChecksumFromBlockDigestsIsTheStreamsChecksum) {
  const std::string bytes = RandomBytes((2 << 20) + 77, 5);
  std::vector<uint64_t> digests;
  for (size_t at = 0; at < bytes.size(); at += Checksum::kBlockSize) {
    digests.push_back(Hash64(bytes.data() + at, std::min(Checksum::kBlockSize, bytes.size() - at)));
  }
  Checksum sum;
  sum.Update(bytes.data(), bytes.size());
  EXPECT_EQ(Checksum::OfBlocks(digests.data(), digests.size()), sum.Digest());
}

TEST(HashTest, AStreamOverPiecesIsTheHashOfTheWhole) {
  const std::string bytes = RandomBytes(1 << 20, 3);
  Xxh3Stream stream;
  stream.Update(bytes.data(), 1000);
  Xxh3Stream copy(stream);
  stream.Update(bytes.data() + 1000, bytes.size() - 1000);
  copy.Update(bytes.data() + 1000, bytes.size() - 1000);
  EXPECT_EQ(stream.Digest(), XXH3_64bits(bytes.data(), bytes.size()));
  EXPECT_EQ(copy.Digest(), stream.Digest());
}

}  // namespace
}  // namespace csm
