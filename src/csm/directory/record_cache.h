// RecordCache: a node's copy of the cluster's object records, kept current by the
// directory pushing every change (the embedded coordinator's watch), so that a Get of a
// remote object usually needs no directory round trip (docs/cluster.md).
//
// The cache only ever answers "here is the record": a key it does not hold is asked of
// the directory. A record it holds may be a moment stale (a change on its way), so a
// fetch that fails with a cached record is retried once with the directory's answer.
// When the push stream breaks or falls behind, the whole cache is cleared.
//
// Thread-safety: internally locked.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "csm/directory/cluster_directory.h"

namespace csm::directory {

class RecordCache {
 public:
  // At most `capacity` records; past it, the one put longest ago goes first.
  explicit RecordCache(size_t capacity) : capacity_(capacity) {}

  // The record under `key` (with `cached` set), counting a hit or a miss.
  std::optional<ObjectRecord> Find(const std::string& key);
  void Put(ObjectRecord record);
  void Erase(const std::string& key);
  void Clear();

  RecordCacheStats stats() const;

 private:
  struct Entry {
    ObjectRecord record;
    uint64_t seq;  // when it was put: its place in order_
  };
  const size_t capacity_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> records_;
  std::map<uint64_t, std::string> order_;  // seq → key, oldest first
  uint64_t next_seq_ = 0;
  uint64_t hits_ = 0, misses_ = 0;
};

}  // namespace csm::directory
