// Authenticated TCP channel and server; see tcp_channel.h.
#include "csm/os/tcp_channel.h"

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

namespace csm::os {
namespace {

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
  int32_t status;
  Mac mac;
};
static_assert(sizeof(AuthReply) == 36);

// HMAC-SHA256(secret, role | a | b): the role keeps a client's proof from being
// replayed as a server's.
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

Status WaitFor(int fd, short events, int64_t deadline_ns, const char* what) {
  for (;;) {
    int64_t left_ms = (deadline_ns - MonotonicNanos()) / 1000000;
    if (left_ms <= 0) return Timeout(std::string(what) + " stalled past the timeout");
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left_ms, 1000)));
    if (rc > 0) return Status::OK();
    if (rc < 0 && errno != EINTR) return ErrnoError("poll", errno);
  }
}

int64_t DeadlineIn(int timeout_ms) { return MonotonicNanos() + int64_t{timeout_ms} * 1000000; }

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
    return InvalidArgument("address '" + address + "' is not host:port");
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

}  // namespace

Status StatusFromWire(int32_t code, std::string message) {
  if (code < 0 || code > static_cast<int32_t>(StatusCode::kInternal)) {
    return Corruption("peer sent unknown status code " + std::to_string(code));
  }
  return Status(static_cast<StatusCode>(code), std::move(message));
}

std::string SecretVerifier(const std::string& secret, const std::string& context) {
  uint8_t mac[kMac];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const uint8_t*>(context.data()), context.size(), mac, &len);
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[mac[i] >> 4];
    out += kHex[mac[i] & 15];
  }
  return out;
}

Status ReadAll(int fd, void* buf, size_t len, int timeout_ms, const char* what) {
  auto* p = static_cast<char*>(buf);
  int64_t deadline = DeadlineIn(timeout_ms);
  while (len > 0) {
    ssize_t n = ::recv(fd, p, len, MSG_DONTWAIT);
    if (n > 0) {
      p += n;
      len -= static_cast<size_t>(n);
      deadline = DeadlineIn(timeout_ms);
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
  int64_t deadline = DeadlineIn(timeout_ms);
  while (len > 0) {
    ssize_t n = ::send(fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      p += n;
      len -= static_cast<size_t>(n);
      deadline = DeadlineIn(timeout_ms);
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
  int64_t deadline = DeadlineIn(timeout_ms);
  while (len > 0) {
    ssize_t n = ::sendfile(sock, fd, &off, std::min<uint64_t>(len, 1ULL << 30));
    if (n > 0) {
      len -= static_cast<uint64_t>(n);
      deadline = DeadlineIn(timeout_ms);
      continue;
    }
    if (n == 0) return Internal("source file is shorter than the range sent");
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return Unavailable(std::string("sendfile: ") + std::strerror(errno));
    CSM_RETURN_IF_ERROR(WaitFor(sock, POLLOUT, deadline, "sending"));
  }
  return Status::OK();
}

Status SendFrame(int fd, const std::string& bytes, int timeout_ms) {
  uint32_t n = static_cast<uint32_t>(bytes.size());
  CSM_RETURN_IF_ERROR(WriteAll(fd, &n, sizeof(n), timeout_ms, "a message"));
  return WriteAll(fd, bytes.data(), bytes.size(), timeout_ms, "a message");
}

Result<std::string> ReceiveFrame(int fd, uint32_t max_bytes, int timeout_ms) {
  uint32_t n = 0;
  CSM_RETURN_IF_ERROR(ReadAll(fd, &n, sizeof(n), timeout_ms, "a message"));
  if (n > max_bytes) {
    return Corruption("peer sent a message of " + std::to_string(n) + " bytes (limit " +
                      std::to_string(max_bytes) + ")");
  }
  std::string bytes(n, '\0');
  CSM_RETURN_IF_ERROR(ReadAll(fd, bytes.data(), n, timeout_ms, "a message"));
  return bytes;
}

Result<UniqueFd> DialAuthenticated(const std::string& address, const std::string& secret,
                                   uint32_t service_magic, int timeout_ms) {
  CSM_ASSIGN_OR_RETURN(addrinfo * res, Resolve(address, false));
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(res, freeaddrinfo);
  UniqueFd sock(::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!sock.valid()) return ErrnoError("socket", errno);
  TuneSocket(sock.get());
  if (::connect(sock.get(), res->ai_addr, res->ai_addrlen) != 0 && errno != EINPROGRESS) {
    return Unavailable("peer " + address + " is unreachable: " + std::strerror(errno));
  }
  Status ready = WaitFor(sock.get(), POLLOUT, DeadlineIn(timeout_ms), "connecting");
  int err = 0;
  socklen_t len = sizeof(err);
  getsockopt(sock.get(), SOL_SOCKET, SO_ERROR, &err, &len);
  if (!ready.ok() || err != 0) {
    return Unavailable("peer " + address + " is unreachable: " +
                       (err != 0 ? std::string(std::strerror(err)) : ready.message()));
  }
  auto context = [&](const Status& s) { return s.WithContext("handshake with " + address); };
  Challenge challenge{};
  CSM_RETURN_IF_ERROR(context(ReadAll(sock.get(), &challenge, sizeof(challenge), timeout_ms, "the handshake")));
  if (challenge.magic != service_magic || challenge.version != kChannelVersion) {
    return Corruption("peer " + address + " is not the csm service expected there (another "
                      "service, port or csm version)");
  }
  Auth auth{RandomNonce(), {}};
  auth.mac = Prove(secret, "client", challenge.nonce, auth.nonce);
  CSM_RETURN_IF_ERROR(context(WriteAll(sock.get(), &auth, sizeof(auth), timeout_ms, "the handshake")));
  AuthReply reply{};
  CSM_RETURN_IF_ERROR(context(ReadAll(sock.get(), &reply, sizeof(reply), timeout_ms, "the handshake")));
  if (reply.status != 0) {
    return PermissionDenied("peer " + address + " refused our cluster secret: every node of a "
                            "cluster must be started with the same secret");
  }
  if (!SameMac(reply.mac, Prove(secret, "server", auth.nonce, challenge.nonce))) {
    return PermissionDenied("peer " + address + " does not know the cluster secret: refusing "
                            "to talk to it");
  }
  return sock;
}

Status AcceptAuthenticated(int fd, const std::string& secret, uint32_t service_magic,
                           int timeout_ms) {
  Challenge challenge{service_magic, kChannelVersion, 0, RandomNonce()};
  CSM_RETURN_IF_ERROR(WriteAll(fd, &challenge, sizeof(challenge), timeout_ms, "handshake"));
  Auth auth{};
  CSM_RETURN_IF_ERROR(ReadAll(fd, &auth, sizeof(auth), timeout_ms, "handshake"));
  AuthReply reply{};
  if (!SameMac(auth.mac, Prove(secret, "client", challenge.nonce, auth.nonce))) {
    reply.status = static_cast<int32_t>(StatusCode::kPermissionDenied);
    (void)WriteAll(fd, &reply, sizeof(reply), timeout_ms, "handshake");
    return PermissionDenied("a peer with the wrong cluster secret was refused");
  }
  reply.mac = Prove(secret, "server", auth.nonce, challenge.nonce);
  return WriteAll(fd, &reply, sizeof(reply), timeout_ms, "handshake");
}

// ---- TcpServer ----------------------------------------------------------------------

namespace {
std::string PeerAddress(int fd) {
  sockaddr_storage peer{};
  socklen_t len = sizeof(peer);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) return "?";
  char host[NI_MAXHOST] = {0};
  if (::getnameinfo(reinterpret_cast<sockaddr*>(&peer), len, host, sizeof(host), nullptr, 0, NI_NUMERICHOST) != 0) {
    return "?";
  }
  return host;
}
}  // namespace

Result<std::unique_ptr<TcpServer>> TcpServer::Start(const std::string& address, TcpServerOptions options,
                                                    Handler handler) {
  if (options.secret.empty()) return InvalidArgument("the cluster secret must not be empty");
  if (options.max_connections < 1 || options.max_handshakes < 1 || options.max_handshakes_per_source < 1 ||
      options.handshake_timeout_ms < 1) {
    return InvalidArgument("TcpServer limits must be positive");
  }
  CSM_ASSIGN_OR_RETURN(addrinfo * res, Resolve(address, true));
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(res, freeaddrinfo);
  std::unique_ptr<TcpServer> s(new TcpServer(std::move(options), std::move(handler)));
  s->listen_fd_.Reset(::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s->listen_fd_.valid()) return ErrnoError("socket", errno);
  int one = 1;
  setsockopt(s->listen_fd_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(s->listen_fd_.get(), res->ai_addr, res->ai_addrlen) != 0) {
    return ErrnoError("bind(" + address + ")", errno);
  }
  if (::listen(s->listen_fd_.get(), 1024) != 0) return ErrnoError("listen", errno);
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  getsockname(s->listen_fd_.get(), reinterpret_cast<sockaddr*>(&bound), &len);
  s->port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                               : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  s->stop_fd_.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  s->acceptor_ = std::thread([raw = s.get()] { raw->AcceptLoop(); });
  return s;
}

TcpServer::~TcpServer() {
  uint64_t one = 1;
  ssize_t ignored = ::write(stop_fd_.get(), &one, sizeof(one));
  (void)ignored;
  if (acceptor_.joinable()) acceptor_.join();
  std::unique_lock<std::mutex> lock(mu_);
  stopping_ = true;
  for (const auto& [fd, c] : connections_) ::shutdown(fd, SHUT_RDWR);  // their reads end at once
  idle_.wait(lock, [&] { return connections_.empty(); });
}

TcpServer::Counters TcpServer::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counters_;
}

void TcpServer::AcceptLoop() {
  for (;;) {
    pollfd p[2] = {{stop_fd_.get(), POLLIN, 0}, {listen_fd_.get(), POLLIN, 0}};
    if (::poll(p, 2, -1) < 0 && errno != EINTR) return;
    if (p[0].revents) return;
    if (!(p[1].revents & POLLIN)) continue;
    UniqueFd conn(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (conn.valid()) Admit(std::move(conn));
  }
}

void TcpServer::EvictOldestHandshake(const std::string& source) {
  int oldest = -1;
  uint64_t order = UINT64_MAX;
  for (const auto& [fd, c] : connections_) {
    if (c.authenticated || c.evicted || (!source.empty() && c.source != source)) continue;
    if (c.order < order) {
      order = c.order;
      oldest = fd;
    }
  }
  if (oldest < 0) return;
  connections_[oldest].evicted = true;
  ++counters_.evicted;
  ::shutdown(oldest, SHUT_RDWR);  // its handshake fails at once; its thread frees the slot
}

void TcpServer::Admit(UniqueFd conn) {
  Connection c;
  c.source = PeerAddress(conn.get());
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    ++counters_.accepted;
    size_t handshakes = 0, from_source = 0;
    for (const auto& [fd, other] : connections_) {
      if (other.authenticated || other.evicted) continue;
      ++handshakes;
      if (other.source == c.source) ++from_source;
    }
    if (from_source >= static_cast<size_t>(options_.max_handshakes_per_source)) {
      EvictOldestHandshake(c.source);
    } else if (handshakes >= static_cast<size_t>(options_.max_handshakes)) {
      EvictOldestHandshake("");
    }
    c.order = next_order_++;
    connections_[conn.get()] = c;
  }
  TuneSocket(conn.get());
  std::thread([this, fd = std::move(conn)]() mutable {
    Run(fd.get());
    std::lock_guard<std::mutex> lock(mu_);
    connections_.erase(fd.get());
    fd.Reset();  // closed under the lock, so its number cannot be reused while listed
    idle_.notify_all();  // the last touch of `this`: the destructor waits for the lock
  }).detach();
}

void TcpServer::Run(int fd) {
  Status auth = AcceptAuthenticated(fd, options_.secret, options_.service_magic, options_.handshake_timeout_ms);
  if (!auth.ok()) {
    if (auth.code() == StatusCode::kPermissionDenied) {
      CSM_LOG_WARN("%s: %s", options_.name.c_str(), auth.message().c_str());
    }
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    size_t served = 0;
    for (const auto& [other_fd, c] : connections_) served += c.authenticated ? 1 : 0;
    if (stopping_ || served >= static_cast<size_t>(options_.max_connections)) {
      ++counters_.refused;
      if (!stopping_) {
        CSM_LOG_WARN("%s: closing an authenticated connection from %s: %d are being served (the most at once)",
                     options_.name.c_str(), connections_[fd].source.c_str(), options_.max_connections);
      }
      return;
    }
    connections_[fd].authenticated = true;
    ++counters_.authenticated;
  }
  handler_(fd);
}

}  // namespace csm::os
