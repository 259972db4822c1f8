// Membership against a fake cluster directory: heartbeats, a directory that forgot the
// node, stale copies. No sockets, no processes; waits are for observed calls.
#include "csm/node/membership.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

namespace csm::node {
namespace {

using cluster::ClusterDirectory;

class FakeDirectory : public ClusterDirectory {
 public:
  Status Join(const cluster::NodeInfo&) override { return Status::OK(); }
  Result<uint64_t> LeaseSegments(uint64_t) override { return Unavailable("not in this test"); }
  Status Heartbeat() override {
    std::lock_guard<std::mutex> lock(mu_);
    ++heartbeats_;
    cv_.notify_all();
    return heartbeat_answer_;
  }
  Result<std::vector<cluster::NodeInfo>> Members() override { return std::vector<cluster::NodeInfo>{}; }
  Status Publish(const cluster::ObjectRecord&, std::vector<uint32_t>*) override { return Status::OK(); }
  Status Unpublish(const std::string&, uint32_t) override { return Status::OK(); }
  Result<cluster::ObjectRecord> Lookup(const std::string&, cluster::Freshness) override {
    return NotFound("none");
  }
  std::optional<Result<cluster::ObjectRecord>> LookupHere(const std::string&) override { return std::nullopt; }
  Result<std::vector<cluster::ObjectRecord>> List(const std::string&, uint32_t, bool* more) override {
    *more = false;
    return std::vector<cluster::ObjectRecord>{};
  }
  Status SetReplicas(const std::string&, uint64_t, const std::vector<uint32_t>&) override { return Status::OK(); }
  Result<std::vector<cluster::ObjectRecord>> TakeOver(const std::vector<Held>&) override {
    return std::vector<cluster::ObjectRecord>{};
  }
  // Stale: the held copies whose key is in stale_keys_.
  Result<std::vector<std::string>> Stale(const std::vector<Held>& held) override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> out;
    for (const auto& h : held) {
      if (stale_keys_.count(h.key)) out.push_back(h.key);
    }
    return out;
  }

  void Answer(Status s) {
    std::lock_guard<std::mutex> lock(mu_);
    heartbeat_answer_ = std::move(s);
  }
  void MarkStale(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    stale_keys_.insert(key);
  }
  // Waits (up to 30 s) until `n` more heartbeats than `from` were made.
  bool AwaitHeartbeats(int from, int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(30), [&] { return heartbeats_ >= from + n; });
  }
  int heartbeats() {
    std::lock_guard<std::mutex> lock(mu_);
    return heartbeats_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int heartbeats_ = 0;
  Status heartbeat_answer_;
  std::set<std::string> stale_keys_;
};

// What the hooks were told, for the test thread to wait on.
struct Heard {
  std::mutex mu;
  std::condition_variable cv;
  int rejoins = 0;
  std::vector<std::string> dropped;
  Membership::Hooks Hooks() {
    return {[this] {
              std::lock_guard<std::mutex> lock(mu);
              ++rejoins;
              cv.notify_all();
            },
            [this](std::vector<std::string> keys) {
              std::lock_guard<std::mutex> lock(mu);
              dropped.insert(dropped.end(), keys.begin(), keys.end());
              cv.notify_all();
            }};
  }
  template <typename Pred>
  bool Await(Pred pred) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(30), pred);
  }
};

TEST(MembershipTest, HeartbeatsUntilStopped) {
  FakeDirectory dir;
  Heard heard;
  Membership m(&dir, /*heartbeat_ms=*/5, heard.Hooks());
  m.Start();
  ASSERT_TRUE(dir.AwaitHeartbeats(0, 3));
  m.Stop();
  const int after = dir.heartbeats();
  m.Stop();  // twice is fine
  EXPECT_EQ(dir.heartbeats(), after) << "none after Stop returned";
  EXPECT_EQ(heard.rejoins, 0);
}

TEST(MembershipTest, ADirectoryThatForgotTheNodeAsksForOneRejoinAtATime) {
  FakeDirectory dir;
  Heard heard;
  Membership m(&dir, 5, heard.Hooks());
  dir.Answer(NotFound("node 2 is not a member"));
  m.Start();
  ASSERT_TRUE(heard.Await([&] { return heard.rejoins == 1; }));
  // Still NotFound while the re-registration runs: no second one.
  ASSERT_TRUE(dir.AwaitHeartbeats(dir.heartbeats(), 3));
  EXPECT_EQ(heard.rejoins, 1);
  m.Rejoined();  // it failed, say: the next NotFound asks again
  ASSERT_TRUE(heard.Await([&] { return heard.rejoins == 2; }));
  m.Rejoined();
  dir.Answer(Status::OK());
  ASSERT_TRUE(dir.AwaitHeartbeats(dir.heartbeats(), 3));
  EXPECT_EQ(heard.rejoins, 2);
}

TEST(MembershipTest, StaleCopiesAreHandedBackAfterAHeartbeat) {
  FakeDirectory dir;
  Heard heard;
  Membership m(&dir, 5, heard.Hooks());
  m.SetHeld({{"kept", 1, 3}, {"gone", 2, 3}});
  dir.MarkStale("gone");
  m.Start();
  ASSERT_TRUE(heard.Await([&] { return !heard.dropped.empty(); }));
  m.Stop();
  EXPECT_EQ(heard.dropped.front(), "gone");
  for (const auto& k : heard.dropped) EXPECT_NE(k, "kept");
}

TEST(MembershipTest, NoStaleCheckWhileTheDirectoryIsUnreachable) {
  FakeDirectory dir;
  Heard heard;
  Membership m(&dir, 5, heard.Hooks());
  m.SetHeld({{"gone", 2, 3}});
  dir.MarkStale("gone");
  dir.Answer(Unavailable("the coordinator does not answer"));
  m.Start();
  ASSERT_TRUE(dir.AwaitHeartbeats(0, 5));
  {
    std::lock_guard<std::mutex> lock(heard.mu);
    EXPECT_TRUE(heard.dropped.empty()) << "a failed heartbeat checks nothing";
  }
  dir.Answer(Status::OK());
  ASSERT_TRUE(heard.Await([&] { return !heard.dropped.empty(); }));
}

TEST(MembershipTest, CheckStaleOnTheCallersThread) {
  FakeDirectory dir;
  Heard heard;
  Membership m(&dir, 60000, heard.Hooks());  // never started
  dir.MarkStale("b");
  m.CheckStale({{"a", 1, 2}, {"b", 2, 2}});
  ASSERT_EQ(heard.dropped.size(), 1u);
  EXPECT_EQ(heard.dropped[0], "b");
  m.CheckStale({});
  EXPECT_EQ(heard.dropped.size(), 1u);
}

}  // namespace
}  // namespace csm::node
