// Blocking TCP helpers shared by the cross-node benchmarks (wire_bench,
// arrow_wire_bench): whole sends and receives, socket tuning, and dialing a peer.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <string>

namespace csm::bench {

inline void SendAll(int fd, const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t w = ::send(fd, c, std::min<size_t>(n, 1 << 20), MSG_NOSIGNAL);
    if (w <= 0) throw std::runtime_error("send failed");
    c += w;
    n -= static_cast<size_t>(w);
  }
}

inline void RecvAll(int fd, void* p, size_t n) {
  char* c = static_cast<char*>(p);
  while (n > 0) {
    ssize_t r = ::recv(fd, c, n, 0);
    if (r <= 0) throw std::runtime_error("peer closed");
    c += r;
    n -= static_cast<size_t>(r);
  }
}

// No Nagle delay; 8 MiB socket buffers.
inline void Tune(int fd) {
  int one = 1, buf = 8 << 20;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
}

// A tuned connection to ip:port; throws if it cannot connect.
inline int Dial(const std::string& ip, int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  Tune(fd);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot connect to " + ip + ":" + std::to_string(port));
  }
  return fd;
}

// A listening socket on every address at `port`; throws if it cannot bind.
inline int Listen(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(fd, 4) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot listen on port " + std::to_string(port));
  }
  return fd;
}

}  // namespace csm::bench
