#include "csm/node/spare_memory.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>

#include "csm/base/log.h"
#include "csm/config.h"
#include "csm/os/memory.h"

namespace csm::node {
namespace {

constexpr size_t kWindow = 32 << 20;  // the zeroing thread maps this much at a time
constexpr size_t kPiece = 1 << 20;    // and checks whether to stop after each piece

// Writes zeros over [p, p+n) with stores that bypass the cache (the thread zeroes memory
// nobody reads now; it should not evict what others do read). Not instrumented by TSan:
// a taker may map other memory under these stores on purpose (SpareMemory::Window).
__attribute__((no_sanitize("thread"))) void ZeroBytes(char* p, size_t n) {
#if defined(__SSE2__)
  const __m128i zero = _mm_setzero_si128();
  for (size_t i = 0; i < n; i += 16) _mm_stream_si128(reinterpret_cast<__m128i*>(p + i), zero);
  _mm_sfence();  // ordered before whatever the thread publishes next
#else
  volatile uint64_t* w = reinterpret_cast<volatile uint64_t*>(p);
  for (size_t i = 0; i < n / 8; ++i) w[i] = 0;
  std::atomic_thread_fence(std::memory_order_release);
#endif
}

}  // namespace

SpareMemory::SpareMemory(uint64_t budget, std::chrono::milliseconds keep_for)
    : budget_(budget), keep_for_(keep_for), zeroer_([this] { ZeroLoop(); }) {}

SpareMemory::~SpareMemory() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    stop_zeroing_.store(true, std::memory_order_release);
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
                       State::kDirty, ++last_id_});
  }
  cv_.notify_all();
}

SpareMemory::Memory SpareMemory::TakeZeroed(uint64_t size) { return Take(size, true); }
SpareMemory::Memory SpareMemory::TakeAny(uint64_t size) { return Take(size, false); }

SpareMemory::Memory SpareMemory::Take(uint64_t size, bool zeroed_only) {
  std::lock_guard<std::mutex> lock(mu_);
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
    // Taken from under the zeroing thread: its window becomes anonymous memory first, so
    // none of its stores (even one under way) reaches the spare once this returns.
    if (window_.addr != nullptr &&
        ::mmap(window_.addr, window_.size, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0) == MAP_FAILED) {
      return {};  // out of memory for the swap: the spare stays the thread's
    }
    stop_zeroing_.store(true, std::memory_order_release);
    best = zeroing;
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

SpareMemory::Zeroing SpareMemory::ZeroSpare(int fd, uint64_t size) {
  off_t at = 0;
  while (static_cast<uint64_t>(at) < size) {
    off_t data = ::lseek(fd, at, SEEK_DATA);
    if (data < 0) return errno == ENXIO ? Zeroing::kDone : Zeroing::kFailed;  // ENXIO: no pages past `at`
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0) return Zeroing::kFailed;
    for (off_t o = data; o < hole;) {
      const size_t n = std::min<uint64_t>(kWindow, static_cast<uint64_t>(hole - o));
      void* w = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, o);
      if (w == MAP_FAILED) return Zeroing::kFailed;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (KeepZeroing()) window_ = {w, n};
      }
      for (size_t p = 0; p < n && KeepZeroing(); p += kPiece) {
        if (before_piece_) before_piece_();
        ZeroBytes(static_cast<char*>(w) + p, std::min(kPiece, n - p));
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        window_ = {};
      }
      ::munmap(w, n);
      if (!KeepZeroing()) return Zeroing::kStopped;
      o += static_cast<off_t>(n);
    }
    at = hole;
  }
  return Zeroing::kDone;
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
      if (it->state != State::kDirty) continue;
      if (now - it->kept >= kZeroAfter) dirty = it;
      wake = std::min(wake, it->kept + kZeroAfter);
    }
    if (dirty == spares_.end()) {
      cv_.wait_until(lock, wake);
      continue;
    }
    // Zeroed outside the lock through a descriptor of the thread's own: a taker may take
    // the spare (and close its memfd) meanwhile. Found again by id afterwards.
    const uint64_t id = dirty->id, size = dirty->size;
    os::UniqueFd fd(::fcntl(dirty->memory.fd.get(), F_DUPFD_CLOEXEC, 0));
    if (!fd.valid()) {
      bytes_ -= dirty->size;
      spares_.erase(dirty);
      continue;
    }
    dirty->state = State::kZeroing;
    stop_zeroing_.store(stop_, std::memory_order_release);
    lock.unlock();
    const int64_t t0 = os::MonotonicNanos();
    const Zeroing z = ZeroSpare(fd.get(), size);
    CSM_LOG_DEBUG("spare memory: zeroing %s took %.1f ms%s", FormatSize(size).c_str(),
                  (os::MonotonicNanos() - t0) / 1e6,
                  z == Zeroing::kFailed ? " (failed: dropped)" : z == Zeroing::kStopped ? " (stopped)" : "");
    fd.Reset();
    lock.lock();
    auto it = std::find_if(spares_.begin(), spares_.end(), [id](const Spare& s) { return s.id == id; });
    if (it == spares_.end()) continue;  // taken meanwhile
    if (z == Zeroing::kDone) {
      it->state = State::kZeroed;
    } else if (z == Zeroing::kStopped) {
      it->state = State::kDirty;  // csmd is stopping
    } else {
      bytes_ -= it->size;
      spares_.erase(it);
    }
  }
  spares_.clear();
  bytes_ = 0;
}

}  // namespace csm::node
