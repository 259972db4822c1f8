// Unix seqpacket sockets; see unix_socket.h.
#include "csm/os/unix_socket.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace csm::os {
namespace {

Result<sockaddr_un> MakeAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return InvalidArgument("socket path '" + path + "' is empty or longer than " +
                           std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

void RaiseBuffers(int fd) {
  int size = static_cast<int>(kMaxMessageBytes * 2);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
}

}  // namespace

Result<UniqueFd> ListenUnix(const std::string& path) {
  CSM_ASSIGN_OR_RETURN(sockaddr_un addr, MakeAddress(path));
  auto slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    std::string dir = path.substr(0, slash);
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return ErrnoError("mkdir(" + dir + ")", errno);
    }
  }
  // A socket file left by a dead daemon is removed; a live daemon answers connect().
  UniqueFd probe(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    return AlreadyExists("a csm node is already listening at " + path +
                         ": stop it (csm info shows it) or choose another --socket");
  }
  ::unlink(path.c_str());
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return ErrnoError("socket(AF_UNIX)", errno);
  mode_t old = ::umask(0177);
  int rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  int err = errno;
  ::umask(old);
  if (rc != 0) return ErrnoError("bind(" + path + ")", err);
  if (::listen(fd.get(), 4096) != 0) return ErrnoError("listen(" + path + ")", errno);
  return fd;
}

Result<UniqueFd> ConnectUnix(const std::string& path) {
  CSM_ASSIGN_OR_RETURN(sockaddr_un addr, MakeAddress(path));
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoError("socket(AF_UNIX)", errno);
  RaiseBuffers(fd.get());
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    if (err == ENOENT || err == ECONNREFUSED) {
      return Unavailable("csmd is not running at " + path +
                         ": start it with `csm node` (or set CSM_SOCKET to the socket of "
                         "a running node)");
    }
    if (err == EACCES) {
      return PermissionDenied("no permission to connect to csmd at " + path +
                              ": run as the daemon's user");
    }
    return ErrnoError("connect(" + path + ")", err);
  }
  return fd;
}

Result<UniqueFd> AcceptUnix(int listen_fd) {
  UniqueFd fd(::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC));
  if (!fd.valid()) {
    const int err = errno;
    if (err == EAGAIN || err == EWOULDBLOCK) return Unavailable("no connection is waiting");
    if (err == EMFILE || err == ENFILE) {
      return CapacityExceeded("accept: out of file descriptors (raise the open-files limit)");
    }
    return ErrnoError("accept", err);
  }
  RaiseBuffers(fd.get());
  return fd;
}

Result<PeerCredentials> GetPeerCredentials(int fd) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return ErrnoError("getsockopt(SO_PEERCRED)", errno);
  }
  return PeerCredentials{cred.pid, cred.uid, cred.gid};
}

Status SendMessage(int fd, const std::string& bytes, const std::vector<int>& fds,
                   int timeout_ms) {
  if (bytes.size() > kMaxMessageBytes || fds.size() > kMaxFdsPerMessage) {
    return Internal("message of " + std::to_string(bytes.size()) + " bytes / " +
                    std::to_string(fds.size()) + " fds is over the protocol limit");
  }
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control;
  if (!fds.empty()) {
    control.resize(CMSG_SPACE(sizeof(int) * fds.size()));
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  for (;;) {
    ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n >= 0) return Status::OK();
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      if (timeout_ms <= 0 || ::poll(&p, 1, timeout_ms) <= 0) {
        return Timeout("peer is not reading its socket");
      }
      continue;
    }
    if (errno == EPIPE || errno == ECONNRESET) return Unavailable("peer closed the socket");
    return ErrnoError("sendmsg", errno);
  }
}

Result<Message> ReceiveMessage(int fd, int timeout_ms) {
  if (timeout_ms >= 0) {
    pollfd p{fd, POLLIN, 0};
    int rc;
    do {
      rc = ::poll(&p, 1, timeout_ms);
    } while (rc < 0 && errno == EINTR);
    if (rc == 0) return Timeout("no answer within " + std::to_string(timeout_ms) + " ms");
  }
  Message out;
  // One receive buffer per thread, allocated once: a fresh (zeroed) 1 MiB per message
  // would cost more than the round trip itself.
  thread_local std::unique_ptr<char[]> buffer(new char[kMaxMessageBytes]);
  iovec iov{buffer.get(), kMaxMessageBytes};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == ECONNRESET) return Unavailable("peer closed the socket");
    return ErrnoError("recvmsg", errno);
  }
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int received;
        std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        out.fds.emplace_back(received);
      }
    }
  }
  if (n == 0) return Unavailable("peer closed the socket");
  if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
    return Corruption("message truncated: over " + std::to_string(kMaxMessageBytes) +
                      " bytes or too many descriptors");
  }
  out.bytes.assign(buffer.get(), static_cast<size_t>(n));
  return out;
}

}  // namespace csm::os
