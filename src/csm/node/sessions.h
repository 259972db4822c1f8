// Sessions: csmd's connections from client processes, served on the event loop's
// io_context — accepting, admission, reading requests in order, replying, and noticing
// a process that went away.
//
// A session's requests are handed one at a time, in the order sent, to Hooks::handle.
// A request that cannot be answered at once (it waits for the cluster directory) Holds
// its session: nothing more is read from it until Resume, but its hang-up is still
// noticed and drops it. Any request may be answered later by request id (Reply with the
// id saved when it came). A session that sends a malformed message, or whose socket is
// full because it does not read its replies, is dropped, never waited on.
//
// Owner: the daemon's event loop; every call and hook runs on the io_context's one
// thread. Unit-tested with socket pairs in one process (sessions_test.cc).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "csm/directory/directory_table.h"
#include "csm/node/admission.h"
#include "csm/os/memory.h"
#include "csm/os/unix_socket.h"
#include "csm/protocol/protocol.h"

namespace csm::node {

// An owned mapping outside the window (directory, pin tables).
struct Mapping {
  void* addr = nullptr;
  size_t size = 0;
  Mapping() = default;
  Mapping(void* a, size_t s) : addr(a), size(s) {}
  Mapping(Mapping&& o) noexcept : addr(std::exchange(o.addr, nullptr)), size(o.size) {}
  Mapping& operator=(Mapping&& o) noexcept {
    std::swap(addr, o.addr);
    std::swap(size, o.size);
    return *this;
  }
  ~Mapping();
};
Result<Mapping> MapShared(int fd, size_t size);

struct DestroyedArena {
  uint64_t id;
  uint64_t addr;
  uint64_t size;
};

// One attached process (or a connection that has not said Hello yet).
struct Session {
  Session(boost::asio::io_context& io, uint64_t id, os::UniqueFd fd, os::PeerCredentials cred);

  const uint64_t id;
  boost::asio::posix::stream_descriptor sock;  // owns the connection
  const os::PeerCredentials cred;
  bool hello_done = false;
  os::UniqueFd pin_fd;
  Mapping pin_map;
  uint32_t pin_count = 0;                 // entries in pin_map
  std::set<uint64_t> arenas;              // arenas it may write
  std::set<uint64_t> mapped;              // arenas it has been given (writable or read-only)
  std::vector<DestroyedArena> destroyed;  // of those, freed since its last sync
  uint64_t request_id = 0;                // of the request being answered (set before every reply)
  uint64_t accesses_taken = 0;            // its access ring's head when last read
  std::vector<os::UniqueFd> fds;          // sent with the message being handled

  const directory::PinEntry* pins() const {
    return static_cast<const directory::PinEntry*>(pin_map.addr);
  }
  // How many of its pin entries hold `object_id` (0: any object).
  uint64_t PinsOf(uint64_t object_id) const;
  // Its Gets since the last call (directory slots, the latest kAccessRing at most), from
  // the access ring after its pin table. The process writes them: they are only hints.
  std::vector<uint32_t> TakeAccesses();

 private:
  friend class Sessions;
  bool held = false;      // a request of its waits (Hold): nothing more is read until Resume
  bool watching = false;             // a wait for its next message or hang-up is armed
  bool watching_for_hangup = false;  // that wait is for its hang-up only (it is held)
  uint64_t watch_count = 0;          // waits armed so far: only the last one counts
};

class Sessions {
 public:
  struct Hooks {
    // One request of s (its header read: `type`, s.request_id set). A failure drops s (it
    // is not a csm client we understand); the hook answers s itself otherwise.
    std::function<Status(Session& s, protocol::MessageType type, protocol::WireReader& in)> handle;
    // s is gone (hung up, misbehaved, out of time, or dropped): it is no longer listed and
    // its pin table is unmapped when this returns.
    std::function<void(Session& s)> dropped;
  };
  Sessions(boost::asio::io_context& io, Admission::Limits limits, Hooks hooks);
  ~Sessions();

  // Accepts connections on `listen_fd` (a listening Unix socket) from now on. Only
  // processes of csmd's own user (or root) are kept: a client can read every object.
  void Listen(os::UniqueFd listen_fd);
  // A connected socket becomes a session (what Listen does with each accepted one).
  uint64_t Adopt(os::UniqueFd sock, os::PeerCredentials cred);

  Session* Find(uint64_t id);
  void Drop(uint64_t id);
  // s said Hello: no longer subject to the Hello deadline.
  void Attached(Session& s);
  // Nothing more is read from s until Resume (its request waits); its hang-up still drops it.
  void Hold(Session& s);
  // s (if still here) may send again; returns it with request_id set to `request_id`, so
  // a Reply answers that request. Requests it sent meanwhile are served after this.
  Session* Resume(uint64_t id, uint64_t request_id);

  template <typename F>
  void ForEach(F&& f) {
    for (auto& [id, s] : sessions_) f(s);
  }
  template <typename F>
  void ForEach(F&& f) const {
    for (const auto& [id, s] : sessions_) f(s);
  }
  size_t size() const { return sessions_.size(); }
  size_t attached() const;  // sessions that said Hello
  uint64_t dropped_before_hello() const { return admission_.dropped(); }

  // Sends `out` as the answer to s's request s.request_id. A session whose socket is full
  // is not reading: the caller drops it when this fails.
  static Status Reply(Session& s, protocol::WireWriter& out, const std::vector<int>& fds = {});
  static Status SendStatus(Session& s, protocol::MessageType type, const Status& st);
  // A JsonReply: the JSON text, or why there is none.
  static Status ReplyJson(Session& s, const Result<std::string>& json);

 private:
  void WaitForConnections();
  void Accept();
  void Watch(Session& s);     // arms one wait for s's next message or hang-up
  void OnReadable(uint64_t id);
  void Serve(uint64_t id);    // its pending requests, a bounded batch at a time
  enum class Served { kOne, kNone, kDrop };
  Served ServeOne(Session& s);
  void ArmHelloDeadline();

  boost::asio::io_context& io_;
  Hooks hooks_;
  Admission admission_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> listen_;
  boost::asio::steady_timer hello_deadline_;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, Session> sessions_;
};

}  // namespace csm::node
