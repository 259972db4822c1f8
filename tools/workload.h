// The demo/test/benchmark workload: the JVM global-heap paper's TreeMap<Integer,
// String[]>, as map<int32, vector<string>>. Key k holds k % 4 + 1 strings
// "value-<k>-<j>-…" of 16 to 30 bytes (past the small-string buffer, so every string
// is a separate heap allocation, as in Java).
#pragma once

#include <cstdio>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "csm/containers.h"

namespace csm::workload {

using HeapMap = csm::map<int32_t, csm::vector<csm::string>>;
using StdMap = std::map<int32_t, std::vector<std::string>>;

inline int ValuesFor(int32_t key) { return key % 4 + 1; }

// Writes value j of key k into buf; returns its length.
inline int FormatValue(char* buf, size_t size, int32_t key, int j) {
  return std::snprintf(buf, size, "value-%d-%d-%.*s", key, j, (key % 7) + 4, "xxxxxxxxxxxxxxxx");
}

// Fills any map<int32, vector<string>> (heap or std) with `keys` entries.
template <typename Map>
void Fill(Map& m, int32_t keys) {
  using Vec = typename Map::mapped_type;
  using Str = typename Vec::value_type;
  char buf[64];
  for (int32_t k = 0; k < keys; ++k) {
    Vec& v = m[k];
    int n = ValuesFor(k);
    v.reserve(static_cast<size_t>(n));
    for (int j = 0; j < n; ++j) {
      int len = FormatValue(buf, sizeof(buf), k, j);
      v.emplace_back(Str(buf, static_cast<size_t>(len)));
    }
  }
}

// Checks every entry; returns "" or what is wrong.
template <typename Map>
std::string Verify(const Map& m, int32_t keys) {
  if (m.size() != static_cast<size_t>(keys)) {
    return "map has " + std::to_string(m.size()) + " keys, expected " + std::to_string(keys);
  }
  char buf[64];
  int32_t expect = 0;
  for (const auto& [k, v] : m) {
    if (k != expect) return "key " + std::to_string(k) + " where " + std::to_string(expect) + " was expected";
    if (v.size() != static_cast<size_t>(ValuesFor(k))) return "key " + std::to_string(k) + ": wrong value count";
    for (int j = 0; j < ValuesFor(k); ++j) {
      int len = FormatValue(buf, sizeof(buf), k, j);
      if (std::string_view(v[j].data(), v[j].size()) != std::string_view(buf, static_cast<size_t>(len))) {
        return "key " + std::to_string(k) + " value " + std::to_string(j) + " differs";
      }
    }
    ++expect;
  }
  return "";
}

}  // namespace csm::workload
