// Sessions; see sessions.h.
#include "csm/node/sessions.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/post.hpp>

#include "csm/base/log.h"
#include "csm/protocol/messages.h"

namespace csm::node {

using protocol::MessageType;

namespace {
// Requests served from one session before the others get a turn.
constexpr int kBatch = 32;
// Connections accepted at once before clients already attached get a turn.
constexpr int kAcceptBatch = 256;
}  // namespace

Mapping::~Mapping() {
  if (addr != nullptr) ::munmap(addr, size);
}

Result<Mapping> MapShared(int fd, size_t size) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return ErrnoError("mmap", errno);
  return Mapping(p, size);
}

Session::Session(boost::asio::io_context& io, uint64_t session_id, os::UniqueFd fd,
                 os::PeerCredentials peer)
    : id(session_id), sock(io, fd.Release()), cred(peer) {}

std::vector<uint32_t> Session::TakeAccesses() {
  std::vector<uint32_t> slots;
  if (pin_map.addr == nullptr) return slots;
  const directory::AccessRing* ring = directory::AccessRingOf(pin_map.addr, pin_count);
  const uint64_t head = ring->head.load(std::memory_order_acquire);
  if (head < accesses_taken) accesses_taken = 0;  // not ours to trust: start over
  const uint64_t from = std::max(accesses_taken, head - std::min<uint64_t>(head, directory::kAccessRing));
  for (uint64_t i = from; i < head; ++i) {
    slots.push_back(ring->slots[i % directory::kAccessRing].load(std::memory_order_relaxed));
  }
  accesses_taken = head;
  return slots;
}

uint64_t Session::PinsOf(uint64_t object_id) const {
  uint64_t n = 0;
  if (pins() == nullptr) return 0;
  for (uint32_t i = 0; i < pin_count; ++i) {
    const uint64_t pinned = pins()[i].object_id.load();
    n += object_id == 0 ? pinned != 0 : pinned == object_id;
  }
  return n;
}

Sessions::Sessions(boost::asio::io_context& io, Admission::Limits limits, Hooks hooks)
    : io_(io), hooks_(std::move(hooks)), admission_(limits), hello_deadline_(io) {}

Sessions::~Sessions() = default;

void Sessions::Listen(os::UniqueFd listen_fd) {
  ::fcntl(listen_fd.get(), F_SETFL, ::fcntl(listen_fd.get(), F_GETFL) | O_NONBLOCK);
  listen_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, listen_fd.Release());
  WaitForConnections();
}

void Sessions::WaitForConnections() {
  listen_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                      [this](const boost::system::error_code& ec) {
                        if (!ec) Accept();
                      });
}

void Sessions::Accept() {
  for (int i = 0; i < kAcceptBatch; ++i) {
    auto sock = os::AcceptUnix(listen_->native_handle());
    if (!sock.ok() && sock.status().IsCapacityExceeded()) {  // out of descriptors
      if (auto oldest = admission_.Oldest()) {
        Drop(*oldest);
        continue;
      }
    }
    if (!sock.ok()) {
      if (!sock.status().IsUnavailable()) {
        CSM_LOG_WARN("accept failed: %s", sock.status().ToString().c_str());
      }
      return WaitForConnections();  // none left: the next one is a new event
    }
    auto cred = os::GetPeerCredentials(sock->get());
    if (!cred.ok()) continue;
    if (cred->uid != ::getuid() && cred->uid != 0) {
      CSM_LOG_WARN("refused pid %d: uid %u is not csmd's uid %u", cred->pid, cred->uid,
                   ::getuid());
      continue;
    }
    Adopt(std::move(*sock), *cred);
  }
  // More may be waiting: after everyone else's turn (the edge that told of them is spent).
  boost::asio::post(io_, [this] { Accept(); });
}

uint64_t Sessions::Adopt(os::UniqueFd sock, os::PeerCredentials cred) {
  const uint64_t id = next_id_++;
  if (auto make_room = admission_.Admit(id, cred.pid, os::MonotonicNanos())) {
    CSM_LOG_DEBUG("dropping a connection that has not said Hello: room for a newer one");
    Drop(*make_room);
  }
  // Non-blocking: a client that stops reading its replies is dropped, never waited on.
  ::fcntl(sock.get(), F_SETFL, ::fcntl(sock.get(), F_GETFL) | O_NONBLOCK);
  Session& s = sessions_.try_emplace(id, io_, id, std::move(sock), cred).first->second;
  Watch(s);
  ArmHelloDeadline();
  return id;
}

Session* Sessions::Find(uint64_t id) {
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : &it->second;
}

size_t Sessions::attached() const {
  size_t n = 0;
  for (const auto& [id, s] : sessions_) n += s.hello_done ? 1 : 0;
  return n;
}

void Sessions::Drop(uint64_t id) {
  admission_.Settled(id);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  // Off the list first (its pins no longer count), then the hook, then closed.
  auto node = sessions_.extract(it);
  Session& gone = node.mapped();  // its armed wait ends when it is closed, and finds it gone
  if (hooks_.dropped) hooks_.dropped(gone);
}

void Sessions::Attached(Session& s) {
  s.hello_done = true;
  admission_.Settled(s.id);
}

void Sessions::Hold(Session& s) {
  s.held = true;
  Watch(s);  // for its hang-up
}

Session* Sessions::Resume(uint64_t id, uint64_t request_id) {
  Session* s = Find(id);
  if (s == nullptr) return nullptr;
  s->held = false;
  s->request_id = request_id;
  // What it sent while held is served after the caller has answered this request.
  boost::asio::post(io_, [this, id] { Serve(id); });
  return s;
}

void Sessions::Watch(Session& s) {
  // Asio's waits report readiness as it is when armed (level, not edge): a session with
  // requests unread would wake a read wait at once, so a held one waits only for its
  // hang-up or an error.
  const auto kind = s.held ? boost::asio::posix::stream_descriptor::wait_error
                           : boost::asio::posix::stream_descriptor::wait_read;
  if (s.watching && s.watching_for_hangup == s.held) return;
  boost::system::error_code ignored;
  if (s.watching) s.sock.cancel(ignored);  // the other kind of wait ends, superseded
  s.watching = true;
  s.watching_for_hangup = s.held;
  const uint64_t watch = ++s.watch_count;
  s.sock.async_wait(kind, [this, id = s.id, watch](const boost::system::error_code& ec) {
    Session* found = Find(id);
    if (found == nullptr || found->watch_count != watch) return;  // gone, or superseded
    found->watching = false;
    if (!ec) OnReadable(id);
  });
}

void Sessions::OnReadable(uint64_t id) {
  Session* s = Find(id);
  if (s == nullptr) return;
  if (!s->held) return Serve(id);
  // Held: was that its hang-up, or a request sent early (read after Resume)?
  pollfd p{s->sock.native_handle(), 0, 0};
  if (::poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR)) != 0) return Drop(id);
  Watch(*s);  // its next event: more requests, or its hang-up
}

void Sessions::Serve(uint64_t id) {
  for (int i = 0; i < kBatch; ++i) {
    Session* s = Find(id);
    if (s == nullptr || s->held) return;  // Hold watches it; Resume serves it again
    switch (ServeOne(*s)) {
      case Served::kOne: continue;
      case Served::kNone: return Watch(*s);
      case Served::kDrop: return Drop(id);
    }
  }
  boost::asio::post(io_, [this, id] { Serve(id); });  // the others' turn first
}

Sessions::Served Sessions::ServeOne(Session& s) {
  auto msg = os::ReceiveMessage(s.sock.native_handle(), 0);
  if (!msg.ok()) {
    if (msg.status().IsTimeout()) return Served::kNone;
    if (!msg.status().IsUnavailable()) {
      CSM_LOG_WARN("client pid %d: %s", s.cred.pid, msg.status().ToString().c_str());
    }
    return Served::kDrop;
  }
  protocol::WireReader in(msg->bytes);
  MessageType type{};
  Status st = in.ReadHeader(&type);
  s.request_id = in.request_id();
  if (st.ok() && !s.hello_done && type != MessageType::kHello) {
    st = FailedPrecondition("the first message must be Hello");
  }
  s.fds = std::move(msg->fds);
  if (st.ok()) st = hooks_.handle(s, type, in);
  s.fds.clear();
  if (!st.ok()) {
    // A malformed message means the peer is not a csm client we understand: drop it.
    CSM_LOG_WARN("dropping client pid %d: %s", s.cred.pid, st.ToString().c_str());
    return Served::kDrop;
  }
  return Served::kOne;
}

void Sessions::ArmHelloDeadline() {
  int due_ms = -1;
  for (uint64_t late : admission_.Expire(os::MonotonicNanos(), &due_ms)) {
    CSM_LOG_DEBUG("dropping a connection that said no Hello in time");
    Drop(late);
  }
  if (due_ms < 0) return;
  hello_deadline_.expires_after(std::chrono::milliseconds(due_ms));  // cancels the last one
  hello_deadline_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) ArmHelloDeadline();
  });
}

Status Sessions::Reply(Session& s, protocol::WireWriter& out, const std::vector<int>& fds) {
  out.SetRequestId(s.request_id);
  return os::SendMessage(s.sock.native_handle(), out.bytes(), fds, /*timeout_ms=*/0);
}

Status Sessions::SendStatus(Session& s, MessageType type, const Status& st) {
  protocol::WireWriter out = protocol::FailureReply(type, st);  // or a StatusReply's success
  return Reply(s, out);
}

Status Sessions::ReplyJson(Session& s, const Result<std::string>& json) {
  protocol::WireWriter out = protocol::Encode(
      protocol::JsonReply{json.status(), json.ok() ? *json : std::string()});
  return Reply(s, out);
}

}  // namespace csm::node
