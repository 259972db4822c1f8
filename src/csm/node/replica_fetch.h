// Bringing a copy of another node's object here: the checks on its record before any
// memory is made for it, and the transfer into the replica arenas with the verification
// of what arrived. Both are free of the daemon's state: the daemon decides which arenas
// to make (at the owner's addresses) and enters the copy once FetchReplica says it is
// sound.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "csm/cluster/cluster_directory.h"
#include "csm/config.h"
#include "csm/os/shared_view.h"
#include "csm/status.h"
#include "csm/transport/transport.h"

namespace csm::node {

// A record comes from another node (through the directory): input to check before it
// decides what memory is made and where. Corruption unless every arena is aligned, inside
// the window and outside this node's own segments (`ours`), every extent inside one of
// the arenas, the sizes add up, the header starts the first extent and the root lies in
// an extent.
// `lent_to_owner(addr, size)`: whether that range of our segments is memory this node
// lent r's owner (its objects may lie there).
Status CheckRecord(const cluster::ObjectRecord& r, const WindowConfig& window,
                   const std::vector<cluster::SegmentLease>& ours,
                   const std::function<bool(uint64_t addr, uint64_t size)>& lent_to_owner = {});

// A replica arena the bytes go into: a memfd that will appear at [addr, +size), written
// through csmd's own view of it.
struct ReplicaTarget {
  uint64_t addr, size;
  std::shared_ptr<os::SharedView> view;
};

// A copy arriving, as `csm info` shows it.
struct TransferProgress {
  std::string key;
  uint64_t bytes;     // the object's size
  uint64_t received;  // bytes arrived so far
};

// Fetches r's extents from its owner at `address` over `transport` into `targets` and
// checks them against r's checksum, or, for an object committed without one, against the
// owner's digest of what it served. Calls `done` with the outcome. Any thread; bounded by
// the transport's timeouts. `received`, if given, counts the bytes as they arrive.
void FetchReplica(const cluster::ObjectRecord& r, const std::vector<ReplicaTarget>& targets,
                  transport::Transport& transport, const std::string& address,
                  const std::function<void(Status)>& done, std::atomic<uint64_t>* received = nullptr);

}  // namespace csm::node
