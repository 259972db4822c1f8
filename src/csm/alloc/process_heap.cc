// ProcessHeap; see process_heap.h.
#include "csm/alloc/process_heap.h"

#include <algorithm>

namespace csm::alloc {
namespace {
constexpr uint64_t kChunkAlign = 4096;
uint64_t RoundUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
}  // namespace

ProcessHeap::ProcessHeap(ArenaSource* source, uint64_t arena_size)
    : source_(source), arena_size_(arena_size) {}

ProcessHeap::~ProcessHeap() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [id, arena] : arenas_) source_->ReleaseArena(id);
  arenas_.clear();
}

Result<Chunk> ProcessHeap::Carve(uint64_t min_size, uint64_t preferred) {
  min_size = RoundUp(std::max<uint64_t>(min_size, 1), kChunkAlign);
  preferred = RoundUp(std::max(preferred, min_size), kChunkAlign);
  std::lock_guard<std::mutex> lock(mu_);
  if (min_size >= dedicated_threshold()) {
    CSM_ASSIGN_OR_RETURN(auto grant, source_->AllocateArena(min_size, /*dedicated=*/true));
    arenas_[grant.arena_id] = ArenaState{grant.addr, grant.size, grant.size, 1, true};
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
  CSM_ASSIGN_OR_RETURN(auto grant, source_->AllocateArena(arena_size_, /*dedicated=*/false));
  current_ = grant.arena_id;
  uint64_t size = std::min(preferred, grant.size);
  arenas_[grant.arena_id] = ArenaState{grant.addr, grant.size, size, 1, false};
  return Chunk{grant.arena_id, grant.addr, size};
}

void ProcessHeap::Done(const Chunk& chunk) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = arenas_.find(chunk.arena_id);
  if (it == arenas_.end()) return;
  --it->second.outstanding;
  MaybeRelease(chunk.arena_id, it->second);
}

void ProcessHeap::MaybeRelease(uint64_t arena_id, ArenaState& arena) {
  if (!arena.exhausted || arena.outstanding != 0) return;
  source_->ReleaseArena(arena_id);
  arenas_.erase(arena_id);
}

}  // namespace csm::alloc
