// ProcessHeap; see process_heap.h.
#include "csm/alloc/process_heap.h"

#include <algorithm>
#include <iterator>

namespace csm::alloc {
namespace {
uint64_t RoundUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
}  // namespace

ProcessHeap::ProcessHeap(ArenaSource* source, uint64_t arena_size, uint64_t page_size)
    : source_(source), arena_size_(arena_size), page_(page_size) {}

ProcessHeap::~ProcessHeap() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [id, arena] : arenas_) source_->ReleaseArena(id);
  arenas_.clear();
}

uint64_t ProcessHeap::next_arena_size() const {
  uint64_t size = kFirstArena;
  for (uint64_t i = 0; i < shared_arenas_ && size < arena_size_; ++i) size *= 2;
  return std::min(size, arena_size_);
}

Result<Chunk> ProcessHeap::Carve(uint64_t min_size, uint64_t preferred, bool overwritten) {
  min_size = RoundUp(std::max<uint64_t>(min_size, 1), kChunkAlign);
  preferred = RoundUp(std::max(preferred, min_size), kChunkAlign);
  std::lock_guard<std::mutex> lock(mu_);
  if (min_size >= dedicated_threshold()) {
    CSM_ASSIGN_OR_RETURN(auto grant, source_->AllocateArena(min_size, overwritten ? ArenaUse::kDedicatedOverwritten
                                                                                  : ArenaUse::kDedicated));
    arenas_[grant.arena_id] = ArenaState{grant.addr, grant.size, grant.size, 1, true, {}};
    return Chunk{grant.arena_id, grant.addr, grant.size};
  }
  preferred = std::min(preferred, dedicated_threshold());
  if (current_ != 0) {
    ArenaState& arena = arenas_[current_];
    uint64_t left = arena.size - arena.used;
    if (left >= min_size) {
      uint64_t size = std::min(preferred, left);
      Chunk chunk{current_, arena.addr + arena.used, size};
      arena.used += size;
      ++arena.outstanding;
      return chunk;
    }
    arena.exhausted = true;
    uint64_t id = current_;
    current_ = 0;
    MaybeRelease(id, arena);
  }
  const uint64_t wanted = std::max(next_arena_size(), RoundUp(min_size, kFirstArena));
  CSM_ASSIGN_OR_RETURN(auto grant, source_->AllocateArena(wanted, ArenaUse::kShared));
  ++shared_arenas_;
  current_ = grant.arena_id;
  uint64_t size = std::min(preferred, grant.size);
  arenas_[grant.arena_id] = ArenaState{grant.addr, grant.size, size, 1, false, {}};
  return Chunk{grant.arena_id, grant.addr, size};
}

std::vector<PageRange> ProcessHeap::Done(const Chunk& chunk, uint64_t used_end, bool small) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = arenas_.find(chunk.arena_id);
  if (it == arenas_.end()) return {};
  ArenaState& arena = it->second;
  --arena.outstanding;
  uint64_t end = chunk.addr + chunk.size;
  used_end = std::clamp(RoundUp(used_end, small ? kChunkAlign : page_), chunk.addr, end);
  // Nothing carved after it: the unused tail goes back for the next chunk.
  if (!arena.exhausted && chunk.arena_id == current_ && arena.addr + arena.used == end) {
    arena.used = used_end - arena.addr;
    end = used_end;
  }
  std::vector<PageRange> sealable = MarkDone(arena, chunk.addr, end);
  MaybeRelease(chunk.arena_id, arena);
  return sealable;
}

std::vector<PageRange> ProcessHeap::MarkDone(ArenaState& arena, uint64_t start, uint64_t end) {
  if (start >= end) return {};
  // Merge [start, end) with the done ranges it touches.
  uint64_t lo = start, hi = end;
  auto it = arena.done.upper_bound(start);
  if (it != arena.done.begin() && std::prev(it)->second >= start) --it;
  while (it != arena.done.end() && it->first <= end) {
    lo = std::min(lo, it->first);
    hi = std::max(hi, it->second);
    it = arena.done.erase(it);
  }
  arena.done[lo] = hi;
  // The whole pages of the merged range that [start, end) made whole: at most its own
  // pages and the two it shares with its neighbours.
  const uint64_t first = std::max(RoundUp(lo, page_), start / page_ * page_);
  const uint64_t last = std::min(hi / page_ * page_, RoundUp(end, page_));
  if (first >= last) return {};
  return {PageRange{first, last - first}};
}

std::vector<uint64_t> ProcessHeap::ArenaIds() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<uint64_t> ids;
  for (const auto& [id, arena] : arenas_) ids.push_back(id);
  return ids;
}

void ProcessHeap::Forget(const std::vector<uint64_t>& arena_ids) {
  std::lock_guard<std::mutex> lock(mu_);
  for (uint64_t id : arena_ids) {
    arenas_.erase(id);
    if (current_ == id) current_ = 0;
  }
}

void ProcessHeap::MaybeRelease(uint64_t arena_id, ArenaState& arena) {
  if (!arena.exhausted || arena.outstanding != 0) return;
  source_->ReleaseArena(arena_id);
  arenas_.erase(arena_id);
}

}  // namespace csm::alloc
