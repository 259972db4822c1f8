// Concurrency: csmd on a thread of this process, and many threads of one client
// building, committing, getting, pinning and deleting at once. Run under TSan (the
// tsan preset runs the `concurrency` label).
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "csm/client.h"
#include "csm/node/daemon.h"
#include "harness.h"
#include "workload.h"

namespace csm {
namespace {

using workload::HeapMap;

class InProcessNode {
 public:
  InProcessNode() {
    config_ = DefaultConfig();
    config_.socket_path = "/tmp/csm-conc-" + std::to_string(::getpid()) + "/node.sock";
    config_.arena_size = 8 << 20;
    auto d = node::Daemon::Create(config_);
    EXPECT_TRUE(d.ok()) << d.status().ToString();
    daemon_ = std::move(*d);
    thread_ = std::thread([this] { EXPECT_TRUE(daemon_->Run().ok()); });
  }
  ~InProcessNode() {
    daemon_->Stop();
    thread_.join();
  }
  const Config& config() const { return config_; }

 private:
  Config config_;
  std::unique_ptr<node::Daemon> daemon_;
  std::thread thread_;
};

TEST(ConcurrencyTest, ThreadsBuildGetPinAndDeleteAtOnce) {
  InProcessNode node;
  auto client = Client::Connect(node.config());
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  Client& c = **client;
  constexpr int kWriters = 2, kPerWriter = 30, kKeys = 300;
  std::atomic<int> failures{0};
  auto key = [](int w, int i) { return "w" + std::to_string(w) + "/" + std::to_string(i); };

  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < kPerWriter; ++i) {
        auto b = c.NewBuilder();
        if (!b.ok()) { ++failures; continue; }
        auto m = b->New<HeapMap>();
        Status s = m.ok() ? b->Populate([&] { workload::Fill(**m, kKeys + i); }) : m.status();
        if (s.ok()) s = b->Commit(key(w, i));
        if (!s.ok()) ++failures;
      }
    });
  }
  // Readers wait for every object, check it in place, and the last reader of each
  // deletes it while the other may still hold a pin.
  std::vector<std::atomic<int>> reads(kWriters * kPerWriter);
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&] {
      for (int w = 0; w < kWriters; ++w) {
        for (int i = 0; i < kPerWriter; ++i) {
          auto ref = c.Get<HeapMap>(key(w, i), std::chrono::seconds(60));
          if (!ref.ok()) { ++failures; continue; }
          if (!workload::Verify(**ref, kKeys + i).empty() || !ref->Verify().ok()) ++failures;
          Ref<HeapMap> copy = *ref;  // copies pin too
          ref->Reset();
          if (copy->size() != static_cast<size_t>(kKeys + i)) ++failures;
          if (reads[w * kPerWriter + i].fetch_add(1) == 1 && !c.Delete(key(w, i)).ok()) ++failures;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_TRUE(c.List().empty());
  EXPECT_TRUE(testing::Eventually([&] {
    return nlohmann::json::parse(*c.InfoJson())["objects_awaiting_unpin"].get<int>() == 0;
  }));
}

TEST(ConcurrencyTest, ManyThreadsGetTheSameObject) {
  InProcessNode node;
  auto client = Client::Connect(node.config());
  ASSERT_TRUE(client.ok());
  Client& c = **client;
  {
    auto b = c.NewBuilder();
    ASSERT_TRUE(b.ok());
    auto m = b->New<HeapMap>();
    ASSERT_TRUE(b->Populate([&] { workload::Fill(**m, 1000); }).ok());
    ASSERT_TRUE(b->Commit("shared").ok());
  }
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        auto ref = c.Get<HeapMap>("shared");
        if (!ref.ok() || (*ref)->at(999).size() != 4) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  auto stat = nlohmann::json::parse(*c.StatJson("shared"));
  EXPECT_EQ(stat["pins"].get<int>(), 0) << "every pin was dropped";
}

}  // namespace
}  // namespace csm
