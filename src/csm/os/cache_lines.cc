#include "csm/os/cache_lines.h"

#include <cstring>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace csm::os {
namespace {

#if defined(__x86_64__)
struct X86Features {
  bool clflushopt = false, clwb = false;
  uint32_t clflush_line = 64;
};
const X86Features& Features() {
  static const X86Features f = [] {
    X86Features out;
    unsigned a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d)) out.clflush_line = ((b >> 8) & 0xff) * 8;
    if (out.clflush_line == 0) out.clflush_line = 64;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
      out.clflushopt = (b & (1u << 23)) != 0;
      out.clwb = (b & (1u << 24)) != 0;
    }
    return out;
  }();
  return f;
}

__attribute__((target("clwb"))) void LinesClwb(uintptr_t from, uintptr_t to, uint32_t step) {
  for (uintptr_t p = from; p < to; p += step) _mm_clwb(reinterpret_cast<void*>(p));
  _mm_sfence();
}
__attribute__((target("clflushopt"))) void LinesClflushopt(uintptr_t from, uintptr_t to, uint32_t step) {
  for (uintptr_t p = from; p < to; p += step) _mm_clflushopt(reinterpret_cast<void*>(p));
  _mm_sfence();
}
void LinesClflush(uintptr_t from, uintptr_t to, uint32_t step) {
  for (uintptr_t p = from; p < to; p += step) _mm_clflush(reinterpret_cast<void*>(p));
  _mm_mfence();
}
#endif

void Lines(LineInstruction instruction, const void* p, size_t n, uint32_t line) {
  if (n == 0) return;
  const uintptr_t from = reinterpret_cast<uintptr_t>(p) & ~static_cast<uintptr_t>(line - 1);
  const uintptr_t to = reinterpret_cast<uintptr_t>(p) + n;
  switch (instruction) {
#if defined(__x86_64__)
    case LineInstruction::kClwb:
      return LinesClwb(from, to, line);
    case LineInstruction::kClflushopt:
      return LinesClflushopt(from, to, line);
    case LineInstruction::kClflush:
      return LinesClflush(from, to, line);
#elif defined(__powerpc64__)
    case LineInstruction::kDcbf:
      for (uintptr_t q = from; q < to; q += line) asm volatile("dcbf 0,%0" ::"r"(q) : "memory");
      asm volatile("sync" ::: "memory");
      return;
#elif defined(__aarch64__)
    case LineInstruction::kDcCivac:
      for (uintptr_t q = from; q < to; q += line) asm volatile("dc civac, %0" ::"r"(q) : "memory");
      asm volatile("dsb sy" ::: "memory");
      return;
#endif
    default:
      return;  // not this CPU's: CacheLines never holds one (Supports)
  }
}

}  // namespace

const char* Name(LineInstruction instruction) {
  switch (instruction) {
    case LineInstruction::kClwb: return "clwb";
    case LineInstruction::kClflushopt: return "clflushopt";
    case LineInstruction::kClflush: return "clflush";
    case LineInstruction::kDcbf: return "dcbf";
    case LineInstruction::kDcCivac: return "dc civac";
  }
  return "?";
}

bool Supports(LineInstruction instruction) {
#if defined(__x86_64__)
  switch (instruction) {
    case LineInstruction::kClwb: return Features().clwb;
    case LineInstruction::kClflushopt: return Features().clflushopt;
    case LineInstruction::kClflush: return true;  // SSE2, baseline on x86-64
    default: return false;
  }
#elif defined(__powerpc64__)
  return instruction == LineInstruction::kDcbf;
#elif defined(__aarch64__)
  return instruction == LineInstruction::kDcCivac;
#else
  (void)instruction;
  return false;
#endif
}

uint32_t CacheLines::HardwareLine() {
#if defined(__x86_64__)
  return Features().clflush_line;
#elif defined(__powerpc64__)
  return 128;
#else
  return 64;
#endif
}

Result<CacheLines> CacheLines::With(LineInstruction instruction, uint32_t line) {
  if (line == 0 || (line & (line - 1)) != 0) {
    return InvalidArgument("cache line size " + std::to_string(line) + " is not a power of two");
  }
  if (line > HardwareLine()) {
    return InvalidArgument("cache line size " + std::to_string(line) + " is larger than this CPU's (" +
                           std::to_string(HardwareLine()) + " bytes): the lines in between would be "
                           "missed; use --cache-line " + std::to_string(HardwareLine()));
  }
  if (!Supports(instruction)) {
    return FailedPrecondition(std::string("this CPU has no ") + Name(instruction) + " instruction");
  }
  // clwb keeps the line: it cannot invalidate, so reads drop lines with the next best.
  LineInstruction invalidate = instruction;
  if (instruction == LineInstruction::kClwb) {
    invalidate = Supports(LineInstruction::kClflushopt) ? LineInstruction::kClflushopt : LineInstruction::kClflush;
  }
  return CacheLines(instruction, invalidate, line);
}

Result<CacheLines> CacheLines::Best(uint32_t line) {
  for (LineInstruction i : {LineInstruction::kClwb, LineInstruction::kClflushopt, LineInstruction::kClflush,
                            LineInstruction::kDcbf, LineInstruction::kDcCivac}) {
    if (Supports(i)) return With(i, line);
  }
  return FailedPrecondition("csm knows no cache write-back instruction of this CPU: use a coherent fabric");
}

void CacheLines::WriteBack(const void* p, size_t n) const { Lines(write_back_, p, n, line_); }
void CacheLines::Invalidate(const void* p, size_t n) const { Lines(invalidate_, p, n, line_); }

std::string CacheLines::Describe() const {
  std::string out = Name(write_back_);
  if (invalidate_ != write_back_) out += std::string("/") + Name(invalidate_);
  return out + ", " + std::to_string(line_) + "-byte lines";
}

void CopyNonTemporal(void* dst, const void* src, size_t n) {
#if defined(__x86_64__)
  auto* d = static_cast<char*>(dst);
  const auto* s = static_cast<const char*>(src);
  // Up to the destination's first 16-byte boundary, then streaming 16-byte stores.
  size_t head = (16 - (reinterpret_cast<uintptr_t>(d) & 15)) & 15;
  if (head > n) head = n;
  std::memcpy(d, s, head);
  d += head, s += head, n -= head;
  for (; n >= 64; n -= 64, d += 64, s += 64) {
    __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s));
    __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 16));
    __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 32));
    __m128i e = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 48));
    _mm_stream_si128(reinterpret_cast<__m128i*>(d), a);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + 16), b);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + 32), c);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + 48), e);
  }
  std::memcpy(d, s, n);
  _mm_sfence();
  // The unaligned head and tail went through the cache: write them back too.
  if (head != 0) _mm_clflush(static_cast<char*>(dst));
  if (n != 0) _mm_clflush(d), _mm_clflush(d + n - 1);
  _mm_mfence();
#else
  std::memcpy(dst, src, n);
#endif
}

}  // namespace csm::os
