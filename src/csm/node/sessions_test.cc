// Sessions on socket pairs in one process: requests served in order, a held session not
// read until resumed but dropped when it hangs up, and connections that never say Hello.
#include "csm/node/sessions.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>

#include "csm/protocol/messages.h"

namespace csm::node {
namespace {

using protocol::MessageType;

struct Handled {
  uint64_t session;
  MessageType type;
  uint64_t request_id;
};

class SessionsTest : public ::testing::Test {
 protected:
  explicit SessionsTest(Admission::Limits limits = {})
      : sessions_(io_, limits,
                  {[this](Session& s, MessageType type, protocol::WireReader&) {
                     handled_.push_back({s.id, type, s.request_id});
                     if (type == MessageType::kHello) sessions_.Attached(s);
                     if (hold_request_ == s.request_id) {
                       sessions_.Hold(s);
                       return Status::OK();  // answered later
                     }
                     return Sessions::SendStatus(s, MessageType::kStatusReply, Status::OK());
                   },
                   [this](Session& s) { dropped_.push_back(s.id); }}) {}

  // A connected pair: the session's end is adopted, the client's end returned.
  os::UniqueFd Connect(uint64_t* id) {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds), 0);
    *id = sessions_.Adopt(os::UniqueFd(fds[0]), os::PeerCredentials{::getpid(), ::getuid(), ::getgid()});
    return os::UniqueFd(fds[1]);
  }
  template <typename M>
  void Send(const os::UniqueFd& fd, M m, uint64_t request_id) {
    protocol::WireWriter out = protocol::Encode(m);
    out.SetRequestId(request_id);
    ASSERT_TRUE(os::SendMessage(fd.get(), out.bytes()).ok());
  }
  // Runs the loop until `done` holds (at most 10 s: a failure, never a hang).
  template <typename F>
  bool RunUntil(F done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      io_.restart();
      io_.run_for(std::chrono::milliseconds(10));
    }
    return done();
  }
  // Runs what is ready now (the messages already sent included), nothing that is not.
  void RunReady() {
    for (int i = 0; i < 4; ++i) {
      io_.restart();
      io_.poll();
    }
  }

  // A session whose request 2 is held, with request 3 sent behind it (unread).
  os::UniqueFd HoldSecondRequest(uint64_t* id) {
    os::UniqueFd client = Connect(id);
    hold_request_ = 2;
    Send(client, protocol::Hello{}, 1);
    Send(client, protocol::Info{}, 2);
    Send(client, protocol::Info{}, 3);
    EXPECT_TRUE(RunUntil([&] { return handled_.size() == 2; }));
    return client;
  }

  boost::asio::io_context io_{1};
  std::vector<Handled> handled_;
  std::vector<uint64_t> dropped_;
  uint64_t hold_request_ = 0;
  Sessions sessions_;
};

TEST_F(SessionsTest, RequestsSentTogetherAreServedInTheOrderSent) {
  uint64_t id;
  os::UniqueFd client = Connect(&id);
  Send(client, protocol::Hello{}, 1);
  for (uint64_t r = 2; r <= 40; ++r) Send(client, protocol::Info{}, r);  // more than one batch
  ASSERT_TRUE(RunUntil([&] { return handled_.size() == 40; }));
  for (uint64_t r = 1; r <= 40; ++r) {
    EXPECT_EQ(handled_[r - 1].request_id, r);
    EXPECT_EQ(handled_[r - 1].session, id);
  }
  EXPECT_EQ(sessions_.attached(), 1u);
  for (int r = 1; r <= 40; ++r) {  // every request answered, by its id
    auto reply = os::ReceiveMessage(client.get(), 5000);
    ASSERT_TRUE(reply.ok()) << reply.status().ToString();
    protocol::WireReader in(reply->bytes);
    MessageType type;
    ASSERT_TRUE(in.ReadHeader(&type).ok());
    EXPECT_EQ(in.request_id(), static_cast<uint64_t>(r));
  }
}

TEST_F(SessionsTest, AHeldSessionIsReadAgainOnlyAfterResume) {
  uint64_t id;
  os::UniqueFd client = HoldSecondRequest(&id);
  RunReady();
  EXPECT_EQ(handled_.size(), 2u) << "request 3 was read while request 2 was held";
  Session* s = sessions_.Resume(id, 2);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->request_id, 2u) << "a reply now answers the held request";
  ASSERT_TRUE(RunUntil([&] { return handled_.size() == 3; }));
  EXPECT_EQ(handled_[2].request_id, 3u);
  EXPECT_TRUE(dropped_.empty());
}

TEST_F(SessionsTest, AHeldSessionThatHangsUpIsDropped) {
  uint64_t id;
  os::UniqueFd client = HoldSecondRequest(&id);
  client.Reset();  // request 3 still unread
  ASSERT_TRUE(RunUntil([&] { return !dropped_.empty(); }));
  EXPECT_EQ(dropped_[0], id);
  EXPECT_EQ(sessions_.Find(id), nullptr);
  EXPECT_EQ(sessions_.Resume(id, 2), nullptr) << "its late answer finds it gone";
}

TEST_F(SessionsTest, AFirstMessageOtherThanHelloDropsTheConnection) {
  uint64_t id;
  os::UniqueFd client = Connect(&id);
  Send(client, protocol::Info{}, 1);
  ASSERT_TRUE(RunUntil([&] { return !dropped_.empty(); }));
  EXPECT_TRUE(handled_.empty());
  EXPECT_EQ(sessions_.size(), 0u);
}

TEST_F(SessionsTest, GarbageDropsTheConnectionAndSparesTheOthers) {
  uint64_t bad, good;
  os::UniqueFd garbage = Connect(&bad);
  os::UniqueFd client = Connect(&good);
  ASSERT_TRUE(os::SendMessage(garbage.get(), "not a csm message").ok());
  Send(client, protocol::Hello{}, 1);
  ASSERT_TRUE(RunUntil([&] { return !dropped_.empty() && handled_.size() == 1; }));
  EXPECT_EQ(dropped_, std::vector<uint64_t>{bad});
  EXPECT_NE(sessions_.Find(good), nullptr);
}

class SessionsDeadlineTest : public SessionsTest {
 protected:
  SessionsDeadlineTest() : SessionsTest({/*hello_timeout_ms=*/50, /*max_pending=*/64, /*max_per_process=*/8}) {}
};

TEST_F(SessionsDeadlineTest, AConnectionThatSaysNoHelloInTimeIsDropped) {
  uint64_t silent, attached;
  os::UniqueFd quiet = Connect(&silent);
  os::UniqueFd client = Connect(&attached);
  Send(client, protocol::Hello{}, 1);
  ASSERT_TRUE(RunUntil([&] { return !dropped_.empty(); }));
  EXPECT_EQ(dropped_, std::vector<uint64_t>{silent});
  EXPECT_EQ(sessions_.dropped_before_hello(), 1u);
  EXPECT_NE(sessions_.Find(attached), nullptr) << "the one that said Hello stays";
}

}  // namespace
}  // namespace csm::node
