// Admission; see admission.h.
#include "csm/node/admission.h"

namespace csm::node {

std::optional<uint64_t> Admission::Admit(uint64_t id, pid_t pid, int64_t now_ns) {
  std::optional<uint64_t> drop;
  size_t from_pid = 0;
  std::optional<uint64_t> oldest_from_pid;
  for (const auto& [other, p] : pending_) {
    if (p.pid != pid) continue;
    if (!oldest_from_pid) oldest_from_pid = other;
    ++from_pid;
  }
  if (from_pid >= limits_.max_per_process) {
    drop = oldest_from_pid;
  } else if (pending_.size() >= limits_.max_pending) {
    drop = pending_.begin()->first;
  }
  if (drop) {
    pending_.erase(*drop);
    ++dropped_;
  }
  pending_[id] = Pending{pid, now_ns};
  return drop;
}

std::optional<uint64_t> Admission::Oldest() {
  if (pending_.empty()) return std::nullopt;
  uint64_t id = pending_.begin()->first;
  pending_.erase(pending_.begin());
  ++dropped_;
  return id;
}

std::vector<uint64_t> Admission::Expire(int64_t now_ns, int* next_ms) {
  std::vector<uint64_t> late;
  int64_t next = -1;
  const int64_t timeout_ns = int64_t{limits_.hello_timeout_ms} * 1000000;
  for (auto it = pending_.begin(); it != pending_.end();) {
    const int64_t left = it->second.since_ns + timeout_ns - now_ns;
    if (left <= 0) {
      late.push_back(it->first);
      it = pending_.erase(it);
      ++dropped_;
      continue;
    }
    if (next < 0 || left < next) next = left;
    ++it;
  }
  *next_ms = next < 0 ? -1 : static_cast<int>(next / 1000000 + 1);
  return late;
}

}  // namespace csm::node
