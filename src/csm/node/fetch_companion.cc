#include "csm/node/fetch_companion.h"

#include <algorithm>
#include <chrono>

#include "csm/os/memory.h"

namespace csm::node {
namespace {

constexpr uint64_t kSlice = 8 << 20;  // faulted or hashed at a time
constexpr uint64_t kLead = 32 << 20;  // how far faulting tries to stay ahead of arrivals

}  // namespace

FetchCompanion::FetchCompanion(const std::vector<object::ObjectExtent>& extents, std::vector<char*> dests,
                               uint64_t skip)
    : dests_(std::move(dests)), skip_(skip) {
  uint64_t at = 0;
  for (const auto& e : extents) {
    starts_.push_back(at);
    at += e.length;
  }
  starts_.push_back(at);
  hashed_ = std::min(skip_, at);
}

FetchCompanion::~FetchCompanion() {
  stop_.store(true, std::memory_order_release);
  if (thread_.joinable()) thread_.join();
}

void FetchCompanion::Start() { thread_ = std::thread([this] { Run(); }); }

uint64_t FetchCompanion::Finish(bool complete) {
  stop_.store(true, std::memory_order_release);
  if (thread_.joinable()) thread_.join();
  if (!complete) return 0;
  HashUpTo(starts_.back());
  return sum_.Digest();
}

template <typename F>
void FetchCompanion::ForEachPiece(uint64_t from, uint64_t to, F&& f) {
  // The extent holding `from`: the last whose start is <= from.
  size_t i = std::upper_bound(starts_.begin(), starts_.end() - 1, from) - starts_.begin() - 1;
  for (; from < to && i + 1 < starts_.size(); ++i) {
    const uint64_t end = std::min(to, starts_[i + 1]);
    if (end > from) f(dests_[i] + (from - starts_[i]), end - from);
    from = std::max(from, end);
  }
}

void FetchCompanion::HashUpTo(uint64_t upto) {
  if (upto <= hashed_) return;
  ForEachPiece(hashed_, upto, [&](char* p, uint64_t n) { sum_.Update(p, n); });
  hashed_ = upto;
}

void FetchCompanion::FaultUpTo(uint64_t upto) {
  if (upto <= faulted_) return;
  const uintptr_t page = os::PageSize();
  ForEachPiece(faulted_, upto, [&](char* p, uint64_t n) {
    const uintptr_t lo = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
    const uintptr_t hi = (reinterpret_cast<uintptr_t>(p) + n + page - 1) & ~(page - 1);
    os::PrefaultWritable(lo, hi - lo);
  });
  faulted_ = upto;
}

void FetchCompanion::Run() {
  const uint64_t total = starts_.back();
  for (;;) {
    const bool stopping = stop_.load(std::memory_order_acquire);  // before `received`:
    const uint64_t got = received.load(std::memory_order_acquire);  // then `got` is final
    faulted_ = std::max(faulted_, got);  // where the receiver got ahead, it took the faults
    const bool fault = !stopping && faulted_ < total;
    if (fault && faulted_ < got + kLead) {
      FaultUpTo(std::min(total, faulted_ + kSlice));  // keep ahead of the receiver first
    } else if (got > hashed_) {
      HashUpTo(std::min(got, hashed_ + kSlice));
    } else if (fault) {
      FaultUpTo(std::min(total, faulted_ + kSlice));
    } else if (stopping) {
      return;
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }
}

}  // namespace csm::node
