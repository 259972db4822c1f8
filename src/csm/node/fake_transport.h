// For tests of fetching copies: a sound record of another node's object, and a transport
// without sockets that serves bytes it was given (or fails as told).
#pragma once

#include <atomic>
#include <cstring>
#include <string>
#include <vector>

#include "csm/cluster/cluster_directory.h"
#include "csm/config.h"
#include "csm/object/object_layout.h"
#include "csm/transport/transport.h"

namespace csm::node::testing {

inline constexpr uint64_t kMiB = 1 << 20;
inline const WindowConfig kWindow{0x200000000000, uint64_t{1} << 40, uint64_t{1} << 30};

// Node 2's object (its record `Sound` if nothing is changed): one 2 MiB arena in segment 5, one extent of 8 KiB at its start.
inline cluster::ObjectRecord Sound() {
  cluster::ObjectRecord r;
  r.key = "k";
  r.owner_node = 2;
  r.object_id = 77;
  const uint64_t arena = kWindow.base + 5 * kWindow.segment_size;
  r.arenas = {{arena, 2 * kMiB}};
  r.extents = {{arena, 8192}};
  r.header = arena;
  r.root = arena + sizeof(object::ObjectHeader);
  r.size = 8192;
  return r;
}

// Writes `bytes` into the sink for the one extent asked, or fails as told.
class FakeTransport : public transport::Transport {
 public:
  std::string bytes;
  Status fail;
  uint64_t digest = 0;  // what the "owner" says it served
  Status Fetch(const std::string&, uint64_t, const std::vector<object::ObjectExtent>& extents,
               const transport::ExtentSink& sink, uint64_t* peer_digest,
               const transport::ArrivalObserver* arrived) override {
    if (!fail.ok()) return fail;
    uint64_t at = 0;
    for (const auto& e : extents) {
      CSM_ASSIGN_OR_RETURN(char* dest, sink(e.addr, e.length));
      std::memcpy(dest, bytes.data() + at, e.length);
      if (arrived != nullptr) (*arrived)(dest, e.length);
      at += e.length;
    }
    if (peer_digest != nullptr) *peer_digest = digest;
    return Status::OK();
  }
  std::vector<uint64_t> block_digests;  // what BlockDigests answers
  Result<std::vector<uint64_t>> BlockDigests(const std::string&, uint64_t,
                                             const std::vector<object::ObjectExtent>&) override {
    if (!fail.ok()) return fail;
    return block_digests;
  }
};

}  // namespace csm::node::testing
