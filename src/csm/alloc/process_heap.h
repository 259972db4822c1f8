// ProcessHeap: a client process's arenas, cut into chunks for its Builders.
//
// csmd hands each process arenas (memfds it alone may write). Builders on any thread ask
// this heap for chunks; a chunk is then bumped through by one thread without locks
// (csm::allocator). Requests of at least a quarter of an arena get an arena of their
// own ("dedicated"), so a multi-GiB object is one extent and its memory returns to the
// node as soon as it is deleted.
//
// An arena that can give no more chunks is handed back to csmd once no Builder still
// writes into it; csmd frees it when its last object is deleted and unpinned.
//
// Thread-safety: all methods may be called from any thread (one mutex, slow path only).
#pragma once

#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "csm/status.h"

namespace csm::alloc {

// Grants and takes back arenas; implemented by the client over the csmd socket.
class ArenaSource {
 public:
  struct Grant {
    uint64_t arena_id;
    uint64_t addr;
    uint64_t size;
  };
  virtual ~ArenaSource() = default;
  // A writable arena of at least min_size bytes, already mapped at grant.addr.
  virtual Result<Grant> AllocateArena(uint64_t min_size, bool dedicated) = 0;
  // This process will write no more into the arena.
  virtual void ReleaseArena(uint64_t arena_id) = 0;
};

struct Chunk {
  uint64_t arena_id;
  uint64_t addr;
  uint64_t size;
};

class ProcessHeap {
 public:
  ProcessHeap(ArenaSource* source, uint64_t arena_size);
  ~ProcessHeap();  // releases every arena
  ProcessHeap(const ProcessHeap&) = delete;
  ProcessHeap& operator=(const ProcessHeap&) = delete;

  // A chunk of at least min_size bytes, preferably `preferred` bytes.
  Result<Chunk> Carve(uint64_t min_size, uint64_t preferred);
  // The Builder that held the chunk is done with it (committed or abandoned).
  void Done(const Chunk& chunk);

  uint64_t arena_size() const { return arena_size_; }
  uint64_t dedicated_threshold() const { return arena_size_ / 4; }

 private:
  struct ArenaState {
    uint64_t addr;
    uint64_t size;
    uint64_t used;         // bytes carved so far
    uint32_t outstanding;  // chunks not yet Done
    bool exhausted;        // no more chunks will be cut from it
  };
  void MaybeRelease(uint64_t arena_id, ArenaState& arena);

  ArenaSource* source_;
  const uint64_t arena_size_;
  std::mutex mu_;
  std::unordered_map<uint64_t, ArenaState> arenas_;
  uint64_t current_ = 0;  // arena id chunks are cut from; 0 = none
};

}  // namespace csm::alloc
