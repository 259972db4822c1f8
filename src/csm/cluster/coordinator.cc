// The embedded coordinator's state: members, leases, records, watches; see
// coordinator.h and docs/cluster.md. Its server is coordinator_server.cc, the nodes'
// view of a remote one remote_coordinator.cc.
#include "csm/cluster/coordinator.h"

#include <algorithm>
#include <chrono>

#include "csm/base/log.h"
#include "csm/cluster/records_json.h"  // Describe
#include "csm/cluster/replicas.h"
#include "csm/os/memory.h"

namespace csm::cluster {

Coordinator::Coordinator(std::string cluster, const WindowConfig& window, uint64_t fingerprint,
                         std::string fingerprint_text, int dead_after_ms, int heartbeat_ms)
    : cluster_(std::move(cluster)),
      window_(window),
      fingerprint_(fingerprint),
      fingerprint_text_(std::move(fingerprint_text)),
      dead_after_ns_(int64_t{dead_after_ms} * 1000000),
      recovery_end_ns_(os::MonotonicNanos() +
                       std::min<int64_t>(int64_t{4} * heartbeat_ms, dead_after_ms) * 1000000),
      segments_(window) {}

int64_t Coordinator::RecoveryLeftMs() {
  return std::max<int64_t>(0, (recovery_end_ns_ - os::MonotonicNanos() + 999999) / 1000000);
}

bool Coordinator::AwaitRecovery(std::unique_lock<std::mutex>& lock) {
  while (!stopping_ && os::MonotonicNanos() < recovery_end_ns_) {
    changed_.wait_for(lock, std::chrono::nanoseconds(recovery_end_ns_ - os::MonotonicNanos()));
  }
  return !stopping_;
}

bool Coordinator::Alive(const Member& m, int64_t now) const {
  return now - m.last_seen_ns < dead_after_ns_;
}

Status Coordinator::CheckJoin(const NodeInfo& node) const {
  if (node.node_id == 0) return InvalidArgument("node ids start at 1");
  if (node.cluster != cluster_) {
    return FailedPrecondition("node " + std::to_string(node.node_id) + " belongs to cluster '" +
                              node.cluster + "', this coordinator serves cluster '" + cluster_ + "'");
  }
  if (!(node.window == window_)) {
    return FailedPrecondition("node " + std::to_string(node.node_id) + " uses window " +
                              Describe(node.window) + " but the cluster uses " +
                              Describe(window_) + ": start every node with the same heap_base, "
                              "heap_size and segment_size");
  }
  if (node.fingerprint != fingerprint_) {
    return FailedPrecondition("node " + std::to_string(node.node_id) + " runs a different csm "
                              "build (" + node.fingerprint_text + ") than the cluster (" +
                              fingerprint_text_ + "): objects are shared in place only "
                              "between identical builds");
  }
  auto it = members_.find(node.node_id);
  if (it != members_.end() && Alive(it->second, os::MonotonicNanos()) &&
      (it->second.info.incarnation != node.incarnation || node.incarnation == 0)) {
    // Even a restart of the same node must wait: until the old incarnation is seen dead,
    // its segments may still hold objects others rely on.
    const std::string& at = it->second.info.peer_address;
    return AlreadyExists("node id " + std::to_string(node.node_id) + " is taken by a live node" +
                         (at.empty() ? "" : " at " + at) + ": give every node its own --node-id "
                         "(a restarted node can rejoin " + std::to_string(dead_after_ns_ / 1000000) +
                         " ms after its old incarnation went silent)");
  }
  return Status::OK();
}

Status Coordinator::Join(const NodeInfo& node) {
  std::lock_guard<std::mutex> lock(mu_);
  CSM_RETURN_IF_ERROR(CheckJoin(node));
  int64_t now = os::MonotonicNanos();
  auto it = members_.find(node.node_id);
  if (it != members_.end() && it->second.info.incarnation == node.incarnation && node.incarnation != 0) {
    it->second.last_seen_ns = now;  // the same incarnation joining again: nothing is lost
    return Status::OK();
  }
  if (it != members_.end()) {
    // A new incarnation: whatever the old one owned died with it, but for the objects a
    // live replica holds, taken over now by their first live replica (before their
    // replicas' next heartbeat would) so the new incarnation's id does not answer for them.
    for (auto o = objects_.begin(); o != objects_.end();) {
      if (o->second.owner_node != node.node_id) {
        ++o;
        continue;
      }
      uint32_t heir = 0;
      for (uint32_t n : o->second.replicas) {
        auto r = members_.find(n);
        if (n != node.node_id && r != members_.end() && Alive(r->second, now)) {
          heir = n;
          break;
        }
      }
      if (heir != 0) {
        TakeOverLocked(o->second, heir, now);
        ++o;
        continue;
      }
      Changed(o->first, nullptr, now);
      o = objects_.erase(o);
    }
    for (const auto& l : it->second.info.leases) segments_.Release(l.first, l.count);
  }
  Member m{node, now};
  m.info.leases.clear();
  members_[node.node_id] = std::move(m);
  CSM_LOG_INFO("coordinator: node %u joined (%s)", node.node_id, node.peer_address.c_str());
  return Status::OK();
}

Status Coordinator::Rejoin(const NodeInfo& node, const std::vector<SegmentLease>& leases) {
  std::lock_guard<std::mutex> lock(mu_);
  CSM_RETURN_IF_ERROR(CheckJoin(node));
  auto it = members_.find(node.node_id);
  if (it != members_.end() && it->second.info.incarnation != node.incarnation) {
    return FailedPrecondition("node " + std::to_string(node.node_id) + " has joined again since: "
                              "restart this node");
  }
  if (it != members_.end()) {
    // The same memory coming back (its csmd restarted with its state): what it holds
    // now replaces what it held.
    for (const auto& l : it->second.info.leases) segments_.Release(l.first, l.count);
  }
  std::vector<SegmentLease> claimed;
  for (const auto& l : leases) {
    if (!segments_.Claim(node.node_id, l.first, l.count)) {
      for (const auto& c : claimed) segments_.Release(c.first, c.count);
      return FailedPrecondition("node " + std::to_string(node.node_id) + " holds segments " +
                                std::to_string(l.first) + "+" + std::to_string(l.count) +
                                " that the restarted coordinator has leased to another node: it was "
                                "away too long to re-register; restart it");
    }
    claimed.push_back(l);
  }
  Member m{node, os::MonotonicNanos()};
  m.info.leases = leases;
  members_[node.node_id] = std::move(m);
  CSM_LOG_INFO("coordinator: node %u re-registered (%s) with %zu segment leases", node.node_id,
               node.peer_address.c_str(), leases.size());
  return Status::OK();
}

Status Coordinator::Reregister(uint32_t node_id, const std::vector<ObjectRecord>& records,
                               std::vector<std::string>* conflicts) {
  std::lock_guard<std::mutex> lock(mu_);
  if (members_.find(node_id) == members_.end()) {
    return NotFound("node " + std::to_string(node_id) + " is not a member: rejoin first");
  }
  int64_t now = os::MonotonicNanos();
  for (const auto& r : records) {
    if (r.owner_node != node_id) return PermissionDenied("a node re-registers only its own objects");
    auto it = objects_.find(r.key);
    if (it != objects_.end()) {
      if (it->second.owner_node == node_id && it->second.object_id == r.object_id) continue;
      auto owner = members_.find(it->second.owner_node);
      if (it->second.owner_node != node_id && owner != members_.end() && Alive(owner->second, now)) {
        conflicts->push_back(r.key);
        continue;
      }
    }
    ObjectRecord& kept = objects_[r.key] = r;
    if (kept.copies > 1 && kept.replicas.empty()) kept.replicas = ChooseReplicas(node_id, kept.copies, LiveIds(now), {});
    Changed(r.key, &kept, now);
  }
  return Status::OK();
}

Result<uint64_t> Coordinator::Lease(uint32_t node_id, uint64_t count) {
  std::unique_lock<std::mutex> lock(mu_);
  // Segments a re-registering node holds must be known before any is handed out.
  if (!AwaitRecovery(lock)) return Unavailable("the coordinator is stopping");
  auto it = members_.find(node_id);
  if (it == members_.end()) return FailedPrecondition("node " + std::to_string(node_id) + " has not joined");
  auto first = segments_.Lease(node_id, count);
  if (!first) {
    return CapacityExceeded("the cluster's window has no run of " + std::to_string(count) +
                            " free segments left (" + std::to_string(segments_.leased_count()) +
                            " of " + std::to_string(segments_.segment_count()) +
                            " leased): raise heap_size on every node");
  }
  it->second.info.leases.push_back({*first, count});
  it->second.last_seen_ns = os::MonotonicNanos();
  return *first;
}

Status Coordinator::Heartbeat(uint32_t node_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = members_.find(node_id);
  if (it == members_.end()) {
    return NotFound("node " + std::to_string(node_id) + " is not a member (the coordinator may "
                    "have restarted): join again");
  }
  it->second.last_seen_ns = os::MonotonicNanos();
  return Status::OK();
}

std::vector<NodeInfo> Coordinator::Members() {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t now = os::MonotonicNanos();
  std::vector<NodeInfo> out;
  for (const auto& [id, m] : members_) {
    NodeInfo n = m.info;
    n.alive = Alive(m, now);
    n.last_seen_ms_ago = (now - m.last_seen_ns) / 1000000;
    out.push_back(std::move(n));
  }
  return out;
}

ObjectRecord Coordinator::Annotated(const ObjectRecord& r, int64_t now) const {
  ObjectRecord out = r;
  auto m = members_.find(r.owner_node);
  out.owner_alive = m != members_.end() && Alive(m->second, now);
  out.owner_address = m != members_.end() ? m->second.info.peer_address : "";
  return out;
}

std::vector<uint32_t> Coordinator::LiveIds(int64_t now) const {
  std::vector<uint32_t> live;
  for (const auto& [id, m] : members_) {
    if (Alive(m, now)) live.push_back(id);
  }
  return live;
}

Status Coordinator::Publish(const ObjectRecord& published, std::vector<uint32_t>* replicas) {
  std::unique_lock<std::mutex> lock(mu_);
  ObjectRecord record = published;
  if (record.copies > 1 && record.replicas.empty()) {
    record.replicas = ChooseReplicas(record.owner_node, record.copies, LiveIds(os::MonotonicNanos()), {});
  }
  // Keys a re-registering node holds must be known before any is given to another.
  if (!AwaitRecovery(lock)) return Unavailable("the coordinator is stopping");
  int64_t now = os::MonotonicNanos();
  auto it = objects_.find(record.key);
  if (it != objects_.end()) {
    auto owner = members_.find(it->second.owner_node);
    bool owner_alive = owner != members_.end() && Alive(owner->second, now);
    if (owner_alive) {
      return AlreadyExists("key '" + record.key + "' is already committed on node " +
                           std::to_string(it->second.owner_node) +
                           ": objects are immutable; delete it first or choose another key");
    }
    // Its owner is dead and the object with it: the key is free again.
  }
  objects_[record.key] = record;
  Changed(record.key, &record, now);
  if (replicas != nullptr) *replicas = record.replicas;
  return Status::OK();
}

Status Coordinator::Unpublish(const std::string& key, uint32_t owner_node) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = objects_.find(key);
  if (it == objects_.end() || it->second.owner_node != owner_node) {
    return NotFound("node " + std::to_string(owner_node) + " publishes no object '" + key + "'");
  }
  objects_.erase(it);
  Changed(key, nullptr, os::MonotonicNanos());
  return Status::OK();
}

void Coordinator::Changed(const std::string& key, const ObjectRecord* record, int64_t now) {
  RecordChange c{++revision_, key, std::nullopt};
  if (record != nullptr) c.record = Annotated(*record, now);
  if (listener_) listener_(key, c.record ? &*c.record : nullptr);
  history_.push_back(std::move(c));
  while (history_.size() > kWatchHistory) history_.pop_front();
  changed_.notify_all();
}

RecordChanges Coordinator::Watch(uint64_t after, int wait_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  RecordChanges out;
  if (after != kWatchFromNow) {
    changed_.wait_for(lock, std::chrono::milliseconds(wait_ms),
                      [&] { return stopping_ || revision_ > after; });
  }
  out.revision = revision_;
  if (after == kWatchFromNow || revision_ == after) return out;
  // The changes after `after` must all still be kept (a watcher from another
  // coordinator's life may claim a revision this one never reached).
  if (after > revision_ || history_.empty() || history_.front().revision > after + 1) {
    out.reset = true;
    return out;
  }
  auto first = history_.begin() + static_cast<std::ptrdiff_t>(after + 1 - history_.front().revision);
  for (auto c = first; c != history_.end() && out.changes.size() < kWatchBatch; ++c) {
    out.changes.push_back(*c);
  }
  out.revision = out.changes.back().revision;
  return out;
}

void Coordinator::SetListener(RecordListener listener) {
  std::lock_guard<std::mutex> lock(mu_);
  listener_ = std::move(listener);
}

void Coordinator::StopWatches() {
  std::lock_guard<std::mutex> lock(mu_);
  stopping_ = true;
  changed_.notify_all();
}

Result<ObjectRecord> Coordinator::Lookup(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = objects_.find(key);
  const int64_t now = os::MonotonicNanos();
  if (it == objects_.end() && now < recovery_end_ns_) {
    return Unavailable("the coordinator restarted and nodes are re-registering their objects for " +
                       std::to_string((recovery_end_ns_ - now) / 1000000 + 1) + " ms more: '" + key +
                       "' may be among them; ask again");
  }
  if (it == objects_.end()) return NotFound("no object under key '" + key + "' in the cluster");
  return Annotated(it->second, os::MonotonicNanos());
}

std::vector<ObjectRecord> Coordinator::List(const std::string& after, uint32_t limit, bool* more) {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t now = os::MonotonicNanos();
  std::vector<ObjectRecord> out;
  for (auto it = objects_.upper_bound(after); it != objects_.end(); ++it) {
    if (out.size() == limit) {
      *more = true;
      return out;
    }
    out.push_back(Annotated(it->second, now));
  }
  *more = false;
  return out;
}

std::vector<std::string> Coordinator::Stale(const std::vector<ClusterDirectory::Held>& held) {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t now = os::MonotonicNanos();
  std::vector<std::string> stale;
  auto alive = [&](uint32_t n) {
    auto m = members_.find(n);
    return m != members_.end() && Alive(m->second, now);
  };
  for (const auto& h : held) {
    auto it = objects_.find(h.key);
    if (it == objects_.end() || !CopyStillGood(it->second, h.object_id, alive)) stale.push_back(h.key);
  }
  return stale;
}

std::vector<ObjectRecord> Coordinator::TakeOver(uint32_t node_id,
                                                const std::vector<ClusterDirectory::Held>& held) {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t now = os::MonotonicNanos();
  auto alive = [&](uint32_t n) {
    auto m = members_.find(n);
    return m != members_.end() && Alive(m->second, now);
  };
  std::vector<ObjectRecord> out;
  if (!alive(node_id)) return out;
  for (const auto& h : held) {
    auto it = objects_.find(h.key);
    if (it == objects_.end() || !ShouldTakeOver(it->second, h.object_id, node_id, alive)) continue;
    TakeOverLocked(it->second, node_id, now);
    out.push_back(Annotated(it->second, now));
  }
  return out;
}

Status Coordinator::SetReplicas(uint32_t node_id, const std::string& key, uint64_t object_id,
                                const std::vector<uint32_t>& replicas) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = objects_.find(key);
  if (it == objects_.end() || it->second.owner_node != node_id || it->second.object_id != object_id) {
    return NotFound("node " + std::to_string(node_id) + " publishes no object " + std::to_string(object_id) +
                    " under '" + key + "'");
  }
  if (replicas.size() >= it->second.copies) {
    return InvalidArgument("'" + key + "' keeps " + std::to_string(it->second.copies) + " copies: at most " +
                           std::to_string(it->second.copies - 1) + " replicas");
  }
  if (it->second.replicas == replicas) return Status::OK();
  it->second.replicas = replicas;
  Changed(key, &it->second, os::MonotonicNanos());
  return Status::OK();
}

void Coordinator::TakeOverLocked(ObjectRecord& record, uint32_t node_id, int64_t now) {
  CSM_LOG_INFO("coordinator: node %u takes '%s' over from node %u", node_id, record.key.c_str(),
               record.owner_node);
  // Its addresses must not be leased to anyone else while it lives there: the leases
  // under its arenas move to the new owner, from whichever dead member holds them.
  auto& to = members_.at(node_id).info.leases;
  for (const auto& [first, last] : SegmentsOf(record, window_)) {
    for (auto& [id, m] : members_) {
      if (id == node_id || Alive(m, now)) continue;
      auto& from = m.info.leases;
      for (auto l = from.begin(); l != from.end();) {
        if (l->first <= last && first < l->first + l->count) {
          segments_.Release(l->first, l->count);
          segments_.Claim(node_id, l->first, l->count);
          to.push_back(*l);
          l = from.erase(l);
        } else {
          ++l;
        }
      }
    }
  }
  record = TakenOver(record, node_id, LiveIds(now));
  Changed(record.key, &record, now);
}

}  // namespace csm::cluster
