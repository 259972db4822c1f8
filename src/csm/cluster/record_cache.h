// RecordCache: a node's copy of the cluster's object records, kept current by the
// directory pushing every change (the embedded coordinator's watch), so that a Get of a
// remote object usually needs no directory round trip (docs/cluster.md).
//
// The cache only ever answers "here is the record": a key it does not hold is asked of
// the directory. A record it holds may be a moment stale (a change on its way), so a
// fetch that fails with a cached record is retried once with the directory's answer.
// When the push stream breaks or falls behind, the whole cache is cleared.
//
// A record the directory answered a lookup with is kept too (KeepAnswer), unless the
// push stream changed its key (or was cleared) after the lookup was sent: the answer
// may then be older than what the stream said, e.g. a delete that overtook it.
//
// Thread-safety: internally locked.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "csm/cluster/cluster_directory.h"

namespace csm::cluster {

class RecordCache {
 public:
  // At most `capacity` records; past it, the one put longest ago goes first.
  explicit RecordCache(size_t capacity) : capacity_(capacity) {}

  // The record under `key` (with `cached` set), counting a hit or a miss.
  std::optional<ObjectRecord> Find(const std::string& key);
  // Changes pushed by the directory.
  void Put(ObjectRecord record);
  void Erase(const std::string& key);
  void Clear();

  // Taken before asking the directory; KeepAnswer then keeps its answer only if the
  // pushes applied since did not touch that key.
  uint64_t Mark() const;
  void KeepAnswer(ObjectRecord record, uint64_t mark);

  RecordCacheStats stats() const;

 private:
  struct Entry {
    ObjectRecord record;
    uint64_t seq;      // when it was put: its place in order_
    uint64_t changed;  // changes_ when the stream last put it (0: a kept answer)
  };
  void Insert(ObjectRecord record, uint64_t changed);  // mu_ held
  bool ChangedSince(const std::string& key, uint64_t mark) const;  // mu_ held

  const size_t capacity_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> records_;
  std::map<uint64_t, std::string> order_;  // seq → key, oldest first
  uint64_t next_seq_ = 0;
  // Every pushed change counts one. Erased keys are remembered with their count (the
  // last `capacity_` of them); a mark older than anything forgotten keeps no answer.
  uint64_t changes_ = 0;
  std::unordered_map<std::string, uint64_t> erased_;
  std::map<uint64_t, std::string> erased_order_;  // count → key, oldest first
  uint64_t forgotten_ = 0;  // the newest change no longer known key by key
  uint64_t hits_ = 0, misses_ = 0;
};

}  // namespace csm::cluster
