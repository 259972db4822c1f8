// SharedMemory: this node's memory on a shared-memory fabric, and how it reads its
// peers' in place (docs/fabric.md).
//
// On a fabric, the node's arenas are ranges of one device or file that every node of the
// fabric's domain maps: a DAX device or a file on a DAX / shared-memory file system (CXL
// memory shared by several hosts, ThymesisFlow), or a file under /dev/shm for nodes on
// one machine. Another node of the domain maps an arena's range read-only at the arena's
// address, so its processes use this node's objects where they lie: no byte is copied,
// and a Get costs the same for any size.
//
// Coherence, one setting per domain:
//   coherent     the fabric keeps caches coherent (one machine; CXL with hardware
//                coherence): nothing to do.
//   flush        it does not: before a record is published, the writer writes back every
//                line of the object (WriteBack: CLWB, CLFLUSHOPT or CLFLUSH, dcbf on
//                POWER); before the object's first use on a node, the reader invalidates
//                its lines and checks the bytes against the record, retrying after
//                another invalidate up to kReadAttempts times (ReadInPlace).
//   stale-model  a test mode that makes this coherent machine behave like a non-coherent
//                fabric: the node's arenas are private memfds (its "cache") that reach
//                the device only through WriteBack (a copy), and a peer's memory is read
//                from this node's private snapshot of it (its cache of that memory): a
//                range is loaded the first time the node maps it and afterwards refreshed
//                only by the invalidate step (a copy the other way), so memory the peer
//                reused shows its old bytes here. A step of the protocol left out shows
//                as wrong bytes (tests/fabric_test.cc).
//
// Thread-safety: Allocate, Free and OpenPeer on the event loop; WriteBack and ReadInPlace
// on any thread (they touch only the ranges they are given, and atomic counters).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "csm/cluster/cluster_directory.h"
#include "csm/node/daemon.h"
#include "csm/os/cache_lines.h"
#include "csm/os/fd.h"
#include "csm/os/shared_view.h"
#include "csm/status.h"

namespace csm::node {

class SharedMemory {
 public:
  enum class Coherence { kCoherent, kFlush, kStaleModel };
  // A protocol with a step left out (tests of the stale-cache model only).
  enum class Fault { kNone, kSkipWriteBack, kSkipInvalidate };
  // Reads whose bytes still differ from the record after this many invalidations fail.
  static constexpr int kReadAttempts = 4;

  using Options = SharedMemoryOptions;
  // Opens (a regular file: creates afresh, so processes of an earlier incarnation that
  // still map the old one never see the new node's bytes) and maps the node's memory.
  static Result<std::unique_ptr<SharedMemory>> Open(const Options& options, uint64_t capacity);
  ~SharedMemory();  // removes the file it made (not a device)

  // What the node advertises to its peers (NodeInfo, records).
  const cluster::FabricMemory& memory() const { return memory_; }
  Coherence coherence() const { return coherence_; }
  // Arenas are ranges of the device itself (not in the stale-cache model).
  bool direct() const { return coherence_ != Coherence::kStaleModel; }
  int device_fd() const { return fd_.get(); }
  uint64_t size() const { return size_; }
  uint64_t allocated() const { return allocated_; }
  uint64_t lend_limit() const { return lend_limit_; }

  // ---- this node's arenas (the loop) ----
  // A range of `size` bytes (rounded up to kGranule) of the node's memory: its offset in
  // the device. CapacityExceeded when the node's part of the device is full.
  static constexpr uint64_t kGranule = 2u << 20;  // DAX devices map in 2 MiB units
  Result<uint64_t> Allocate(uint64_t size);
  // Gives the range back; its memory is freed (reads as zeros) where the device allows.
  void Free(uint64_t offset, uint64_t size);

  // ---- the writer's step: any thread ----
  // Where an arena's bytes are: `fd` holds them from `fd_offset` (the device itself, or
  // a private memfd in the stale-cache model), and peers read them from `fabric_offset`.
  struct Place {
    int fd;
    uint64_t fd_offset;
    uint64_t arena_addr;
    uint64_t fabric_offset;
    // An arena in memory another node lent: that memory's device (read-write), and
    // csmd's mapping of the arena in it (flush). -1 / null: this node's own memory.
    int device_fd = -1;
    const char* mapped = nullptr;
  };
  // Makes [addr, +len) of an arena at `place` what peers of the domain read: writes its
  // cache lines back to the device and fences (flush), copies them there (stale-model),
  // or nothing (coherent).
  Status WriteBack(const Place& place, uint64_t addr, uint64_t len);

  // ---- reading a peer's memory ----
  // A read-only descriptor of the peer's device at `path` (the one a record names).
  // Opened once and kept; opened again if the file was replaced (a restarted peer).
  Result<os::UniqueFd> OpenPeer(const std::string& path);
  // The same, read-write: the memory a peer lent this node (a fresh descriptor).
  Result<os::UniqueFd> OpenLent(const std::string& path);
  // [offset, +size) of the peer's memory at `path` as this node maps it: the device's
  // range itself (read-only), or in the stale-cache model the node's snapshot of it
  // (loaded now where it never was). `fd` from `offset` is what processes map; `view`
  // is csmd's.
  struct PeerRange {
    os::UniqueFd fd;
    std::shared_ptr<os::SharedView> view;
  };
  Result<PeerRange> MapPeer(const std::string& path, int peer_fd, uint64_t offset, uint64_t size);
  // One of the owner's arenas as this node sees it (MapPeer's view).
  struct PeerArena {
    uint64_t addr, size;
    uint64_t device_offset;  // where it lies in its device
    std::shared_ptr<os::SharedView> view;
    int device_fd;  // the device, read-only (the stale-cache model refreshes from it)
  };
  // Makes r's bytes, in the owner's memory (`arenas`), safe to use on this node: drops
  // their lines from the caches (flush) or refreshes the snapshot (stale-model), then
  // checks the header against the record and, on a non-coherent fabric, the checksum.
  // A mismatch is retried after another invalidate, up to kReadAttempts times; then
  // Corruption, counted in stats().
  Status ReadInPlace(const cluster::ObjectRecord& r, const std::vector<PeerArena>& arenas);

  struct Stats {
    uint64_t written_back_bytes, reads, read_retries, read_failures;
  };
  Stats stats() const {
    return {written_back_.load(), reads_.load(), read_retries_.load(), read_failures_.load()};
  }
  static const char* Name(Coherence c);

 private:
  SharedMemory() = default;
  Status Invalidate(const cluster::ObjectRecord& r, const std::vector<PeerArena>& arenas);
  Status Check(const cluster::ObjectRecord& r, const std::vector<PeerArena>& arenas) const;

  cluster::FabricMemory memory_;
  Coherence coherence_ = Coherence::kCoherent;
  Fault fault_ = Fault::kNone;
  std::unique_ptr<os::CacheLines> lines_;  // flush only
  os::UniqueFd fd_;
  uint64_t offset_ = 0, size_ = 0;
  std::shared_ptr<os::SharedView> view_;  // csmd's view of its own memory (flush)
  bool punch_holes_ = true;               // false on a device that cannot (DAX)
  uint64_t lend_limit_ = 0;

  std::map<uint64_t, uint64_t> free_;  // offset → length of free ranges (loop only)
  uint64_t allocated_ = 0;

  struct Peer {
    os::UniqueFd fd;
    uint64_t inode = 0;
    // The stale-cache model: this node's snapshot of the peer's memory, and the
    // kGranule-sized ranges of it loaded so far.
    os::UniqueFd snapshot;
    uint64_t snapshot_size = 0;
    std::set<uint64_t> loaded;
  };
  std::mutex peers_mu_;
  std::map<std::string, Peer> peers_;  // by path; guarded

  std::atomic<uint64_t> written_back_{0}, reads_{0}, read_retries_{0}, read_failures_{0};
};

}  // namespace csm::node
