#include "csm/node/spare_memory.h"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "csm/base/log.h"
#include "csm/config.h"
#include "csm/os/memory.h"

namespace csm::node {
namespace {

enum class Zeroing { kDone, kFailed, kStopped };

// Writes zeros over every range of `fd` that holds pages (holes already read as zeros),
// keeping the pages, 1 MiB at a time; stops between two pieces once keep_going() is false.
template <typename KeepGoing>
Zeroing ZeroPages(int fd, uint64_t size, KeepGoing&& keep_going) {
  static const std::vector<char> zeros(1 << 20, 0);
  off_t at = 0;
  while (static_cast<uint64_t>(at) < size) {
    off_t data = ::lseek(fd, at, SEEK_DATA);
    if (data < 0) return errno == ENXIO ? Zeroing::kDone : Zeroing::kFailed;  // ENXIO: no pages past `at`
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0) return Zeroing::kFailed;
    for (off_t o = data; o < hole;) {
      if (!keep_going()) return Zeroing::kStopped;
      size_t n = std::min<uint64_t>(zeros.size(), static_cast<uint64_t>(hole - o));
      ssize_t w = ::pwrite(fd, zeros.data(), n, o);
      if (w <= 0) return Zeroing::kFailed;
      o += w;
    }
    at = hole;
  }
  return Zeroing::kDone;
}

}  // namespace

SpareMemory::SpareMemory(uint64_t budget, std::chrono::milliseconds keep_for)
    : budget_(budget), keep_for_(keep_for), zeroer_([this] { ZeroLoop(); }) {}

SpareMemory::~SpareMemory() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  zeroer_.join();
}

void SpareMemory::Keep(os::UniqueFd fd, uint64_t size, std::shared_ptr<os::SharedView> view,
                       os::UniquePath path) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ExpireLocked();
    if (!fd.valid() || size > budget_) return;  // closed here
    // The newest memory is the likeliest to be asked for again: the oldest spares make
    // room (one being zeroed stays; then this one is closed instead).
    for (auto it = spares_.begin(); it != spares_.end() && bytes_ + size > budget_;) {
      if (it->state == State::kZeroing) {
        ++it;
        continue;
      }
      bytes_ -= it->size;
      it = spares_.erase(it);
    }
    if (bytes_ + size > budget_) return;
    bytes_ += size;
    spares_.push_back({size, {std::move(fd), std::move(view), std::move(path)}, std::chrono::steady_clock::now(),
                       State::kDirty, false, ++last_id_});
  }
  cv_.notify_all();
}

SpareMemory::Memory SpareMemory::TakeZeroed(uint64_t size) { return Take(size, true); }
SpareMemory::Memory SpareMemory::TakeAny(uint64_t size) { return Take(size, false); }

SpareMemory::Memory SpareMemory::Take(uint64_t size, bool zeroed_only) {
  std::unique_lock<std::mutex> lock(mu_);
  ExpireLocked();
  auto best = spares_.end(), zeroing = spares_.end();
  for (auto it = spares_.begin(); it != spares_.end(); ++it) {
    if (it->size != size) continue;
    if (it->state == State::kZeroing) {
      zeroing = it;
      continue;
    }
    if (it->state == State::kZeroed) {
      best = it;
      break;
    }
    if (!zeroed_only && best == spares_.end()) best = it;
  }
  if (best == spares_.end() && !zeroed_only && zeroing != spares_.end()) {
    // One being zeroed: the zeroing thread stops after the piece it is writing (1 MiB),
    // and this taker takes it as it is. Bounded: if that thread gets no core soon, the
    // spare stays its.
    // Found again by id after the wait: another taker may have taken it meanwhile.
    const uint64_t id = zeroing->id;
    auto find = [&] {
      return std::find_if(spares_.begin(), spares_.end(), [id](const Spare& s) { return s.id == id; });
    };
    zeroing->wanted = true;
    taken_cv_.wait_for(lock, kStopWait, [&] {
      auto it = find();
      return it == spares_.end() || it->state != State::kZeroing;
    });
    if (auto it = find(); it != spares_.end()) {
      it->wanted = false;
      if (it->state != State::kZeroing) best = it;
    }
  }
  if (best == spares_.end()) return {};
  Memory taken = std::move(best->memory);
  bytes_ -= best->size;
  ++reuses_;
  spares_.erase(best);
  return taken;
}

SpareMemory::Stats SpareMemory::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t zeroed = 0, zeroing = 0;
  for (const Spare& s : spares_) {
    zeroed += s.state == State::kZeroed ? s.size : 0;
    zeroing += s.state == State::kZeroing ? s.size : 0;
  }
  return {bytes_, zeroed, zeroing, reuses_};
}

void SpareMemory::ExpireLocked() {
  auto now = std::chrono::steady_clock::now();
  for (auto it = spares_.begin(); it != spares_.end();) {
    if (it->state != State::kZeroing && now - it->kept >= keep_for_) {
      bytes_ -= it->size;
      it = spares_.erase(it);  // closing the memfd gives its pages back
    } else {
      ++it;
    }
  }
}

void SpareMemory::ZeroLoop() {
  // Zeroing is background work: it runs only on a core nothing else wants.
  sched_param idle{};
  (void)::pthread_setschedparam(::pthread_self(), SCHED_IDLE, &idle);
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    ExpireLocked();
    const auto now = std::chrono::steady_clock::now();
    auto wake = now + std::chrono::seconds(1);
    auto dirty = spares_.end();
    for (auto it = spares_.begin(); it != spares_.end() && dirty == spares_.end(); ++it) {
      if (it->state != State::kDirty || it->wanted) continue;
      if (now - it->kept >= kZeroAfter) dirty = it;
      wake = std::min(wake, it->kept + kZeroAfter);
    }
    if (dirty == spares_.end()) {
      cv_.wait_until(lock, wake);
      continue;
    }
    // Zeroed outside the lock; takers skip it meanwhile, and list nodes stay put.
    dirty->state = State::kZeroing;
    lock.unlock();
    const int64_t t0 = os::MonotonicNanos();
    const Zeroing z = ZeroPages(dirty->memory.fd.get(), dirty->size, [&] {
      std::lock_guard<std::mutex> check(mu_);
      return !dirty->wanted && !stop_;
    });
    CSM_LOG_DEBUG("spare memory: zeroing %s took %.1f ms%s", FormatSize(dirty->size).c_str(),
                  (os::MonotonicNanos() - t0) / 1e6,
                  z == Zeroing::kFailed ? " (failed: dropped)" : z == Zeroing::kStopped ? " (stopped: taken)" : "");
    lock.lock();
    if (z == Zeroing::kDone) {
      dirty->state = State::kZeroed;
    } else if (z == Zeroing::kStopped) {
      dirty->state = State::kDirty;  // the taker waiting for it takes it as it is
      taken_cv_.notify_all();
    } else {
      bytes_ -= dirty->size;
      spares_.erase(dirty);
    }
  }
  spares_.clear();
  bytes_ = 0;
}

}  // namespace csm::node
