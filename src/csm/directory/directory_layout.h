// The node's key → object table in shared memory, and the per-process pin slots.
//
// csmd alone writes the table; every client maps it read-only and looks keys up without
// a round trip to the daemon (a seqlock per slot). Pins are the other way round: each
// client writes its own pin table, csmd reads them all before it frees an object.
// Changing any struct here changes the node's shared format: bump kDirectoryLayoutVersion.
// Documented in docs/heap_layout.md.
#pragma once

#include <atomic>
#include <cstdint>
#include <type_traits>

#include "csm/key.h"

namespace csm::directory {

inline constexpr uint32_t kDirectoryMagic = 0x44534d43;  // "CMSD"
inline constexpr uint16_t kDirectoryLayoutVersion = 3;
inline constexpr uint32_t kMaxKeyLength = csm::kMaxKeyLength;  // csm/key.h

enum class SlotState : uint8_t { kEmpty = 0, kLive = 1, kTombstone = 2 };
// SlotData::flags: what the node has learned about the object since its commit.
// Arrow's full validation ran on its bytes: by its producer (ObjectHeader's
// kFlagArrowValidated, also for copies on other nodes) or by a reader on this node.
inline constexpr uint8_t kSlotArrowValidated = 1;
// On a tombstone: the deleted object's memory was reclaimed (its addresses may hold
// other objects now): a restarted csmd does not take it back.
inline constexpr uint8_t kSlotReclaimed = 2;
// On a live slot: the object's bytes are in csmd's spill directory, not in memory. A
// reader asks csmd to restore it (Resolve) before pinning it; csmd sets the flag before
// it looks for pins, a reader re-reads the slot after pinning (as for a tombstone).
inline constexpr uint8_t kSlotSpilled = 4;
// On a live slot: a lazy copy whose bytes are still arriving (docs/lazy.md). A reader
// registers its pages for csmd to serve their faults (LazyWatch) before touching them,
// or asks csmd to wait for the whole copy (Resolve). Cleared when every byte arrived.
inline constexpr uint8_t kSlotLazy = 8;

// Everything a reader needs to use an object: the local descriptor. Copied out of a slot
// word by word under the slot's seqlock.
struct SlotData {
  uint64_t object_id;      // unique per node, never reused; 0 in empty slots
  uint64_t key_hash;       // Hash64(key)
  uint64_t type_id;        // TypeInfo<T>::Id() of the root
  uint64_t header;         // address of the ObjectHeader
  uint64_t root;           // address of the root value
  uint64_t data_size;      // bytes of all extents
  uint64_t checksum;       // XXH3-64 of the extents (see ObjectHeader)
  uint64_t arena_seq_max;  // newest arena the object touches (readers map up to it)
  int64_t commit_time_ns;  // CLOCK_REALTIME at commit
  uint32_t owner_node;     // node whose segments hold the bytes
  uint8_t state;           // SlotState
  uint8_t flags;           // kSlot* bits
  uint16_t key_length;
  char key[kMaxKeyLength];
};
static_assert(std::is_trivially_copyable_v<SlotData> && sizeof(SlotData) == 248);
static_assert(sizeof(SlotData) % 8 == 0);

struct DirectorySlot {
  std::atomic<uint64_t> seq;  // seqlock: odd while csmd rewrites the slot
  uint64_t words[sizeof(SlotData) / 8];
};
static_assert(sizeof(DirectorySlot) == 256 && std::atomic<uint64_t>::is_always_lock_free);

// Page 0 of the directory memfd; slots follow at kSlotsOffset.
struct DirectoryHeader {
  uint32_t magic;
  uint16_t layout_version;
  uint16_t reserved;
  uint32_t capacity;   // slots, a power of two
  uint32_t node_id;
  std::atomic<uint64_t> arena_seq;        // newest arena's sequence number
  // Futex word, bumped and woken on every commit and every arena freed: `Get` with a
  // timeout and each client's mapper thread sleep on it.
  std::atomic<uint32_t> change_counter;
  uint32_t reserved2;
  std::atomic<uint64_t> live_objects;
  std::atomic<uint64_t> arenas_freed;     // arenas destroyed so far (clients unmap them)
};
static_assert(std::is_standard_layout_v<DirectoryHeader> && sizeof(DirectoryHeader) == 48);
static_assert(std::atomic<uint32_t>::is_always_lock_free);

// Also in page 0, at kLivenessOffset: a process-shared robust pthread mutex that csmd's
// serving thread holds for as long as it serves. When csmd dies, however it dies, the
// kernel marks the mutex's futex word FUTEX_OWNER_DIED before the process is gone
// (robust futexes, Documentation/locking/robust-futex-ABI); a clean stop unlocks it.
// Clients read that word (glibc keeps it first in pthread_mutex_t) on every Get, so a
// client never answers from the directory of a csmd that is gone.
inline constexpr uint64_t kLivenessOffset = 2048;

inline constexpr uint64_t kSlotsOffset = 4096;
// Slots for a node of max_objects objects: twice as many, so the table (which refuses
// inserts past 7/8 full to keep probes short) always has room for max_objects live ones.
inline uint32_t DirectorySlots(uint32_t max_objects) { return max_objects * 2; }
inline uint64_t DirectoryBytes(uint32_t capacity) {
  return kSlotsOffset + uint64_t{capacity} * sizeof(DirectorySlot);
}

// One pinned object of one process. object_id 0 = free.
struct PinEntry {
  std::atomic<uint64_t> object_id;
  std::atomic<uint64_t> count;  // informational (csm stat); the entry itself is the pin
};
static_assert(sizeof(PinEntry) == 16);

// After a process's pin table, in the same memfd: the directory slots of its latest
// Gets, a ring it alone writes and csmd reads when it chooses what to spill (the least
// recently used first). Lossy by design: only the latest kAccessRing Gets count.
inline constexpr uint32_t kAccessRing = 1024;
struct AccessRing {
  std::atomic<uint64_t> head;  // Gets recorded so far; the next goes at head % kAccessRing
  uint64_t reserved[7];
  std::atomic<uint32_t> slots[kAccessRing];
};
static_assert(sizeof(AccessRing) == 64 + 4 * kAccessRing);
// The bytes of a pin table of `pins` entries with its access ring.
inline uint64_t PinTableBytes(uint32_t pins) {
  return (uint64_t{pins} * sizeof(PinEntry) + 63) / 64 * 64 + sizeof(AccessRing);
}
inline AccessRing* AccessRingOf(void* pin_table, uint32_t pins) {
  return reinterpret_cast<AccessRing*>(static_cast<char*>(pin_table) + PinTableBytes(pins) - sizeof(AccessRing));
}

}  // namespace csm::directory
