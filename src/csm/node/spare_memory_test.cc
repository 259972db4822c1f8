// SpareMemory on its own: what a reused arena reads, the budget, the time limit, and
// keeps and takes from many threads while the zeroing thread runs (run under TSan too),
// and csmd's view of a spare coming back with it.
#include "csm/node/spare_memory.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include "csm/os/memory.h"
#include "harness.h"

namespace csm::node {
namespace {

using namespace std::chrono_literals;
constexpr uint64_t kMiB = 1 << 20;

// A memfd of `size` bytes whose first `written` bytes hold non-zero bytes.
os::UniqueFd Written(uint64_t size, uint64_t written) {
  auto fd = os::CreateMemfd("spare-test", size);
  EXPECT_TRUE(fd.ok());
  const std::vector<char> ones(std::min<uint64_t>(written, kMiB), 1);
  for (uint64_t at = 0; at < written; at += ones.size()) {
    const size_t n = std::min<uint64_t>(ones.size(), written - at);
    EXPECT_EQ(::pwrite(fd->get(), ones.data(), n, static_cast<off_t>(at)), static_cast<ssize_t>(n));
  }
  return std::move(*fd);
}

// How many bytes of the memfd are not zero.
uint64_t NonZero(int fd, uint64_t size) {
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  EXPECT_NE(p, MAP_FAILED);
  uint64_t n = 0;
  for (uint64_t i = 0; i < size; ++i) n += static_cast<const char*>(p)[i] != 0;
  ::munmap(p, size);
  return n;
}

TEST(SpareMemoryTest, ATakenSpareReadsAsZerosAndKeepsItsPages) {
  SpareMemory spares(64 * kMiB, 10s);
  spares.Keep(Written(8 * kMiB, 5 * kMiB + 3), 8 * kMiB);
  EXPECT_EQ(spares.stats().bytes, 8 * kMiB);
  ASSERT_TRUE(testing::Eventually([&] { return spares.stats().zeroed_bytes == 8 * kMiB; }, 5000));
  EXPECT_FALSE(spares.TakeZeroed(4 * kMiB).valid()) << "only the exact size is handed out";
  os::UniqueFd fd = spares.TakeZeroed(8 * kMiB).fd;
  ASSERT_TRUE(fd.valid());
  EXPECT_EQ(NonZero(fd.get(), 8 * kMiB), 0u);
  EXPECT_EQ(::lseek(fd.get(), 0, SEEK_DATA), 0) << "the written pages stay in place";
  EXPECT_EQ(spares.stats().bytes, 0u);
  EXPECT_EQ(spares.stats().reuses, 1u);
  EXPECT_FALSE(spares.TakeAny(8 * kMiB).valid()) << "taken once";
}

TEST(SpareMemoryTest, ASpareKeepsCsmdsViewOfItAndTheViewSeesTheZeroedPages) {
  SpareMemory spares(64 * kMiB, 10s);
  os::UniqueFd fd = Written(4 * kMiB, 3 * kMiB);
  auto view = os::SharedView::Map(fd.get(), 4 * kMiB);
  ASSERT_TRUE(view.ok()) << view.status().ToString();
  char* const bytes = (*view)->data();
  ASSERT_EQ(bytes[kMiB], 1);
  spares.Keep(std::move(fd), 4 * kMiB, *view);
  view->reset();  // the spare holds the only reference now
  ASSERT_TRUE(testing::Eventually([&] { return spares.stats().zeroed_bytes == 4 * kMiB; }, 5000));
  SpareMemory::Memory taken = spares.TakeZeroed(4 * kMiB);
  ASSERT_TRUE(taken.valid());
  ASSERT_NE(taken.view, nullptr) << "the view comes back with its memfd";
  EXPECT_EQ(taken.view->data(), bytes) << "the same mapping, page tables and all";
  for (uint64_t at = 0; at < 4 * kMiB; at += 4096) ASSERT_EQ(taken.view->data()[at], 0) << at;
  EXPECT_FALSE(spares.TakeAny(4 * kMiB).valid());
}

TEST(SpareMemoryTest, NoMoreThanTheBudgetIsKeptAndTheOldestGoFirst) {
  SpareMemory spares(8 * kMiB, 10s);
  spares.Keep(Written(4 * kMiB, kMiB), 4 * kMiB);
  spares.Keep(Written(2 * kMiB, kMiB), 2 * kMiB);
  spares.Keep(Written(16 * kMiB, kMiB), 16 * kMiB);  // more than the budget: closed
  EXPECT_EQ(spares.stats().bytes, 6 * kMiB);
  // (A spare being zeroed is not closed to make room: wait until none is.)
  ASSERT_TRUE(testing::Eventually([&] { return spares.stats().zeroed_bytes == 6 * kMiB; }, 5000));
  spares.Keep(Written(3 * kMiB, kMiB), 3 * kMiB);  // the 4 MiB one makes room
  EXPECT_EQ(spares.stats().bytes, 5 * kMiB);
  EXPECT_FALSE(spares.TakeAny(4 * kMiB).valid());
  // A replica takes any spare, zeroed or not.
  EXPECT_TRUE(spares.TakeAny(3 * kMiB).valid());
  EXPECT_TRUE(spares.TakeAny(2 * kMiB).valid());
  EXPECT_EQ(spares.stats().bytes, 0u);
}

// An arena overwritten wholly takes a spare being zeroed at once (it neither waits for
// the zeroing thread, which may get no core for seconds on a busy machine, nor gets fresh
// memory), and nothing the thread was doing reaches the memory once it is taken.
TEST(SpareMemoryTest, ASpareBeingZeroedIsTakenByAnArenaThatOverwritesIt) {
  constexpr uint64_t kSize = 64 * kMiB;
  SpareMemory spares(1024 * kMiB, 10s);
  // The zeroing thread is held right before it writes a piece, as a busy machine may
  // hold it for seconds; the spare is taken and written meanwhile.
  std::atomic<int> held{0};  // 1: the thread is held, 2: let go
  spares.SetBeforePieceForTesting([&] {
    int expected = 0;
    if (!held.compare_exchange_strong(expected, 1)) return;
    held.notify_all();
    while (held.load() == 1) held.wait(1);
  });
  spares.Keep(Written(kSize, kSize), kSize);
  held.wait(0);
  EXPECT_NE(spares.stats().zeroing_bytes, 0u);
  SpareMemory::Memory taken = spares.TakeAny(kSize);
  ASSERT_TRUE(taken.valid());
  EXPECT_EQ(spares.stats().bytes, 0u);
  void* p = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, taken.fd.get(), 0);
  ASSERT_NE(p, MAP_FAILED);
  auto* bytes = static_cast<volatile char*>(p);
  for (uint64_t at = 0; at < kSize; at += 4096) bytes[at] = 7;  // as a builder would
  held = 2;
  held.notify_all();
  // The zeroing thread has left it once it has zeroed a spare kept after it.
  spares.Keep(Written(kMiB, kMiB), kMiB);
  ASSERT_TRUE(testing::Eventually([&] { return spares.stats().zeroed_bytes == kMiB; }, 20000));
  uint64_t lost = 0;
  for (uint64_t at = 0; at < kSize; at += 4096) lost += bytes[at] != 7;
  EXPECT_EQ(lost, 0u) << "pages the zeroing thread wrote after the spare was taken";
  ::munmap(p, kSize);
}

// Two such arenas asking at once for the one spare being zeroed: one gets it.
TEST(SpareMemoryTest, TwoTakersOfOneSpareBeingZeroedGetItOnce) {
  SpareMemory spares(1024 * kMiB, 10s);
  spares.Keep(Written(512 * kMiB, 512 * kMiB), 512 * kMiB);
  ASSERT_TRUE(testing::Eventually([&] { return spares.stats().zeroing_bytes != 0; }, 5000));
  std::atomic<int> got{0};
  std::vector<std::thread> takers;
  for (int i = 0; i < 2; ++i) {
    takers.emplace_back([&] { got += spares.TakeAny(512 * kMiB).valid() ? 1 : 0; });
  }
  for (auto& t : takers) t.join();
  EXPECT_EQ(got.load(), 1);
  EXPECT_EQ(spares.stats().bytes, 0u);
}

TEST(SpareMemoryTest, SparesKeptTooLongGoBack) {
  SpareMemory spares(64 * kMiB, 100ms);
  spares.Keep(Written(2 * kMiB, kMiB), 2 * kMiB);
  EXPECT_TRUE(testing::Eventually([&] { return spares.stats().bytes == 0; }, 5000));
  EXPECT_FALSE(spares.TakeAny(2 * kMiB).valid());
}

TEST(SpareMemoryTest, ManyThreadsKeepAndTakeWhileTheZeroerRuns) {
  SpareMemory spares(16 * kMiB, 10s);
  std::atomic<int> dirty_zeroed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        spares.Keep(Written(kMiB, kMiB / 2), kMiB);
        os::UniqueFd fd = spares.TakeZeroed(kMiB).fd;
        if (fd.valid() && NonZero(fd.get(), kMiB) != 0) ++dirty_zeroed;
        (void)spares.TakeAny(kMiB);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(dirty_zeroed.load(), 0) << "TakeZeroed handed out memory with old bytes";
  EXPECT_LE(spares.stats().bytes, 16 * kMiB);
}

}  // namespace
}  // namespace csm::node
