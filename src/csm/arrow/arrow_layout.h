// The Arrow descriptor: the root of an object published by csm::PutTable (and friends),
// read in place by every process that gets it. Its layout is shared between processes
// and nodes: changing it changes kArrowDescriptorVersion (docs/arrow.md).
//
// Arrays are stored flat: `arrays[i]` is one ArrayData node; its buffers are
// buffers[first_buffer, first_buffer + buffer_count), its children are
// arrays[first_child, first_child + child_count) (always after it: no cycles), its
// dictionary (if its type is a dictionary) is arrays[dictionary]. Types are not stored
// here: they come from the schema, walked alongside.
#pragma once

#include <cstdint>

#include "csm/containers.h"
#include "csm/type_id.h"

namespace csm {

inline constexpr uint32_t kArrowDescriptorMagic = 0x41525743;  // "CWRA"
inline constexpr uint32_t kArrowDescriptorVersion = 1;

// kTableHead: the head of a table that grows by parts (csm::AppendTable): its schema and
// no chunks; part n is a kTable descriptor under "<key>#<n>", on whichever node added it.
enum class ArrowKind : uint32_t { kTable = 1, kRecordBatch = 2, kChunkedArray = 3, kArray = 4, kTableHead = 5 };

struct ArrowBufferLayout {
  uint64_t addr;    // in the object's extents; 0 for an absent buffer
  uint64_t length;  // bytes
  uint64_t present; // 1 if the buffer exists (it may be empty), 0 if absent (null)
};
static_assert(sizeof(ArrowBufferLayout) == 24);

struct ArrowArrayLayout {
  int64_t length;
  int64_t null_count;
  int64_t offset;
  uint32_t first_buffer, buffer_count;
  uint32_t first_child, child_count;
  int64_t dictionary;  // index into arrays, or -1
};
static_assert(sizeof(ArrowArrayLayout) == 48);

struct ArrowDescriptor {
  uint32_t magic;    // kArrowDescriptorMagic
  uint32_t version;  // kArrowDescriptorVersion
  uint32_t kind;     // ArrowKind
  uint32_t reserved;
  int64_t num_rows;
  csm::vector<uint8_t> schema;             // Arrow IPC-encapsulated schema message
  csm::vector<uint32_t> column_chunks;     // per column: index of its first chunk in `chunks`, + end
  csm::vector<uint32_t> chunks;            // root array index of each chunk, column by column
  csm::vector<ArrowArrayLayout> arrays;
  csm::vector<ArrowBufferLayout> buffers;
};

}  // namespace csm

CSM_REGISTER_TYPE(csm::ArrowBufferLayout, 1, addr, length, present)
CSM_REGISTER_TYPE(csm::ArrowArrayLayout, 1, length, null_count, offset, first_buffer, buffer_count,
                  first_child, child_count, dictionary)
CSM_REGISTER_TYPE(csm::ArrowDescriptor, 1, magic, version, kind, reserved, num_rows, schema,
                  column_chunks, chunks, arrays, buffers)
