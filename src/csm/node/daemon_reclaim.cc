// csmd's reclamation: pins, sweeping deleted objects no process pins any more, giving
// back an arena's pages, destroying arenas, and what a process that went away held; see
// daemon_impl.h and docs/heap_layout.md.
#include "csm/node/daemon_impl.h"

namespace csm::node {

uint64_t Daemon::Impl::PinCount(uint64_t object_id) const {
  uint64_t n = 0;
  sessions_.ForEach([&](const Session& c) { n += c.PinsOf(object_id); });
  return n;
}

bool Daemon::Impl::IsPinned(uint64_t object_id) const { return PinCount(object_id) > 0; }

void Daemon::Impl::Sweep() {
  const std::vector<uint64_t> waiting(objects_.waiting().begin(), objects_.waiting().end());
  // A restarted csmd's deleted objects wait until their readers had time to pin them
  // again (ids below incarnation_ are an earlier csmd's).
  const bool grace = std::chrono::steady_clock::now() < reattach_grace_until_;
  for (uint64_t id : waiting) {
    if (grace && id < incarnation_) continue;
    Object& o = objects_.at(id);
    // One being restored is written into by the spill thread: reclaimed once it is done.
    if (!IsPinned(id) && o.spill != Object::Spill::kReading) Reclaim(o);
  }
  if (!objects_.waiting().empty()) ArmSweep(std::chrono::milliseconds(kSweepIntervalMs));
}

void Daemon::Impl::ArmSweep(std::chrono::milliseconds after) {
  if (sweep_armed_ && after.count() > 0) return;  // one is due already, as soon or sooner
  sweep_armed_ = true;
  sweep_timer_.expires_after(after);  // an earlier wait ends as aborted
  sweep_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    sweep_armed_ = false;
    Sweep();
  });
}

void Daemon::Impl::Reclaim(Object& o) {
  // Said in the directory before its memory can hold anything else: a restarted csmd
  // must not take the object back from addresses others now use.
  dir_->MarkReclaimed(o.slot, o.id);
  if (spill_ != nullptr) ForgetSpill(o);
  for (const ObjectExtent& e : o.extents) {
    if (Arena* a = arenas_.At(e.addr)) a->committed.erase(e.addr);
  }
  std::vector<uint64_t> arena_ids = o.arena_ids;
  objects_.Erase(o.id);
  for (uint64_t id : arena_ids) {
    Arena* a = arenas_.Find(id);
    if (a == nullptr) continue;
    --a->objects;
    MaybeDestroyArena(*a);  // may remove it
    // A released arena that keeps other objects gives back this object's pages.
    a = arenas_.Find(id);
    if (a != nullptr && a->owner == 0) PunchUncommitted(*a);
  }
}

void Daemon::Impl::ReleaseArena(uint64_t arena_id) {
  Arena* a = arenas_.Find(arena_id);
  if (a == nullptr) return;
  a->owner = 0;
  MaybeDestroyArena(*a);  // may remove it
  if (Arena* kept = arenas_.Find(arena_id)) PunchUncommitted(*kept);
  MaybeSpill(0);  // its objects may be spilled now
}

void Daemon::Impl::PunchUncommitted(Arena& a) {
  // Frees every whole page no committed object touches; what stays charged is exactly
  // the pages that committed objects touch.
  const uint64_t page = os::PageSize();
  uint64_t kept_pages = 0, cursor = a.addr;  // cursor: first byte not yet accounted
  for (const auto& [start, end] : a.committed) {
    uint64_t first = std::max(cursor, start / page * page);
    uint64_t last = (end + page - 1) / page * page;
    if (first > cursor) (void)os::PunchHole(a.fd.get(), a.fd_offset + cursor - a.addr, first - cursor);
    if (last > first) kept_pages += (last - first) / page;
    cursor = std::max(cursor, last);
  }
  if (a.addr + a.size > cursor) {
    (void)os::PunchHole(a.fd.get(), a.fd_offset + cursor - a.addr, a.addr + a.size - cursor);
  }
  uint64_t charged = kept_pages * page - std::min(kept_pages * page, a.spilled);  // spilled pages are out
  used_ -= a.charged - std::min(a.charged, charged);
  a.charged = std::min(a.charged, charged);
}

void Daemon::Impl::MaybeDestroyArena(Arena& a) {
  if (a.owner != 0 || a.objects != 0 || a.fetching != 0) return;
  bool served = false;  // to a peer right now: its bytes must stay what they were
  if (a.replica_of != 0 && a.served) served = peers_.RemoveArena(a.addr);  // a copy taken over
  if (a.replica_of == 0) {
    served = peers_.RemoveArena(a.addr);
    // A replica's addresses belong to its owner node; a borrowed arena's to its lender,
    // which takes them back with the memory.
    if (a.lent_by == 0) addresses_.Free(a.addr, a.size);
  }
  if (a.lent_by != 0) {
    boost::asio::post(DirectoryThread(), [this, address = a.lender_address, addr = a.addr, lender = a.lent_by] {
      Status s = loan_client_->GiveBack(address, node_id_, addr);
      if (!s.ok()) CSM_LOG_DEBUG("giving %s back to node %u: %s", Hex(addr).c_str(), lender, s.ToString().c_str());
    });
  }
  used_ -= a.charged;
  // Its range of the node's fabric memory goes back (a peer's arena mapped here was
  // never ours); device memory is not kept spare.
  if (a.replica_of == 0 && a.lent_by == 0 && a.fabric_offset != Arena::kNoFabric) shm_->Free(a.fabric_offset, a.size);
  const bool device = a.mapped || a.lent_by != 0 || (a.replica_of == 0 && shm_ != nullptr && shm_->direct());
  // A state file keeps its memory under a spare's name, or goes (a restarted csmd must
  // not take an arena back that was destroyed).
  os::UniquePath name = std::move(a.spare_name);
  if (a.named) {
    Result<os::UniquePath> retired = Unavailable("not kept");
    if (!served && !device) retired = state_->RetireArena(a.addr, a.id);
    if (retired.ok()) {
      name = std::move(*retired);
    } else {
      state_->RemoveArena(a.addr, a.id);
    }
  }
  if (!served && !device) spare_.Keep(std::move(a.fd), a.size, std::move(a.view), std::move(name));  // or closed, if over budget
  // Only processes that mapped it need to hear of it, so the lists stay bounded.
  sessions_.ForEach([&](Session& c) {
    if (c.mapped.erase(a.id)) c.destroyed.push_back({a.id, a.addr, a.size});
  });
  arenas_.Remove(a.id);
  // Clients' mapper threads drop their mappings, so the memory really goes back.
  dir_->header().arenas_freed.fetch_add(1);
  AnnounceChange();
}

void Daemon::Impl::AnnounceChange() {
  auto& counter = dir_->header().change_counter;
  counter.fetch_add(1);
  os::FutexWakeAll(reinterpret_cast<const uint32_t*>(&counter));
}

void Daemon::Impl::OnSessionGone(Session& c) {
  // It is off the session list already: its pins no longer count.
  for (uint64_t id : c.arenas) ReleaseArena(id);
  if (lazy_ != nullptr) lazy_->DropReader(c.id);
  Sweep();
  CSM_LOG_DEBUG("client pid %d detached; %zu arenas released", c.cred.pid, c.arenas.size());
}

}  // namespace csm::node
