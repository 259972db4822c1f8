// ObjectTable: the objects csmd holds — live ones by key, and deleted ones that wait for
// their last reader to let go before their memory is reclaimed.
//
// An object is live from Insert until Unlist (a delete, a copy dropped or evicted); it is
// then no longer found by key but stays here, waiting, until the daemon sees no process
// pins it and Erases it. Ids are never reused (not even by the node's next incarnation:
// the first id is given at construction).
//
// Owner: the daemon's event loop. Thread-safety: none (the loop only).
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "csm/node/object.h"

namespace csm::node {

class ObjectTable {
 public:
  explicit ObjectTable(uint64_t first_id) : next_id_(first_id) {}

  uint64_t NewId() { return next_id_++; }
  // `o` becomes live under o.key (which no live object holds).
  Object& Insert(Object o);
  // The live object under `key`, or null.
  Object* Live(const std::string& key);
  bool IsLive(const std::string& key) const { return keys_.count(key) != 0; }
  // The live object with id `id`, or null (deleted, reclaimed or never here).
  Object* LiveById(uint64_t id);
  // Live or deleted-and-waiting, by id; null if erased or never here.
  Object* Find(uint64_t id) {
    auto it = objects_.find(id);
    return it == objects_.end() ? nullptr : &it->second;
  }
  Object& at(uint64_t id) { return objects_.at(id); }
  const Object& at(uint64_t id) const { return objects_.at(id); }
  // Takes the object under `key` off its key (marked deleted); it waits for Erase. Null
  // if no object is live under it.
  Object* Unlist(const std::string& key);
  // Forgets a deleted object (its memory was reclaimed).
  void Erase(uint64_t id);

  size_t live() const { return keys_.size(); }
  // Deleted objects not yet erased, by id.
  const std::set<uint64_t>& waiting() const { return waiting_; }

  // fn(const Object&) for every live object, in no order.
  template <typename Fn>
  void ForEachLive(Fn&& fn) const {
    for (const auto& [key, id] : keys_) fn(objects_.at(id));
  }

 private:
  std::unordered_map<uint64_t, Object> objects_;    // by id: live and waiting
  std::unordered_map<std::string, uint64_t> keys_;  // live key → id
  std::set<uint64_t> waiting_;                      // deleted, waiting for their last pin
  uint64_t next_id_;
};

}  // namespace csm::node
