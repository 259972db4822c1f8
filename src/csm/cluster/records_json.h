// JSON forms of NodeInfo and ObjectRecord, shared by the cluster-directory backends
// (the coordinator's messages, etcd's values). Decoding treats the text as untrusted:
// any missing or mistyped field is Corruption, never an exception.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "csm/cluster/cluster_directory.h"

namespace csm::cluster {

std::string Describe(const WindowConfig& w);  // "base 0x…, size …, segments of …"
nlohmann::json ToJson(const NodeInfo& n);
Result<NodeInfo> NodeFromJson(const nlohmann::json& j);
nlohmann::json ToJson(const ObjectRecord& r);
Result<ObjectRecord> RecordFromJson(const nlohmann::json& j);

}  // namespace csm::cluster
