// Hashing over XXH3 (libxxhash's header); see hash.h. The AVX2 build of XXH3
// (xxh3_avx2.cc) where the CPU has it, else the portable one below.
#include "csm/base/hash.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <new>

#define CSM_XXH3_NAMESPACE xxh3_portable
#include "csm/base/xxh3_kernel.inc"

namespace csm {
namespace xxh3_avx2 {
uint64_t Hash64(const void* data, size_t size, uint64_t seed);
void Reset(void* state);
void Update(void* state, const void* data, size_t size);
uint64_t Digest(const void* state);
}  // namespace xxh3_avx2

namespace {

struct Kernel {
  uint64_t (*hash64)(const void*, size_t, uint64_t);
  void (*reset)(void*);
  void (*update)(void*, const void*, size_t);
  uint64_t (*digest)(const void*);
};

const Kernel& Chosen() {
#if defined(__x86_64__) && defined(CSM_HAVE_XXH3_AVX2)
  static const Kernel kernel = (__builtin_cpu_init(), __builtin_cpu_supports("avx2"))
                                   ? Kernel{xxh3_avx2::Hash64, xxh3_avx2::Reset, xxh3_avx2::Update, xxh3_avx2::Digest}
                                   : Kernel{xxh3_portable::Hash64, xxh3_portable::Reset, xxh3_portable::Update,
                                            xxh3_portable::Digest};
#else
  static const Kernel kernel{xxh3_portable::Hash64, xxh3_portable::Reset, xxh3_portable::Update,
                             xxh3_portable::Digest};
#endif
  return kernel;
}

constexpr size_t kStateAlignment = 64;  // XXH3_state_t's

}  // namespace

uint64_t Hash64(const void* data, size_t size, uint64_t seed) { return Chosen().hash64(data, size, seed); }

Xxh3Stream::Xxh3Stream()
    : state_(::operator new(xxh3_portable::StateSize(), std::align_val_t{kStateAlignment})) {
  Chosen().reset(state_);
}
Xxh3Stream::Xxh3Stream(const Xxh3Stream& other)
    : state_(::operator new(xxh3_portable::StateSize(), std::align_val_t{kStateAlignment})) {
  std::memcpy(state_, other.state_, xxh3_portable::StateSize());  // XXH3_copyState
}
Xxh3Stream::~Xxh3Stream() { ::operator delete(state_, std::align_val_t{kStateAlignment}); }
void Xxh3Stream::Reset() { Chosen().reset(state_); }
void Xxh3Stream::Update(const void* data, size_t size) { Chosen().update(state_, data, size); }
uint64_t Xxh3Stream::Digest() const { return Chosen().digest(state_); }

void Checksum::Update(const void* data, size_t size) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  while (size > 0) {
    const size_t n = std::min(size, kBlockSize - block_fill_);
    block_.Update(bytes, n);
    block_fill_ += n;
    bytes += n;
    size -= n;
    if (block_fill_ == kBlockSize) {
      const uint64_t digest = block_.Digest();
      blocks_.Update(&digest, sizeof(digest));
      block_.Reset();
      block_fill_ = 0;
    }
  }
}

uint64_t Checksum::Digest() const {
  if (block_fill_ == 0) return blocks_.Digest();
  Xxh3Stream all(blocks_);
  const uint64_t digest = block_.Digest();
  all.Update(&digest, sizeof(digest));
  return all.Digest();
}

uint64_t Checksum::Of(const void* data, size_t size) {
  Checksum sum;
  sum.Update(data, size);
  return sum.Digest();
}

uint64_t Checksum::OfBlocks(const uint64_t* digests, size_t count) {
  static_assert(std::endian::native == std::endian::little, "block digests are hashed little-endian");
  return Hash64(digests, count * sizeof(uint64_t));
}

}  // namespace csm
