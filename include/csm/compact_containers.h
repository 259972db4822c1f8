// Compact heap containers: the same data in about the bytes an in-place format (Cap'n
// Proto, FlatBuffers) takes, still read in place by any process.
//
// They are Boost.Container's containers with csm::allocator (header-only; Boost's
// headers are needed to include this file, csm/containers.h does without them):
//
//   csm::flat_map<K, V>      a sorted vector of pairs: no node per entry (csm::map spends
//                            ~48 bytes of tree node on each), contiguous to traverse,
//                            binary search to find. Inserting in the middle moves the
//                            entries after it: build in key order (or reserve and sort).
//   csm::compact_string      23 bytes inline in a 24-byte object (csm::string: 15 in 32);
//                            a longer one is one allocation of exactly its length + 1
//                            when it leaves the inline buffer (Boost would add 24 bytes
//                            of room to grow; internal::ExactAllocator); one that grows
//                            further gets Boost's room to grow, so appending stays
//                            amortized.
//   csm::compact_vector<T>   a vector whose size and capacity are 32-bit: 16 bytes, not
//                            24 (at most 2^32 - 1 elements).
//   csm::small_vector<T, N>  N elements inline, more in one allocation.
//
// Which to pick (docs/heap_layout.md, "Containers"): csm::map / csm::unordered_map when
// the map is built in any order or is large and updated by key; csm::flat_map when it is
// built once in key order and read many times (the usual case for a shared object). A
// vector that grows past its reserve leaves its old buffer behind in the object (the
// heap frees only the newest allocation): reserve() first where the size is known.
//
// Lookups by std::string_view need no allocation: csm::flat_map uses std::less<>.
#pragma once

#include <boost/container/detail/multiallocation_chain.hpp>
#include <boost/container/flat_map.hpp>
#include <boost/container/options.hpp>
#include <boost/container/small_vector.hpp>
#include <boost/container/string.hpp>
#include <boost/container/vector.hpp>
#include <cstdint>
#include <functional>
#include <new>
#include <string>
#include <string_view>
#include <typeinfo>
#include <utility>

#include "csm/allocator.h"
#include "csm/type_id.h"

namespace csm {
namespace internal {

// csm::allocator as a Boost.Container "version 2" allocator, so Boost says both the least
// it needs and what it would like (allocation_command). A string leaving its inline
// buffer gets the least, exactly its length + 1: the heap frees only its newest block, so
// room to grow would stay in the object for good, and most strings never grow (a 24-char
// string took 48 bytes, and the 1M-key map's image was 1.30x Cap'n Proto's; now ~1.08x).
// A string that is already long and grows gets what Boost asks for.
template <typename T>
class ExactAllocator : public allocator<T> {
 public:
  using version = boost::container::version_2;
  using multiallocation_chain = boost::container::dtl::basic_multiallocation_chain<T*>;
  template <typename U>
  struct rebind {
    using other = ExactAllocator<U>;
  };
  ExactAllocator() noexcept = default;
  template <typename U>
  ExactAllocator(const ExactAllocator<U>&) noexcept {}  // NOLINT: rebinding is implicit

  T* allocation_command(boost::container::allocation_type command, size_t limit_size,
                        size_t& prefer_in_recvd_out_size, T*& reuse) {
    reuse = nullptr;  // never expands in place: always a new block
    if ((command & boost::container::allocate_new) == 0) {
      if ((command & boost::container::nothrow_allocation) != 0) return nullptr;
      throw std::bad_alloc();
    }
    // Boost asks for the current capacity more than the least: at most the inline
    // buffer's size when the string was short.
    constexpr size_t kInline = 24;
    const bool leaving_inline =
        prefer_in_recvd_out_size >= limit_size && prefer_in_recvd_out_size - limit_size <= kInline;
    const size_t n = leaving_inline ? limit_size : prefer_in_recvd_out_size;
    T* p = this->allocate(n);
    prefer_in_recvd_out_size = n;
    return p;
  }
};

}  // namespace internal

using compact_string = boost::container::basic_string<char, std::char_traits<char>, internal::ExactAllocator<char>>;
template <typename T>
using compact_vector =
    boost::container::vector<T, allocator<T>, boost::container::vector_options_t<boost::container::stored_size<uint32_t>>>;

template <typename K, typename V, typename Compare = std::less<>>
using flat_map = boost::container::flat_map<K, V, Compare, allocator<std::pair<K, V>>>;

template <typename T, size_t N>
using small_vector = boost::container::small_vector<T, N, allocator<T>>;

inline std::string_view view(const compact_string& s) { return {s.data(), s.size()}; }

template <>
struct TypeInfo<compact_string> {
  static std::string Name() { return internal::SizedName<compact_string>("csm::compact_string"); }
};

template <typename K, typename V, typename C>
struct TypeInfo<boost::container::flat_map<K, V, C, allocator<std::pair<K, V>>>> {
  static_assert(std::is_empty_v<C>, "csm::flat_map comparators must be stateless");
  static std::string Name() {
    return internal::SizedName<flat_map<K, V, C>>("csm::flat_map") + "<" + TypeInfo<K>::Name() +
           "," + TypeInfo<V>::Name() + "," + typeid(C).name() + ">";
  }
};

template <typename T>
struct TypeInfo<compact_vector<T>> {
  static std::string Name() {
    return internal::SizedName<compact_vector<T>>("csm::compact_vector") + "<" + TypeInfo<T>::Name() + ">";
  }
};

template <typename T, size_t N>
struct TypeInfo<boost::container::small_vector<T, N, allocator<T>>> {
  static std::string Name() {
    return internal::SizedName<small_vector<T, N>>("csm::small_vector") + "<" + TypeInfo<T>::Name() +
           "," + std::to_string(N) + ">";
  }
};

}  // namespace csm
