// RequestChannel: a client process's requests to csmd over its one socket, from any
// number of threads at once.
//
// Each request carries an id and csmd's reply carries it back (docs/protocol.md), so no
// thread waits behind another's round trip: a thread sends (a short lock), then waits for
// the reply with its id. Whichever waiting thread finds nobody reading the socket reads
// for everyone (leader/follower), handing each reply to the thread that asked, so the
// common case (one thread, one request) costs no thread switch. One-way messages
// (Unpinned, ReleaseArena) only take the send lock: they never wait for a reply.
//
// Thread-safety: every method may be called from any thread. Lifetime: owns the socket.
// A forked child must not use its parent's channel (its locks may be held by threads
// that do not exist in the child): it leaks it and makes a new one (client.cc).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "csm/protocol/protocol.h"
#include "csm/os/fd.h"
#include "csm/os/unix_socket.h"
#include "csm/status.h"

namespace csm::internal {

class RequestChannel {
 public:
  // `describe` names csmd in errors ("csmd at /run/csm/node.sock").
  RequestChannel(os::UniqueFd sock, std::string describe);
  RequestChannel(const RequestChannel&) = delete;
  RequestChannel& operator=(const RequestChannel&) = delete;

  // Sends `request` (its request id is set here) and returns the reply with the same id,
  // waiting up to timeout_ms: Timeout then (a reply that comes later is dropped), or
  // Unavailable once the socket failed (every later call too).
  // `fds` (borrowed) travel with the request.
  Result<os::Message> Call(protocol::WireWriter request, int timeout_ms, const std::vector<int>& fds = {});
  // Call in two halves, for several requests out at once from one thread: Start sends
  // and returns the request's id; Await waits for that id's reply (each id once).
  Result<uint64_t> Start(protocol::WireWriter request, const std::vector<int>& fds = {});
  Result<os::Message> Await(uint64_t id, int timeout_ms);
  // Sends a one-way message.
  Status Send(const protocol::WireWriter& message);

  int fd() const { return sock_.get(); }
  // Counters for tests: replies read by a thread other than the one that asked.
  uint64_t handed_over() const { return handed_over_.load(); }

 private:
  Status Lost(const Status& why) const;

  const os::UniqueFd sock_;
  const std::string describe_;
  std::atomic<uint64_t> next_id_{1};
  std::mutex send_mu_;  // one message at a time on the socket
  std::mutex mu_;       // guards what follows
  std::condition_variable arrived_cv_;
  bool reading_ = false;                               // a thread is reading for all
  std::unordered_map<uint64_t, os::Message> arrived_;  // replies not yet taken, by id
  std::unordered_set<uint64_t> abandoned_;             // ids whose caller timed out
  Status broken_;                                      // the socket failed: why
  std::atomic<uint64_t> handed_over_{0};
};

}  // namespace csm::internal
