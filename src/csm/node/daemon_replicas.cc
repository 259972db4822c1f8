// csmd's part in replicas (docs/cluster.md, "Replicas"): fetching the objects this node
// is named a replica of as their records are heard, and taking them over when their
// owner dies; see daemon_impl.h. The directory chooses the replicas and who takes over
// (cluster/replicas.h).
#include <algorithm>

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
  }
  RefreshReplicaList();
  AnnounceChange();
}

}  // namespace csm::node
