// FetchCompanion on its own: the digest it takes of the bytes as they arrive equals the
// digest of the bytes once they are all there, however they arrive, with its faulting
// thread running beside (run under TSan too).
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

// The bytes arrive in stream order, in pieces of random size, each shown as it lands.
void Arrive(Stream& s, FetchCompanion& companion, uint32_t seed) {
  std::mt19937_64 rng(seed);
  for (auto& m : s.memory) {
    for (uint64_t at = 0; at < m.size();) {
      uint64_t n = std::min<uint64_t>(m.size() - at, 1 + rng() % (3 << 20));
      for (uint64_t i = 0; i < n; ++i) m[at + i] = static_cast<char>(rng());
      companion.Arrived(m.data() + at, n);
      at += n;
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

TEST(FetchCompanionTest, HashesWhatArrivesAsAOneShotHashWouldWhateverThePieces) {
  for (uint32_t seed : {1u, 2u, 3u}) {
    for (uint64_t skip : {uint64_t{0}, uint64_t{64}}) {
      for (bool faulting : {false, true}) {
        Stream s = MakeStream({(5 << 20) + 123, 17 << 20, 1, 4096, (9 << 20) + 7});
        FetchCompanion companion(s.extents, s.dests(), skip);
        if (faulting) companion.Start();  // its thread runs beside the receiver
        std::thread receiver([&] { Arrive(s, companion, seed); });
        receiver.join();
        EXPECT_EQ(companion.Finish(true), Expected(s, skip))
            << "seed " << seed << ", skip " << skip << ", faulting " << faulting;
      }
    }
  }
}

TEST(FetchCompanionTest, AStreamThatDidNotAllArriveHasNoDigest) {
  Stream s = MakeStream({100, 3 << 20});
  FetchCompanion companion(s.extents, s.dests(), 64);
  companion.Arrived(s.memory[0].data(), 100);
  companion.Arrived(s.memory[1].data(), 1 << 20);  // then the peer went away
  EXPECT_EQ(companion.Finish(true), 0u) << "2 MiB never came";
}

TEST(FetchCompanionTest, AFailedTransferEndsItPromptly) {
  Stream s = MakeStream({32 << 20});
  FetchCompanion companion(s.extents, s.dests(), 0);
  companion.Start();
  companion.Arrived(s.memory[0].data(), 1 << 20);  // then the peer went away
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(companion.Finish(false), 0u);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

}  // namespace
}  // namespace csm::node
