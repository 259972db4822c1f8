// NodeState: the files a node keeps its memory and directory in, so that they outlive
// csmd (`--state-dir`, docs/operations.md "Restarting csmd").
//
// Without it csmd's arenas and directory are memfds: they live as long as csmd or a
// process mapping them, and a restarted csmd starts empty. With it they are files in one
// directory on a memory file system (/dev/shm), and a new csmd finds them there:
//   lock                        flock()ed by the csmd that serves this state (one at a time)
//   directory                   the node's directory table (directory/directory_layout.h)
//   csm-arena-<addr>-<id>       one of the node's arenas: its window address and id (hex);
//                               its size is the file's
//   types                       "<type id hex> <type name>" lines, one per type committed
//   cluster                     a cluster node's standing (JSON): the cluster, the
//                               incarnation its memory belongs to, its segment leases
//   spare-<n>                   memory kept for reuse (SpareMemory): never recovered
// Only this node's own arenas are named csm-arena-*: copies of other nodes' objects are
// memfds or spares, caches a restarted node fetches again.
//
// Owner: the daemon (its event loop). Thread-safety: none.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "csm/cluster/cluster_directory.h"
#include "csm/os/fd.h"
#include "csm/os/unique_path.h"
#include "csm/status.h"

namespace csm::node {

class NodeState {
 public:
  // Opens (making it if need be) `dir` and locks it: FailedPrecondition if another csmd
  // holds it. `fresh`: whatever an earlier csmd left there is removed first.
  static Result<std::unique_ptr<NodeState>> Open(const std::string& dir, bool fresh);

  const std::string& dir() const { return dir_; }

  // The directory table's file, `bytes` long; *existed: it was there already (an earlier
  // csmd's), else it is new and reads as zeros.
  Result<os::UniqueFd> OpenDirectory(uint64_t bytes, bool* existed);

  // A new arena's file.
  Result<os::UniqueFd> CreateArena(uint64_t addr, uint64_t id, uint64_t size);
  std::string ArenaPath(uint64_t addr, uint64_t id) const;
  // Renames spare memory's file (SpareMemory) to be the arena at `addr`.
  Status AdoptSpare(os::UniquePath spare, uint64_t addr, uint64_t id);
  // Renames an arena's file to a spare's name: the spare owns the file from now on.
  Result<os::UniquePath> RetireArena(uint64_t addr, uint64_t id);
  // Removes an arena's file (its memory goes once no one maps it).
  void RemoveArena(uint64_t addr, uint64_t id);

  // The arenas an earlier csmd left, opened read-write, lowest address first; files of
  // no arena (spares, strays) are removed.
  struct ArenaFile {
    uint64_t addr;
    uint64_t id;
    uint64_t size;
    os::UniqueFd fd;
  };
  Result<std::vector<ArenaFile>> TakeArenas();

  // Type names by type id, kept across restarts (a name is written once per type).
  Status RememberType(uint64_t type_id, const std::string& name);
  std::string TypeName(uint64_t type_id) const;

  // A cluster node's standing, kept so that a restarted csmd rejoins as the node whose
  // memory it took back: the cluster's name, the incarnation the cluster knows that
  // memory by (ClusterDirectory's NodeInfo::incarnation) and the segments it leased.
  struct ClusterStanding {
    std::string cluster;
    uint64_t incarnation = 0;
    std::vector<cluster::SegmentLease> leases;
  };
  // Replaces the saved standing (written whole, then renamed over the old one).
  Status SaveStanding(const ClusterStanding& standing) const;
  // The saved standing; nullopt if none (the node was not in a cluster), Corruption if
  // the file is damaged.
  Result<std::optional<ClusterStanding>> LoadStanding() const;

 private:
  explicit NodeState(std::string dir) : dir_(std::move(dir)) {}
  bool LoadTypes();  // false if its last line was cut short

  std::string dir_;
  os::UniqueFd lock_;
  os::UniqueFd types_;  // appended to
  std::map<uint64_t, std::string> type_names_;
  uint64_t next_spare_ = 0;
};

}  // namespace csm::node
