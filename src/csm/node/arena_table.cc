// ArenaTable; see arena_table.h.
#include "csm/node/arena_table.h"

#include <algorithm>
#include <iterator>
#include <utility>

namespace csm::node {

Arena& ArenaTable::Add(uint64_t addr, uint64_t size, os::UniqueFd fd, uint64_t id) {
  if (id == 0) {
    id = next_id_++;
  } else {
    next_id_ = std::max(next_id_, id + 1);
  }
  Arena& a = arenas_[id];
  a.id = id;
  a.seq = next_seq_++;
  a.addr = addr;
  a.size = size;
  a.fd = std::move(fd);
  by_addr_[addr] = id;
  by_seq_[a.seq] = id;
  return a;
}

void ArenaTable::Remove(uint64_t id) {
  auto it = arenas_.find(id);
  if (it == arenas_.end()) return;
  by_addr_.erase(it->second.addr);
  by_seq_.erase(it->second.seq);
  arenas_.erase(it);
}

Arena* ArenaTable::Find(uint64_t id) {
  auto it = arenas_.find(id);
  return it == arenas_.end() ? nullptr : &it->second;
}

Arena* ArenaTable::At(uint64_t addr) {
  auto it = by_addr_.upper_bound(addr);
  if (it == by_addr_.begin()) return nullptr;
  Arena& a = arenas_.at(std::prev(it)->second);
  return addr - a.addr < a.size ? &a : nullptr;
}

Arena* ArenaTable::FirstOverlapping(uint64_t addr, uint64_t size) {
  auto it = by_addr_.upper_bound(addr);
  if (it != by_addr_.begin()) {
    Arena& prev = arenas_.at(std::prev(it)->second);
    if (prev.addr + prev.size > addr) return &prev;
  }
  if (it != by_addr_.end() && it->first < addr + size) return &arenas_.at(it->second);
  return nullptr;
}

}  // namespace csm::node
