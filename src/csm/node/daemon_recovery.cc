// csmd taking back what an earlier csmd of the node left in its state directory
// (--state-dir): its arenas, then every committed object its directory lists, each
// checked as a commit is (header, extents, arenas) and against its checksum; what fails
// is dropped and said so, never served. See node/node_state.h and docs/operations.md,
// "Restarting csmd".
#include <algorithm>

#include "csm/base/range.h"
#include "csm/node/daemon_impl.h"
#include "csm/object/checksum.h"

namespace csm::node {

Status Daemon::Impl::ClaimAddresses(uint64_t addr, uint64_t size) {
  const WindowConfig& w = config_.window;
  const uint64_t first = (addr - w.base) / w.segment_size;
  const uint64_t last = (addr + size - 1 - w.base) / w.segment_size;
  for (uint64_t seg = first; seg <= last; ++seg) {
    if (segments_.OwnerOf(segments_.SegmentAddress(seg)) == node_id_) continue;  // claimed already
    if (!segments_.Claim(node_id_, seg, 1)) return Corruption("segment " + std::to_string(seg) + " is taken twice");
    std::lock_guard<std::mutex> lock(leases_mu_);
    leases_.push_back({seg, 1});
    ++leased_segments_;
    addresses_.AddRun({segments_.SegmentAddress(seg), w.segment_size});
  }
  if (!addresses_.Reserve(addr, size)) return Corruption("its addresses overlap another arena's");
  return Status::OK();
}

Status Daemon::Impl::ClaimStanding() {
  CSM_ASSIGN_OR_RETURN(std::optional<NodeState::ClusterStanding> standing, state_->LoadStanding());
  const bool in_cluster = options_.cluster.enabled();
  if (!standing.has_value() && !in_cluster) return Status::OK();
  if (!standing.has_value() || !in_cluster || standing->cluster != options_.cluster.name) {
    const std::string was = standing ? "a node of cluster '" + standing->cluster + "'" : "a lone node";
    const std::string is = in_cluster ? "a node of cluster '" + options_.cluster.name + "'" : "a lone node";
    return FailedPrecondition("the node state in " + state_->dir() + " is " + was + "'s, and this csmd is " + is +
                              ": its objects lie in segments only that node may use; start it as before, or "
                              "with --fresh to discard them");
  }
  memory_incarnation_ = standing->incarnation;
  const WindowConfig& w = config_.window;
  for (const cluster::SegmentLease& l : standing->leases) {
    if (!segments_.Claim(node_id_, l.first, l.count)) {
      return Corruption("the node state in " + state_->dir() + " lists segments " + std::to_string(l.first) + "+" +
                        std::to_string(l.count) + " twice or outside the window: start with --fresh");
    }
    std::lock_guard<std::mutex> lock(leases_mu_);
    leases_.push_back(l);
    leased_segments_ += l.count;
    addresses_.AddRun({segments_.SegmentAddress(l.first), l.count * w.segment_size});
  }
  return Status::OK();
}

void Daemon::Impl::SaveStanding() {
  if (state_ == nullptr) return;
  NodeState::ClusterStanding standing{options_.cluster.name, memory_incarnation_, Leases()};
  Status s = state_->SaveStanding(standing);
  if (!s.ok()) {
    CSM_LOG_ERROR("saving the node's cluster standing in %s: %s (a restart of this csmd will not find "
                  "its segment leases)", state_->dir().c_str(), s.ToString().c_str());
  }
}

namespace {

// XXH3 of the object's extents as its header's checksum is taken (object/checksum.h),
// read from the arena files with pread: csmd does not map the heap.
Result<uint64_t> ChecksumFromFiles(const std::vector<ObjectExtent>& extents,
                                   const std::function<const Arena*(uint64_t)>& arena_at) {
  Checksum sum;
  std::vector<char> buffer(1 << 20);
  for (size_t i = 0; i < extents.size(); ++i) {
    const uint64_t skip = i == 0 ? sizeof(ObjectHeader) : 0;
    uint64_t at = extents[i].addr + skip;
    const uint64_t end = extents[i].addr + extents[i].length;
    const Arena* a = arena_at(extents[i].addr);
    while (at < end) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(buffer.size(), end - at));
      if (::pread(a->fd.get(), buffer.data(), n, static_cast<off_t>(a->fd_offset + at - a->addr)) != static_cast<ssize_t>(n)) {
        return ErrnoError("pread of an arena", errno);
      }
      sum.Update(buffer.data(), n);
      at += n;
    }
  }
  return sum.Digest();
}

}  // namespace

Result<Object> Daemon::Impl::RecoverObject(uint32_t slot, const directory::SlotData& d) {
  Object o;
  o.key.assign(d.key, std::min<size_t>(d.key_length, sizeof(d.key)));
  CSM_RETURN_IF_ERROR(ReadObject(d.header, nullptr, &o));
  const ObjectHeader& h = o.header;
  if (h.type_id != d.type_id || h.root != d.root || h.data_size != d.data_size || h.checksum != d.checksum) {
    return Corruption("its header no longer matches its directory entry");
  }
  if ((h.flags & object::kFlagChecksumDeferred) == 0) {
    CSM_ASSIGN_OR_RETURN(uint64_t sum, ChecksumFromFiles(o.extents, [&](uint64_t addr) { return arenas_.At(addr); }));
    if (sum != h.checksum) return Corruption("its bytes no longer match the checksum taken at commit");
  }
  std::sort(o.arena_ids.begin(), o.arena_ids.end());
  o.arena_ids.erase(std::unique(o.arena_ids.begin(), o.arena_ids.end()), o.arena_ids.end());
  o.id = d.object_id;
  o.slot = slot;
  o.type_id = d.type_id;
  o.type_name = state_->TypeName(d.type_id);
  o.commit_time_ns = d.commit_time_ns;
  return o;
}

Status Daemon::Impl::Recover() {
  const int64_t start = os::MonotonicNanos();
  const directory::DirectoryHeader& header = dir_->header();
  CSM_RETURN_IF_ERROR(dir_->Validate().WithContext("the directory in " + state_->dir()));
  if (header.node_id != node_id_) {
    return FailedPrecondition("the node state in " + state_->dir() + " is node " + std::to_string(header.node_id) +
                              "'s: start with --node-id " + std::to_string(header.node_id) +
                              ", or with --fresh to discard its objects");
  }
  recovered_ = true;
  CSM_RETURN_IF_ERROR(ClaimStanding());
  // Arenas first: objects are read from them. Their sequence numbers continue the last
  // csmd's, so every process that reattaches maps them anew.
  arenas_.ContinueAfter(header.arena_seq.load());
  CSM_ASSIGN_OR_RETURN(std::vector<NodeState::ArenaFile> files, state_->TakeArenas());
  constexpr uint64_t kAlign = alloc::AddressAllocator::kArenaAlignment;
  for (NodeState::ArenaFile& f : files) {
    const WindowConfig& w = config_.window;
    const bool in_window = f.addr >= w.base && f.size <= w.size && f.addr - w.base <= w.size - f.size;
    Status fits = f.size == 0 || f.size % kAlign != 0 || f.addr % kAlign != 0 || !in_window ||
                          f.id >= incarnation_ || arenas_.Find(f.id) != nullptr
                      ? Corruption("its size, address or id is not an arena's")
                      : ClaimAddresses(f.addr, f.size);
    if (!fits.ok()) {
      CSM_LOG_WARN("restart: dropped %s: %s", state_->ArenaPath(f.addr, f.id).c_str(), fits.message().c_str());
      state_->RemoveArena(f.addr, f.id);
      continue;
    }
    Arena& a = arenas_.Add(f.addr, f.size, std::move(f.fd), f.id);
    a.named = true;
    a.recovered = true;
    a.charged = f.size;
    used_ += f.size;
    dir_->header().arena_seq.store(a.seq);
  }
  // Then objects: deleted ones still pinned first (a key deleted and committed again
  // has its deleted object go first), then live ones.
  uint64_t recovered = 0, waiting = 0, dropped = 0, bytes = 0;
  for (const auto wanted : {directory::SlotState::kTombstone, directory::SlotState::kLive}) {
    for (uint32_t i = 0; i < dir_->capacity(); ++i) {
      const directory::SlotData d = dir_->ReadSlot(i);
      if (d.state != static_cast<uint8_t>(wanted)) continue;
      if ((d.flags & directory::kSlotReclaimed) != 0) continue;  // its memory holds others now
      const bool live = wanted == directory::SlotState::kLive;
      const bool own = d.owner_node == node_id_;
      Result<Object> o = own ? RecoverObject(i, d)
                             : Unavailable("a copy of node " + std::to_string(d.owner_node) +
                                           "'s object (fetched again when asked)");
      if (!o.ok() || (live && objects_.IsLive(o->key))) {
        if (live) dir_->MarkDeleted(i);  // never served again
        dir_->MarkReclaimed(i, d.object_id);  // no one waits for it: the slot is free
        if (own && live) {
          ++dropped;
          CSM_LOG_ERROR("restart: dropped '%s': %s", std::string(d.key, std::min<size_t>(d.key_length, sizeof(d.key))).c_str(),
                        o.ok() ? "its key is listed twice" : o.status().message().c_str());
        }
        continue;
      }
      for (const ObjectExtent& e : o->extents) arenas_.At(e.addr)->committed[e.addr] = e.addr + e.length;
      for (uint64_t id : o->arena_ids) ++arenas_.at(id).objects;
      bytes += o->header.data_size;
      const std::string key = o->key;
      objects_.Insert(std::move(*o));
      if (!live) {
        objects_.Unlist(key);  // waits for the processes that pinned it to reattach or go
        ++waiting;
      } else {
        ++recovered;
      }
    }
  }
  dir_->Recount();
  // Processes that were building when the last csmd ended claim their arenas when they
  // attach again; what is left unclaimed after the grace period was dead builders'.
  reattach_grace_until_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.reattach_grace_ms);
  grace_timer_.expires_at(reattach_grace_until_);
  grace_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) EndReattachGrace();
  });
  CSM_LOG_INFO("restart: took back %llu objects (%s) and %llu deleted ones still pinned from %s in %.1f ms; "
               "%llu dropped",
               (unsigned long long)recovered, FormatSize(bytes).c_str(), (unsigned long long)waiting,
               state_->dir().c_str(), (os::MonotonicNanos() - start) / 1e6, (unsigned long long)dropped);
  return Status::OK();
}

void Daemon::Impl::ServeTakenBack() {
  arenas_.ForEachAfter(0, [&](const Arena& a) {
    if (a.replica_of == 0) peers_.AddArena(a.addr, a.size, a.fd.get(), a.fd_offset);
    return true;
  });
  objects_.ForEachLive([&](const Object& o) {
    if (!o.is_copy()) peers_.AddObject(o.id, o.extents);
  });
}

void Daemon::Impl::EndReattachGrace() {
  std::vector<uint64_t> unclaimed;
  arenas_.ForEachAfter(0, [&](const Arena& a) {
    if (a.recovered) unclaimed.push_back(a.id);
    return true;
  });
  uint64_t destroyed = 0;
  for (uint64_t id : unclaimed) {
    Arena& a = arenas_.at(id);
    a.recovered = false;
    given_up_[a.addr] = a.addr + a.size;
    if (a.objects == 0) {
      ++destroyed;
      MaybeDestroyArena(a);  // removes it
    } else {
      PunchUncommitted(a);  // keeps only the pages committed objects are on
    }
  }
  if (!unclaimed.empty()) {
    CSM_LOG_INFO("restart: %zu arenas no process claimed back (%llu held no committed object and are gone)",
                 unclaimed.size(), (unsigned long long)destroyed);
  }
  Sweep();  // deleted objects no process pinned again
}

Status Daemon::Impl::HandleClaimArenas(Session& c, WireReader& in) {
  protocol::ClaimArenas m;
  CSM_RETURN_IF_ERROR(protocol::Decode(in, &m));
  protocol::ClaimReply reply;
  for (uint64_t id : m.arena_ids) {
    Arena* a = arenas_.Find(id);
    if (a == nullptr || !a->recovered || a->owner != 0) continue;
    a->recovered = false;
    a->owner = c.id;
    c.arenas.insert(id);
    c.mapped.insert(id);  // mapped writable there already
    reply.claimed.push_back(id);
  }
  CSM_LOG_DEBUG("pid %d claimed %zu of %zu arenas back", c.cred.pid, reply.claimed.size(), m.arena_ids.size());
  WireWriter out = protocol::Encode(reply);
  return Sessions::Reply(c, out);
}

}  // namespace csm::node
