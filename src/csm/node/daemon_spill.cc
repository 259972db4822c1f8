// csmd's spilling (with --spill-dir): when the node's memory in use passes the high
// watermark, the least recently used objects no process pins are written to the spill
// directory and their pages punched out, down to the low watermark; a reader's Get of a
// spilled object (a Resolve) restores it into the same memory, at the same addresses; a
// builder whose arena would not fit waits for spilling, up to a deadline. See
// daemon_impl.h, node/spill_store.h and docs/operations.md ("Spilling").
#include <future>

#include "csm/node/daemon_impl.h"

namespace csm::node {
namespace {

// The whole pages inside [addr, addr+len): a spilled object's pages csmd punches out
// (the partial pages at its ends may hold other objects' bytes, and stay).
std::pair<uint64_t, uint64_t> WholePages(uint64_t addr, uint64_t len) {
  const uint64_t page = os::PageSize();
  const uint64_t first = (addr + page - 1) / page * page;
  const uint64_t last = (addr + len) / page * page;
  return {first, std::max(first, last)};
}

}  // namespace

uint64_t Daemon::Impl::SpillablePages(const Object& o) const {
  uint64_t n = 0;
  for (const ObjectExtent& e : o.extents) {
    auto [first, last] = WholePages(e.addr, e.length);
    n += last - first;
  }
  return n;
}

bool Daemon::Impl::Spillable(const Object& o) const {
  if (o.is_copy() || o.taken_over || o.deleted || o.spill != Object::Spill::kNone || !o.spill_lost.ok()) return false;
  if (SpillablePages(o) == 0) return false;
  for (uint64_t id : o.arena_ids) {
    const Arena* a = arenas_.Find(id);
    // Only in this node's own memory. An arena its process still builds in is fine: a
    // committed object's pages are never written again (the producer sealed them).
    if (a == nullptr || a->recovered || a->mapped || a->lent_by != 0 || a->replica_of != 0 ||
        a->fabric_offset != Arena::kNoFabric) {
      return false;
    }
  }
  return true;
}

std::vector<SpillStore::Piece> Daemon::Impl::PiecesOf(const Object& o) {
  std::vector<SpillStore::Piece> pieces;
  std::map<uint64_t, std::shared_ptr<os::UniqueFd>> fds;  // one duplicate per arena
  for (const ObjectExtent& e : o.extents) {
    Arena* a = arenas_.At(e.addr);
    if (a == nullptr) return {};
    auto& fd = fds[a->id];
    if (fd == nullptr) {
      fd = std::make_shared<os::UniqueFd>(::fcntl(a->fd.get(), F_DUPFD_CLOEXEC, 0));
      if (!fd->valid()) return {};
    }
    pieces.push_back({fd, a->fd_offset + e.addr - a->addr, e.length});
  }
  return pieces;
}

void Daemon::Impl::NoteAccesses() {
  const int64_t now = os::MonotonicNanos();
  sessions_.ForEach([&](Session& c) {
    for (uint32_t slot : c.TakeAccesses()) {
      if (slot >= dir_->capacity()) continue;  // the process wrote nonsense: a hint only
      const directory::SlotData d = dir_->ReadSlot(slot);
      if (Object* o = objects_.LiveById(d.object_id); o != nullptr && o->slot == slot) o->last_used_ns = now;
    }
    // Objects pinned now are in use now, too.
    for (uint32_t i = 0; i < c.pin_count && c.pins() != nullptr; ++i) {
      const uint64_t id = c.pins()[i].object_id.load(std::memory_order_relaxed);
      if (Object* o = id != 0 ? objects_.LiveById(id) : nullptr) o->last_used_ns = now;
    }
  });
}

void Daemon::Impl::MaybeSpill(uint64_t wanted) {
  if (spill_ == nullptr) return;
  // What memory in use will be once the spills under way finish.
  const uint64_t after = used_ - std::min(used_, spilling_bytes_);
  const uint64_t high = config_.capacity / 100 * options_.spill_high_percent;
  if (after + wanted <= high) return;
  const uint64_t low = config_.capacity / 100 * options_.spill_low_percent;
  uint64_t to_free = after + wanted - std::min(after + wanted, low);
  NoteAccesses();
  std::vector<std::pair<int64_t, uint64_t>> candidates;  // (last used, id)
  objects_.ForEachLive([&](const Object& o) {
    if (Spillable(o)) candidates.emplace_back(o.last_used_ns, o.id);
  });
  std::sort(candidates.begin(), candidates.end());
  for (const auto& [used, id] : candidates) {
    if (to_free == 0) break;
    Object& o = objects_.at(id);
    const uint64_t pages = SpillablePages(o);
    if (StartSpill(o)) to_free -= std::min(to_free, pages);
  }
}

bool Daemon::Impl::StartSpill(Object& o) {
  // The flag first, then the pins: a reader that pins after this sees the flag when it
  // reads the slot again and asks for the object back; one that pinned before is seen.
  dir_->AddFlags(o.slot, directory::kSlotSpilled);
  if (IsPinned(o.id)) {
    dir_->ClearFlags(o.slot, directory::kSlotSpilled);
    return false;
  }
  std::vector<SpillStore::Piece> pieces = PiecesOf(o);
  if (pieces.empty()) {
    dir_->ClearFlags(o.slot, directory::kSlotSpilled);
    return false;
  }
  o.spill = Object::Spill::kWriting;
  const uint64_t generation = ++o.spill_generation;
  const uint64_t pages = SpillablePages(o);
  spilling_bytes_ += pages;
  spill_->Write(o.id, generation, std::move(pieces), [this, id = o.id, generation, pages](Status s) {
    Post([this, id, generation, pages, s] { FinishSpill(id, generation, pages, s); });
  });
  return true;
}

void Daemon::Impl::FinishSpill(uint64_t id, uint64_t generation, uint64_t pages, const Status& s) {
  spilling_bytes_ -= std::min(spilling_bytes_, pages);
  Object* o = objects_.Find(id);
  const bool current = o != nullptr && o->spill == Object::Spill::kWriting && o->spill_generation == generation;
  if (!current || o->deleted || !s.ok()) {
    // Cancelled by a reader (the object stayed in memory), deleted meanwhile, or the
    // write failed: the object is in memory as it was.
    if (s.ok()) spill_->Remove(id, generation);
    if (!s.ok()) CSM_LOG_WARN("spilling %s failed: %s", o ? o->key.c_str() : "?", s.ToString().c_str());
    if (current) {
      o->spill = Object::Spill::kNone;
      if (!o->deleted) dir_->ClearFlags(o->slot, directory::kSlotSpilled);
    }
    RetryWaitingArenas();
    return;
  }
  // Peers asking from now on wait for a restore (PeerServer::MarkSpilled); one being
  // sent bytes from its arenas right now keeps it in memory for this round.
  peers_.MarkSpilled(o->id);
  for (uint64_t arena_id : o->arena_ids) {
    const Arena* a = arenas_.Find(arena_id);
    if (a != nullptr && peers_.Sending(a->addr)) {
      peers_.AddObject(o->id, o->extents);
      spill_->Remove(id, generation);
      o->spill = Object::Spill::kNone;
      dir_->ClearFlags(o->slot, directory::kSlotSpilled);
      RetryWaitingArenas();
      return;
    }
  }
  PunchSpilled(*o);
  o->spill = Object::Spill::kSpilled;
  ++spills_;
  spilled_bytes_ += pages;
  CSM_LOG_DEBUG("spilled %s (%s)", o->key.c_str(), FormatSize(pages).c_str());
  RetryWaitingArenas();
}

void Daemon::Impl::Restore(Object& o, RestoreDone done) {
  switch (o.spill) {
    case Object::Spill::kNone:
      return done(o.spill_lost);  // OK unless its file turned out damaged
    case Object::Spill::kWriting:  // not punched yet: the object stays in memory
      o.spill = Object::Spill::kNone;
      dir_->ClearFlags(o.slot, directory::kSlotSpilled);
      o.last_used_ns = os::MonotonicNanos();
      return done(Status::OK());
    case Object::Spill::kReading:
      restore_waiters_[o.id].push_back(std::move(done));
      return;
    case Object::Spill::kSpilled:
      break;
  }
  if (!o.spill_lost.ok()) return done(o.spill_lost);
  std::vector<RestoreDone>& waiters = restore_waiters_[o.id];
  waiters.push_back(std::move(done));
  if (waiters.size() > 1) return;  // waiting for room already: one restore for all its readers
  const uint64_t pages = SpillablePages(o);
  if (used_ + pages > config_.capacity) {
    // Within capacity, as a builder: it waits while spilling others makes room.
    RoomWaiter w{0, 0, pages, false, 0, std::chrono::steady_clock::now(), o.id};
    w.deadline += std::chrono::milliseconds(options_.spill_wait_ms);
    if (WaitForRoom(w)) return;
    return AnswerRestore(o.id, CapacityExceeded("no room to bring object '" + o.key + "' (" + FormatSize(pages) +
                                                ") back from the spill directory: every object in memory is "
                                                "pinned; let Refs go, delete objects or add capacity"));
  }
  StartRestore(o);
}

void Daemon::Impl::StartRestore(Object& o) {
  std::vector<SpillStore::Piece> pieces = PiecesOf(o);
  if (pieces.empty()) return AnswerRestore(o.id, Internal("the arenas of object '" + o.key + "' are gone"));
  o.spill = Object::Spill::kReading;
  const uint64_t pages = SpillablePages(o);
  UnpunchSpilled(o);
  spilled_bytes_ -= std::min(spilled_bytes_, pages);
  const uint64_t generation = o.spill_generation;
  const int64_t started = os::MonotonicNanos();
  spill_->Read(o.id, generation, std::move(pieces), [this, id = o.id, generation, started, pages](Status s) {
    CSM_LOG_DEBUG("restoring %s from the spill directory took %.1f ms", FormatSize(pages).c_str(),
                  (os::MonotonicNanos() - started) / 1e6);
    Post([this, id, generation, s] { FinishRestore(id, generation, s); });
  });
  MaybeSpill(0);
}

void Daemon::Impl::AnswerRestore(uint64_t id, const Status& s) {
  auto it = restore_waiters_.find(id);
  if (it == restore_waiters_.end()) return;
  std::vector<RestoreDone> waiters = std::move(it->second);
  restore_waiters_.erase(it);
  for (RestoreDone& done : waiters) done(s);
}

void Daemon::Impl::FinishRestore(uint64_t id, uint64_t generation, const Status& s) {
  auto answer = [&](const Status& status) { AnswerRestore(id, status); };
  Object* o = objects_.Find(id);
  if (o == nullptr) return answer(NotFound("the object was deleted while being restored"));
  if (!s.ok()) {
    // The bytes are lost: its pages go out again, and every Get of it says why.
    CSM_LOG_WARN("restoring %s: %s", o->key.c_str(), s.ToString().c_str());
    PunchSpilled(*o);
    o->spill = Object::Spill::kSpilled;
    spilled_bytes_ += SpillablePages(*o);
    o->spill_lost = s.WithContext("object '" + o->key + "'");
    ++spill_losses_;
    RetryWaitingArenas();
    return answer(o->spill_lost);
  }
  spill_->Remove(id, generation);
  o->spill = Object::Spill::kNone;
  o->last_used_ns = os::MonotonicNanos();
  ++restores_;
  if (!o->deleted) {
    dir_->ClearFlags(o->slot, directory::kSlotSpilled);
    peers_.AddObject(o->id, o->extents);
  }
  answer(Status::OK());
  if (o->deleted) Sweep();  // deleted while being restored: reclaimed now if unpinned
}

Status Daemon::Impl::RestoreForPeer(uint64_t id) {
  // On a transport thread: the restore runs on the loop; this waits for it, bounded.
  auto restored = std::make_shared<std::promise<Status>>();
  std::future<Status> result = restored->get_future();
  Post([this, id, restored] {
    Object* o = objects_.LiveById(id);
    if (o == nullptr) return restored->set_value(NotFound("object " + std::to_string(id) + " was deleted"));
    Restore(*o, [restored](const Status& s) { restored->set_value(s); });
  });
  const auto wait = std::chrono::milliseconds(std::max(options_.cluster.timeout_ms, 60000));
  if (result.wait_for(wait) != std::future_status::ready) {
    return Timeout("the spill directory did not give the object back within " + std::to_string(wait.count()) + " ms");
  }
  return result.get();
}

void Daemon::Impl::ForgetSpill(Object& o) {
  if (o.spill == Object::Spill::kNone) return;
  if (o.spill == Object::Spill::kSpilled) {
    spill_->Remove(o.id, o.spill_generation);
    const uint64_t pages = SpillablePages(o);
    spilled_bytes_ -= std::min(spilled_bytes_, pages);
    for (const ObjectExtent& e : o.extents) {
      if (Arena* a = arenas_.At(e.addr)) {
        auto [first, last] = WholePages(e.addr, e.length);
        a->spilled -= std::min(a->spilled, last - first);  // its pages are not charged: nothing to give back
      }
    }
  }
  o.spill = Object::Spill::kNone;  // a write under way finds it gone, and removes its file
}

void Daemon::Impl::PunchSpilled(Object& o) {
  for (const ObjectExtent& e : o.extents) {
    Arena* a = arenas_.At(e.addr);
    auto [first, last] = WholePages(e.addr, e.length);
    if (a == nullptr || last == first) continue;
    (void)os::PunchHole(a->fd.get(), a->fd_offset + first - a->addr, last - first);
    a->spilled += last - first;
    // A released arena is charged for its committed pages; one a process still builds
    // in, for all of it (until its release, PunchUncommitted).
    if (a->owner == 0) {
      const uint64_t uncharged = std::min(a->charged, last - first);
      a->charged -= uncharged;
      used_ -= std::min(used_, uncharged);
    }
  }
}

void Daemon::Impl::UnpunchSpilled(Object& o) {
  // Charged again now: the memory comes back whether or not there is room (a reader
  // asked for it); spilling others makes room again.
  for (const ObjectExtent& e : o.extents) {
    Arena* a = arenas_.At(e.addr);
    auto [first, last] = WholePages(e.addr, e.length);
    if (a == nullptr || last == first) continue;
    a->spilled -= std::min(a->spilled, last - first);
    if (a->owner == 0) {
      a->charged += last - first;
      used_ += last - first;
    }
  }
}

bool Daemon::Impl::WaitForRoom(RoomWaiter w) {
  // A builder's object must fit under the low watermark; an object already committed,
  // in capacity.
  const uint64_t most = w.restore_id != 0 ? config_.capacity : config_.capacity / 100 * options_.spill_low_percent;
  if (spill_ == nullptr || w.size > most) return false;
  MaybeSpill(w.size);
  if (spilling_bytes_ == 0) return false;  // nothing could be spilled: fail now
  waiting_for_room_.push_back(w);
  ArmRoomTimer();
  return true;
}

void Daemon::Impl::RetryWaitingArenas() {
  const auto now = std::chrono::steady_clock::now();
  while (!waiting_for_room_.empty()) {
    const RoomWaiter w = waiting_for_room_.front();
    Session* c = w.restore_id == 0 ? sessions_.Find(w.client_id) : nullptr;
    Object* restoring = w.restore_id != 0 ? objects_.LiveById(w.restore_id) : nullptr;
    const bool wanted = c != nullptr || (restoring != nullptr && restoring->spill == Object::Spill::kSpilled);
    const bool fits = used_ + w.size <= config_.capacity;
    if (wanted && !fits && now < w.deadline) {
      if (spilling_bytes_ == 0) MaybeSpill(w.size);
      if (spilling_bytes_ != 0) break;  // in order: the first waits, and those after it
    }
    waiting_for_room_.pop_front();
    const Status full = CapacityExceeded("node memory is full and spilling made no room for " + FormatSize(w.size) +
                                         " within " + std::to_string(options_.spill_wait_ms) +
                                         " ms: objects are pinned, or the spill directory is slow or full; let "
                                         "Refs go, delete objects or add capacity");
    if (w.restore_id != 0) {
      if (restoring != nullptr && restoring->spill == Object::Spill::kSpilled && fits) {
        StartRestore(*restoring);
      } else {
        AnswerRestore(w.restore_id, restoring == nullptr ? NotFound("deleted while waiting to be restored") : full);
      }
      continue;
    }
    if (c == nullptr) continue;
    c->request_id = w.request_id;
    Status s = fits ? GrantArena(*c, w.size, w.dedicated, w.overwritten)
                    : Sessions::SendStatus(*c, MessageType::kArenaReply, full);
    if (!s.ok()) sessions_.Drop(w.client_id);
  }
  ArmRoomTimer();
}

void Daemon::Impl::ArmRoomTimer() {
  if (waiting_for_room_.empty()) return;
  room_timer_.expires_at(waiting_for_room_.front().deadline);
  room_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) RetryWaitingArenas();
  });
}

}  // namespace csm::node
