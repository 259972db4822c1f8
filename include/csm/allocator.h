// csm::allocator<T>: the standard-library allocator that builds objects in the global heap.
//
// It is stateless (every instance compares equal), so a container built with it can be
// read in place by any process that maps the heap at the same address. Memory comes from
// the calling thread's *current Builder* (see csm/client.h: Builder::Populate or
// Builder::MakeCurrent), as the JVM global-heap paper's allocator uses the thread's
// current object: a bump pointer, no lock on the fast path.
//
// Failure: standard containers know no way to report an allocation failure but an
// exception, so allocate() throws std::bad_alloc when the thread has no current
// Builder or the node is out of memory. Builder::Populate catches it and returns the
// Status (CapacityExceeded with sizes); nothing else in csm throws.
//
// deallocate() gives memory back only when it is the most recent allocation (a growing
// vector); everything else is reclaimed with the whole object.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <new>
#include <type_traits>

namespace csm {
namespace internal {

// The part of a Builder's current extent that the calling thread bumps through.
struct BumpRegion {
  uintptr_t cur;
  uintptr_t end;
};

// The calling thread's current region, or null when no Builder is current.
extern constinit thread_local BumpRegion* t_region;

// Refills t_region from the current Builder and allocates; throws std::bad_alloc.
[[gnu::noinline]] void* AllocateSlow(size_t bytes, size_t align);

inline void* Allocate(size_t bytes, size_t align) {
  BumpRegion* r = t_region;
  if (r != nullptr) [[likely]] {
    uintptr_t p = (r->cur + align - 1) & ~(uintptr_t{align} - 1);
    if (p + bytes <= r->end && p + bytes >= p) [[likely]] {
      r->cur = p + bytes;
      return reinterpret_cast<void*>(p);
    }
  }
  return AllocateSlow(bytes, align);
}

inline void Deallocate(void* p, size_t bytes) {
  BumpRegion* r = t_region;
  if (r != nullptr && reinterpret_cast<uintptr_t>(p) + bytes == r->cur) {
    r->cur = reinterpret_cast<uintptr_t>(p);
  }
}

}  // namespace internal

template <typename T>
class allocator {
 public:
  using value_type = T;
  using size_type = std::size_t;
  using difference_type = std::ptrdiff_t;
  using propagate_on_container_move_assignment = std::true_type;
  using propagate_on_container_copy_assignment = std::true_type;
  using propagate_on_container_swap = std::true_type;
  using is_always_equal = std::true_type;

  allocator() noexcept = default;
  template <typename U>
  allocator(const allocator<U>&) noexcept {}  // NOLINT: rebinding is implicit

  T* allocate(size_t n) {
    if (n > std::numeric_limits<size_t>::max() / sizeof(T)) throw std::bad_array_new_length();
    return static_cast<T*>(internal::Allocate(n * sizeof(T), alignof(T)));
  }
  void deallocate(T* p, size_t n) noexcept { internal::Deallocate(p, n * sizeof(T)); }

  template <typename U>
  bool operator==(const allocator<U>&) const noexcept {
    return true;
  }
};

}  // namespace csm
