// ObjectTable; see object_table.h.
#include "csm/node/object_table.h"

#include <utility>

namespace csm::node {

Object& ObjectTable::Insert(Object o) {
  const uint64_t id = o.id;
  keys_[o.key] = id;
  return objects_.insert_or_assign(id, std::move(o)).first->second;
}

Object* ObjectTable::Live(const std::string& key) {
  auto it = keys_.find(key);
  return it == keys_.end() ? nullptr : &objects_.at(it->second);
}

Object* ObjectTable::LiveById(uint64_t id) {
  auto it = objects_.find(id);
  return it == objects_.end() || it->second.deleted ? nullptr : &it->second;
}

Object* ObjectTable::Unlist(const std::string& key) {
  auto it = keys_.find(key);
  if (it == keys_.end()) return nullptr;
  Object& o = objects_.at(it->second);
  keys_.erase(it);
  o.deleted = true;
  waiting_.insert(o.id);
  return &o;
}

void ObjectTable::Erase(uint64_t id) {
  waiting_.erase(id);
  objects_.erase(id);
}

}  // namespace csm::node
