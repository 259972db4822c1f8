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

// Streaming checksum over several byte ranges (an object's extents).
class Checksum {
 public:
  Checksum();
  ~Checksum();
  Checksum(const Checksum&) = delete;
  Checksum& operator=(const Checksum&) = delete;
  void Update(const void* data, size_t size);
  uint64_t Digest() const;

 private:
  void* state_;  // XXH3_state_t*, kept opaque so xxhash.h stays out of headers
};

}  // namespace csm
