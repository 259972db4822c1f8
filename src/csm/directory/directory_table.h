// DirectoryTable: open-addressing hash table over the shared directory memory.
//
// Writer side (csmd only, one thread): Insert, MarkDeleted, AddFlags, ClearFlags. Reader side (any process,
// any thread, lock-free): Find, ReadSlot. Each slot is guarded by a seqlock; readers copy
// the slot word by word with relaxed atomics and retry if the sequence moved, so they
// never block the writer and never see a torn slot.
//
// The memory is borrowed (a mapping owned by the caller). Bytes in it are trusted only
// as far as the mapping is: clients map it read-only from csmd.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "csm/directory/directory_layout.h"
#include "csm/status.h"

namespace csm::directory {

class DirectoryTable {
 public:
  // `memory` holds DirectoryBytes(capacity) bytes. Init() formats it (writer only).
  DirectoryTable(void* memory, uint32_t capacity);
  void Init(uint32_t node_id);
  // Checks a mapping received from csmd before using it.
  Status Validate() const;

  DirectoryHeader& header() const { return *header_; }

  // Writer: csmd's serving thread holds the liveness lock while it serves (see
  // kLivenessOffset); InitLiveness() once, from Init's caller, before any Hold.
  Status InitLiveness();
  Status HoldLiveness();
  void ReleaseLiveness();
  // Reader: whether the csmd that wrote this table still serves it (a load, no call).
  bool WriterAlive() const { return WriterTid() != 0; }
  // The thread id of the csmd serving this table, 0 if none does (a new csmd taking the
  // table over has another).
  uint32_t WriterTid() const;
  uint32_t capacity() const { return capacity_; }

  struct Found {
    uint32_t index;
    SlotData data;
  };
  // The live slot for key, if any.
  std::optional<Found> Find(std::string_view key) const;
  // A consistent copy of slot `index`.
  SlotData ReadSlot(uint32_t index) const;

  // Writer: stores a new live entry, in an empty slot or a tombstone whose memory was
  // reclaimed (MarkReclaimed). AlreadyExists if the key is live; CapacityExceeded when
  // the table is 7/8 full.
  Result<uint32_t> Insert(const SlotData& data);
  // Writer: turns a live slot into a tombstone.
  void MarkDeleted(uint32_t index);
  // Writer: the tombstone at `index`, if it is still object_id's, says its memory was
  // reclaimed (kSlotReclaimed).
  void MarkReclaimed(uint32_t index, uint64_t object_id);
  // Writer, taking over a table an earlier writer left (a restarted csmd): counts its
  // slots again (live ones into the header's live_objects).
  void Recount();
  // Adds `flags` (kSlot* bits) to a live slot's.
  void AddFlags(uint32_t index, uint8_t flags);
  // Takes `flags` off a live slot's.
  void ClearFlags(uint32_t index, uint8_t flags);

 private:
  void WriteSlot(uint32_t index, const SlotData& data);
  DirectorySlot& slot(uint32_t i) const { return slots_[i]; }

  DirectoryHeader* header_;
  DirectorySlot* slots_;
  uint32_t capacity_;
  uint32_t used_ = 0;  // writer only: live + tombstones
};

bool KeyEquals(const SlotData& d, std::string_view key);

}  // namespace csm::directory
