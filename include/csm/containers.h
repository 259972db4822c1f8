// The standard containers, allocating in the global heap through csm::allocator.
//
// They are the std:: types themselves with another allocator, so every algorithm and
// idiom works. Built inside a Builder, read in place by any process (const access).
//
// Lookups by std::string_view need no allocation: csm::map uses std::less<> and
// csm::unordered_map a transparent hash, so a reader (which has no Builder) can write
// `m.find(std::string_view("key"))`.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <typeinfo>
#include <unordered_map>
#include <vector>

#include "csm/allocator.h"
#include "csm/type_id.h"

namespace csm {

using string = std::basic_string<char, std::char_traits<char>, allocator<char>>;

template <typename T>
using vector = std::vector<T, allocator<T>>;

template <typename K, typename V, typename Compare = std::less<>>
using map = std::map<K, V, Compare, allocator<std::pair<const K, V>>>;

// std::hash, plus string_view lookups for csm::string keys.
template <typename K>
struct hash : std::hash<K> {};
template <>
struct hash<string> {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

template <typename K, typename V, typename Hash = hash<K>, typename Eq = std::equal_to<>>
using unordered_map = std::unordered_map<K, V, Hash, Eq, allocator<std::pair<const K, V>>>;

inline std::string_view view(const string& s) { return {s.data(), s.size()}; }

template <>
struct TypeInfo<string> {
  static std::string Name() { return internal::SizedName<string>("csm::string"); }
};

template <typename T>
struct TypeInfo<vector<T>> {
  static std::string Name() {
    return internal::SizedName<vector<T>>("csm::vector") + "<" + TypeInfo<T>::Name() + ">";
  }
};

// Comparators and hashes are part of the layout (they decide where entries sit), so
// they must be stateless; their (compiler-specific) names enter the id, which the
// build fingerprint already ties to one compiler.
template <typename K, typename V, typename C>
struct TypeInfo<std::map<K, V, C, allocator<std::pair<const K, V>>>> {
  static_assert(std::is_empty_v<C>, "csm::map comparators must be stateless");
  static std::string Name() {
    return internal::SizedName<map<K, V, C>>("csm::map") + "<" + TypeInfo<K>::Name() + "," +
           TypeInfo<V>::Name() + "," + typeid(C).name() + ">";
  }
};

template <typename K, typename V, typename H, typename E>
struct TypeInfo<std::unordered_map<K, V, H, E, allocator<std::pair<const K, V>>>> {
  static_assert(std::is_empty_v<H> && std::is_empty_v<E>,
                "csm::unordered_map hash and equality must be stateless");
  static std::string Name() {
    return internal::SizedName<unordered_map<K, V, H, E>>("csm::unordered_map") + "<" +
           TypeInfo<K>::Name() + "," + TypeInfo<V>::Name() + "," + typeid(H).name() + "," +
           typeid(E).name() + ">";
  }
};

}  // namespace csm
