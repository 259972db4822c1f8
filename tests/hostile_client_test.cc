// A hostile or broken local client speaks the raw protocol: csmd must refuse what is
// wrong with a clear status or drop that client, and keep serving everyone else.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <nlohmann/json.hpp>
#include <thread>

#include "csm/protocol/protocol.h"
#include "csm/object/object_layout.h"
#include "csm/os/unix_socket.h"
#include "harness.h"
#include "workload.h"

namespace csm {
namespace {

using protocol::MessageType;
using protocol::WireReader;
using protocol::WireWriter;

struct RawClient {
  os::UniqueFd sock;
  Status Send(const WireWriter& w) { return os::SendMessage(sock.get(), w.bytes()); }
  Result<os::Message> Receive() { return os::ReceiveMessage(sock.get(), 5000); }
  // Reads the status that starts every reply.
  Status ReplyStatus(const os::Message& m) {
    WireReader in(m.bytes);
    MessageType t{};
    CSM_RETURN_IF_ERROR(in.ReadHeader(&t));
    Status s;
    CSM_RETURN_IF_ERROR(in.GetStatus(&s));
    return s;
  }
};

RawClient ConnectRaw(const testing::Node& node) {
  auto s = os::ConnectUnix(node.socket());
  EXPECT_TRUE(s.ok());
  return RawClient{std::move(*s)};
}

void Hello(RawClient& c, uint64_t fingerprint = protocol::BuildFingerprint()) {
  WireWriter w(MessageType::kHello);
  w.Put(fingerprint).Put(DefaultConfig().window);
  ASSERT_TRUE(c.Send(w).ok());
}

// The node still serves a well-behaved client.
void ExpectNodeServes(const testing::Node& node) {
  auto c = Client::Connect(node.ClientConfig());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto b = (*c)->NewBuilder();
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE(b->New<int64_t>(42).ok());
  std::string key = "ok-" + std::to_string(::getpid()) + "-" + std::to_string(rand());
  ASSERT_TRUE(b->Commit(key).ok());
  auto ref = (*c)->Get<int64_t>(key);
  ASSERT_TRUE(ref.ok());
  EXPECT_EQ(**ref, 42);
}

TEST(HostileClientTest, GarbageAndTruncatedMessagesDropOnlyThatClient) {
  testing::Node node;
  RawClient garbage = ConnectRaw(node);
  ASSERT_TRUE(os::SendMessage(garbage.sock.get(), std::string("\x01\x02\x03 not csm", 12)).ok());
  EXPECT_FALSE(garbage.Receive().ok()) << "csmd must hang up on garbage";

  RawClient truncated = ConnectRaw(node);
  Hello(truncated);
  ASSERT_TRUE(truncated.Receive().ok());
  WireWriter commit(MessageType::kCommit);
  commit.Put(uint64_t{0x200000000000});  // header address, then nothing
  ASSERT_TRUE(truncated.Send(commit).ok());
  EXPECT_FALSE(truncated.Receive().ok());

  RawClient no_hello = ConnectRaw(node);
  WireWriter info(MessageType::kInfo);
  ASSERT_TRUE(no_hello.Send(info).ok());
  EXPECT_FALSE(no_hello.Receive().ok()) << "requests before Hello are refused";

  RawClient huge_string = ConnectRaw(node);
  Hello(huge_string);
  ASSERT_TRUE(huge_string.Receive().ok());
  WireWriter del(MessageType::kDelete);
  del.Put(uint32_t{0xffffffff});  // a string length far past the message
  ASSERT_TRUE(huge_string.Send(del).ok());
  EXPECT_FALSE(huge_string.Receive().ok());

  ExpectNodeServes(node);
}

TEST(HostileClientTest, ClientThatStopsReadingIsDroppedNotWaitedOn) {
  testing::Node node;
  RawClient flood = ConnectRaw(node);
  Hello(flood);
  ASSERT_TRUE(flood.Receive().ok());
  WireWriter info(MessageType::kInfo);
  bool peer_closed = false;
  for (int i = 0; i < 200000 && !peer_closed; ++i) {
    ssize_t n = ::send(flood.sock.get(), info.bytes().data(), info.bytes().size(),
                       MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && errno == EAGAIN) ::usleep(1000);  // csmd is busy answering
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) peer_closed = true;
  }
  // Whatever was queued drains, then the connection ends: csmd hung up on us.
  Status end;
  for (int i = 0; i < 400000 && end.ok(); ++i) end = flood.Receive().status();
  EXPECT_TRUE(end.IsUnavailable()) << end.ToString();
  ExpectNodeServes(node);
}

TEST(HostileClientTest, ForeignBuildIsRefusedWithAReason) {
  testing::Node node;
  RawClient c = ConnectRaw(node);
  Hello(c, protocol::BuildFingerprint() ^ 1);
  auto reply = c.Receive();
  ASSERT_TRUE(reply.ok());
  Status s = c.ReplyStatus(*reply);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("same compiler"), std::string::npos) << s.ToString();
  ExpectNodeServes(node);
}

TEST(HostileClientTest, ForgedCommitsAreCorruption) {
  testing::Node node;
  RawClient c = ConnectRaw(node);
  Hello(c);
  ASSERT_TRUE(c.Receive().ok());
  WireWriter alloc(MessageType::kAllocArena);
  alloc.Put(uint64_t{1 << 20}).Put(uint8_t{0}).Put(uint32_t{0});  // size, not dedicated, this node's memory
  ASSERT_TRUE(c.Send(alloc).ok());
  auto grant = c.Receive();
  ASSERT_TRUE(grant.ok());
  ASSERT_TRUE(c.ReplyStatus(*grant).ok());
  ASSERT_EQ(grant->fds.size(), 1u);
  WireReader in(grant->bytes);
  MessageType t{};
  Status ignored;
  uint64_t arena_id = 0, seq = 0, addr = 0, size = 0;
  ASSERT_TRUE(in.ReadHeader(&t).ok());
  ASSERT_TRUE(in.GetStatus(&ignored).ok());
  ASSERT_TRUE(in.Get(&arena_id).ok() && in.Get(&seq).ok() && in.Get(&addr).ok() && in.Get(&size).ok());
  int fd = grant->fds[0].get();

  auto commit = [&](uint64_t header_addr, uint64_t type_id, uint32_t copies = 0) {
    WireWriter w(MessageType::kCommit);
    w.Put(header_addr).Put(type_id).Put(copies).PutString("forged").PutString("x");
    EXPECT_TRUE(c.Send(w).ok());
    auto r = c.Receive();
    EXPECT_TRUE(r.ok()) << "csmd must answer a bad commit, not hang up";
    return r.ok() ? c.ReplyStatus(*r) : r.status();
  };
  // A header outside any arena this client may write.
  EXPECT_TRUE(commit(addr + size + (64 << 20), 7).IsCorruption());
  // No header at all (zeros).
  EXPECT_TRUE(commit(addr, 7).IsCorruption());
  // A header whose extents reach outside the arena.
  object::ObjectHeader h{};
  h.magic = object::kObjectMagic;
  h.layout_version = object::kObjectLayoutVersion;
  h.type_id = 7;
  h.root = addr + 64;
  h.extents = addr + 64;
  h.extent_count = 1;
  object::ObjectExtent e{addr, size + 4096};
  h.data_size = e.length;
  ASSERT_EQ(::pwrite(fd, &h, sizeof(h), 0), static_cast<ssize_t>(sizeof(h)));
  ASSERT_EQ(::pwrite(fd, &e, sizeof(e), 64), static_cast<ssize_t>(sizeof(e)));
  Status outside = commit(addr, 7);
  EXPECT_TRUE(outside.IsCorruption()) << outside.ToString();
  // An absurd extent count.
  h.extent_count = 1u << 30;
  ASSERT_EQ(::pwrite(fd, &h, sizeof(h), 0), static_cast<ssize_t>(sizeof(h)));
  EXPECT_TRUE(commit(addr, 7).IsCorruption());
  // Consistent: accepted.
  h.extent_count = 1;
  e.length = 4096;
  h.data_size = 4096;
  ASSERT_EQ(::pwrite(fd, &h, sizeof(h), 0), static_cast<ssize_t>(sizeof(h)));
  ASSERT_EQ(::pwrite(fd, &e, sizeof(e), 64), static_cast<ssize_t>(sizeof(e)));
  // More copies than a cluster may keep.
  Status copies = commit(addr, 7, 1000);
  EXPECT_EQ(copies.code(), StatusCode::kInvalidArgument) << copies.ToString();
  Status ok = commit(addr, 7);
  EXPECT_TRUE(ok.ok()) << ok.ToString();
  // The same bytes cannot be committed twice under another key.
  WireWriter again(MessageType::kCommit);
  again.Put(addr).Put(uint64_t{7}).Put(uint32_t{0}).PutString("forged-2").PutString("x");
  ASSERT_TRUE(c.Send(again).ok());
  auto r = c.Receive();
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(c.ReplyStatus(*r).IsCorruption());
  ExpectNodeServes(node);
}

}  // namespace
}  // namespace csm

namespace csm {
namespace {

// A connection to csmd that says nothing: non-blocking, so a full backlog is EAGAIN
// rather than a wait. Invalid if the connection could not be made.
os::UniqueFd SilentConnection(const std::string& path) {
  os::UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) fd.Reset();
  return fd;
}

bool HungUp(int fd) {
  pollfd p{fd, POLLRDHUP, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR)) != 0;
}

void RaiseOpenFilesLimit() {
  rlimit files{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &files), 0);
  files.rlim_cur = files.rlim_max;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &files), 0);
}

// More silent connections than max_clients, opened while real clients come and go:
// every real client gets in, and the silent ones are closed for not saying Hello.
TEST(HostileClientTest, AFloodOfSilentConnectionsLocksNoRealClientOut) {
  RaiseOpenFilesLimit();
  testing::Node node;
  std::atomic<bool> stop{false};
  std::vector<os::UniqueFd> silent;
  std::thread flood([&] {
    while (!stop.load() && silent.size() < 3000) {
      os::UniqueFd fd = SilentConnection(node.socket());
      if (fd.valid()) silent.push_back(std::move(fd));
      else std::this_thread::yield();
    }
  });
  for (int i = 0; i < 4; ++i) {  // separate processes: each connects anew
    auto producer = testing::Process::Spawn(
        {testing::BinaryDir() + "/csm_test_helper", "produce", "real-" + std::to_string(i), "100"},
        node.Env());
    EXPECT_EQ(producer->Wait(), 0) << producer->output();
  }
  ExpectNodeServes(node);
  stop = true;
  flood.join();
  EXPECT_GT(silent.size(), 1024u) << "the flood outnumbered max_clients";
  // Each silent connection is closed by csmd: made room for, or out of time to say Hello.
  EXPECT_TRUE(testing::Eventually(
      [&] {
        for (const auto& fd : silent) {
          if (!HungUp(fd.get())) return false;
        }
        return true;
      },
      30000));
  auto c = Client::Connect(node.ClientConfig());
  ASSERT_TRUE(c.ok());
  EXPECT_GT(nlohmann::json::parse(*(*c)->InfoJson())["connections_dropped"].get<uint64_t>(), 1024u);
}

// A node serving max_clients processes refuses one more and says why.
TEST(HostileClientTest, AFullNodeSaysSoToTheClientItRefuses) {
  testing::Node node({"--max-clients", "2"});
  auto a = testing::Process::Spawn({testing::BinaryDir() + "/csm_test_helper", "attach", "-"}, node.Env());
  auto b = testing::Process::Spawn({testing::BinaryDir() + "/csm_test_helper", "attach", "-"}, node.Env());
  ASSERT_FALSE(a->WaitForLine("attached").empty()) << a->output();
  ASSERT_FALSE(b->WaitForLine("attached").empty()) << b->output();
  auto r = testing::Run({testing::BinaryDir() + "/csm", "info"}, node.Env());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("max_clients (2)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("CapacityExceeded"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--max-clients"), std::string::npos) << r.err;
  a->Kill(SIGKILL);
  a->Wait();
  EXPECT_TRUE(testing::Eventually([&] {
    return testing::Run({testing::BinaryDir() + "/csm", "info"}, node.Env()).exit_code == 0;
  }));
}

}  // namespace
}  // namespace csm
