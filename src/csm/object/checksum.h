// The checksum an object is committed with (ObjectHeader::checksum): XXH3-64 over its
// extents in order, the header's own bytes (at the start of the first extent) excluded,
// since they hold it. Written once here for the Builder that sets it and the Ref::Verify
// that checks it; a copy fetched from another node is hashed as it arrives instead
// (node/fetch_companion.h), over the same bytes.
#pragma once

#include <cstdint>
#include <vector>

#include "csm/base/hash.h"
#include "csm/object/object_layout.h"

namespace csm::object {

// `extents` ({addr, length}, the first starting with the header) are mapped in this
// process at their addresses.
template <typename Extent>
uint64_t ChecksumOf(const std::vector<Extent>& extents) {
  Checksum sum;
  for (size_t i = 0; i < extents.size(); ++i) {
    const uint64_t skip = i == 0 ? sizeof(ObjectHeader) : 0;
    if (extents[i].length <= skip) continue;
    sum.Update(reinterpret_cast<const void*>(extents[i].addr + skip), extents[i].length - skip);
  }
  return sum.Digest();
}

}  // namespace csm::object
