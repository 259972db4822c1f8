#include "csm/node/fetch_companion.h"

#include <algorithm>
#include <chrono>

#include "csm/os/memory.h"

namespace csm::node {
namespace {

constexpr uint64_t kSlice = 8 << 20;  // faulted at a time
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
}

FetchCompanion::~FetchCompanion() {
  stop_.store(true, std::memory_order_release);
  if (thread_.joinable()) thread_.join();
}

void FetchCompanion::Start() { thread_ = std::thread([this] { Run(); }); }

void FetchCompanion::Arrived(const char* data, uint64_t length) {
  const uint64_t pass = std::min(skip_, length);
  skip_ -= pass;
  if (length > pass) sum_.Update(data + pass, length - pass);
  received_.store(received_.load(std::memory_order_relaxed) + length, std::memory_order_release);
}

uint64_t FetchCompanion::Finish(bool complete) {
  stop_.store(true, std::memory_order_release);
  if (thread_.joinable()) thread_.join();
  if (!complete || received_.load(std::memory_order_acquire) != starts_.back()) return 0;
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
  while (!stop_.load(std::memory_order_acquire) && faulted_ < total) {
    const uint64_t got = received_.load(std::memory_order_acquire);
    faulted_ = std::max(faulted_, got);  // where the receiver got ahead, it took the faults
    if (faulted_ < got + kLead) {
      FaultUpTo(std::min(total, faulted_ + kSlice));
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }
}

}  // namespace csm::node
