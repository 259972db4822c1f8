// DirectoryTable; see directory_table.h.
#include "csm/directory/directory_table.h"

#include <linux/futex.h>
#include <pthread.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <thread>

#include "csm/base/hash.h"

namespace csm::directory {

bool KeyEquals(const SlotData& d, std::string_view key) {
  return d.key_length == key.size() && d.key_length <= kMaxKeyLength &&
         std::memcmp(d.key, key.data(), key.size()) == 0;
}

DirectoryTable::DirectoryTable(void* memory, uint32_t capacity)
    : header_(static_cast<DirectoryHeader*>(memory)),
      slots_(reinterpret_cast<DirectorySlot*>(static_cast<char*>(memory) + kSlotsOffset)),
      capacity_(capacity) {}

void DirectoryTable::Init(uint32_t node_id) {
  header_->magic = kDirectoryMagic;
  header_->layout_version = kDirectoryLayoutVersion;
  header_->capacity = capacity_;
  header_->node_id = node_id;
  header_->arena_seq.store(0);
  header_->change_counter.store(0);
  header_->arenas_freed.store(0);
  header_->live_objects.store(0);
}

namespace {
static_assert(kLivenessOffset >= sizeof(DirectoryHeader) &&
              kLivenessOffset + sizeof(pthread_mutex_t) <= kSlotsOffset);
// glibc keeps the futex word first (__data.__lock): the robust-futex word the kernel
// marks when the holder dies.
static_assert(offsetof(pthread_mutex_t, __data.__lock) == 0 && sizeof(int) == 4);
static_assert(std::atomic<uint32_t>::is_always_lock_free);
}  // namespace

Status DirectoryTable::InitLiveness() {
  auto* m = reinterpret_cast<pthread_mutex_t*>(reinterpret_cast<char*>(header_) + kLivenessOffset);
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  int err = pthread_mutex_init(m, &attr);
  pthread_mutexattr_destroy(&attr);
  return err == 0 ? Status::OK() : ErrnoError("pthread_mutex_init of the directory's liveness lock", err);
}

Status DirectoryTable::HoldLiveness() {
  auto* m = reinterpret_cast<pthread_mutex_t*>(reinterpret_cast<char*>(header_) + kLivenessOffset);
  int err = pthread_mutex_lock(m);
  if (err == EOWNERDEAD) err = pthread_mutex_consistent(m);  // a previous Run's thread died
  return err == 0 ? Status::OK() : ErrnoError("locking the directory's liveness lock", err);
}

void DirectoryTable::ReleaseLiveness() {
  pthread_mutex_unlock(reinterpret_cast<pthread_mutex_t*>(reinterpret_cast<char*>(header_) + kLivenessOffset));
}

uint32_t DirectoryTable::WriterTid() const {
  const auto* word = reinterpret_cast<const std::atomic<uint32_t>*>(
      reinterpret_cast<const char*>(header_) + kLivenessOffset);
  const uint32_t w = word->load(std::memory_order_acquire);
  return (w & FUTEX_OWNER_DIED) != 0 ? 0 : (w & FUTEX_TID_MASK);
}

Status DirectoryTable::Validate() const {
  if (header_->magic != kDirectoryMagic || header_->layout_version != kDirectoryLayoutVersion ||
      header_->capacity != capacity_) {
    return Corruption("the directory mapped from csmd has an unknown format (magic, version "
                      "or capacity differ): client and csmd are different csm versions");
  }
  return Status::OK();
}

SlotData DirectoryTable::ReadSlot(uint32_t index) const {
  DirectorySlot& s = slot(index);
  SlotData out;
  uint64_t words[sizeof(SlotData) / 8];
  for (int spin = 0;; ++spin) {
    // seq_cst on the first load: pinning relies on it (see ClientImpl::Pin). Acquire
    // on each word keeps the closing load of seq after them (free on x86).
    uint64_t before = s.seq.load(std::memory_order_seq_cst);
    if ((before & 1) == 0) {
      for (size_t i = 0; i < std::size(words); ++i) {
        words[i] = std::atomic_ref<uint64_t>(s.words[i]).load(std::memory_order_acquire);
      }
      if (s.seq.load(std::memory_order_relaxed) == before) break;
    }
    if (spin > 64) std::this_thread::yield();
  }
  std::memcpy(&out, words, sizeof(out));
  return out;
}

void DirectoryTable::WriteSlot(uint32_t index, const SlotData& data) {
  DirectorySlot& s = slot(index);
  uint64_t words[sizeof(SlotData) / 8];
  std::memcpy(words, &data, sizeof(data));
  uint64_t seq = s.seq.load(std::memory_order_relaxed);
  s.seq.store(seq + 1, std::memory_order_relaxed);
  // Release on each word keeps the odd seq before them; seq_cst on the closing store
  // orders it before csmd's later pin scan (see Daemon::HandleDelete).
  for (size_t i = 0; i < std::size(words); ++i) {
    std::atomic_ref<uint64_t>(s.words[i]).store(words[i], std::memory_order_release);
  }
  s.seq.store(seq + 2, std::memory_order_seq_cst);
}

std::optional<DirectoryTable::Found> DirectoryTable::Find(std::string_view key) const {
  if (key.size() > kMaxKeyLength) return std::nullopt;
  uint64_t h = Hash64(key);
  uint32_t mask = capacity_ - 1;
  for (uint32_t probe = 0; probe < capacity_; ++probe) {
    uint32_t i = (static_cast<uint32_t>(h) + probe) & mask;
    SlotData d = ReadSlot(i);
    if (d.state == static_cast<uint8_t>(SlotState::kEmpty)) return std::nullopt;
    if (d.state == static_cast<uint8_t>(SlotState::kLive) && d.key_hash == h &&
        KeyEquals(d, key)) {
      return Found{i, d};
    }
  }
  return std::nullopt;
}

Result<uint32_t> DirectoryTable::Insert(const SlotData& data) {
  std::string_view key(data.key, data.key_length);
  uint32_t mask = capacity_ - 1;
  std::optional<uint32_t> reuse;
  uint32_t i = 0;
  for (uint32_t probe = 0; probe < capacity_; ++probe) {
    i = (static_cast<uint32_t>(data.key_hash) + probe) & mask;
    SlotData d = ReadSlot(i);
    if (d.state == static_cast<uint8_t>(SlotState::kEmpty)) break;
    if (d.state == static_cast<uint8_t>(SlotState::kTombstone)) {
      // A deleted object readers still pin keeps its tombstone until its memory is
      // reclaimed: a restarted csmd finds it there and keeps it for them.
      if (!reuse && (d.flags & kSlotReclaimed) != 0) reuse = i;
      continue;
    }
    if (d.key_hash == data.key_hash && KeyEquals(d, key)) {
      return AlreadyExists("key '" + std::string(key) +
                           "' is already committed: objects are immutable; Delete it first "
                           "or choose another key");
    }
  }
  if (!reuse) {
    if (used_ >= capacity_ - capacity_ / 8) {
      return CapacityExceeded("the directory is full (" + std::to_string(capacity_) +
                              " slots): delete objects or raise max_objects");
    }
    reuse = i;
    ++used_;
  }
  WriteSlot(*reuse, data);
  header_->live_objects.fetch_add(1);
  return *reuse;
}

void DirectoryTable::MarkDeleted(uint32_t index) {
  SlotData d = ReadSlot(index);
  d.state = static_cast<uint8_t>(SlotState::kTombstone);
  WriteSlot(index, d);
  header_->live_objects.fetch_sub(1);
}

void DirectoryTable::MarkReclaimed(uint32_t index, uint64_t object_id) {
  SlotData d = ReadSlot(index);
  if (d.state != static_cast<uint8_t>(SlotState::kTombstone) || d.object_id != object_id) return;
  d.flags |= kSlotReclaimed;
  WriteSlot(index, d);
}

void DirectoryTable::Recount() {
  uint32_t used = 0;
  uint64_t live = 0;
  for (uint32_t i = 0; i < capacity_; ++i) {
    const SlotData d = ReadSlot(i);
    used += d.state != static_cast<uint8_t>(SlotState::kEmpty);
    live += d.state == static_cast<uint8_t>(SlotState::kLive);
  }
  used_ = used;
  header_->live_objects.store(live);
}

void DirectoryTable::AddFlags(uint32_t index, uint8_t flags) {
  SlotData d = ReadSlot(index);
  if (d.state != static_cast<uint8_t>(SlotState::kLive) || (d.flags & flags) == flags) return;
  d.flags |= flags;
  WriteSlot(index, d);
}

void DirectoryTable::ClearFlags(uint32_t index, uint8_t flags) {
  SlotData d = ReadSlot(index);
  if (d.state != static_cast<uint8_t>(SlotState::kLive) || (d.flags & flags) == 0) return;
  d.flags &= static_cast<uint8_t>(~flags);
  WriteSlot(index, d);
}

}  // namespace csm::directory
