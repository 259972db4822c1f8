// The first bytes of every object in the global heap, and its extent table.
// Read by every process on every node: changing either struct changes the heap format,
// so bump kObjectLayoutVersion. Documented in docs/heap_layout.md.
#pragma once

#include <cstdint>
#include <type_traits>

namespace csm::object {

inline constexpr uint32_t kObjectMagic = 0x4f4d5343;  // "CSMO" little-endian
inline constexpr uint16_t kObjectLayoutVersion = 2;  // 2: the block checksum (base/hash.h)
inline constexpr uint32_t kMaxExtents = 4096;

// ObjectHeader::flags: committed without a checksum (Builder::DeferChecksum). A copy to
// another node is then verified against a digest the owner computes as it serves.
inline constexpr uint16_t kFlagChecksumDeferred = 1;
// ObjectHeader::flags: its producer ran Arrow's full validation on the table it copied in
// (csm's Arrow layer; internal::MarkArrowValidated). The node marks the object's slot at
// commit, and a copy on another node is marked too: its bytes are checked against the
// owner's checksum or digest, so they are the bytes that were validated (docs/arrow.md).
inline constexpr uint16_t kFlagArrowValidated = 2;
inline constexpr uint16_t kKnownFlags = kFlagChecksumDeferred | kFlagArrowValidated;

// One contiguous byte range of an object.
struct ObjectExtent {
  uint64_t addr;
  uint64_t length;
};
static_assert(std::is_standard_layout_v<ObjectExtent> && sizeof(ObjectExtent) == 16);

struct ObjectHeader {
  uint32_t magic;           // kObjectMagic
  uint16_t layout_version;  // kObjectLayoutVersion
  uint16_t flags;           // kFlagChecksumDeferred | kFlagArrowValidated, or 0
  uint64_t type_id;         // TypeInfo<T>::Id() of the root
  uint64_t data_size;       // sum of all extent lengths (this header included)
  uint64_t root;            // address of the root value
  uint64_t extents;         // address of the ObjectExtent table (inside the object)
  uint32_t extent_count;    // entries in that table; extent 0 starts with this header
  uint32_t reserved;        // 0
  uint64_t checksum;        // XXH3-64 over all extents, this header's 64 bytes excluded;
                            // 0 when deferred
  uint64_t reserved2;       // 0
};
static_assert(std::is_standard_layout_v<ObjectHeader> && sizeof(ObjectHeader) == 64);
static_assert(alignof(ObjectHeader) == 8);

}  // namespace csm::object
