// The heartbeat thread; see membership.h.
#include "csm/node/membership.h"

#include <algorithm>

#include "csm/base/log.h"

namespace csm::node {

Membership::Membership(cluster::ClusterDirectory* directory, int heartbeat_ms, Hooks hooks)
    : directory_(directory), heartbeat_ms_(heartbeat_ms), hooks_(std::move(hooks)) {}

void Membership::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this] { Loop(); });
}

void Membership::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Membership::SetHeld(std::vector<Held> held) {
  std::lock_guard<std::mutex> lock(mu_);
  held_ = std::move(held);
}

std::vector<Membership::Held> Membership::held() const {
  std::lock_guard<std::mutex> lock(mu_);
  return held_;
}

void Membership::CheckStale(const std::vector<Held>& held) {
  if (held.empty()) return;
  auto stale = directory_->Stale(held);
  if (stale.ok() && !stale->empty()) hooks_.drop_stale(std::move(*stale));
  std::vector<Held> replicas;
  for (const Held& h : held) {
    if (h.replica) replicas.push_back(h);
  }
  if (replicas.empty() || !hooks_.taken_over) return;
  auto taken = directory_->TakeOver(replicas);
  if (!taken.ok()) {
    CSM_LOG_WARN("taking over objects of a dead node: %s", taken.status().ToString().c_str());
  } else if (!taken->empty()) {
    hooks_.taken_over(std::move(*taken));
  }
}

void Membership::WatchMembers() {
  std::lock_guard<std::mutex> lock(mu_);
  watch_members_ = true;
}

void Membership::CheckMembers() {
  auto members = directory_->Members();
  if (!members.ok()) return;
  std::vector<uint32_t> live;
  for (const auto& m : *members) {
    if (m.alive) live.push_back(m.node_id);
  }
  std::sort(live.begin(), live.end());
  if (live == live_) return;
  live_ = live;
  if (hooks_.live_changed) hooks_.live_changed(std::move(live));
}

void Membership::Rejoined() {
  std::lock_guard<std::mutex> lock(mu_);
  rejoining_ = false;
}

void Membership::Loop() {
  bool failing = false;
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, std::chrono::milliseconds(heartbeat_ms_), [&] { return stopping_; })) {
    lock.unlock();
    Status s = directory_->Heartbeat();
    if (!s.ok() && !failing) CSM_LOG_WARN("heartbeat failed: %s", s.ToString().c_str());
    if (s.ok() && failing) CSM_LOG_INFO("heartbeats reach the cluster again");
    failing = !s.ok();
    lock.lock();
    // The directory does not know us: the coordinator restarted. Register again, once.
    const bool rejoin = s.IsNotFound() && !rejoining_;
    if (rejoin) rejoining_ = true;
    std::vector<Held> held = held_;
    const bool watch_members = watch_members_;
    lock.unlock();
    if (rejoin) hooks_.rejoin();
    // Copies of objects deleted or replaced by their owner, or whose owner died, go.
    if (s.ok()) CheckStale(held);
    if (s.ok() && watch_members) CheckMembers();
    lock.lock();
  }
}

}  // namespace csm::node
