// The tcp transport against real sockets on loopback: what a fetching node relies on,
// and what a serving node refuses.
#include "csm/transport/tcp_transport.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "csm/os/memory.h"

namespace csm::transport {
namespace {

constexpr uint64_t kBase = 0x200000000000ULL;  // addresses the fake node "owns"

// A node's memory: one memfd standing for [kBase, kBase + size), filled with a pattern.
struct OwnedMemory {
  explicit OwnedMemory(uint64_t bytes) : size(bytes) {
    fd = std::move(*os::CreateMemfd("test-arena", size));
    std::vector<uint8_t> chunk(1 << 20);
    for (uint64_t off = 0; off < size; off += chunk.size()) {
      for (size_t i = 0; i < chunk.size(); ++i) chunk[i] = Expected(kBase + off + i);
      EXPECT_EQ(::pwrite(fd.get(), chunk.data(), std::min<uint64_t>(chunk.size(), size - off), off),
                static_cast<ssize_t>(std::min<uint64_t>(chunk.size(), size - off)));
    }
  }
  static uint8_t Expected(uint64_t addr) { return static_cast<uint8_t>((addr >> 3) ^ (addr >> 17)); }
  ExtentSource Source() {
    return [this](uint64_t addr, uint64_t len) -> Result<SourceRange> {
      if (addr < kBase || len > size || addr - kBase > size - len) {
        return InvalidArgument("range is not in a segment this node owns");
      }
      return SourceRange{fd.get(), addr - kBase};
    };
  }
  uint64_t size;
  os::UniqueFd fd;
};

// The fetching side: a private buffer standing for the replica at the same addresses.
struct Replica {
  explicit Replica(uint64_t size) : bytes(size) {}
  ExtentSink Sink() {
    return [this](uint64_t addr, uint64_t len) -> Result<char*> {
      if (addr < kBase || addr - kBase + len > bytes.size()) return InvalidArgument("outside replica");
      return reinterpret_cast<char*>(bytes.data()) + (addr - kBase);
    };
  }
  bool Matches(uint64_t addr, uint64_t len) const {
    for (uint64_t a = addr; a < addr + len; ++a) {
      if (bytes[a - kBase] != OwnedMemory::Expected(a)) return false;
    }
    return true;
  }
  std::vector<uint8_t> bytes;
};

std::unique_ptr<TcpTransportServer> Serve(OwnedMemory& m, const std::string& secret = "s3cret") {
  auto s = TcpTransportServer::Start("127.0.0.1:0", {secret, 2000}, m.Source());
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return std::move(*s);
}

std::string Addr(uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

TEST(TcpTransportTest, FetchesExtentsIntoTheSink) {
  OwnedMemory node(8 << 20);
  auto server = Serve(node);
  TcpTransport t({"s3cret", 2000});
  Replica replica(8 << 20);
  std::vector<object::ObjectExtent> extents = {{kBase, 4096}, {kBase + (1 << 20), 3 << 20}, {kBase + (7 << 20) + 5, 1000}};
  ASSERT_TRUE(t.Fetch(Addr(server->port()), extents, replica.Sink()).ok());
  for (const auto& e : extents) EXPECT_TRUE(replica.Matches(e.addr, e.length));
  EXPECT_EQ(replica.bytes[4096], 0) << "nothing outside the extents is written";
}

TEST(TcpTransportTest, LargeObjectInOneExtent) {
  OwnedMemory node(256 << 20);
  auto server = Serve(node);
  TcpTransport t({"s3cret", 5000});
  Replica replica(256 << 20);
  ASSERT_TRUE(t.Fetch(Addr(server->port()), {{kBase, 256 << 20}}, replica.Sink()).ok());
  EXPECT_TRUE(replica.Matches(kBase, 1 << 20));
  EXPECT_TRUE(replica.Matches(kBase + (255 << 20), 1 << 20));
}

TEST(TcpTransportTest, WrongSecretIsRefusedAndTheServerKeepsServing) {
  OwnedMemory node(1 << 20);
  auto server = Serve(node);
  Replica replica(1 << 20);
  Status wrong = TcpTransport({"guess", 2000}).Fetch(Addr(server->port()), {{kBase, 64}}, replica.Sink());
  EXPECT_EQ(wrong.code(), StatusCode::kPermissionDenied) << wrong.ToString();
  EXPECT_NE(wrong.message().find("same secret"), std::string::npos);
  EXPECT_EQ(replica.bytes[0], 0);
  EXPECT_TRUE(TcpTransport({"s3cret", 2000}).Fetch(Addr(server->port()), {{kBase, 64}}, replica.Sink()).ok());
}

TEST(TcpTransportTest, RangesTheServerDoesNotOwnAreRefused) {
  OwnedMemory node(1 << 20);
  auto server = Serve(node);
  TcpTransport t({"s3cret", 2000});
  Replica replica(2 << 20);
  Status outside = t.Fetch(Addr(server->port()), {{kBase, 64}, {kBase + (1 << 20) - 10, 20}}, replica.Sink());
  EXPECT_EQ(outside.code(), StatusCode::kInvalidArgument) << outside.ToString();
  EXPECT_NE(outside.message().find("not in a segment this node owns"), std::string::npos);
  EXPECT_EQ(replica.bytes[0], 0) << "refused before any byte moved";
}

TEST(TcpTransportTest, DeadPeerIsUnavailable) {
  int port;
  {
    OwnedMemory node(4096);
    auto server = Serve(node);
    port = server->port();
  }  // stopped: nothing listens there now
  Replica replica(4096);
  Status s = TcpTransport({"s3cret", 2000}).Fetch(Addr(port), {{kBase, 64}}, replica.Sink());
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
}

// A raw listener the test scripts byte by byte.
struct FakePeer {
  FakePeer() {
    fd.Reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(::listen(fd.get(), 4), 0);
    socklen_t len = sizeof(a);
    getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  os::UniqueFd fd;
  uint16_t port;
};

TEST(TcpTransportTest, SilentPeerTimesOut) {
  FakePeer peer;  // accepts (backlog) but never speaks
  Replica replica(4096);
  int64_t start = os::MonotonicNanos();
  Status s = TcpTransport({"s3cret", 300}).Fetch(Addr(peer.port), {{kBase, 64}}, replica.Sink());
  EXPECT_TRUE(s.IsTimeout()) << s.ToString();
  EXPECT_LT(os::MonotonicNanos() - start, 3'000'000'000) << "bounded by the timeout";
}

TEST(TcpTransportTest, PeerThatDoesNotKnowTheSecretIsNotBelieved) {
  FakePeer peer;
  std::thread impostor([&] {
    os::UniqueFd c(::accept(peer.fd.get(), nullptr, nullptr));
    uint8_t challenge[40] = {0};
    uint32_t magic = 0x54534d43;
    uint16_t version = 1;
    std::memcpy(challenge, &magic, 4);
    std::memcpy(challenge + 4, &version, 2);
    (void)::send(c.get(), challenge, sizeof(challenge), MSG_NOSIGNAL);
    uint8_t auth[64];
    (void)::recv(c.get(), auth, sizeof(auth), MSG_WAITALL);
    uint8_t ok[36] = {0};  // "accepted", with a made-up proof
    (void)::send(c.get(), ok, sizeof(ok), MSG_NOSIGNAL);
    uint8_t rest[64];
    (void)::recv(c.get(), rest, sizeof(rest), 0);
  });
  Replica replica(4096);
  Status s = TcpTransport({"s3cret", 2000}).Fetch(Addr(peer.port), {{kBase, 64}}, replica.Sink());
  impostor.join();
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied) << s.ToString();
  EXPECT_NE(s.message().find("does not know the cluster secret"), std::string::npos);
}

TEST(TcpTransportTest, HostileRequestsCloseOnlyThatConnection) {
  OwnedMemory node(1 << 20);
  auto server = Serve(node);
  auto connect_raw = [&] {
    os::UniqueFd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(server->port());
    EXPECT_EQ(::connect(c.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    return c;
  };
  // Garbage instead of the handshake.
  {
    os::UniqueFd c = connect_raw();
    std::string junk(200, 'x');
    (void)::send(c.get(), junk.data(), junk.size(), MSG_NOSIGNAL);
    char buf[256];
    ssize_t n;
    while ((n = ::recv(c.get(), buf, sizeof(buf), 0)) > 0) {
    }
    // FIN, or RST because our junk was still unread when it closed: it hung up either way.
    EXPECT_TRUE(n == 0 || errno == ECONNRESET) << std::strerror(errno);
  }
  // Half a handshake, then silence: the server gives up after its timeout.
  {
    os::UniqueFd c = connect_raw();
    (void)::send(c.get(), "abc", 3, MSG_NOSIGNAL);
  }
  EXPECT_TRUE(TcpTransport({"s3cret", 2000}).Fetch(Addr(server->port()), {{kBase, 64}},
                                                   Replica(1 << 20).Sink()).ok())
      << "other peers are still served";
}

}  // namespace
}  // namespace csm::transport
