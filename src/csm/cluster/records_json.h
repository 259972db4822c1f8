// JSON forms of NodeInfo and ObjectRecord, shared by the cluster-directory backends
// (the coordinator's messages, etcd's values). Decoding treats the text as untrusted:
// any missing or mistyped field is Corruption, never an exception.
#pragma once

#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>

#include "csm/cluster/cluster_directory.h"

namespace csm::cluster {

// An integer field of a peer's JSON, read strictly: a JSON integer that T holds. Throws
// nlohmann::json's type_error for anything else (a float, a string) and its out_of_range
// for a value T cannot hold (a negative count, a node id past 32 bits), which the decoders
// turn into Corruption. nlohmann's own get<T>() would convert a float (undefined
// behaviour when out of range) or wrap a negative number.
template <typename T>
T Integer(const nlohmann::json& j) {
  static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>);
  if (!j.is_number_integer()) {
    throw nlohmann::json::type_error::create(302, std::string("an integer was expected, not ") + j.type_name(), &j);
  }
  const bool fits = j.is_number_unsigned()
                        ? j.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max())
                        : std::is_signed_v<T> && j.get<int64_t>() >= static_cast<int64_t>(std::numeric_limits<T>::min());
  if (!fits) throw nlohmann::json::out_of_range::create(406, "integer " + j.dump() + " out of range", &j);
  return j.get<T>();
}
// Integer<T>(j[key]), or `absent` if j has no such key.
template <typename T>
T IntegerOr(const nlohmann::json& j, const char* key, T absent) {
  return j.contains(key) ? Integer<T>(j.at(key)) : absent;
}

std::string Describe(const WindowConfig& w);  // "base 0x…, size …, segments of …"
nlohmann::json ToJson(const NodeInfo& n);
Result<NodeInfo> NodeFromJson(const nlohmann::json& j);
nlohmann::json ToJson(const ObjectRecord& r);
Result<ObjectRecord> RecordFromJson(const nlohmann::json& j);

}  // namespace csm::cluster
