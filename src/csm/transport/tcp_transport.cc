// The tcp transport; see tcp_transport.h and docs/transport.md.
#include "csm/transport/tcp_transport.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include "csm/base/log.h"
#include "csm/os/memory.h"

namespace csm::transport {
namespace {

constexpr uint32_t kTransportMagic = 0x54534d43;  // "CMST"
constexpr uint16_t kTransportVersion = 1;
constexpr uint64_t kMaxFetchBytes = 1ULL << 40;
constexpr size_t kNonce = 32, kMac = 32;
constexpr int kSocketBuffer = 4 << 20;

using Nonce = std::array<uint8_t, kNonce>;
using Mac = std::array<uint8_t, kMac>;

struct Challenge {
  uint32_t magic;
  uint16_t version;
  uint16_t reserved;
  Nonce nonce;
};
static_assert(sizeof(Challenge) == 40);

struct Auth {
  Nonce nonce;
  Mac mac;
};

struct AuthReply {
  int32_t status;  // StatusCode
  Mac mac;
};
static_assert(sizeof(AuthReply) == 36);

struct FetchHeader {
  uint32_t magic;
  uint32_t extent_count;
  uint64_t total_bytes;
};
static_assert(sizeof(FetchHeader) == 16);

struct FetchReply {
  int32_t status;
  uint32_t message_length;
};

// HMAC-SHA256(secret, role || a || b): role keeps a client's proof from being replayed
// as a server's.
Mac Prove(const std::string& secret, const char* role, const Nonce& a, const Nonce& b) {
  uint8_t data[8 + 2 * kNonce] = {0};
  std::strncpy(reinterpret_cast<char*>(data), role, 8);
  std::memcpy(data + 8, a.data(), kNonce);
  std::memcpy(data + 8 + kNonce, b.data(), kNonce);
  Mac mac{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), data, sizeof(data),
       mac.data(), &len);
  return mac;
}

bool SameMac(const Mac& a, const Mac& b) { return CRYPTO_memcmp(a.data(), b.data(), kMac) == 0; }

Nonce RandomNonce() {
  Nonce n{};
  RAND_bytes(n.data(), static_cast<int>(n.size()));
  return n;
}

// Waits until fd is ready for `events` or the deadline passes.
Status WaitFor(int fd, short events, int64_t deadline_ns, const char* what) {
  for (;;) {
    int64_t left_ms = (deadline_ns - os::MonotonicNanos()) / 1000000;
    if (left_ms <= 0) return Timeout(std::string(what) + " stalled past the transport timeout");
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left_ms, 1000)));
    if (rc > 0) return Status::OK();
    if (rc < 0 && errno != EINTR) return ErrnoError("poll", errno);
  }
}

// Reads exactly len bytes; the deadline moves forward with every bit of progress, so
// only a stall (not a large transfer) times out.
Status ReadAll(int fd, void* buf, size_t len, int timeout_ms, const char* what) {
  auto* p = static_cast<char*>(buf);
  int64_t deadline = os::MonotonicNanos() + int64_t{timeout_ms} * 1000000;
  while (len > 0) {
    ssize_t n = ::recv(fd, p, len, MSG_DONTWAIT);
    if (n > 0) {
      p += n;
      len -= static_cast<size_t>(n);
      deadline = os::MonotonicNanos() + int64_t{timeout_ms} * 1000000;
      continue;
    }
    if (n == 0) return Unavailable(std::string("peer closed the connection during ") + what);
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return Unavailable(std::string(what) + ": " + std::strerror(errno));
    CSM_RETURN_IF_ERROR(WaitFor(fd, POLLIN, deadline, what));
  }
  return Status::OK();
}

Status WriteAll(int fd, const void* buf, size_t len, int timeout_ms, const char* what) {
  const auto* p = static_cast<const char*>(buf);
  int64_t deadline = os::MonotonicNanos() + int64_t{timeout_ms} * 1000000;
  while (len > 0) {
    ssize_t n = ::send(fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      p += n;
      len -= static_cast<size_t>(n);
      deadline = os::MonotonicNanos() + int64_t{timeout_ms} * 1000000;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) return Unavailable(std::string(what) + ": " + std::strerror(errno));
    CSM_RETURN_IF_ERROR(WaitFor(fd, POLLOUT, deadline, what));
  }
  return Status::OK();
}

Status SendFileAll(int sock, int fd, uint64_t offset, uint64_t len, int timeout_ms) {
  off_t off = static_cast<off_t>(offset);
  int64_t deadline = os::MonotonicNanos() + int64_t{timeout_ms} * 1000000;
  while (len > 0) {
    ssize_t n = ::sendfile(sock, fd, &off, std::min<uint64_t>(len, 1ULL << 30));
    if (n > 0) {
      len -= static_cast<uint64_t>(n);
      deadline = os::MonotonicNanos() + int64_t{timeout_ms} * 1000000;
      continue;
    }
    if (n == 0) return Internal("source file is shorter than the extent");
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return Unavailable(std::string("sendfile: ") + std::strerror(errno));
    CSM_RETURN_IF_ERROR(WaitFor(sock, POLLOUT, deadline, "sending an extent"));
  }
  return Status::OK();
}

void TuneSocket(int fd) {
  int one = 1, buf = kSocketBuffer;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

Result<addrinfo*> Resolve(const std::string& address, bool passive) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
    return InvalidArgument("peer address '" + address + "' is not host:port");
  }
  std::string host = address.substr(0, colon), port = address.substr(colon + 1);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) return InvalidArgument("cannot resolve '" + address + "': " + gai_strerror(rc));
  return res;
}

Status StatusFromWire(int32_t code, std::string message) {
  if (code < 0 || code > static_cast<int32_t>(StatusCode::kInternal)) {
    return Corruption("peer sent unknown status code " + std::to_string(code));
  }
  return Status(static_cast<StatusCode>(code), std::move(message));
}

}  // namespace

// ---- client -------------------------------------------------------------------------

Status TcpTransport::Fetch(const std::string& address,
                           const std::vector<object::ObjectExtent>& extents,
                           const ExtentSink& sink) {
  const int timeout = options_.timeout_ms;
  auto context = [&](const Status& s) { return s.WithContext("fetching from peer " + address); };
  if (extents.empty() || extents.size() > object::kMaxExtents) {
    return InvalidArgument("a fetch names 1 to " + std::to_string(object::kMaxExtents) + " extents");
  }
  uint64_t total = 0;
  for (const auto& e : extents) total += e.length;

  CSM_ASSIGN_OR_RETURN(addrinfo * res, Resolve(address, false));
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(res, freeaddrinfo);
  os::UniqueFd sock(::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!sock.valid()) return ErrnoError("socket", errno);
  TuneSocket(sock.get());
  if (::connect(sock.get(), res->ai_addr, res->ai_addrlen) != 0 && errno != EINPROGRESS) {
    return Unavailable("peer " + address + " is unreachable: " + std::strerror(errno));
  }
  Status ready = WaitFor(sock.get(), POLLOUT, os::MonotonicNanos() + int64_t{timeout} * 1000000,
                         "connecting");
  int err = 0;
  socklen_t len = sizeof(err);
  getsockopt(sock.get(), SOL_SOCKET, SO_ERROR, &err, &len);
  if (!ready.ok() || err != 0) {
    return Unavailable("peer " + address + " is unreachable: " +
                       (err != 0 ? std::string(std::strerror(err)) : ready.message()));
  }

  Challenge challenge{};
  CSM_RETURN_IF_ERROR(context(ReadAll(sock.get(), &challenge, sizeof(challenge), timeout, "the handshake")));
  if (challenge.magic != kTransportMagic || challenge.version != kTransportVersion) {
    return Corruption("peer " + address + " does not speak csm transport version " +
                      std::to_string(kTransportVersion));
  }
  Auth auth{RandomNonce(), {}};
  auth.mac = Prove(options_.secret, "client", challenge.nonce, auth.nonce);
  CSM_RETURN_IF_ERROR(context(WriteAll(sock.get(), &auth, sizeof(auth), timeout, "the handshake")));
  AuthReply reply{};
  CSM_RETURN_IF_ERROR(context(ReadAll(sock.get(), &reply, sizeof(reply), timeout, "the handshake")));
  if (reply.status != 0) {
    return PermissionDenied("peer " + address + " refused our cluster secret: every node of a "
                            "cluster must be started with the same secret");
  }
  if (!SameMac(reply.mac, Prove(options_.secret, "server", auth.nonce, challenge.nonce))) {
    return PermissionDenied("peer " + address + " does not know the cluster secret: refusing "
                            "its data");
  }

  std::string request(sizeof(FetchHeader) + extents.size() * sizeof(object::ObjectExtent), '\0');
  FetchHeader header{kTransportMagic, static_cast<uint32_t>(extents.size()), total};
  std::memcpy(request.data(), &header, sizeof(header));
  std::memcpy(request.data() + sizeof(header), extents.data(),
              extents.size() * sizeof(object::ObjectExtent));
  CSM_RETURN_IF_ERROR(context(WriteAll(sock.get(), request.data(), request.size(), timeout, "the request")));
  FetchReply fr{};
  CSM_RETURN_IF_ERROR(context(ReadAll(sock.get(), &fr, sizeof(fr), timeout, "the reply")));
  if (fr.message_length > 4096) return Corruption("peer " + address + " sent an oversized reply");
  std::string message(fr.message_length, '\0');
  CSM_RETURN_IF_ERROR(context(ReadAll(sock.get(), message.data(), message.size(), timeout, "the reply")));
  if (fr.status != 0) return context(StatusFromWire(fr.status, message));

  for (const auto& e : extents) {
    CSM_ASSIGN_OR_RETURN(char* dest, sink(e.addr, e.length));
    CSM_RETURN_IF_ERROR(context(ReadAll(sock.get(), dest, e.length, timeout, "an extent")));
  }
  return Status::OK();
}

// ---- server -------------------------------------------------------------------------

Result<std::unique_ptr<TcpTransportServer>> TcpTransportServer::Start(
    const std::string& address, PeerOptions options, ExtentSource source, int max_connections) {
  if (options.secret.empty()) return InvalidArgument("the cluster secret must not be empty");
  CSM_ASSIGN_OR_RETURN(addrinfo * res, Resolve(address, true));
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(res, freeaddrinfo);
  std::unique_ptr<TcpTransportServer> s(
      new TcpTransportServer(std::move(options), std::move(source), max_connections));
  s->listen_fd_.Reset(::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s->listen_fd_.valid()) return ErrnoError("socket", errno);
  int one = 1;
  setsockopt(s->listen_fd_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(s->listen_fd_.get(), res->ai_addr, res->ai_addrlen) != 0) {
    return ErrnoError("bind(" + address + ")", errno);
  }
  if (::listen(s->listen_fd_.get(), 128) != 0) return ErrnoError("listen", errno);
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  getsockname(s->listen_fd_.get(), reinterpret_cast<sockaddr*>(&bound), &len);
  s->port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                               : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  s->stop_fd_.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  s->acceptor_ = std::thread([raw = s.get()] { raw->AcceptLoop(); });
  return s;
}

TcpTransportServer::~TcpTransportServer() {
  uint64_t one = 1;
  ssize_t ignored = ::write(stop_fd_.get(), &one, sizeof(one));
  (void)ignored;
  if (acceptor_.joinable()) acceptor_.join();
  std::unique_lock<std::mutex> lock(mu_);
  stopping_ = true;
  for (int fd : connections_) ::shutdown(fd, SHUT_RDWR);  // their reads end at once
  idle_.wait(lock, [&] { return connections_.empty(); });
}

void TcpTransportServer::AcceptLoop() {
  for (;;) {
    pollfd p[2] = {{stop_fd_.get(), POLLIN, 0}, {listen_fd_.get(), POLLIN, 0}};
    if (::poll(p, 2, -1) < 0 && errno != EINTR) return;
    if (p[0].revents) return;
    if (!(p[1].revents & POLLIN)) continue;
    os::UniqueFd conn(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn.valid()) continue;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_ || connections_.size() >= static_cast<size_t>(max_connections_)) {
        continue;  // closes it: the peer sees the connection end and may retry
      }
      connections_.insert(conn.get());
    }
    TuneSocket(conn.get());
    std::thread([this, c = std::move(conn)]() mutable {
      Serve(c.get());
      std::lock_guard<std::mutex> lock(mu_);
      connections_.erase(c.get());
      c.Reset();  // closed under the lock, so its number cannot be reused while listed
      idle_.notify_all();  // the last touch of `this`: the destructor waits for the lock
    }).detach();
  }
}

void TcpTransportServer::Serve(int fd) {
  const int timeout = options_.timeout_ms;
  Challenge challenge{kTransportMagic, kTransportVersion, 0, RandomNonce()};
  if (!WriteAll(fd, &challenge, sizeof(challenge), timeout, "handshake").ok()) return;
  Auth auth{};
  if (!ReadAll(fd, &auth, sizeof(auth), timeout, "handshake").ok()) return;
  AuthReply reply{};
  if (!SameMac(auth.mac, Prove(options_.secret, "client", challenge.nonce, auth.nonce))) {
    reply.status = static_cast<int32_t>(StatusCode::kPermissionDenied);
    (void)WriteAll(fd, &reply, sizeof(reply), timeout, "handshake");
    CSM_LOG_WARN("transport: refused a peer with the wrong cluster secret");
    return;
  }
  reply.mac = Prove(options_.secret, "server", auth.nonce, challenge.nonce);
  if (!WriteAll(fd, &reply, sizeof(reply), timeout, "handshake").ok()) return;

  for (;;) {  // fetches until the peer hangs up
    FetchHeader h{};
    if (!ReadAll(fd, &h, sizeof(h), timeout, "request").ok()) return;
    if (h.magic != kTransportMagic || h.extent_count == 0 || h.extent_count > object::kMaxExtents ||
        h.total_bytes > kMaxFetchBytes) {
      CSM_LOG_WARN("transport: malformed fetch request; closing the connection");
      return;
    }
    std::vector<object::ObjectExtent> extents(h.extent_count);
    if (!ReadAll(fd, extents.data(), extents.size() * sizeof(object::ObjectExtent), timeout,
                 "request").ok()) {
      return;
    }
    // Check the whole request before sending a byte: every extent must lie in memory
    // this node owns, and the lengths must add up.
    Status verdict;
    std::vector<SourceRange> ranges;
    uint64_t sum = 0;
    for (const auto& e : extents) {
      if (e.length == 0 || e.addr + e.length < e.addr) {
        verdict = InvalidArgument("empty or wrapping extent");
        break;
      }
      sum += e.length;
      auto r = source_(e.addr, e.length);
      if (!r.ok()) {
        verdict = r.status();
        break;
      }
      ranges.push_back(*r);
    }
    if (verdict.ok() && sum != h.total_bytes) verdict = InvalidArgument("extent lengths do not add up");
    FetchReply fr{static_cast<int32_t>(verdict.code()),
                  static_cast<uint32_t>(std::min<size_t>(verdict.message().size(), 4096))};
    if (!WriteAll(fd, &fr, sizeof(fr), timeout, "reply").ok() ||
        !WriteAll(fd, verdict.message().data(), fr.message_length, timeout, "reply").ok()) {
      return;
    }
    if (!verdict.ok()) continue;
    for (size_t i = 0; i < extents.size(); ++i) {
      if (!SendFileAll(fd, ranges[i].fd, ranges[i].offset, extents[i].length, timeout).ok()) return;
    }
  }
}

}  // namespace csm::transport
