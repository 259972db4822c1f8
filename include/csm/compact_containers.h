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
//                            longer ones are one allocation, like csm::string's.
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

#include <boost/container/flat_map.hpp>
#include <boost/container/small_vector.hpp>
#include <boost/container/string.hpp>
#include <functional>
#include <string>
#include <string_view>
#include <typeinfo>
#include <utility>

#include "csm/allocator.h"
#include "csm/type_id.h"

namespace csm {

using compact_string = boost::container::basic_string<char, std::char_traits<char>, allocator<char>>;

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

template <typename T, size_t N>
struct TypeInfo<boost::container::small_vector<T, N, allocator<T>>> {
  static std::string Name() {
    return internal::SizedName<small_vector<T, N>>("csm::small_vector") + "<" + TypeInfo<T>::Name() +
           "," + std::to_string(N) + ">";
  }
};

}  // namespace csm
