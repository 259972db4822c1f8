// SpareMemory: the memfds of destroyed arenas, kept with their pages for the next arena
// of the same size.
//
// On the machines csm is measured on, faulting fresh shared memory in costs several
// times more than writing pages that already exist (docs/benchmarks.md): a node that
// keeps building and dropping objects, or fetching and dropping copies, would pay it
// again and again. csmd hands a kept memfd to the next arena of exactly its size instead.
//
// A background thread (SCHED_IDLE: only on an otherwise idle core) zeroes every kept
// memfd (only the ranges holding pages) kZeroAfter after it was kept, so a reused local
// arena reads as zeros like a new memfd. Until it is zeroed (even while it is being
// zeroed) it can be taken as it is by an arena that is overwritten wholly: a replica (it
// clears what its fetch does not overwrite) and a builder's arena for one allocation it
// writes wholly (Builder::ExpectOverwrite; csmd clears the rest): a producer that
// deletes and puts again at once reuses the memory instead of clearing fresh pages (or
// having the VM's host fault them in: seconds per GiB).
// A spare keeps csmd's own view of it (os::SharedView) if it had one: the next copy
// fetched into it then writes through page tables that already exist.
// Bounded: at most `budget` bytes in all (the oldest go first to make room), each kept
// at most `keep_for`; spares are not charged to the node's capacity.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <thread>

#include "csm/os/fd.h"
#include "csm/os/shared_view.h"
#include "csm/os/unique_path.h"

namespace csm::node {

class SpareMemory {
 public:
  // A kept memfd is zeroed no sooner than this.
  static constexpr std::chrono::milliseconds kZeroAfter{100};

  SpareMemory(uint64_t budget, std::chrono::milliseconds keep_for);
  ~SpareMemory();  // stops the zeroing thread; every spare's memory goes back
  SpareMemory(const SpareMemory&) = delete;
  SpareMemory& operator=(const SpareMemory&) = delete;

  // A memfd and csmd's view of it (null if it had none). A node that keeps its state in
  // files (node/node_state.h) keeps named files: `path` is removed with the spare.
  struct Memory {
    os::UniqueFd fd;
    std::shared_ptr<os::SharedView> view;
    os::UniquePath path;
    bool valid() const { return fd.valid(); }
  };

  // Keeps `fd`, a memfd of `size` bytes no client maps writable any more (and `view`,
  // csmd's own mapping of it, if any), closing the oldest spares if the budget needs it;
  // closes `fd` itself if it cannot fit.
  void Keep(os::UniqueFd fd, uint64_t size, std::shared_ptr<os::SharedView> view = nullptr,
            os::UniquePath path = {});
  // A spare of exactly `size` bytes that reads as zeros, or an invalid one if none.
  Memory TakeZeroed(uint64_t size);
  // A spare of exactly `size` bytes, zeroed or not, or an invalid one if none. One the
  // zeroing thread is zeroing is taken too, at once: the thread's window onto it is
  // replaced under it (see Window), so none of its later writes reach the memory.
  Memory TakeAny(uint64_t size);

  struct Stats {
    uint64_t bytes = 0;         // kept now
    uint64_t zeroed_bytes = 0;  // of which zeroed already
    uint64_t zeroing_bytes = 0;  // of which being zeroed now
    uint64_t reuses = 0;        // arenas that took a spare
  };
  Stats stats() const;

  // Runs on the zeroing thread right before it writes each piece (after its last check
  // whether to stop): a test holds it there to take the spare under it.
  void SetBeforePieceForTesting(std::function<void()> hook) { before_piece_ = std::move(hook); }

 private:
  enum class State { kDirty, kZeroing, kZeroed };
  struct Spare {
    uint64_t size;
    Memory memory;
    std::chrono::steady_clock::time_point kept;
    State state;
    uint64_t id = 0;  // for the zeroing thread to find it again
  };
  // The zeroing thread writes zeros through a mapping of its own (a window of the spare
  // being zeroed), not with pwrite: a write system call in flight cannot be called back,
  // and at SCHED_IDLE the thread may sit in one for seconds while the machine is busy.
  // A taker that takes that spare maps anonymous memory over the window (MAP_FIXED):
  // from then on the thread writes into that, whatever it was doing, and stops at its
  // next check of `stop_zeroing_`.
  struct Window {
    void* addr = nullptr;
    size_t size = 0;
  };
  enum class Zeroing { kDone, kFailed, kStopped };
  Memory Take(uint64_t size, bool zeroed_only);
  // Zeroes the ranges of `fd` that hold pages, a window at a time.
  Zeroing ZeroSpare(int fd, uint64_t size);
  // Whether the zeroing thread may go on (no taker took its spare, csmd is not stopping).
  bool KeepZeroing() const { return !stop_zeroing_.load(std::memory_order_acquire); }
  void ExpireLocked();  // gives back spares kept too long; also on every Keep and Take,
                        // since the zeroing thread may wait long for an idle core
  void ZeroLoop();      // the thread: zeroes dirty spares, gives back expired ones

  const uint64_t budget_;
  const std::chrono::milliseconds keep_for_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::list<Spare> spares_;  // guarded by mu_; oldest first
  uint64_t bytes_ = 0, reuses_ = 0, last_id_ = 0;
  bool stop_ = false;
  Window window_;  // guarded by mu_: the zeroing thread's window, if it has one
  std::atomic<bool> stop_zeroing_{false};  // set under mu_, read between pieces
  std::function<void()> before_piece_;     // set before anything is kept
  std::thread zeroer_;
};

}  // namespace csm::node
