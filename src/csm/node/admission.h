// Admission: which of csmd's connections that have not said Hello yet to drop, and when.
//
// A connection costs csmd a slot before it has proved anything, so it gets little: it
// must say Hello within `hello_timeout_ms` of connecting; at most `max_pending` may wait
// at once, and `max_per_process` from one process; a new connection past either cap
// makes the oldest waiting one (of that process, or overall) go. A flood of idle or
// garbage connections therefore cannot lock real clients out (docs/protocol.md).
//
// Owned by the event loop (no locking); it knows connections by id and decides, the
// daemon closes. Unit-tested without sockets (admission_test.cc).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

namespace csm::node {

class Admission {
 public:
  struct Limits {
    int hello_timeout_ms = 2000;
    size_t max_pending = 64;
    size_t max_per_process = 8;
  };
  explicit Admission(Limits limits) : limits_(limits) {}

  // A new connection from `pid` at `now_ns`. Returns the waiting connection to drop to
  // make room for it, if one must go (the caller drops it; Remove is then implied).
  std::optional<uint64_t> Admit(uint64_t id, pid_t pid, int64_t now_ns);
  // It said Hello, or it went away: no longer waiting.
  void Settled(uint64_t id) { pending_.erase(id); }
  // The oldest waiting connection (to free a descriptor when csmd has none left), if any.
  std::optional<uint64_t> Oldest();
  // The connections out of time at `now_ns` (no longer tracked) and the milliseconds
  // until the next one will be (-1: none waiting).
  std::vector<uint64_t> Expire(int64_t now_ns, int* next_ms);

  size_t waiting() const { return pending_.size(); }
  uint64_t dropped() const { return dropped_; }  // made room for, or out of time

 private:
  struct Pending {
    pid_t pid;
    int64_t since_ns;
  };
  const Limits limits_;
  std::map<uint64_t, Pending> pending_;  // by id: ids grow, so the first is the oldest
  uint64_t dropped_ = 0;
};

}  // namespace csm::node
