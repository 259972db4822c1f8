// csmd's part in replicas (docs/cluster.md, "Replicas"): fetching the objects this node
// is named a replica of as their records are heard, and taking them over when their
// owner dies; see daemon_impl.h. The directory chooses the replicas and who takes over
// (cluster/replicas.h).
#include <algorithm>

#include "csm/cluster/replicas.h"
#include "csm/node/daemon_impl.h"

namespace csm::node {

void Daemon::Impl::OnRecordHeard(const RecordHeard& heard) {
  const bool named = std::find(heard.replicas.begin(), heard.replicas.end(), node_id_) != heard.replicas.end();
  if (Object* o = objects_.Live(heard.key)) {
    // The same object, whoever serves it now (a replica that took it over serves the
    // same bytes at the same addresses), keeps its copy.
    const bool same = heard.published && o->owner_node != 0 && o->remote_id == heard.object_id;
    if (o->is_copy() && !same) {
      DropStaleReplicas({heard.key});
    } else if (o->is_copy() && heard.owner_node == node_id_) {
      // The directory handed it to this node (its owner's id rejoined afresh).
      cluster::ObjectRecord r;
      r.key = heard.key;
      r.owner_node = node_id_;
      r.object_id = heard.object_id;
      r.copies = heard.copies;
      r.replicas = heard.replicas;
      TakeOverCopies({r});
    } else if (heard.published && o->published_id() == heard.object_id) {
      // The replicas the directory chose (ours: at publish), or chose again.
      o->copies = heard.copies;
      o->replicas = heard.replicas;
      if (o->is_copy() && o->replica != named) {
        o->replica = named;
        RefreshReplicaList();
      }
    }
    return;
  }
  if (!heard.published || heard.owner_node == node_id_) return;
  if (named) {
    FetchAsReplica(heard.key);
  } else if (heard.size <= options_.cluster.copy_ahead_below) {
    CopyAhead(heard.key);
  }
}

void Daemon::Impl::FetchAsReplica(const std::string& key) {
  if (objects_.IsLive(key) || fetcher_.InFlight(key)) return;
  ++replica_fetches_;
  CSM_LOG_DEBUG("fetching '%s': this node holds one of its replicas", key.c_str());
  // As a reader's Get would (it may evict copies no one pins, never another replica);
  // FinishFetch marks the copy a replica from its record.
  StartFetch(key, {}, cluster::Freshness::kCachedOk);
}

void Daemon::Impl::TakeOverCopies(const std::vector<cluster::ObjectRecord>& records) {
  for (const cluster::ObjectRecord& r : records) {
    Object* o = objects_.Live(r.key);
    if (o != nullptr && o->taken_over && o->remote_id == r.object_id) continue;  // heard twice
    if (o == nullptr || !o->is_copy() || o->remote_id != r.object_id) {
      // Dropped here between the directory's answer and now: nobody holds it any more.
      CSM_LOG_WARN("'%s' was handed to this node after its owner died, but its copy here is gone: "
                   "the object is lost",
                   r.key.c_str());
      if (o == nullptr || o->remote_id != r.object_id) UnpublishLater(r.key);
      continue;
    }
    CSM_LOG_INFO("taking '%s' over from node %u, which is dead: served from this node's copy at the same addresses",
                 r.key.c_str(), o->owner_node);
    o->taken_over = true;
    o->replica = false;
    o->copies = r.copies;
    o->replicas = r.replicas;
    // Peers fetch it from here now: its replica arenas are served like our own.
    for (uint64_t id : o->arena_ids) {
      Arena& a = arenas_.at(id);
      if (!a.served) peers_.AddArena(a.addr, a.size, a.fd.get(), a.fd_offset);
      a.served = true;
    }
    peers_.AddObject(o->published_id(), o->extents);
    ++taken_over_;
    WatchReplicated(*o);
  }
  RefreshReplicaList();
  AnnounceChange();
}

void Daemon::Impl::WatchReplicated(const Object& o) {
  if (membership_ != nullptr && o.copies > 1) membership_->WatchMembers();
}

void Daemon::Impl::ChooseReplicasAgain(const std::vector<uint32_t>& live) {
  auto alive = [&](uint32_t n) { return std::find(live.begin(), live.end(), n) != live.end(); };
  objects_.ForEachLive([&](const Object& o) {
    if (o.is_copy() || o.copies <= 1) return;
    std::vector<uint32_t> keep;
    for (uint32_t n : o.replicas) {
      if (alive(n)) keep.push_back(n);
    }
    std::vector<uint32_t> chosen = cluster::ChooseReplicas(node_id_, o.copies, live, keep);
    if (chosen == o.replicas) return;
    CSM_LOG_INFO("'%s' keeps %u copies: its replicas are now %zu nodes (were %zu)", o.key.c_str(), o.copies,
                 chosen.size(), o.replicas.size());
    // The record's push brings the new list back here (OnRecordHeard).
    boost::asio::post(DirectoryThread(), [this, key = o.key, id = o.published_id(), chosen] {
      Status s = cluster_->SetReplicas(key, id, chosen);
      if (!s.ok() && !s.IsNotFound()) {
        CSM_LOG_WARN("naming the replicas of '%s': %s", key.c_str(), s.ToString().c_str());
      }
    });
  });
}

}  // namespace csm::node
