// ClusterDirectory: what every node of a cluster agrees on — who the members are, which
// node owns which segments of the window, and who is alive.
//
// Backends: the embedded coordinator (directory/coordinator.h: hosted by one node's
// csmd, the others join it over an authenticated TCP channel) and, later, etcd. The
// daemon holds one ClusterDirectory and knows nothing of the backend behind it.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "csm/config.h"
#include "csm/status.h"

namespace csm::directory {

struct SegmentLease {
  uint64_t first;  // segment index
  uint64_t count;
};

struct NodeInfo {
  uint32_t node_id = 0;
  std::string cluster;       // cluster name: nodes of different clusters refuse each other
  std::string peer_address;  // where its transport serves object bytes ("host:port")
  WindowConfig window{};
  uint64_t fingerprint = 0;      // node::BuildFingerprint() of its csmd
  std::string fingerprint_text;  // for error messages
  // Filled in by Members():
  bool alive = false;
  int64_t last_seen_ms_ago = 0;
  std::vector<SegmentLease> leases;
};

class ClusterDirectory {
 public:
  virtual ~ClusterDirectory() = default;
  // Joins as `self`. FailedPrecondition if its window or build differs from the
  // cluster's; AlreadyExists if a live member has the same id. A node that rejoins
  // after dying starts afresh: its old leases are dropped (its memory is gone).
  virtual Status Join(const NodeInfo& self) = 0;
  // Leases `count` consecutive free segments to this node; returns the first index.
  virtual Result<uint64_t> LeaseSegments(uint64_t count) = 0;
  // Tells the cluster this node is alive; nodes silent longer than the cluster's
  // dead-after interval are reported dead.
  virtual Status Heartbeat() = 0;
  virtual Result<std::vector<NodeInfo>> Members() = 0;
};

}  // namespace csm::directory
