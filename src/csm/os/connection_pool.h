// Idle authenticated connections kept for reuse, per peer address.
//
// Dialing a peer costs a TCP connect and the secret handshake (several round trips and
// two HMACs); a node that talks to the same peers again and again (coordinator calls,
// fetches) reuses the connection instead. A connection goes back to the pool only after
// a complete exchange; one idle longer than max_idle_ms is closed instead of reused (the
// server hangs up idle connections after its own timeout).
//
// Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "csm/os/fd.h"
#include "csm/status.h"

namespace csm::os {

class ConnectionPool {
 public:
  struct Lease {
    UniqueFd fd;
    bool reused = false;  // came from the pool: the peer may have closed it meanwhile
  };

  ConnectionPool(std::string secret, uint32_t service_magic, int timeout_ms, int max_idle_ms,
                 size_t max_idle_per_peer = 4)
      : secret_(std::move(secret)), magic_(service_magic), timeout_ms_(timeout_ms),
        max_idle_ms_(max_idle_ms), max_idle_per_peer_(max_idle_per_peer) {}

  // An idle connection to `address`, or a new authenticated one.
  Result<Lease> Acquire(const std::string& address);
  // Dials afresh, skipping the pool.
  Result<Lease> Dial(const std::string& address);
  // Gives back a connection whose last exchange completed.
  void Release(const std::string& address, UniqueFd fd);

 private:
  struct Idle {
    UniqueFd fd;
    int64_t since_ns;
  };
  std::string secret_;
  uint32_t magic_;
  int timeout_ms_, max_idle_ms_;
  size_t max_idle_per_peer_;
  std::mutex mu_;
  std::map<std::string, std::vector<Idle>> idle_;  // guarded by mu_
};

}  // namespace csm::os
