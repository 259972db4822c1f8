// FetchCompanion: the work on a fetch's bytes that can go beside the transfer.
//
// While the transport receives an object's extents into a replica, a second thread
// faults the replica's pages in ahead of the receiver (fresh shared memory costs more to
// fault in than the link takes to fill it; docs/benchmarks.md) and hashes the bytes that
// have arrived, in order, so little is left to do when the last byte lands. Faulting is
// only a hint: where the receiver gets ahead, it takes the faults itself.
//
// Use: construct, Start() (worth it only above a few MiB: a thread costs ~100 µs to
// start here), hand `received` to Transport::Fetch, then Finish().
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

  void Start();  // the second thread
  // Bytes of the stream (extents in order) that have arrived; the transport stores it.
  std::atomic<uint64_t> received{0};
  // Ends the second thread. If every byte arrived (`complete`), hashes what it had not
  // yet and returns the XXH3-64 of the stream after `skip`; otherwise returns 0.
  uint64_t Finish(bool complete);

 private:
  void Run();
  // Calls f(piece, length, stream offset) for the pieces of stream range [from, to).
  template <typename F>
  void ForEachPiece(uint64_t from, uint64_t to, F&& f);
  void HashUpTo(uint64_t upto);
  void FaultUpTo(uint64_t upto);

  std::vector<char*> dests_;
  std::vector<uint64_t> starts_;  // stream offset of each extent, then the total
  const uint64_t skip_;
  Checksum sum_;
  uint64_t hashed_ = 0, faulted_ = 0;  // stream bytes done; the thread's, then Finish's
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace csm::node
