// ReplicaFetcher with a fake transport: one fetch per key whatever the number of readers,
// transfers off the loop with their outcome posted back, transports made once.
#include "csm/node/replica_fetcher.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "csm/base/hash.h"
#include "csm/node/fake_transport.h"
#include "csm/os/fd.h"

namespace csm::node {
namespace {

using namespace testing;  // NOLINT: the fakes

// Stands for the event loop: what the fetcher posts, run when the test says.
class Loop {
 public:
  void Post(std::function<void()> task) {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.push_back(std::move(task));
    posted_.notify_all();
  }
  // Runs the next task posted (waiting up to 10 s for one: a failure, never a hang).
  bool RunOne() {
    std::unique_lock<std::mutex> lock(mu_);
    if (!posted_.wait_for(lock, std::chrono::seconds(10), [&] { return !tasks_.empty(); })) return false;
    auto task = std::move(tasks_.front());
    tasks_.pop_front();
    lock.unlock();
    task();
    return true;
  }

 private:
  std::mutex mu_;
  std::condition_variable posted_;
  std::deque<std::function<void()>> tasks_;
};

class ReplicaFetcherTest : public ::testing::Test {
 protected:
  ReplicaFetcherTest()
      : fetcher_(
            [this](transport::TransportKind kind) -> Result<std::unique_ptr<transport::Transport>> {
              ++made_;
              if (kind == transport::TransportKind::kUcx) return Unavailable("no UCX here");
              auto t = std::make_unique<FakeTransport>();
              t->bytes = bytes_;
              t->fail = fail_;
              return std::unique_ptr<transport::Transport>(std::move(t));
            },
            [this](std::function<void()> task) { loop_.Post(std::move(task)); }) {}

  void SetUp() override {
    bytes_.resize(8192);
    for (size_t i = 0; i < bytes_.size(); ++i) bytes_[i] = static_cast<char>(i * 13);
    record_ = Sound();
    record_.checksum = Checksum::Of(bytes_.data() + sizeof(object::ObjectHeader),
                                    bytes_.size() - sizeof(object::ObjectHeader));
    int fd = ::memfd_create("replica-fetcher-test", MFD_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, 2 * kMiB), 0);
    fd_ = os::UniqueFd(fd);
    auto view = os::SharedView::Map(fd, 2 * kMiB);
    ASSERT_TRUE(view.ok()) << view.status().ToString();
    target_ = {record_.arenas[0].addr, 2 * kMiB, *view};
  }
  // Transfers the record and returns the outcome `done` was called with, on the loop.
  Status TransferAndWait() {
    auto t = fetcher_.TransportFor(transport::TransportKind::kTcp);
    if (!t.ok()) return t.status();
    Status outcome = Internal("done was not called");
    std::thread::id ran_on;
    fetcher_.Transfer(record_, {target_}, *t, "peer:1", [&](Status s) {
      outcome = s;
      ran_on = std::this_thread::get_id();
    });
    EXPECT_TRUE(loop_.RunOne()) << "the outcome was never posted";
    EXPECT_EQ(ran_on, std::this_thread::get_id()) << "done runs on the loop";
    return outcome;
  }

  Loop loop_;
  std::string bytes_;
  Status fail_;
  int made_ = 0;
  cluster::ObjectRecord record_;
  os::UniqueFd fd_;  // the replica's memfd; read back with pread
  ReplicaTarget target_;
  ReplicaFetcher fetcher_;
};

TEST_F(ReplicaFetcherTest, ReadersOfOneKeyShareOneFetch) {
  EXPECT_FALSE(fetcher_.Join("k", {1, 10})) << "nothing in flight yet";
  fetcher_.Begin("k", {{1, 10}});
  EXPECT_TRUE(fetcher_.InFlight("k"));
  EXPECT_TRUE(fetcher_.Join("k", {2, 20}));
  EXPECT_TRUE(fetcher_.Join("k", {1, 11}));
  EXPECT_FALSE(fetcher_.Join("other", {3, 30}));
  EXPECT_EQ(fetcher_.in_flight(), 1u);
  EXPECT_EQ(fetcher_.End("k"), (std::vector<Waiter>{{1, 10}, {2, 20}, {1, 11}}));
  EXPECT_FALSE(fetcher_.InFlight("k"));
  EXPECT_TRUE(fetcher_.End("k").empty()) << "ended once";
}

TEST_F(ReplicaFetcherTest, ATransferRunsOffTheLoopAndItsOutcomeIsPostedBack) {
  Status s = TransferAndWait();
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::string got(bytes_.size(), '\0');
  ASSERT_EQ(::pread(fd_.get(), got.data(), got.size(), 0), static_cast<ssize_t>(got.size()));
  EXPECT_EQ(got, bytes_);
}

// `csm info` lists a transfer from its start until its outcome reaches the loop, with
// the bytes arrived so far (what `csm get` draws its progress line from).
TEST_F(ReplicaFetcherTest, ATransferIsListedWithItsBytesUntilItsOutcomeIsPosted) {
  auto t = fetcher_.TransportFor(transport::TransportKind::kTcp);
  ASSERT_TRUE(t.ok());
  Status outcome = Internal("done was not called");
  fetcher_.Transfer(record_, {target_}, *t, "peer:1", [&](Status s) { outcome = s; });
  auto listed = fetcher_.transfers();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].key, record_.key);
  EXPECT_EQ(listed[0].bytes, record_.size);
  EXPECT_LE(listed[0].received, record_.size);
  // The transfer's thread posts its outcome when every byte has arrived.
  ASSERT_TRUE(loop_.RunOne());
  EXPECT_TRUE(outcome.ok()) << outcome.ToString();
  EXPECT_TRUE(fetcher_.transfers().empty());
}

TEST_F(ReplicaFetcherTest, AFailedTransferIsTheAnswer) {
  fail_ = Unavailable("node 2 does not answer");
  Status s = TransferAndWait();
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
}

TEST_F(ReplicaFetcherTest, TransportsAreMadeOnceAndAFailureIsNotKept) {
  ASSERT_TRUE(fetcher_.TransportFor(transport::TransportKind::kTcp).ok());
  ASSERT_TRUE(fetcher_.TransportFor(transport::TransportKind::kTcp).ok());
  EXPECT_EQ(made_, 1);
  auto ucx = fetcher_.TransportFor(transport::TransportKind::kUcx);
  ASSERT_FALSE(ucx.ok());
  EXPECT_NE(ucx.status().message().find("starting the ucx transport"), std::string::npos)
      << ucx.status().ToString();
  EXPECT_FALSE(fetcher_.TransportFor(transport::TransportKind::kUcx).ok());
  EXPECT_EQ(made_, 3) << "asked again, not remembered as failed";
}

}  // namespace
}  // namespace csm::node
