// Daemon: csmd, the node's owner of global-heap memory.
//
// It hands client processes arenas (memfds at fixed window addresses) over a Unix
// socket, publishes committed objects in the shared directory, tracks every process's
// pins, and frees memory when nothing can reach it any more:
//   - an arena is writable only by the process it was granted to; every other process
//     gets a read-only descriptor, so no reader can change a committed object;
//   - a committed object belongs to the node: it outlives the process that built it;
//   - when a process exits or dies its pins vanish and the parts of its arenas that hold
//     no committed object are returned (holes punched, arenas freed);
//   - a deleted object's memory is reused once no process pins it.
//
// csmd never maps the heap itself: it reads object headers with pread() on the arena
// memfds, so it needs no window reservation and can run beside clients in one process
// (tests do that).
//
// Owner: main() (tools/csmd.cc) or a test. Thread-safety: Run() on one thread; Stop()
// from any thread or a signal handler.
#pragma once

#include <memory>
#include <string>

#include "csm/config.h"
#include "csm/status.h"

namespace csm::node {

// How a node takes part in a cluster. Empty `coordinate` and `join`: a one-node cluster
// with no network at all (the embedded default).
struct ClusterOptions {
  std::string name = "csm";       // nodes of different clusters refuse each other
  std::string secret;             // shared by every node of the cluster; required
  std::string coordinate;         // host:port: this node hosts the coordinator there
  std::string join;               // host:port of the coordinator to join
  std::string etcd;               // or: http://host:port of an etcd that holds the directory
  std::string peer_address;       // host:port where this node serves object bytes
  std::string transport = "tcp";  // how it serves them: tcp | ucx (docs/transport.md)
  int dead_after_ms = 3000;       // (coordinator) silent this long = dead
  int heartbeat_ms = 500;
  int timeout_ms = 10000;         // bound on every call to the coordinator
  uint64_t lease_segments = 16;   // segments leased at a time
  // Objects of other nodes up to this size are copied here as soon as they are published,
  // so that a Get of them is local (docs/cluster.md, "Copying ahead"); 0: only on Get.
  uint64_t copy_ahead_below = 256 << 10;
  // Copies of each object this node commits, its own included, unless the commit asks
  // for another count (docs/cluster.md, "Replicas"); 1: no replicas.
  uint32_t copies = 1;
  // How a Get that does not say brings another node's object here (docs/lazy.md):
  // "whole" before it returns; "lazy": it returns at once and the bytes arrive as they are
  // read, the rest prefetched in order; "on-demand": lazily, only what is read.
  std::string fetch = "whole";
  bool enabled() const { return !coordinate.empty() || !join.empty() || !etcd.empty(); }
};

// The node's memory on a shared-memory fabric (node/shared_memory.h, docs/fabric.md).
struct SharedMemoryOptions {
  std::string path;     // a DAX device or a file on a shared-memory file system; empty: none
  uint64_t offset = 0;  // where the node's memory starts in it
  uint64_t size = 0;    // how much of it the node uses (0: its capacity)
  std::string domain;   // the nodes that can all map it; empty: this machine (its boot id)
  // "coherent", "flush", "stale-model", or "auto": coherent for a domain of this machine
  // alone, flush otherwise.
  std::string coherence = "auto";
  uint32_t cache_line = 0;  // 0: the CPU's
  // How much of it other nodes of the domain may borrow to build in (0: half of it).
  uint64_t lend_limit = 0;
  std::string fault;        // tests of the stale-cache model: "skip-write-back" or "skip-invalidate"
};

struct NodeOptions {
  uint32_t node_id = 1;
  ClusterOptions cluster;
  SharedMemoryOptions shared_memory;
  // How long a destroyed arena's memory is kept for the next arena of its size
  // (docs/heap_layout.md, "Spare memory"); 0 keeps none.
  int spare_memory_ms = 3000;
  // Whether builders' arenas ask for 2 MiB pages where the host allows them (see
  // docs/operations.md, "Page size": faster everywhere except fresh memory on VMs whose
  // host reclaims freed guest memory). Copies from other nodes always use 4 KiB pages.
  bool huge_pages = true;
  // Where the node's memory and directory live as files, so that a restarted csmd takes
  // every committed object back (node/node_state.h, docs/operations.md "Restarting
  // csmd"); a directory on a memory file system such as /dev/shm. Empty: memfds, and a
  // restarted csmd starts empty. A lone node's only (not with a cluster or a fabric yet).
  std::string state_dir;
  bool fresh = false;  // discard what an earlier csmd left in state_dir
  // How long a restarted csmd waits for the processes of its predecessor to attach again
  // (claiming the arenas they build in, pinning again what they read) before it frees
  // what none claimed.
  int reattach_grace_ms = 10000;
  // Spilling (docs/operations.md, "Spilling"): with a directory, objects no process pins
  // are written there, least recently used first, once memory in use passes
  // spill_high_percent of capacity, until it is under spill_low_percent; a Get brings a
  // spilled object back to the same addresses. A builder whose arena does not fit waits
  // up to spill_wait_ms for spilling to make room. Empty: no spilling (a full node says
  // CapacityExceeded at once).
  std::string spill_dir;
  int spill_high_percent = 90;
  int spill_low_percent = 70;
  int spill_wait_ms = 30000;
};

class Daemon {
 public:
  static Result<std::unique_ptr<Daemon>> Create(const Config& config,
                                                const NodeOptions& options = NodeOptions());
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Serves until Stop(). Returns an error only if the event loop itself fails.
  Status Run();
  // Async-signal-safe.
  void Stop();

  const Config& config() const;
  // The port the coordinator listens on if this node hosts it (else 0).
  uint16_t coordinator_port() const;

 private:
  class Impl;
  explicit Daemon(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace csm::node
