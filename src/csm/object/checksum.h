// The checksum an object is committed with (ObjectHeader::checksum): csm::Checksum (64 KiB
// blocks' XXH3-64s, hashed; base/hash.h) over its extents in order, the header's own bytes
// (at the start of the first extent) excluded, since they hold it. Written once here for
// the Builder that sets it and the Ref::Verify that checks it; a copy fetched from another
// node is hashed as it arrives instead (node/fetch_companion.h), over the same bytes.
//
// Large objects are hashed on several threads, a block each at a time; a Builder's bulk
// copies (Builder::CopyIn) are made here too, each block's just before it is hashed, so
// the bytes are hashed while still in the cache: one pass over memory instead of two.
#pragma once

#include <cstdint>
#include <vector>

#include "csm/base/hash.h"
#include "csm/object/object_layout.h"

namespace csm::object {

// Bytes of the object, in the order they are hashed.
struct Piece {
  uint64_t addr;
  uint64_t length;
};

// `length` bytes from `src` to be copied to `dst`, inside the object's bytes.
struct PendingCopy {
  uint64_t dst;
  const void* src;
  uint64_t length;
};

// Makes `copies` (disjoint), then returns the checksum of the stream `pieces`.
uint64_t ChecksumPieces(const std::vector<Piece>& pieces, std::vector<PendingCopy> copies = {});
// The same stream's blocks' digests (Checksum::kBlockSize bytes each, the last one
// shorter), in order: what a lazy copy checks each block against as it arrives.
std::vector<uint64_t> BlockDigestsOf(const std::vector<Piece>& pieces, std::vector<PendingCopy> copies = {});
// The pieces of `extents` that are hashed: all their bytes but the header's.
template <typename Extent>
std::vector<Piece> HashedPieces(const std::vector<Extent>& extents) {
  std::vector<Piece> pieces;
  pieces.reserve(extents.size());
  for (size_t i = 0; i < extents.size(); ++i) {
    const uint64_t skip = i == 0 ? sizeof(ObjectHeader) : 0;
    if (extents[i].length > skip) pieces.push_back({extents[i].addr + skip, extents[i].length - skip});
  }
  return pieces;
}
// Makes `copies` (disjoint), on several threads if they are large.
void CopyAll(std::vector<PendingCopy> copies);

// `extents` ({addr, length}, the first starting with the header) are mapped in this
// process at their addresses.
template <typename Extent>
uint64_t ChecksumOf(const std::vector<Extent>& extents, std::vector<PendingCopy> copies = {}) {
  return ChecksumPieces(HashedPieces(extents), std::move(copies));
}

}  // namespace csm::object
