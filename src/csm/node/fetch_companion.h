// FetchCompanion: the work on a fetch's bytes besides receiving them.
//
// Hashing: the transport shows each piece to Arrived() on its own thread as it lands
// (transport::ArrivalObserver), while the piece is still in that core's cache, so the
// hash costs ~26 ms of a core per GiB (XXH3, AVX2) instead of a second read of memory.
// On two vCPUs a hashing thread beside the transfer took the core the link needed.
//
// Faulting: fresh shared memory costs more to fault in than the link takes to fill it
// (docs/benchmarks.md), so a second thread faults the replica's pages in ahead of the
// receiver. Only a hint: where the receiver gets ahead, it takes the faults itself. Into
// memory whose page tables csmd kept (os::SharedView), there is nothing left to fault.
//
// Use: construct, Start() (the faulting thread; worth it only above a few MiB: a thread
// costs ~100 µs to start here), hand Arrived (as an ArrivalObserver) to
// Transport::Fetch, then Finish().
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "csm/base/hash.h"
#include "csm/object/object_layout.h"

namespace csm::node {

class FetchCompanion {
 public:
  // Extent i arrives at dests[i]; the first `skip` bytes of the stream are not hashed
  // (the header of an object whose commit checksum excludes it).
  FetchCompanion(const std::vector<object::ObjectExtent>& extents, std::vector<char*> dests, uint64_t skip);
  ~FetchCompanion();  // stops the thread if Finish was not called
  FetchCompanion(const FetchCompanion&) = delete;
  FetchCompanion& operator=(const FetchCompanion&) = delete;

  void Start();  // the faulting thread
  // The next `length` bytes of the stream have landed at `data` (the transport's thread).
  void Arrived(const char* data, uint64_t length);
  // Ends the faulting thread. If every byte arrived (`complete`), returns the XXH3-64 of
  // the stream after `skip`; otherwise 0.
  uint64_t Finish(bool complete);

 private:
  void Run();
  // Calls f(piece, length) for the pieces of stream range [from, to).
  template <typename F>
  void ForEachPiece(uint64_t from, uint64_t to, F&& f);
  void FaultUpTo(uint64_t upto);

  std::vector<char*> dests_;
  std::vector<uint64_t> starts_;  // stream offset of each extent, then the total
  uint64_t skip_;                 // header bytes still to pass over unhashed
  Checksum sum_;
  std::atomic<uint64_t> received_{0};  // stream bytes arrived (the transport's thread)
  uint64_t faulted_ = 0;               // the faulting thread's
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace csm::node
