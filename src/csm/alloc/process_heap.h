// ProcessHeap: a client process's arenas, cut into chunks for its Builders.
//
// csmd hands each process arenas (memfds it alone may write). Builders on any thread ask
// this heap for chunks; a chunk is then bumped through by one thread without locks
// (csm::allocator). Requests of at least a quarter of the largest arena get an arena of
// their own ("dedicated"), so a multi-GiB object is one extent and its memory returns to
// the node as soon as it is deleted.
//
// Small objects are packed (docs/heap_layout.md, "Small objects"):
//   - arenas grow: a process's first shared arena is 2 MiB, each next one twice the last,
//     up to the node's arena_size, so a process that builds a few small objects holds
//     2 MiB of the node's capacity, not 64 MiB;
//   - chunks are cache-line aligned, not page aligned, and a Builder done with its chunk
//     gives back the unused tail when nothing was carved after it, so the next object
//     starts right after the last one: a 248-byte object takes 384 bytes, not a page.
//     Objects of a page or more give back only from the next page boundary.
// Done reports the pages that every chunk on them is now done with: the Builder seals
// them read-only. An object of a page or more is sealed whole at commit; a smaller one's
// last page is sealed once every object on it is committed or abandoned.
//
// An arena that can give no more chunks is handed back to csmd once no Builder still
// writes into it; csmd frees it when its last object is deleted and unpinned.
//
// Thread-safety: all methods may be called from any thread (one mutex, slow path only).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "csm/status.h"

namespace csm::alloc {

// What an arena is asked for: shared by a process's small allocations, or one large
// allocation's own; kDedicatedOverwritten: one the caller writes wholly before anyone
// reads it (Builder::ExpectOverwrite), so it may be memory a deleted object left, not yet
// zeroed (only bytes past the allocation are cleared).
enum class ArenaUse : uint8_t { kShared = 0, kDedicated = 1, kDedicatedOverwritten = 2 };

// Grants and takes back arenas; implemented by the client over the csmd socket.
class ArenaSource {
 public:
  struct Grant {
    uint64_t arena_id;
    uint64_t addr;
    uint64_t size;
  };
  virtual ~ArenaSource() = default;
  // A writable arena of at least min_size bytes, already mapped at grant.addr. A shared
  // (not dedicated) arena is min_size rounded up to 2 MiB, at most the node's arena_size.
  virtual Result<Grant> AllocateArena(uint64_t min_size, ArenaUse use) = 0;
  // This process will write no more into the arena.
  virtual void ReleaseArena(uint64_t arena_id) = 0;
};

struct Chunk {
  uint64_t arena_id;
  uint64_t addr;
  uint64_t size;
};

// [addr, addr + size): whole pages.
struct PageRange {
  uint64_t addr;
  uint64_t size;
};

class ProcessHeap {
 public:
  static constexpr uint64_t kChunkAlign = 64;           // a cache line
  static constexpr uint64_t kFirstArena = 2ULL << 20;   // then doubling to arena_size
  ProcessHeap(ArenaSource* source, uint64_t arena_size, uint64_t page_size = 4096);
  ~ProcessHeap();  // releases every arena
  ProcessHeap(const ProcessHeap&) = delete;
  ProcessHeap& operator=(const ProcessHeap&) = delete;

  // A chunk of at least min_size bytes, preferably `preferred` bytes. `overwritten`: the
  // caller writes all of min_size before anyone reads it (ArenaUse::kDedicatedOverwritten
  // if it gets an arena of its own).
  Result<Chunk> Carve(uint64_t min_size, uint64_t preferred, bool overwritten = false);
  // The Builder that held the chunk is done with it (committed or abandoned) and wrote
  // only [chunk.addr, used_end). The unused tail goes back from the next cache line if
  // the object is `small` (less than a page), else from the next page, so that every
  // page of a larger object is sealed at once. Returns the pages no chunk is being
  // written on any more, newly so: the caller may make them read-only.
  std::vector<PageRange> Done(const Chunk& chunk, uint64_t used_end, bool small);
  std::vector<PageRange> Done(const Chunk& chunk) { return Done(chunk, chunk.addr + chunk.size, false); }

  // The arenas this heap cuts chunks from (a process attached again to a restarted csmd
  // claims them back), and forgetting those it could not: no chunk is cut from them
  // again and csmd is not told (they are no longer this process's).
  std::vector<uint64_t> ArenaIds();
  void Forget(const std::vector<uint64_t>& arena_ids);

  uint64_t arena_size() const { return arena_size_; }
  uint64_t dedicated_threshold() const { return arena_size_ / 4; }
  // The size the next shared arena will be asked for.
  uint64_t next_arena_size() const;

 private:
  struct ArenaState {
    uint64_t addr;
    uint64_t size;
    uint64_t used;         // bytes carved so far
    uint32_t outstanding;  // chunks not yet Done
    bool exhausted;        // no more chunks will be cut from it
    std::map<uint64_t, uint64_t> done;  // start → end: merged ranges no Builder writes
  };
  std::vector<PageRange> MarkDone(ArenaState& arena, uint64_t start, uint64_t end);
  void MaybeRelease(uint64_t arena_id, ArenaState& arena);

  ArenaSource* source_;
  const uint64_t arena_size_;
  const uint64_t page_;
  std::mutex mu_;
  std::unordered_map<uint64_t, ArenaState> arenas_;
  uint64_t current_ = 0;       // arena id chunks are cut from; 0 = none
  uint64_t shared_arenas_ = 0;  // shared arenas taken so far (their sizes double)
};

}  // namespace csm::alloc
