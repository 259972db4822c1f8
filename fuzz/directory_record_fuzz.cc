// Fuzzes the cluster directory's records (cluster/records_json.h) as a node reads them
// from the coordinator or from etcd, and the check a node makes before it fetches or maps
// an object a record names (node/replica_fetch.h, CheckRecord). Beyond "no crash":
//   - what decodes encodes to JSON that decodes to the same JSON again (one field list);
//   - a record that passes CheckRecord names only bytes inside its arenas, inside the
//     window, outside this node's own segments, adding up to its size.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "csm/cluster/records_json.h"
#include "csm/node/replica_fetch.h"
#include "fuzz_world.h"

namespace {

using csm::cluster::ObjectRecord;

using namespace csm::fuzz;

bool Within(uint64_t addr, uint64_t len, uint64_t base, uint64_t size) {
  return addr >= base && len <= size && addr - base <= size - len;
}

void CheckChecked(const ObjectRecord& r) {
  uint64_t total = 0;
  for (const auto& e : r.extents) {
    bool inside = false;
    for (const auto& a : r.arenas) inside |= Within(e.addr, e.length, a.addr, a.length);
    if (!inside || !Within(e.addr, e.length, kWindow.base, kWindow.size)) std::abort();
    for (const auto& l : kOurSegments) {
      const uint64_t b = kWindow.base + l.first * kWindow.segment_size, end = b + l.count * kWindow.segment_size;
      if (e.addr < end && e.addr + e.length > b) std::abort();
    }
    total += e.length;
  }
  if (total != r.size) std::abort();
}

}  // namespace

// csm's log (a line per join, per refused request …) would cost more than the input:
// errors only, unless CSM_LOG_LEVEL says otherwise.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  setenv("CSM_LOG_LEVEL", "error", /*overwrite=*/0);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  if (auto node = csm::cluster::NodeFromJson(j); node.ok()) {
    const auto once = csm::cluster::ToJson(*node);
    auto again = csm::cluster::NodeFromJson(once);
    if (!again.ok() || csm::cluster::ToJson(*again) != once) std::abort();
  }
  auto record = csm::cluster::RecordFromJson(j);
  if (!record.ok()) return 0;
  const auto once = csm::cluster::ToJson(*record);
  auto again = csm::cluster::RecordFromJson(once);
  if (!again.ok() || csm::cluster::ToJson(*again) != once) std::abort();
  if (csm::node::CheckRecord(*record, kWindow, kOurSegments).ok()) CheckChecked(*record);
  return 0;
}
