// See connection_pool.h.
#include "csm/os/connection_pool.h"

#include "csm/os/memory.h"
#include "csm/os/tcp_channel.h"

namespace csm::os {

Result<ConnectionPool::Lease> ConnectionPool::Acquire(const std::string& address) {
  const int64_t now = MonotonicNanos();
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = idle_.find(address);
    while (it != idle_.end() && !it->second.empty()) {
      Idle idle = std::move(it->second.back());
      it->second.pop_back();
      if (now - idle.since_ns < int64_t{max_idle_ms_} * 1'000'000) return Lease{std::move(idle.fd), true};
    }
  }
  return Dial(address);
}

Result<ConnectionPool::Lease> ConnectionPool::Dial(const std::string& address) {
  CSM_ASSIGN_OR_RETURN(UniqueFd fd, DialAuthenticated(address, secret_, magic_, timeout_ms_));
  return Lease{std::move(fd), false};
}

void ConnectionPool::Release(const std::string& address, UniqueFd fd) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& list = idle_[address];
  if (list.size() < max_idle_per_peer_) list.push_back({std::move(fd), MonotonicNanos()});
}

}  // namespace csm::os
