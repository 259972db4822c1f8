// csmd's remote gets: a Resolve of another node's object, its replica arenas at the
// owner's addresses, the transfer (ReplicaFetcher), entering the copy, copying small
// objects ahead, dropping stale copies and evicting unpinned ones; see daemon_impl.h and
// docs/cluster.md.
#include <algorithm>

#include "csm/base/hash.h"
#include "csm/base/range.h"
#include "csm/node/daemon_impl.h"

namespace csm::node {

Status Daemon::Impl::CheckRecord(const cluster::ObjectRecord& r) const {
  // Our own segments are another node's only where we lent it memory to build in.
  return node::CheckRecord(r, config_.window, Leases(), [&](uint64_t addr, uint64_t size) {
    return loans_.Covers(addr, size, r.owner_node);
  });
}


SpareMemory::Memory Daemon::Impl::TakeSpareReplica(const cluster::ObjectRecord& r,
                                                   const object::ObjectExtent& span) {
  SpareMemory::Memory spare = spare_.TakeAny(span.length);
  if (!spare.valid()) return spare;
  const int fd = spare.fd.get();
  // Its pages may hold an old object: the fetch overwrites the new one's extents; every
  // whole page outside them is freed (reads as zeros) so nothing of the old one shows.
  const uint64_t page = os::PageSize();
  std::vector<std::pair<uint64_t, uint64_t>> keep;
  for (const auto& e : r.extents) {
    if (RangeWithin(e.addr, e.length, span.addr, span.length)) keep.emplace_back(e.addr, e.addr + e.length);
  }
  std::sort(keep.begin(), keep.end());
  uint64_t cursor = span.addr;
  auto clear = [&](uint64_t from, uint64_t to) {  // [from, to): zeros, whole pages freed
    uint64_t first = (from + page - 1) / page * page, last = to / page * page;
    if (first < last) (void)os::PunchHole(fd, first - span.addr, last - first);
    auto zero = [&](uint64_t a, uint64_t b) {
      if (a < b) (void)::pwrite(fd, std::string(b - a, '\0').data(), b - a, static_cast<off_t>(a - span.addr));
    };
    if (first < last) {
      zero(from, first);
      zero(last, to);
    } else {
      zero(from, to);
    }
  };
  for (const auto& [start, end] : keep) {
    if (start > cursor) clear(cursor, start);
    cursor = std::max(cursor, end);
  }
  if (cursor < span.addr + span.length) clear(cursor, span.addr + span.length);
  return spare;
}

Result<std::vector<uint64_t>> Daemon::Impl::PrepareArenasFor(
    const cluster::ObjectRecord& r, const std::function<bool(const Arena&, size_t)>& fits,
    const std::function<Result<uint64_t>(size_t)>& make) {
  std::vector<uint64_t> ids;
  // On failure, let go of what this call took (and free replicas it created empty).
  auto undo = [&] {
    for (uint64_t id : ids) {
      Arena& a = arenas_.at(id);
      --a.fetching;
      MaybeDestroyArena(a);
    }
  };
  for (size_t i = 0; i < r.arenas.size(); ++i) {
    const object::ObjectExtent& span = r.arenas[i];
    Arena* a = arenas_.FirstOverlapping(span.addr, span.length);
    if (a != nullptr && !(a->addr == span.addr && a->size == span.length && a->replica_of == r.origin() &&
                          fits(*a, i))) {
      // Space still taken by a replica of an older arena of the owner's.
      if (a->replica_of != 0 && a->objects == 0 && a->fetching == 0) {
        MaybeDestroyArena(*a);
        a = arenas_.FirstOverlapping(span.addr, span.length);
      }
      if (a != nullptr) {
        undo();
        return Unavailable("the addresses of '" + r.key + "' are still held here by copies of "
                           "objects node " + std::to_string(r.origin()) + " has since "
                           "replaced: retry once their readers let go");
      }
    }
    if (a == nullptr) {
      Result<uint64_t> made = make(i);
      if (!made.ok()) {
        undo();
        return made.status();
      }
      a = &arenas_.at(*made);
      a->replica_of = r.origin();
      dir_->header().arena_seq.store(a->seq);
    }
    ++a->fetching;
    ids.push_back(a->id);
  }
  return ids;
}

Result<std::vector<uint64_t>> Daemon::Impl::PrepareReplicaArenas(const cluster::ObjectRecord& r) {
  auto fits = [](const Arena& a, size_t) { return !a.mapped; };  // a copy is written into
  return PrepareArenasFor(r, fits, [&](size_t i) -> Result<uint64_t> {
    const object::ObjectExtent& span = r.arenas[i];
    const int64_t t0 = os::MonotonicNanos();
    SpareMemory::Memory spare = TakeSpareReplica(r, span);
    Result<os::UniqueFd> fd = std::move(spare.fd);
    if (fd->valid()) {
      CSM_LOG_DEBUG("copy of %s at %s reuses spare memory%s (cleared in %.2f ms)", FormatSize(span.length).c_str(),
                    Hex(span.addr).c_str(), spare.view ? " and its page tables" : "",
                    (os::MonotonicNanos() - t0) / 1e6);
    } else {
      fd = os::CreateMemfd("csm-replica-" + Hex(span.addr), span.length);
    }
    // The fetch writes through csmd's own view of the memory, kept with it from fetch
    // to fetch (os::SharedView).
    Result<std::shared_ptr<os::SharedView>> view = std::move(spare.view);
    if (fd.ok() && *view == nullptr) view = os::SharedView::Map(fd->get(), span.length);
    if (!fd.ok() || !view.ok()) return fd.ok() ? view.status() : fd.status();
    Arena& fresh = arenas_.Add(span.addr, span.length, std::move(*fd));
    fresh.view = std::move(*view);
    return fresh.id;
  });
}

Status Daemon::Impl::HandleResolve(Session& c, WireReader& in) {
  protocol::Resolve m;
  CSM_RETURN_IF_ERROR(protocol::Decode(in, &m));
  const std::string& key = m.key;
  const Waiter waiter{c.id, c.request_id, m.fetch};
  auto reply = [&](const Status& s) { return Sessions::SendStatus(c, MessageType::kStatusReply, s); };
  if (Status valid = ValidateKeyToRead(key); !valid.ok()) return reply(valid);
  if (Object* o = objects_.Live(key)) {
    if (o->lazy) {
      // Its bytes are arriving: a lazy reader goes on (it registers the pages), the
      // others wait for all of them.
      if (FetchModeOf(m.fetch) != 1) return reply(Status::OK());
      lazy_waiters_[o->id].push_back(waiter);
      lazy_->PrefetchRest(o->id);  // an on-demand copy would not end otherwise
      return Status::OK();
    }
    if (o->spill == Object::Spill::kNone && o->spill_lost.ok()) return reply(Status::OK());
    // Spilled: answered once its bytes are back.
    Restore(*o, [this, waiter](const Status& s) { Answer({waiter}, s); });
    return Status::OK();
  }
  if (cluster_ == nullptr) return reply(NotFound("no object under key '" + key + "'"));
  if (fetcher_.Join(key, waiter)) return Status::OK();  // one fetch per node
  StartFetch(key, {waiter}, cluster::Freshness::kCachedOk);
  return Status::OK();
}

void Daemon::Impl::StartFetch(const std::string& key, std::vector<Waiter> waiters,
                              cluster::Freshness freshness) {
  if (freshness == cluster::Freshness::kCachedOk) {
    if (auto here = cluster_->LookupHere(key)) {
      // A cached record naming this node, or a node not alive, may be out of date: ask.
      const bool doubtful = here->ok() && (*here)->cached &&
                            ((*here)->owner_node == node_id_ || !(*here)->owner_alive);
      if (!doubtful) return FetchRecord(key, std::move(waiters), *here);
    }
  }
  // Only the directory can tell: asked on the directory thread, so the event loop goes
  // on serving others. Readers of the key who ask meanwhile join these waiters.
  fetcher_.Begin(key, std::move(waiters));
  boost::asio::post(DirectoryThread(), [this, key] {
    Result<cluster::ObjectRecord> record = cluster_->Lookup(key, cluster::Freshness::kFresh);
    Post([this, key, record] {
      if (fetcher_.InFlight(key)) FetchRecord(key, fetcher_.End(key), record);
    });
  });
}

void Daemon::Impl::FetchRecord(const std::string& key, std::vector<Waiter> waiters,
                               const Result<cluster::ObjectRecord>& record) {
  Status s = TryStartFetch(key, waiters, record);
  if (!s.ok()) Answer(waiters, s);
}

void Daemon::Impl::Answer(const std::vector<Waiter>& waiters, const Status& status) {
  for (const Waiter& w : waiters) {
    Session* c = sessions_.Find(w.client_id);
    if (c == nullptr) continue;
    c->request_id = w.request_id;
    if (!Sessions::SendStatus(*c, MessageType::kStatusReply, status).ok()) sessions_.Drop(w.client_id);
  }
}

Status Daemon::Impl::TryStartFetch(const std::string& key, std::vector<Waiter>& waiters,
                                   const Result<cluster::ObjectRecord>& record) {
  if (!record.ok()) return record.status();
  const cluster::ObjectRecord& r = *record;
  if (r.owner_node == node_id_) return NotFound("'" + key + "' was deleted");
  if (!r.owner_alive && !r.replicas.empty()) {
    // The client asks again until its deadline.
    return Unavailable("node " + std::to_string(r.owner_node) + ", which owns '" + key +
                       "', is not alive: a node holding a replica of it takes it over within a "
                       "heartbeat or two; ask again");
  }
  if (!r.owner_alive) {
    return Unavailable("node " + std::to_string(r.owner_node) + ", which owns '" + key +
                       "', is not alive: its objects are gone with it");
  }
  // A node of the same shared-memory fabric maps the object where it lies.
  if (shm_ != nullptr && shm_->memory().Shares(r.memory)) {
    // A dead owner's memory may still be there to map: a cached record's word that the
    // owner lives is not enough (a fetch over the network would fail and ask again).
    if (r.cached) {
      StartFetch(key, std::move(waiters), cluster::Freshness::kFresh);
      return Status::OK();
    }
    CSM_RETURN_IF_ERROR(CheckRecord(r));
    return StartReadInPlace(key, waiters, r);
  }
  if (r.owner_address.empty()) {
    return Unavailable("node " + std::to_string(r.owner_node) + " serves no peers (it "
                       "was started without --peer-address)");
  }
  auto peer = transport::SplitPeerAddress(r.owner_address);
  if (!peer.ok()) {
    return Corruption("node " + std::to_string(r.owner_node) +
                      " advertises a peer address this node cannot use: " + peer.status().message());
  }
  auto t = fetcher_.TransportFor(peer->first);
  if (!t.ok()) return t.status();
  CSM_RETURN_IF_ERROR(MakeRoomFor(key, r.size));
  Status valid = CheckRecord(r);
  if (!valid.ok()) return valid;
  // A reader asked for it lazily: it is used while it arrives (an object of 1 MiB or
  // less comes whole: as fast, and no faults).
  constexpr uint64_t kLazyAbove = uint64_t{1} << 20;
  const bool lazy = lazy_ != nullptr && r.size > kLazyAbove &&
                    std::any_of(waiters.begin(), waiters.end(), [&](const Waiter& w) { return FetchModeOf(w.fetch) != 1; });
  if (lazy) return StartLazyFetch(key, waiters, r, *t, peer->second);
  auto ids = PrepareReplicaArenas(r);
  if (!ids.ok()) return ids.status();

  std::vector<ReplicaTarget> targets;
  for (uint64_t id : *ids) {
    const Arena& a = arenas_.at(id);
    targets.push_back({a.addr, a.size, a.view});
  }
  fetcher_.Begin(key, std::move(waiters));
  fetcher_.Transfer(r, std::move(targets), *t, peer->second,
                    [this, key, r, arena_ids = *ids](Status s) { FinishFetch(key, s, r, arena_ids); });
  return Status::OK();
}

Status Daemon::Impl::MakeRoomFor(const std::string& key, uint64_t size) {
  if (used_ + size > config_.capacity) EvictReplicasFor(size, key);
  if (used_ + size <= config_.capacity) return Status::OK();
  return CapacityExceeded("no room for a copy of '" + key + "' (" + FormatSize(size) + "): capacity " +
                          FormatSize(config_.capacity) + ", in use " + FormatSize(used_) +
                          ", and every copy held here is pinned by a reader or kept as one of its object's "
                          "replicas: drop some Refs, delete objects, or raise --capacity");
}

Result<std::vector<uint64_t>> Daemon::Impl::PrepareMappedArenas(const cluster::ObjectRecord& r,
                                                               const std::vector<int>& device_fds) {
  auto fits = [&](const Arena& a, size_t i) { return a.mapped && a.fabric_offset == r.arena_offsets[i]; };
  return PrepareArenasFor(r, fits, [&](size_t i) -> Result<uint64_t> {
    // The owner's memory itself, read-only (the stale-cache model: this node's snapshot
    // of it).
    const object::ObjectExtent& span = r.arenas[i];
    const uint64_t offset = r.arena_offsets[i];
    auto range = shm_->MapPeer(r.ArenaPath(i), device_fds[i], offset, span.length);
    if (!range.ok()) {
      return range.status().WithContext("mapping the shared memory " + r.ArenaPath(i) + " of '" + r.key + "'");
    }
    Arena& fresh = arenas_.Add(span.addr, span.length, std::move(range->fd));
    fresh.view = std::move(range->view);
    fresh.fabric_offset = offset;
    fresh.fd_offset = offset;
    fresh.mapped = true;
    return fresh.id;
  });
}

Status Daemon::Impl::StartReadInPlace(const std::string& key, std::vector<Waiter>& waiters,
                                      const cluster::ObjectRecord& r) {
  // Each arena lies in the owner's memory, or in another node's that lent it.
  auto devices = std::make_shared<std::vector<os::UniqueFd>>();
  std::vector<int> device_fds;
  for (size_t i = 0; i < r.arenas.size(); ++i) {
    CSM_ASSIGN_OR_RETURN(os::UniqueFd fd, shm_->OpenPeer(r.ArenaPath(i)));
    device_fds.push_back(fd.get());
    devices->push_back(std::move(fd));
  }
  CSM_ASSIGN_OR_RETURN(std::vector<uint64_t> ids, PrepareMappedArenas(r, device_fds));
  std::vector<SharedMemory::PeerArena> arenas;
  for (size_t i = 0; i < ids.size(); ++i) {
    const Arena& a = arenas_.at(ids[i]);
    arenas.push_back({a.addr, a.size, a.fabric_offset, a.view, device_fds[i]});
  }
  fetcher_.Begin(key, std::move(waiters));
  fetcher_.Run([this, r, arenas = std::move(arenas), devices] { return shm_->ReadInPlace(r, arenas); },
               [this, key, r, ids](Status s) { FinishFetch(key, s, r, ids); });
  return Status::OK();
}

void Daemon::Impl::FinishFetch(const std::string& key, Status status,
                               const cluster::ObjectRecord& r,
                               const std::vector<uint64_t>& arena_ids) {
  if (!fetcher_.InFlight(key)) return;
  std::vector<Waiter> waiters = fetcher_.End(key);
  for (uint64_t id : arena_ids) --arenas_.at(id).fetching;
  if (!status.ok() && r.cached && !waiters.empty()) {
    // The cached record may have been stale (the object deleted or its owner gone):
    // once more with the directory's own answer.
    CSM_LOG_DEBUG("fetching '%s' from a cached record: %s; asking the directory", key.c_str(),
                  status.ToString().c_str());
    for (uint64_t id : arena_ids) {
      if (Arena* a = arenas_.Find(id)) MaybeDestroyArena(*a);
    }
    StartFetch(key, std::move(waiters), cluster::Freshness::kFresh);
    return;
  }

  if (status.ok() && !objects_.IsLive(key)) {
    Object o = CopyOf(r, objects_.NewId(), arena_ids);
    o.replica = r.HasReplica(node_id_);
    o.last_used_ns = os::MonotonicNanos();
    Status room = CheckObjectRoom();
    Result<uint32_t> slot = room.ok() ? dir_->Insert(SlotOf(o, node_id_, ArenaSeqMax(o))) : Result<uint32_t>(room);
    if (slot.ok()) {
      o.slot = *slot;
      const uint64_t page = os::PageSize();
      for (const auto& e : o.extents) {
        Arena* a = arenas_.At(e.addr);
        a->committed[e.addr] = e.addr + e.length;
        if (a->mapped) continue;  // the owner's memory: nothing taken here
        uint64_t bytes = (e.length + page - 1) / page * page;
        a->charged += bytes;
        used_ += bytes;
      }
      for (uint64_t id : arena_ids) ++arenas_.at(id).objects;
      objects_.Insert(std::move(o));
      ++(arenas_.at(arena_ids.front()).mapped ? reads_in_place_ : fetches_done_);  // mapped: read in place
      RefreshReplicaList();
      AnnounceChange();
    } else {
      status = slot.status();
    }
  }
  if (!status.ok()) {
    CSM_LOG_WARN("fetching '%s' from node %u: %s", key.c_str(), r.owner_node, status.ToString().c_str());
    for (uint64_t id : arena_ids) {
      if (Arena* a = arenas_.Find(id)) MaybeDestroyArena(*a);
    }
  }
  Answer(waiters, status);
}

void Daemon::Impl::DropStaleReplicas(const std::vector<std::string>& keys) {
  for (const auto& key : keys) {
    const Object* o = objects_.Live(key);
    if (o == nullptr || !o->is_copy()) continue;  // our own: not a replica
    CSM_LOG_INFO("dropping the copy of '%s': node %u deleted it or is gone", key.c_str(), o->owner_node);
    Unlist(key);
  }
  RefreshReplicaList();
  Sweep();
}


void Daemon::Impl::CopyAhead(const std::string& key) {
  if (objects_.IsLive(key) || fetcher_.InFlight(key)) return;
  auto here = cluster_->LookupHere(key);
  if (!here || !here->ok()) return;  // deleted meanwhile, or only the directory knows
  const cluster::ObjectRecord& r = **here;
  if (r.owner_node == node_id_ || !r.owner_alive || r.size > options_.cluster.copy_ahead_below) return;
  // Only into free room: copying ahead never evicts a copy someone asked for.
  if (used_ + r.size + os::PageSize() > config_.capacity) return;
  std::vector<Waiter> none;
  Status s = TryStartFetch(key, none, *here);
  if (s.ok()) {
    ++copies_ahead_;
  } else {
    CSM_LOG_DEBUG("not copying '%s' ahead: %s", key.c_str(), s.ToString().c_str());
  }
}

void Daemon::Impl::EvictReplicasFor(uint64_t bytes, const std::string& wanted) {
  // Least recently used first: fetched, or got by a process here (its access ring).
  // Copies held as one of their object's replicas stay.
  NoteAccesses();
  std::vector<std::pair<int64_t, uint64_t>> replicas;  // (last used, id)
  objects_.ForEachLive([&](const Object& o) {
    if (o.is_copy() && !o.replica && !IsPinned(o.id)) replicas.emplace_back(o.last_used_ns, o.id);
  });
  std::sort(replicas.begin(), replicas.end());
  for (const auto& [used, id] : replicas) {
    if (used_ + bytes <= config_.capacity) break;
    Object& o = objects_.at(id);
    CSM_LOG_INFO("evicting the copy of '%s' (%s, from node %u) to make room for '%s'", o.key.c_str(),
                 FormatSize(o.header.data_size).c_str(), o.owner_node, wanted.c_str());
    ++replicas_evicted_;
    replica_bytes_evicted_ += o.header.data_size;
    Unlist(o.key);
    Sweep();  // unpinned: reclaimed now, and used_ goes down with its arenas
  }
  RefreshReplicaList();
}

void Daemon::Impl::RefreshReplicaList() {
  if (membership_ == nullptr) return;  // a lone node
  std::vector<cluster::ClusterDirectory::Held> held;
  objects_.ForEachLive([&](const Object& o) {
    if (o.is_copy()) held.push_back({o.key, o.remote_id, o.owner_node, o.replica});
  });
  membership_->SetHeld(std::move(held));
}

}  // namespace csm::node
