// Both transports (tcp and ucx) against real sockets on loopback: what a fetching node
// relies on, and what a serving node refuses.
#include "csm/transport/transport.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "csm/base/hash.h"
#include "csm/object/checksum.h"
#include "csm/os/memory.h"
#include "csm/transport/fetch_protocol.h"
#include "csm/transport/tcp_transport.h"
#ifdef CSM_HAVE_UCX
#include "csm/transport/ucx_transport.h"
#endif

namespace csm::transport {
namespace {

constexpr uint64_t kBase = 0x200000000000ULL;  // addresses the fake node "owns"
constexpr uint64_t kObject = 7;                 // the one object it serves them as

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
    return [this](uint64_t object_id, uint64_t addr, uint64_t len) -> Result<SourceRange> {
      if (object_id != kObject) return NotFound("no object " + std::to_string(object_id));
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

std::string Addr(uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

class TransportTest : public ::testing::TestWithParam<TransportKind> {
 protected:
  std::unique_ptr<TransportServer> Serve(OwnedMemory& m, const std::string& secret = "s3cret") {
    auto s = StartTransportServer(GetParam(), "127.0.0.1:0", {secret, 2000}, m.Source());
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return std::move(*s);
  }
  std::unique_ptr<Transport> Client(const std::string& secret = "s3cret", int timeout_ms = 2000) {
    auto t = MakeTransport(GetParam(), {secret, timeout_ms});
    EXPECT_TRUE(t.ok()) << t.status().ToString();
    return std::move(*t);
  }
  uint32_t Magic() const { return GetParam() == TransportKind::kTcp ? kTransportMagic : kUcxTransportMagic; }
};

TEST_P(TransportTest, FetchesExtentsIntoTheSink) {
  OwnedMemory node(8 << 20);
  auto server = Serve(node);
  Replica replica(8 << 20);
  std::vector<object::ObjectExtent> extents = {{kBase, 4096}, {kBase + (1 << 20), 3 << 20}, {kBase + (7 << 20) + 5, 1000}};
  Status s = Client()->Fetch(Addr(server->port()), kObject, extents, replica.Sink());
  ASSERT_TRUE(s.ok()) << s.ToString();
  for (const auto& e : extents) EXPECT_TRUE(replica.Matches(e.addr, e.length));
  EXPECT_EQ(replica.bytes[4096], 0) << "nothing outside the extents is written";
}

// For objects committed without a checksum: the owner digests what it serves.
TEST_P(TransportTest, ThePeerDigestsWhatItServesWhenAsked) {
  OwnedMemory node(8 << 20);
  auto server = Serve(node);
  Replica replica(8 << 20);
  std::vector<object::ObjectExtent> extents = {{kBase + 100, 5000}, {kBase + (2 << 20), 3 << 20}};
  auto client = Client();
  uint64_t digest = 0;
  Status s = client->Fetch(Addr(server->port()), kObject, extents, replica.Sink(), &digest);
  ASSERT_TRUE(s.ok()) << s.ToString();
  Checksum expected;
  for (const auto& e : extents) {
    EXPECT_TRUE(replica.Matches(e.addr, e.length));
    expected.Update(replica.bytes.data() + (e.addr - kBase), e.length);
  }
  EXPECT_EQ(digest, expected.Digest());
  // The kept connection goes on serving fetches without a digest.
  EXPECT_TRUE(client->Fetch(Addr(server->port()), kObject, {{kBase, 64}}, replica.Sink()).ok());
  uint64_t again = 0;
  ASSERT_TRUE(client->Fetch(Addr(server->port()), kObject, extents, replica.Sink(), &again).ok());
  EXPECT_EQ(again, digest);
}

// A lazy copy checks each block against the digests the owner sends first: those of
// the object's checksum (its header's 64 bytes left out, 1 MiB blocks).
TEST_P(TransportTest, ThePeerSendsTheBlockDigestsOfAnObjectsChecksum) {
  OwnedMemory node(8 << 20);
  auto server = Serve(node);
  Replica replica(8 << 20);
  std::vector<object::ObjectExtent> extents = {{kBase, (2 << 20) + 100}, {kBase + (4 << 20), 3000}};
  auto client = Client();
  auto digests = client->BlockDigests(Addr(server->port()), kObject, extents);
  ASSERT_TRUE(digests.ok()) << digests.status().ToString();
  ASSERT_TRUE(client->Fetch(Addr(server->port()), kObject, extents, replica.Sink()).ok());
  std::vector<object::ObjectExtent> here;
  for (const auto& e : extents) {
    here.push_back({reinterpret_cast<uint64_t>(replica.bytes.data()) + (e.addr - kBase), e.length});
  }
  EXPECT_EQ(*digests, object::BlockDigestsOf(object::HashedPieces(here)));
  const uint64_t hashed = (2 << 20) + 100 + 3000 - sizeof(object::ObjectHeader);
  EXPECT_EQ(digests->size(), (hashed + Checksum::kBlockSize - 1) / Checksum::kBlockSize);
  // The same connection serves bytes next; a range the owner does not hold is refused.
  EXPECT_TRUE(client->Fetch(Addr(server->port()), kObject, {{kBase, 64}}, replica.Sink()).ok());
  EXPECT_FALSE(client->BlockDigests(Addr(server->port()), kObject, {{kBase + (9 << 20), 64}}).ok());
  EXPECT_TRUE(client->BlockDigests(Addr(server->port()), kObject, extents).ok());
}

// The server digests an object's extents once and answers later fetches of them from
// that: bytes changed afterwards (a producer writing into its committed object) then
// arrive with the old digest, and the fetching node's hash of them does not match.
TEST_P(TransportTest, AnObjectsDigestIsTakenAtItsFirstFetchAndKept) {
  OwnedMemory node(8 << 20);
  auto server = Serve(node);
  auto client = Client();
  for (uint64_t length : {uint64_t{5000}, uint64_t{3} << 20}) {  // digested inline / beside
    SCOPED_TRACE(length);
    const uint64_t at = length < 4096 * 4 ? kBase + 100 : kBase + (4 << 20);
    Replica replica(8 << 20);
    auto hash_of = [&](uint64_t addr, uint64_t len) {
      Checksum c;
      c.Update(replica.bytes.data() + (addr - kBase), len);
      return c.Digest();
    };
    uint64_t first = 0, second = 0, part = 0;
    ASSERT_TRUE(client->Fetch(Addr(server->port()), kObject, {{at, length}}, replica.Sink(), &first).ok());
    EXPECT_EQ(first, hash_of(at, length));
    const uint8_t changed = static_cast<uint8_t>(~OwnedMemory::Expected(at + 7));
    ASSERT_EQ(::pwrite(node.fd.get(), &changed, 1, static_cast<off_t>(at + 7 - kBase)), 1);
    ASSERT_TRUE(client->Fetch(Addr(server->port()), kObject, {{at, length}}, replica.Sink(), &second).ok());
    EXPECT_EQ(replica.bytes[at + 7 - kBase], changed) << "the changed byte arrived";
    EXPECT_EQ(second, first) << "with the digest of what was first served";
    EXPECT_NE(second, hash_of(at, length)) << "so the fetching node sees the change";
    // Other extents are other digests, taken afresh.
    ASSERT_TRUE(client->Fetch(Addr(server->port()), kObject, {{at, 64}}, replica.Sink(), &part).ok());
    EXPECT_EQ(part, hash_of(at, 64));
  }
}

TEST_P(TransportTest, LargeObjectInOneExtent) {
  OwnedMemory node(256 << 20);
  auto server = Serve(node);
  Replica replica(256 << 20);
  Status s = Client("s3cret", 5000)->Fetch(Addr(server->port()), kObject, {{kBase, 256 << 20}}, replica.Sink());
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(replica.Matches(kBase, 1 << 20));
  EXPECT_TRUE(replica.Matches(kBase + (255 << 20), 1 << 20));
}

TEST_P(TransportTest, ConcurrentFetchesThroughOneClient) {
  OwnedMemory node(16 << 20);
  auto server = Serve(node);
  auto client = Client("s3cret", 5000);
  Replica replica(16 << 20);
  std::vector<std::thread> threads;
  std::vector<Status> results(4);
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      uint64_t at = kBase + uint64_t(i) * (4 << 20);
      results[i] = client->Fetch(Addr(server->port()), kObject, {{at, 4 << 20}}, replica.Sink());
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& r : results) EXPECT_TRUE(r.ok()) << r.ToString();
  EXPECT_TRUE(replica.Matches(kBase, 16 << 20));
}

TEST_P(TransportTest, AConnectionKeptFromAnEarlierFetchThatWentStaleIsRedialed) {
  OwnedMemory node(1 << 20);
  auto client = Client();
  Replica replica(1 << 20);
  auto server = Serve(node);
  const uint16_t port = server->port();
  Status first = client->Fetch(Addr(port), kObject, {{kBase, 4096}}, replica.Sink());
  ASSERT_TRUE(first.ok()) << first.ToString();
  server.reset();  // hangs up the connection the client keeps
  auto again = StartTransportServer(GetParam(), Addr(port), {"s3cret", 2000}, node.Source());
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  Status second = client->Fetch(Addr(port), kObject, {{kBase + 4096, 4096}}, replica.Sink());
  EXPECT_TRUE(second.ok()) << second.ToString();
  EXPECT_TRUE(replica.Matches(kBase, 8192));
}

TEST_P(TransportTest, WrongSecretIsRefusedAndTheServerKeepsServing) {
  OwnedMemory node(1 << 20);
  auto server = Serve(node);
  Replica replica(1 << 20);
  Status wrong = Client("guess")->Fetch(Addr(server->port()), kObject, {{kBase, 64}}, replica.Sink());
  EXPECT_EQ(wrong.code(), StatusCode::kPermissionDenied) << wrong.ToString();
  EXPECT_NE(wrong.message().find("same secret"), std::string::npos);
  EXPECT_EQ(replica.bytes[0], 0);
  EXPECT_TRUE(Client()->Fetch(Addr(server->port()), kObject, {{kBase, 64}}, replica.Sink()).ok());
}

TEST_P(TransportTest, RangesTheServerDoesNotOwnAreRefused) {
  OwnedMemory node(1 << 20);
  auto server = Serve(node);
  Replica replica(2 << 20);
  Status outside = Client()->Fetch(Addr(server->port()), kObject,
                                   {{kBase, 64}, {kBase + (1 << 20) - 10, 20}}, replica.Sink());
  EXPECT_EQ(outside.code(), StatusCode::kInvalidArgument) << outside.ToString();
  EXPECT_NE(outside.message().find("not in a segment this node owns"), std::string::npos);
  EXPECT_EQ(replica.bytes[0], 0) << "refused before any byte moved";
}

TEST_P(TransportTest, ARequestForAnObjectTheServerDoesNotHoldIsRefused) {
  OwnedMemory node(1 << 20);
  auto server = Serve(node);
  Replica replica(1 << 20);
  Status other = Client()->Fetch(Addr(server->port()), kObject + 1, {{kBase, 64}}, replica.Sink());
  EXPECT_TRUE(other.IsNotFound()) << other.ToString();
  EXPECT_NE(other.message().find("no object 8"), std::string::npos) << other.ToString();
  EXPECT_EQ(replica.bytes[0], 0) << "refused before any byte moved";
  EXPECT_TRUE(Client()->Fetch(Addr(server->port()), kObject, {{kBase, 64}}, replica.Sink()).ok())
      << "the connection and the server go on";
}

TEST_P(TransportTest, DeadPeerIsUnavailable) {
  int port;
  {
    OwnedMemory node(4096);
    auto server = Serve(node);
    port = server->port();
  }  // stopped: nothing listens there now
  Replica replica(4096);
  Status s = Client()->Fetch(Addr(port), kObject, {{kBase, 64}}, replica.Sink());
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

TEST_P(TransportTest, SilentPeerTimesOut) {
  FakePeer peer;  // accepts (backlog) but never speaks
  Replica replica(4096);
  int64_t start = os::MonotonicNanos();
  Status s = Client("s3cret", 300)->Fetch(Addr(peer.port), kObject, {{kBase, 64}}, replica.Sink());
  EXPECT_TRUE(s.IsTimeout()) << s.ToString();
  EXPECT_LT(os::MonotonicNanos() - start, 3'000'000'000) << "bounded by the timeout";
}

TEST_P(TransportTest, PeerThatDoesNotKnowTheSecretIsNotBelieved) {
  FakePeer peer;
  std::thread impostor([&] {
    os::UniqueFd c(::accept(peer.fd.get(), nullptr, nullptr));
    uint8_t challenge[40] = {0};
    uint32_t magic = Magic();
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
  Status s = Client()->Fetch(Addr(peer.port), kObject, {{kBase, 64}}, replica.Sink());
  impostor.join();
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied) << s.ToString();
  EXPECT_NE(s.message().find("does not know the cluster secret"), std::string::npos);
}

TEST_P(TransportTest, HostileRequestsCloseOnlyThatConnection) {
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
  EXPECT_TRUE(Client()->Fetch(Addr(server->port()), kObject, {{kBase, 64}},
                                                   Replica(1 << 20).Sink()).ok())
      << "other peers are still served";
}

#ifdef CSM_HAVE_UCX
const std::vector<TransportKind> kBuilt = {TransportKind::kTcp, TransportKind::kUcx};
#else
const std::vector<TransportKind> kBuilt = {TransportKind::kTcp};
#endif
INSTANTIATE_TEST_SUITE_P(Transports, TransportTest, ::testing::ValuesIn(kBuilt),
                         [](const ::testing::TestParamInfo<TransportKind>& p) {
                           return std::string(TransportName(p.param));
                         });

#ifdef CSM_HAVE_UCX
// ucx: a peer that obtains the keys and then vanishes without reading leaves the server
// serving others (the registration is dropped when the connection goes).
TEST(UcxTransportTest, PeerThatTakesKeysAndVanishesDoesNotHarmTheServer) {
  OwnedMemory node(1 << 20);
  auto server = StartTransportServer(TransportKind::kUcx, "127.0.0.1:0", {"s3cret", 2000}, node.Source());
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  for (int i = 0; i < 3; ++i) {
    auto sock = os::DialAuthenticated(Addr((*server)->port()), "s3cret", kUcxTransportMagic, 2000);
    ASSERT_TRUE(sock.ok()) << sock.status().ToString();
    std::vector<object::ObjectExtent> extents = {{kBase, 4096}};
    ASSERT_TRUE(SendFetchRequest(sock->get(), kUcxTransportMagic, kObject, extents, 0, 2000).ok());
    ASSERT_TRUE(ReceiveVerdict(sock->get(), 2000).ok());
    uint32_t address_length = 0;
    ASSERT_TRUE(os::ReadAll(sock->get(), &address_length, 4, 2000, "address").ok());
    EXPECT_GT(address_length, 0u);
  }  // hung up without a word
  Replica replica(1 << 20);
  auto client = MakeTransport(TransportKind::kUcx, {"s3cret", 2000});
  ASSERT_TRUE(client.ok());
  Status s = (*client)->Fetch(Addr((*server)->port()), kObject, {{kBase, 1 << 20}}, replica.Sink());
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(replica.Matches(kBase, 1 << 20));
}

// ucx: a member that answers with malformed keys gets a clear error, not a crash.
TEST(UcxTransportTest, MalformedKeysFromThePeerAreCorruption) {
  FakePeer peer;
  for (uint32_t bad_length : {0u, 1u << 30}) {
    std::thread liar([&] {
      os::UniqueFd c(::accept(peer.fd.get(), nullptr, nullptr));
      if (!os::AcceptAuthenticated(c.get(), "s3cret", kUcxTransportMagic, 2000).ok()) return;
      if (!ReceiveFetchRequest(c.get(), kUcxTransportMagic, 2000).ok()) return;
      (void)SendVerdict(c.get(), Status::OK(), 2000);
      (void)os::WriteAll(c.get(), &bad_length, 4, 2000, "address length");
      char rest[8];
      (void)::recv(c.get(), rest, sizeof(rest), 0);
    });
    auto client = MakeTransport(TransportKind::kUcx, {"s3cret", 2000});
    ASSERT_TRUE(client.ok());
    Replica replica(4096);
    Status s = (*client)->Fetch(Addr(peer.port), kObject, {{kBase, 64}}, replica.Sink());
    liar.join();
    EXPECT_TRUE(s.IsCorruption()) << s.ToString();
    EXPECT_NE(s.message().find("worker address"), std::string::npos) << s.ToString();
  }
}

#else
TEST(UcxTransportTest, WithoutUcxTheTransportIsRefusedWithAReason) {
  auto t = MakeTransport(TransportKind::kUcx, {"s3cret", 2000});
  EXPECT_EQ(t.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(t.status().message().find("--transport tcp"), std::string::npos) << t.status().ToString();
}
#endif

TEST(PeerAddressTest, SchemeNamesTheTransport) {
  auto ucx = SplitPeerAddress("ucx://10.0.0.1:7000");
  ASSERT_TRUE(ucx.ok());
  EXPECT_EQ(ucx->first, TransportKind::kUcx);
  EXPECT_EQ(ucx->second, "10.0.0.1:7000");
  auto plain = SplitPeerAddress("10.0.0.1:7000");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->first, TransportKind::kTcp);
  EXPECT_EQ(JoinPeerAddress(TransportKind::kUcx, "h:1"), "ucx://h:1");
  EXPECT_EQ(JoinPeerAddress(TransportKind::kTcp, "h:1"), "h:1");
  Status bad = SplitPeerAddress("rdma://h:1").status();
  EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("use tcp or ucx"), std::string::npos);
}

}  // namespace
}  // namespace csm::transport
