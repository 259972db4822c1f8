// object::ChecksumPieces makes a Builder's bulk copies and hashes the object on several
// threads, a block at a time: what readers and other nodes check must be the block
// checksum of the bytes as copied, however the blocks fall across extents.
#include "csm/object/checksum.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

namespace csm::object {
namespace {

std::vector<char> RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<char> v(n);
  for (char& c : v) c = static_cast<char>(rng());
  return v;
}

// What a reader computes: the stream of pieces through csm::Checksum, one piece at a time.
uint64_t Sequential(const std::vector<Piece>& pieces) {
  Checksum sum;
  for (const Piece& p : pieces) sum.Update(reinterpret_cast<const void*>(p.addr), p.length);
  return sum.Digest();
}

uint64_t At(const std::vector<char>& v, size_t offset) { return reinterpret_cast<uint64_t>(v.data() + offset); }

TEST(ChecksumTest, ObjectsLargeAndSmallHashAsAReaderDoes) {
  // 20 MiB: hashed on several threads, blocks spanning pieces of odd lengths.
  for (size_t total : {size_t{100}, size_t{3} << 20, size_t{20} << 20}) {
    std::vector<char> memory = RandomBytes(total, 1);
    std::mt19937 rng(2);
    std::vector<Piece> pieces;
    for (size_t at = 0; at < total;) {
      const size_t n = std::min<size_t>(total - at, 1 + rng() % (3 << 20));
      pieces.push_back({At(memory, at), n});
      at += n;
    }
    std::shuffle(pieces.begin(), pieces.end(), rng);  // extents need not be in address order
    EXPECT_EQ(ChecksumPieces(pieces), Sequential(pieces)) << total;
  }
}

TEST(ChecksumTest, CopiesAreMadeBeforeTheirBytesAreHashed) {
  const size_t total = 24 << 20;
  std::vector<char> memory(total, 0);
  const std::vector<char> source = RandomBytes(total, 3);
  // Pieces: [0, 5 MiB + 3), [5 MiB + 3, 24 MiB - 100); the last 100 bytes are no piece.
  const std::vector<Piece> pieces = {{At(memory, 0), (5 << 20) + 3}, {At(memory, (5 << 20) + 3), total - 100 - (5 << 20) - 3}};
  std::vector<PendingCopy> copies = {
      {At(memory, 1000), source.data(), 4 << 20},                            // inside the first piece
      {At(memory, (6 << 20) + 7), source.data() + (6 << 20), 17 << 20},      // most of the second
      {At(memory, total - 200), source.data() + total - 200, 200},          // partly in no piece
  };
  std::vector<char> expected(total, 0);
  for (const PendingCopy& c : copies) {
    std::memcpy(expected.data() + (c.dst - At(memory, 0)), c.src, c.length);
  }
  const std::vector<Piece> expected_pieces = {{At(expected, 0), pieces[0].length}, {At(expected, pieces[0].length), pieces[1].length}};
  EXPECT_EQ(ChecksumPieces(pieces, copies), Sequential(expected_pieces));
  EXPECT_EQ(memory, expected);  // every copy made, the stray one too
}

TEST(ChecksumTest, CopyAllMakesEveryCopy) {
  const size_t total = 12 << 20;
  std::vector<char> memory(total, 0);
  const std::vector<char> source = RandomBytes(total, 4);
  CopyAll({{At(memory, 0), source.data(), 3}, {At(memory, 3), source.data() + 3, total - 3}});
  EXPECT_EQ(memory, source);
}

}  // namespace
}  // namespace csm::object
