// Cache lines on memory that other nodes read without hardware coherence (CXL memory
// shared by several hosts, ThymesisFlow): writing dirty lines back to memory before a
// descriptor is published, and invalidating lines before reading what another node wrote.
//
// The instruction is chosen at run time from what the CPU offers (x86: CLWB, else
// CLFLUSHOPT, else CLFLUSH; POWER: dcbf; Arm: DC CVAC / DC CIVAC), or named (benchmarks,
// tests). Every call ends with the store fence the instruction needs, so a caller can
// publish right after WriteBack returns. docs/fabric.md has the protocol built on it.
//
// Thread-safety: a CacheLines is an immutable value; any thread may use it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "csm/status.h"

namespace csm::os {

enum class LineInstruction : uint8_t {
  kClwb,        // x86: writes the line back, may keep it cached (the best for write-back)
  kClflushopt,  // x86: writes back and drops the line, weakly ordered
  kClflush,     // x86: writes back and drops the line, ordered (slow: ~1.6 GB/s here)
  kDcbf,        // POWER: data cache block flush
  kDcCivac,     // Arm: clean and invalidate by address to the point of coherence
};
const char* Name(LineInstruction instruction);
// Whether this CPU executes it.
bool Supports(LineInstruction instruction);

class CacheLines {
 public:
  // The best instructions this CPU has, stepping by `line` bytes. InvalidArgument if
  // `line` is not a power of two, or larger than the CPU's flush granule (lines in
  // between would be missed).
  static Result<CacheLines> Best(uint32_t line);
  // Both steps with `instruction` (a benchmark's or test's choice); Unimplemented if the
  // CPU lacks it.
  static Result<CacheLines> With(LineInstruction instruction, uint32_t line);

  // Writes every line overlapping [p, p+n) back to memory, then fences: after it returns,
  // another node that invalidates those lines reads these bytes.
  void WriteBack(const void* p, size_t n) const;
  // Drops every line overlapping [p, p+n) from this CPU's caches (writing back any that
  // are dirty), then fences: the next loads come from memory.
  void Invalidate(const void* p, size_t n) const;

  LineInstruction write_back() const { return write_back_; }
  LineInstruction invalidate() const { return invalidate_; }
  uint32_t line() const { return line_; }
  std::string Describe() const;  // "clwb/clflushopt, 64-byte lines"

  // The CPU's flush granule (x86: CPUID's CLFLUSH line size; 128 on POWER9).
  static uint32_t HardwareLine();

 private:
  CacheLines(LineInstruction write_back, LineInstruction invalidate, uint32_t line)
      : write_back_(write_back), invalidate_(invalidate), line_(line) {}
  LineInstruction write_back_, invalidate_;
  uint32_t line_;
};

// Copies n bytes with non-temporal (streaming) stores where the CPU has them, then
// fences: the bytes go to memory without passing through (and dirtying) the cache, so
// no write-back is needed afterwards. Plain memcpy elsewhere.
void CopyNonTemporal(void* dst, const void* src, size_t n);

}  // namespace csm::os
