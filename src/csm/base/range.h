// Range arithmetic without overflow: every "is this range inside that one" in csm goes
// through here, because the obvious `len <= base + size - addr` is true for an addr past
// the end (the subtraction wraps) — a bug that lets hostile extents reach outside memory.
#pragma once

#include <cstdint>

namespace csm {

// [addr, addr+len) lies inside [base, base+size).
constexpr bool RangeWithin(uint64_t addr, uint64_t len, uint64_t base, uint64_t size) {
  return addr >= base && addr - base <= size && len <= size - (addr - base);
}

static_assert(RangeWithin(10, 5, 10, 5) && !RangeWithin(10, 6, 10, 5));
static_assert(!RangeWithin(20, 1, 10, 5) && !RangeWithin(9, 1, 10, 5));
static_assert(!RangeWithin(UINT64_MAX, 2, 0, UINT64_MAX) && RangeWithin(15, 0, 10, 5));

}  // namespace csm
