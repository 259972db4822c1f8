#include "csm/object/checksum.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>

namespace csm::object {
namespace {

// Below this a second thread costs more than it saves.
constexpr uint64_t kParallelBytes = uint64_t{8} << 20;
constexpr unsigned kMaxThreads = 4;

unsigned ThreadsFor(uint64_t bytes) {
  if (bytes < kParallelBytes) return 1;
  return std::clamp(std::thread::hardware_concurrency(), 1u, kMaxThreads);
}

// Runs work() on `threads` threads, this one among them.
template <typename Work>
void OnThreads(unsigned threads, Work&& work) {
  std::vector<std::thread> helpers;
  for (unsigned i = 1; i < threads; ++i) helpers.emplace_back(work);
  work();
  for (std::thread& t : helpers) t.join();
}

// Copies sorted by destination, for the blocks to find theirs.
class Copies {
 public:
  explicit Copies(std::vector<PendingCopy> copies) : copies_(std::move(copies)) {
    std::sort(copies_.begin(), copies_.end(), [](const PendingCopy& a, const PendingCopy& b) { return a.dst < b.dst; });
  }
  // Copies what falls in [addr, addr + length).
  void Into(uint64_t addr, uint64_t length) const {
    const uint64_t end = addr + length;
    auto it = std::upper_bound(copies_.begin(), copies_.end(), addr,
                               [](uint64_t a, const PendingCopy& c) { return a < c.dst; });
    if (it != copies_.begin()) --it;
    for (; it != copies_.end() && it->dst < end; ++it) {
      const uint64_t from = std::max(addr, it->dst), to = std::min(end, it->dst + it->length);
      if (from >= to) continue;
      std::memcpy(reinterpret_cast<void*>(from), static_cast<const char*>(it->src) + (from - it->dst), to - from);
    }
  }
  // Takes out (and makes now) the copies not inside one of `pieces`: those no block
  // would make.
  void MakeStrays(const std::vector<Piece>& pieces) {
    std::vector<Piece> sorted = pieces;
    std::sort(sorted.begin(), sorted.end(), [](const Piece& a, const Piece& b) { return a.addr < b.addr; });
    std::vector<PendingCopy> kept;
    for (const PendingCopy& c : copies_) {
      auto it = std::upper_bound(sorted.begin(), sorted.end(), c.dst,
                                 [](uint64_t a, const Piece& p) { return a < p.addr; });
      const bool inside = it != sorted.begin() && c.dst + c.length <= std::prev(it)->addr + std::prev(it)->length;
      if (inside) {
        kept.push_back(c);
      } else {
        std::memcpy(reinterpret_cast<void*>(c.dst), c.src, c.length);
      }
    }
    copies_ = std::move(kept);
  }
  bool empty() const { return copies_.empty(); }

 private:
  std::vector<PendingCopy> copies_;
};

}  // namespace

uint64_t ChecksumPieces(const std::vector<Piece>& pieces, std::vector<PendingCopy> pending) {
  const std::vector<uint64_t> digests = BlockDigestsOf(pieces, std::move(pending));
  return Checksum::OfBlocks(digests.data(), digests.size());
}

std::vector<uint64_t> BlockDigestsOf(const std::vector<Piece>& pieces, std::vector<PendingCopy> pending) {
  Copies copies(std::move(pending));
  copies.MakeStrays(pieces);
  std::vector<uint64_t> starts;  // each piece's offset in the stream, then the total
  starts.reserve(pieces.size() + 1);
  uint64_t total = 0;
  for (const Piece& p : pieces) {
    starts.push_back(total);
    total += p.length;
  }
  starts.push_back(total);
  const uint64_t block = Checksum::kBlockSize;
  const uint64_t blocks = (total + block - 1) / block;
  std::vector<uint64_t> digests(blocks);
  std::atomic<uint64_t> next{0};
  auto work = [&] {
    for (uint64_t k = next.fetch_add(1); k < blocks; k = next.fetch_add(1)) {
      const uint64_t from = k * block, to = std::min(total, from + block);
      size_t i = static_cast<size_t>(std::upper_bound(starts.begin(), starts.end(), from) - starts.begin()) - 1;
      if (to - from <= pieces[i].length - (from - starts[i])) {  // the block lies in one piece
        const uint64_t addr = pieces[i].addr + (from - starts[i]);
        copies.Into(addr, to - from);
        digests[k] = Hash64(reinterpret_cast<const void*>(addr), to - from);
        continue;
      }
      Xxh3Stream stream;
      for (uint64_t at = from; at < to; ++i) {
        const uint64_t addr = pieces[i].addr + (at - starts[i]);
        const uint64_t n = std::min(to, starts[i + 1]) - at;
        copies.Into(addr, n);
        stream.Update(reinterpret_cast<const void*>(addr), n);
        at += n;
      }
      digests[k] = stream.Digest();
    }
  };
  OnThreads(ThreadsFor(total), work);
  return digests;
}

void CopyAll(std::vector<PendingCopy> copies) {
  struct Part {
    const PendingCopy* copy;
    uint64_t offset, length;
  };
  std::vector<Part> parts;
  uint64_t total = 0;
  for (const PendingCopy& c : copies) {
    for (uint64_t at = 0; at < c.length; at += Checksum::kBlockSize) {
      parts.push_back({&c, at, std::min<uint64_t>(Checksum::kBlockSize, c.length - at)});
    }
    total += c.length;
  }
  std::atomic<size_t> next{0};
  OnThreads(ThreadsFor(total), [&] {
    for (size_t i = next.fetch_add(1); i < parts.size(); i = next.fetch_add(1)) {
      const Part& p = parts[i];
      std::memcpy(reinterpret_cast<void*>(p.copy->dst + p.offset), static_cast<const char*>(p.copy->src) + p.offset,
                  p.length);
    }
  });
}

}  // namespace csm::object
