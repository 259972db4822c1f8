// Hashing for keys, type ids and object checksums: XXH3 (libxxhash), 64-bit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace csm {

uint64_t Hash64(const void* data, size_t size, uint64_t seed = 0);
inline uint64_t Hash64(std::string_view s, uint64_t seed = 0) {
  return Hash64(s.data(), s.size(), seed);
}

// XXH3-64 taken over bytes given in pieces: the same digest as Hash64 of the whole.
class Xxh3Stream {
 public:
  Xxh3Stream();
  ~Xxh3Stream();
  Xxh3Stream(const Xxh3Stream& other);
  Xxh3Stream& operator=(const Xxh3Stream&) = delete;
  void Reset();
  void Update(const void* data, size_t size);
  uint64_t Digest() const;

 private:
  void* state_;  // XXH3_state_t*, kept opaque so xxhash.h stays out of headers
};

// The checksum of an object's bytes (object/checksum.h) and of what is fetched of it:
// the stream is cut into blocks of kBlockSize bytes (the last one shorter), each block
// hashed with XXH3-64, and the checksum is the XXH3-64 of the blocks' digests (8 bytes
// each, little-endian) in order. Blocks can be hashed apart, on several threads and as
// they are written (object::ChecksumOf); this class takes the stream in any pieces.
//
// kBlockSize is also the unit a lazy copy fetches and checks before a reader sees it
// (docs/lazy.md): small enough that a random read moves little, large enough that the
// digests are 1/8192 of the bytes.
class Checksum {
 public:
  static constexpr size_t kBlockSize = size_t{64} << 10;

  void Update(const void* data, size_t size);
  uint64_t Digest() const;
  // The checksum of `size` bytes at `data`.
  static uint64_t Of(const void* data, size_t size);
  // The checksum of a stream whose blocks' digests are `digests`, in order.
  static uint64_t OfBlocks(const uint64_t* digests, size_t count);

 private:
  Xxh3Stream block_;   // the block being taken
  Xxh3Stream blocks_;  // over the digests of the blocks before it
  size_t block_fill_ = 0;
};

}  // namespace csm
