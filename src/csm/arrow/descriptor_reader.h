// Reading an Arrow descriptor (arrow_layout.h) that another process or node wrote: every
// index, count and range is checked before it is followed, then Arrow's full validation
// runs unless the node or this process has run it on the object already (docs/arrow.md).
// The layer's Get functions read through here; so does fuzz/arrow_descriptor_fuzz.cc.
#pragma once

#include <arrow/api.h>

#include <functional>
#include <memory>
#include <vector>

#include "csm/arrow/arrow_layout.h"
#include "csm/client.h"

namespace csm::arrow_descriptor {

struct Loaded {
  ObjectInfo info;
  ArrowKind kind;
  std::shared_ptr<arrow::Schema> schema;
  std::vector<std::shared_ptr<arrow::ChunkedArray>> columns;
  int64_t num_rows;
};

// Brings bytes of a lazily got object here before they are read (Client::Prefetch).
using PrefetchFn = std::function<Status(const std::vector<ByteRange>&)>;

// The arrays `descriptor` describes, their buffers in place. `info` and `extents` are
// the object's that holds it (every vector and buffer must lie in `extents`); `pin` is
// kept alive by every buffer handed out; `report_validated` (may be empty) is called once
// Arrow's full validation has passed here. Corruption, naming info.key, for anything
// that does not hold together. When the object's bytes are still arriving
// (info.arriving), `prefetch` (may be empty) is asked first for every value Arrow's
// structural checks read (offsets' first and last), in one call instead of a page fault
// each.
Result<Loaded> Read(const ArrowDescriptor& descriptor, ObjectInfo info, std::vector<Extent> extents,
                    std::shared_ptr<const void> pin, std::function<void()> report_validated,
                    const PrefetchFn& prefetch = {});

// Every buffer of the arrays (children and dictionaries included): what reading them
// reads.
std::vector<ByteRange> BuffersOf(const std::vector<std::shared_ptr<arrow::Array>>& arrays);

}  // namespace csm::arrow_descriptor
