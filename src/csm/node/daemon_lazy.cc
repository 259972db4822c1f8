// Lazy copies on the daemon's side (docs/lazy.md): a Get that asks for one returns once
// the copy's arenas and slot exist here; LazyCopies (lazy_copies.h) brings the bytes as
// they are read and tells the loop when the copy is whole, or lost.
#include <algorithm>

#include "csm/base/hash.h"
#include "csm/base/log.h"
#include "csm/node/daemon_impl.h"
#include "csm/os/memory.h"

namespace csm::node {

namespace {

constexpr uint32_t kFetchWhole = 1, kFetchLazy = 2, kFetchOnDemand = 3;

}  // namespace

void Daemon::Impl::StartLazyCopies() {
  lazy_ = std::make_unique<LazyCopies>(LazyCopies::Options{}, [this](uint64_t id, const Status& outcome) {
    Post([this, id, outcome] { OnLazyDone(id, outcome); });
  });
  Status s = lazy_->Start();
  if (!s.ok()) {
    CSM_LOG_INFO("lazy Gets are off on this node: %s", s.ToString().c_str());
    lazy_.reset();
  }
}

uint32_t Daemon::Impl::FetchModeOf(uint32_t asked) const {
  if (asked != 0) return asked;
  if (options_.cluster.fetch == "lazy") return kFetchLazy;
  if (options_.cluster.fetch == "on-demand") return kFetchOnDemand;
  return kFetchWhole;
}

Status Daemon::Impl::StartLazyFetch(const std::string& key, std::vector<Waiter>& waiters,
                                    const cluster::ObjectRecord& r, transport::Transport* t,
                                    const std::string& address) {
  CSM_RETURN_IF_ERROR(CheckObjectRoom());
  CSM_ASSIGN_OR_RETURN(std::vector<uint64_t> ids, PrepareReplicaArenas(r));
  Object o = CopyOf(r, objects_.NewId(), ids);
  o.replica = r.HasReplica(node_id_);
  o.lazy = true;
  o.last_used_ns = os::MonotonicNanos();
  directory::SlotData slot = SlotOf(o, node_id_, ArenaSeqMax(o));
  slot.flags |= directory::kSlotLazy;
  Result<uint32_t> inserted = dir_->Insert(slot);
  for (uint64_t id : ids) --arenas_.at(id).fetching;
  if (!inserted.ok()) {
    for (uint64_t id : ids) {
      if (Arena* a = arenas_.Find(id)) MaybeDestroyArena(*a);
    }
    return inserted.status();
  }
  o.slot = *inserted;
  // Charged whole now: its pages fill as they arrive.
  const uint64_t page = os::PageSize();
  for (const auto& e : o.extents) {
    Arena* a = arenas_.At(e.addr);
    a->committed[e.addr] = e.addr + e.length;
    const uint64_t bytes = (e.length + page - 1) / page * page;
    a->charged += bytes;
    used_ += bytes;
  }
  std::vector<ReplicaTarget> targets;
  for (uint64_t id : ids) {
    Arena& a = arenas_.at(id);
    ++a.objects;
    targets.push_back({a.addr, a.size, a.view});
  }
  // Who asked for the whole object waits for it; the lazy readers go on now.
  // On demand only if every reader asked so: one waiting for all of it needs the rest.
  const bool prefetch = waiters.empty() || std::any_of(waiters.begin(), waiters.end(), [&](const Waiter& w) {
                          return FetchModeOf(w.fetch) != kFetchOnDemand;
                        });
  std::vector<Waiter> now;
  for (const Waiter& w : waiters) {
    (FetchModeOf(w.fetch) == kFetchWhole ? lazy_waiters_[o.id] : now).push_back(w);
  }
  CSM_LOG_DEBUG("lazy copy of '%s' (%s) from node %u begins%s", key.c_str(), FormatSize(r.size).c_str(),
                r.owner_node, prefetch ? ", prefetching" : "");
  lazy_->Begin(o.id, key, o.extents, std::move(targets), o.header, {t, address, r.object_id, r.owner_node}, prefetch);
  ++lazy_started_;
  objects_.Insert(std::move(o));
  RefreshReplicaList();
  AnnounceChange();
  Answer(now, Status::OK());
  return Status::OK();
}

void Daemon::Impl::OnLazyDone(uint64_t id, const Status& outcome) {
  Object* o = objects_.LiveById(id);
  if (o != nullptr && o->lazy) {
    o->lazy = false;
    if (outcome.ok()) {
      // Readers see the flag gone before their ranges are handed back to the kernel
      // (Release): one that registers after reading the flag undoes it itself.
      dir_->ClearFlags(o->slot, directory::kSlotLazy);
      ++fetches_done_;
    } else {
      CSM_LOG_WARN("dropping the lazy copy of '%s': %s", o->key.c_str(), outcome.ToString().c_str());
      Unlist(o->key);
      RefreshReplicaList();
      Sweep();
    }
    AnnounceChange();
  }
  lazy_->Release(id);
  auto it = lazy_waiters_.find(id);
  if (it != lazy_waiters_.end()) {
    std::vector<Waiter> waiters = std::move(it->second);
    lazy_waiters_.erase(it);
    Answer(waiters, outcome);
  }
}

Status Daemon::Impl::HandleLazyWatch(Session& c, WireReader& in) {
  protocol::LazyWatch m;
  CSM_RETURN_IF_ERROR(protocol::Decode(in, &m));
  protocol::RangesReply reply;
  auto answer = [&]() {
    WireWriter out = protocol::Encode(reply);
    return Sessions::Reply(c, out);
  };
  if (lazy_ == nullptr) {
    reply.status = Unavailable("lazy Gets are off on this node (see its log): ask for the whole object");
    return answer();
  }
  if (!c.fds.empty() && !lazy_->HasReader(c.id)) {
    if (Status s = lazy_->AddReader(c.id, std::move(c.fds.front())); !s.ok()) {
      reply.status = s;
      return answer();
    }
  }
  if (!lazy_->HasReader(c.id)) {
    reply.status = FailedPrecondition("send this process's userfaultfd with its first LazyWatch");
    return answer();
  }
  // Gone (dropped, failed): NotFound, the reader looks again. Whole now: no ranges.
  const Object* o = objects_.LiveById(m.object_id);
  if (o == nullptr) {
    reply.status = NotFound("object " + std::to_string(m.object_id) + " is no longer here: look it up again");
    return answer();
  }
  if (!o->lazy) return answer();
  auto ranges = lazy_->Watch(m.object_id, c.id);
  if (!ranges.ok()) {
    reply.status = ranges.status();
    return answer();
  }
  for (const AddrRange& r : *ranges) {
    reply.ranges.push_back(r.addr);
    reply.ranges.push_back(r.length);
  }
  if (reply.ranges.size() > protocol::kMaxRangeWords) {
    // Registering the arenas' whole span instead would take in other objects' pages.
    reply = {};
    reply.status = Unavailable("the copy has too many extents to read lazily: ask for the whole object");
  }
  return answer();
}

Status Daemon::Impl::HandleLazyWant(Session& c, WireReader& in) {
  protocol::LazyWant m;
  CSM_RETURN_IF_ERROR(protocol::Decode(in, &m));
  if (m.ranges.size() % 2 != 0) return InvalidArgument("LazyWant lists an address without its length");
  if (lazy_ == nullptr) return Sessions::SendStatus(c, MessageType::kStatusReply, Status::OK());  // all here
  std::vector<AddrRange> ranges;
  ranges.reserve(m.ranges.size() / 2);
  for (size_t i = 0; i < m.ranges.size(); i += 2) ranges.push_back({m.ranges[i], m.ranges[i + 1]});
  lazy_->Want(ranges, [this, w = Waiter{c.id, c.request_id}](Status s) {
    Post([this, w, s] { Answer({w}, s); });
  });
  return Status::OK();
}

}  // namespace csm::node
