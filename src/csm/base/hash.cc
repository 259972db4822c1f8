// Hashing over XXH3 (libxxhash's header); see hash.h. The AVX2 build of XXH3
// (xxh3_avx2.cc) where the CPU has it, else the portable one below.
#include "csm/base/hash.h"

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

Checksum::Checksum()
    : state_(::operator new(xxh3_portable::StateSize(), std::align_val_t{kStateAlignment})) {
  Chosen().reset(state_);
}
Checksum::~Checksum() { ::operator delete(state_, std::align_val_t{kStateAlignment}); }
void Checksum::Update(const void* data, size_t size) { Chosen().update(state_, data, size); }
uint64_t Checksum::Digest() const { return Chosen().digest(state_); }

}  // namespace csm
