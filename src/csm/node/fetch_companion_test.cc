// FetchCompanion on its own: the digest it computes beside a transfer equals the digest of
// the bytes once they are all there, however they arrive (run under TSan too).
#include "csm/node/fetch_companion.h"

#include <gtest/gtest.h>

#include <random>
#include <thread>

namespace csm::node {
namespace {

struct Stream {
  std::vector<object::ObjectExtent> extents;
  std::vector<std::vector<char>> memory;  // where each extent lands
  std::vector<char*> dests() {
    std::vector<char*> d;
    for (auto& m : memory) d.push_back(m.data());
    return d;
  }
};

Stream MakeStream(const std::vector<uint64_t>& lengths) {
  Stream s;
  uint64_t addr = 1 << 30;
  for (uint64_t n : lengths) {
    s.extents.push_back({addr, n});
    s.memory.emplace_back(n, 0);
    addr += n + 4096;
  }
  return s;
}

// The bytes arrive in stream order, in pieces of random size, `received` after each.
void Arrive(Stream& s, std::atomic<uint64_t>& received, uint32_t seed) {
  std::mt19937_64 rng(seed);
  uint64_t done = 0;
  for (auto& m : s.memory) {
    for (uint64_t at = 0; at < m.size();) {
      uint64_t n = std::min<uint64_t>(m.size() - at, 1 + rng() % (3 << 20));
      for (uint64_t i = 0; i < n; ++i) m[at + i] = static_cast<char>(rng());
      at += n;
      done += n;
      received.store(done, std::memory_order_release);
    }
  }
}

uint64_t Expected(const Stream& s, uint64_t skip) {
  Checksum sum;
  for (const auto& m : s.memory) {
    uint64_t k = std::min<uint64_t>(skip, m.size());
    sum.Update(m.data() + k, m.size() - k);
    skip -= k;
  }
  return sum.Digest();
}

TEST(FetchCompanionTest, HashesBesideTheTransferWhatAOneShotHashWouldGive) {
  for (uint32_t seed : {1u, 2u, 3u}) {
    for (uint64_t skip : {uint64_t{0}, uint64_t{64}}) {
      Stream s = MakeStream({(5 << 20) + 123, 17 << 20, 1, 4096, (9 << 20) + 7});
      FetchCompanion companion(s.extents, s.dests(), skip);
      companion.Start();
      std::thread receiver([&] { Arrive(s, companion.received, seed); });
      receiver.join();
      EXPECT_EQ(companion.Finish(true), Expected(s, skip)) << "seed " << seed << ", skip " << skip;
    }
  }
}

TEST(FetchCompanionTest, WithoutItsThreadFinishHashesEverything) {
  Stream s = MakeStream({100, 3 << 20});
  FetchCompanion companion(s.extents, s.dests(), 64);
  Arrive(s, companion.received, 7);
  EXPECT_EQ(companion.Finish(true), Expected(s, 64));
}

TEST(FetchCompanionTest, AFailedTransferEndsItPromptly) {
  Stream s = MakeStream({32 << 20});
  FetchCompanion companion(s.extents, s.dests(), 0);
  companion.Start();
  companion.received.store(1 << 20);  // then the peer went away
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(companion.Finish(false), 0u);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

}  // namespace
}  // namespace csm::node
