// The demo/test/benchmark workload: the JVM global-heap paper's TreeMap<Integer,
// String[]>, as map<int32, vector<string>>. Key k holds k % 4 + 1 strings
// "value-<k>-<j>-…" of 16 to 30 bytes (past the small-string buffer, so every string
// is a separate heap allocation, as in Java).
#pragma once

#include <array>
#include <cstdio>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "csm/compact_containers.h"
#include "csm/containers.h"

namespace csm::workload {

using HeapMap = csm::map<int32_t, csm::vector<csm::string>>;
using StdMap = std::map<int32_t, std::vector<std::string>>;
// The same data in compact containers: one sorted array of entries, strings up to 23
// bytes inline (csm/compact_containers.h).
using CompactMap = csm::flat_map<int32_t, csm::compact_vector<csm::compact_string>>;

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
  if constexpr (requires { m.reserve(size_t{1}); }) m.reserve(static_cast<size_t>(keys));
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

// A user struct made of heap containers, registered for the heap.
struct Trade {
  int64_t id;
  double price;
  csm::string venue;
  csm::vector<int32_t> fills;
};

using TradeBook = csm::unordered_map<csm::string, csm::vector<Trade>>;

// Venue v gets v + 1 trades; trade t of venue v has t % 5 fills.
inline void FillBook(TradeBook& book, int venues) {
  char name[32];
  for (int v = 0; v < venues; ++v) {
    int n = std::snprintf(name, sizeof(name), "venue-%04d-long-name", v);
    auto& trades = book[csm::string(name, static_cast<size_t>(n))];
    for (int t = 0; t <= v; ++t) {
      Trade& trade = trades.emplace_back();
      trade.id = v * 1000 + t;
      trade.price = v + t / 8.0;
      trade.venue = csm::string(name, static_cast<size_t>(n));
      for (int f = 0; f < t % 5; ++f) trade.fills.push_back(f * 10 + t);
    }
  }
}

// Looks every venue up by string_view (no allocation in the reader) and checks it.
inline std::string VerifyBook(const TradeBook& book, int venues) {
  if (book.size() != static_cast<size_t>(venues)) return "wrong venue count";
  char name[32];
  for (int v = 0; v < venues; ++v) {
    int n = std::snprintf(name, sizeof(name), "venue-%04d-long-name", v);
    std::string_view key(name, static_cast<size_t>(n));
    auto it = book.find(key);
    if (it == book.end()) return "venue " + std::string(key) + " missing";
    if (it->second.size() != static_cast<size_t>(v + 1)) return "wrong trade count";
    for (int t = 0; t <= v; ++t) {
      const Trade& trade = it->second[t];
      if (trade.id != v * 1000 + t || trade.price != v + t / 8.0 || csm::view(trade.venue) != key ||
          trade.fills.size() != static_cast<size_t>(t % 5)) {
        return "trade " + std::to_string(v * 1000 + t) + " differs";
      }
      for (int f = 0; f < t % 5; ++f) {
        if (trade.fills[f] != f * 10 + t) return "fill differs";
      }
    }
  }
  return "";
}

// A small object, as caches and shuffles commit by the hundred thousand: 248 bytes.
using SmallObject = std::array<uint8_t, 248>;
inline void FillSmall(SmallObject& o, long i) {
  for (size_t j = 0; j < o.size(); ++j) o[j] = static_cast<uint8_t>(i * 31 + static_cast<long>(j));
}
inline bool VerifySmall(const SmallObject& o, long i) {
  for (size_t j = 0; j < o.size(); ++j) {
    if (o[j] != static_cast<uint8_t>(i * 31 + static_cast<long>(j))) return false;
  }
  return true;
}

}  // namespace csm::workload

CSM_REGISTER_TYPE(csm::workload::Trade, 1, id, price, venue, fills)
