// RequestChannel against a fake csmd on a socketpair: replies in any order reach the
// threads that asked, a slow request holds up nobody else, deadlines are kept, a late
// reply is dropped, and a broken socket fails every caller.
#include "csm/client/request_channel.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <chrono>
#include <future>
#include <thread>
#include <vector>

namespace csm::internal {
namespace {

using protocol::MessageType;
using protocol::WireReader;
using protocol::WireWriter;

struct Pair {
  RequestChannel channel;
  os::UniqueFd server;
};

std::unique_ptr<Pair> MakePair() {
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds), 0);
  return std::unique_ptr<Pair>(new Pair{RequestChannel(os::UniqueFd(fds[0]), "the fake csmd"), os::UniqueFd(fds[1])});
}

// The fake csmd's side: the next request (its id and its one u64 argument).
std::pair<uint64_t, uint64_t> NextRequest(int fd) {
  auto msg = os::ReceiveMessage(fd, 10000);
  EXPECT_TRUE(msg.ok()) << msg.status().ToString();
  if (!msg.ok()) return {0, 0};
  WireReader in(msg->bytes);
  MessageType type{};
  EXPECT_TRUE(in.ReadHeader(&type).ok());
  uint64_t arg = 0;
  EXPECT_TRUE(in.Get(&arg).ok());
  return {in.request_id(), arg};
}

void Answer(int fd, uint64_t request_id, uint64_t value) {
  WireWriter out(MessageType::kCommitReply, request_id);
  out.PutStatus(Status::OK());
  out.Put(value);
  ASSERT_TRUE(os::SendMessage(fd, out.bytes()).ok());
}

uint64_t Value(const Result<os::Message>& m) {
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  if (!m.ok()) return 0;
  WireReader in(m->bytes);
  MessageType type{};
  EXPECT_TRUE(in.ReadHeader(&type).ok());
  Status carried;
  EXPECT_TRUE(in.GetStatus(&carried).ok());
  uint64_t v = 0;
  EXPECT_TRUE(in.Get(&v).ok());
  return v;
}

Result<os::Message> Ask(RequestChannel& ch, uint64_t arg, int timeout_ms = 10000) {
  WireWriter w(MessageType::kCommit);
  w.Put(arg);
  return ch.Call(w, timeout_ms);
}

TEST(RequestChannelTest, RepliesInAnyOrderReachTheThreadsThatAsked) {
  auto p = MakePair();
  constexpr int kThreads = 6;
  std::vector<std::future<uint64_t>> asked;
  for (int i = 0; i < kThreads; ++i) {
    asked.push_back(std::async(std::launch::async, [&, i] { return Value(Ask(p->channel, 100 + i)); }));
  }
  std::vector<std::pair<uint64_t, uint64_t>> requests;
  for (int i = 0; i < kThreads; ++i) requests.push_back(NextRequest(p->server.get()));
  // Answered newest first: each answer is the request's argument times two.
  for (auto it = requests.rbegin(); it != requests.rend(); ++it) Answer(p->server.get(), it->first, it->second * 2);
  for (int i = 0; i < kThreads; ++i) EXPECT_EQ(asked[static_cast<size_t>(i)].get(), static_cast<uint64_t>(200 + 2 * i));
}

TEST(RequestChannelTest, ASlowRequestHoldsUpNoOtherThread) {
  auto p = MakePair();
  auto slow = std::async(std::launch::async, [&] { return Value(Ask(p->channel, 1)); });
  auto [slow_id, slow_arg] = NextRequest(p->server.get());
  // While the slow request waits, other requests (and one-way messages) go and come back.
  for (uint64_t i = 0; i < 20; ++i) {
    auto quick = std::async(std::launch::async, [&, i] { return Value(Ask(p->channel, 1000 + i)); });
    auto [id, arg] = NextRequest(p->server.get());
    Answer(p->server.get(), id, arg);
    EXPECT_EQ(quick.get(), 1000 + i);
    WireWriter one_way(MessageType::kUnpinned);
    one_way.Put(i);
    EXPECT_TRUE(p->channel.Send(one_way).ok());
    EXPECT_EQ(NextRequest(p->server.get()).second, i);
  }
  EXPECT_EQ(slow.wait_for(std::chrono::seconds(0)), std::future_status::timeout) << "still waiting";
  Answer(p->server.get(), slow_id, slow_arg + 1);
  EXPECT_EQ(slow.get(), 2u);
}

TEST(RequestChannelTest, ADeadlineIsKeptAndALateReplyIsDropped) {
  auto p = MakePair();
  auto late = Ask(p->channel, 7, /*timeout_ms=*/50);
  EXPECT_TRUE(late.status().IsTimeout()) << late.status().ToString();
  auto [late_id, late_arg] = NextRequest(p->server.get());
  Answer(p->server.get(), late_id, late_arg);  // after its caller gave up
  auto next = std::async(std::launch::async, [&] { return Value(Ask(p->channel, 8)); });
  auto [id, arg] = NextRequest(p->server.get());
  Answer(p->server.get(), id, arg * 3);
  EXPECT_EQ(next.get(), 24u) << "the late reply went to nobody";
}

TEST(RequestChannelTest, OneThreadHasSeveralRequestsOutAtOnce) {
  auto p = MakePair();
  std::vector<uint64_t> ids;
  for (uint64_t i = 0; i < 4; ++i) {
    WireWriter w(MessageType::kCommit);
    w.Put(10 + i);
    auto id = p->channel.Start(w);
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    ids.push_back(*id);
  }
  // All four reached csmd before any was answered; answered in reverse.
  std::vector<std::pair<uint64_t, uint64_t>> requests;
  for (int i = 0; i < 4; ++i) requests.push_back(NextRequest(p->server.get()));
  for (auto it = requests.rbegin(); it != requests.rend(); ++it) Answer(p->server.get(), it->first, it->second);
  for (uint64_t i = 0; i < 4; ++i) EXPECT_EQ(Value(p->channel.Await(ids[i], 10000)), 10 + i);
}

TEST(RequestChannelTest, ABrokenSocketFailsEveryCaller) {
  auto p = MakePair();
  auto a = std::async(std::launch::async, [&] { return Ask(p->channel, 1).status(); });
  auto b = std::async(std::launch::async, [&] { return Ask(p->channel, 2).status(); });
  NextRequest(p->server.get());
  NextRequest(p->server.get());
  p->server.Reset();  // csmd goes away
  EXPECT_TRUE(a.get().IsUnavailable());
  EXPECT_TRUE(b.get().IsUnavailable());
  EXPECT_TRUE(Ask(p->channel, 3).status().IsUnavailable());
}

}  // namespace
}  // namespace csm::internal
