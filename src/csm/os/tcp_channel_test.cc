// TcpServer's admission of connections: authenticated peers are served while a flood of
// connections that never finish the handshake comes and goes.
#include "csm/os/tcp_channel.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <atomic>
#include <thread>
#include <vector>

#include "csm/os/memory.h"

namespace csm::os {
namespace {

constexpr uint32_t kMagic = 0x54534554;  // "TEST"

// Connects to 127.0.0.1:port and says nothing. Invalid if the connection failed.
UniqueFd Silent(uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) fd.Reset();
  return fd;
}

// Whether the server closed the connection (after its challenge, if it sent one).
bool Closed(int fd) {
  char buf[256];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 0) != 1) return false;
    ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN)) return true;
    if (n < 0) return false;
  }
}

std::unique_ptr<TcpServer> EchoServer(TcpServerOptions o) {
  o.secret = "s3cret";
  o.service_magic = kMagic;
  auto server = TcpServer::Start("127.0.0.1:0", o, [](int fd) {
    for (;;) {
      auto frame = ReceiveFrame(fd, 1024, 5000);
      if (!frame.ok() || !SendFrame(fd, *frame, 5000).ok()) return;
    }
  });
  EXPECT_TRUE(server.ok()) << server.status().ToString();
  return server.ok() ? std::move(*server) : nullptr;
}

Status Echo(uint16_t port) {
  CSM_ASSIGN_OR_RETURN(UniqueFd fd, DialAuthenticated("127.0.0.1:" + std::to_string(port), "s3cret", kMagic, 5000));
  CSM_RETURN_IF_ERROR(SendFrame(fd.get(), "ping", 5000));
  CSM_ASSIGN_OR_RETURN(std::string back, ReceiveFrame(fd.get(), 1024, 5000));
  return back == "ping" ? Status::OK() : Corruption("echo differs");
}

TEST(TcpServerTest, SilentConnectionsNeitherStarvePeersNorStay) {
  rlimit files{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &files), 0);
  files.rlim_cur = files.rlim_max;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &files), 0);
  TcpServerOptions o;
  o.handshake_timeout_ms = 60000;  // only eviction can close the flood's connections here
  auto server = EchoServer(o);
  ASSERT_TRUE(server);
  std::vector<UniqueFd> silent;
  for (int i = 0; i < 600; ++i) {
    silent.push_back(Silent(server->port()));
    if (i % 100 == 99) {
      Status echoed = Echo(server->port());  // a real peer, in the middle of the flood
      EXPECT_TRUE(echoed.ok()) << i << ": " << echoed.ToString();
    }
  }
  EXPECT_TRUE(Echo(server->port()).ok());
  // All but the newest max_handshakes (per source, as they share one) were made room for.
  size_t closed = 0;
  for (int attempt = 0; attempt < 500 && closed < 600 - 8; ++attempt) {
    closed = 0;
    for (const auto& fd : silent) closed += Closed(fd.get()) ? 1 : 0;
    if (closed < 600 - 8) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_GE(closed, 600u - 8);
  TcpServer::Counters c = server->counters();
  EXPECT_GE(c.evicted, 600u - 8);
  EXPECT_EQ(c.authenticated, 7u);
}

TEST(TcpServerTest, AConnectionThatDoesNotAuthenticateInTimeIsClosed) {
  TcpServerOptions o;
  o.handshake_timeout_ms = 200;
  auto server = EchoServer(o);
  ASSERT_TRUE(server);
  UniqueFd fd = Silent(server->port());
  ASSERT_TRUE(fd.valid());
  pollfd p{fd.get(), POLLRDHUP, 0};
  // Closed by the server's deadline (the poll's 20 s are only a bound on a broken test).
  bool closed = false;
  const int64_t deadline = MonotonicNanos() + int64_t{20} * 1000000000;
  while (!closed && MonotonicNanos() < deadline) {
    ASSERT_GE(::poll(&p, 1, 1000), 0);
    closed = Closed(fd.get());
  }
  EXPECT_TRUE(closed);
  // A wrong secret is refused, and the server serves on.
  EXPECT_EQ(DialAuthenticated("127.0.0.1:" + std::to_string(server->port()), "wrong", kMagic, 5000).status().code(),
            StatusCode::kPermissionDenied);
  EXPECT_TRUE(Echo(server->port()).ok());
}

TEST(TcpServerTest, AuthenticatedConnectionsBeyondTheLimitAreClosed) {
  TcpServerOptions o;
  o.max_connections = 2;
  auto server = EchoServer(o);
  ASSERT_TRUE(server);
  std::string address = "127.0.0.1:" + std::to_string(server->port());
  auto a = DialAuthenticated(address, "s3cret", kMagic, 5000);
  auto b = DialAuthenticated(address, "s3cret", kMagic, 5000);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(SendFrame(a->get(), "x", 5000).ok());
  ASSERT_TRUE(ReceiveFrame(a->get(), 16, 5000).ok());  // a is being served
  ASSERT_TRUE(SendFrame(b->get(), "x", 5000).ok());
  ASSERT_TRUE(ReceiveFrame(b->get(), 16, 5000).ok());  // and b
  auto c = DialAuthenticated(address, "s3cret", kMagic, 5000);
  ASSERT_TRUE(c.ok());  // the handshake completes; then the server closes it
  EXPECT_FALSE(ReceiveFrame(c->get(), 16, 5000).ok());
  EXPECT_EQ(server->counters().refused, 1u);
}

}  // namespace
}  // namespace csm::os
