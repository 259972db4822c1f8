// Apache Arrow data in the global heap: build arrays straight into an object, publish a
// table under a key with only a descriptor, and get it in any process of any node as
// an arrow::Table whose buffers point into the heap (docs/arrow.md).
//
//   auto builder = client->NewBuilder();
//   csm::HeapMemoryPool pool(&*builder);                  // Arrow allocates in the object
//   arrow::Int64Builder b(&pool); ... ; auto table = arrow::Table::Make(schema, {array});
//   auto put = csm::PutTable(*builder, "trades", *table);  // commits: nothing copied
//   ...
//   auto got = csm::GetTable(*client, "trades");           // any process, any node
//
// The descriptor (an object of type csm::ArrowDescriptor, src/csm/arrow/arrow_layout.h)
// holds the schema as Arrow IPC bytes and every array's layout: type (from the schema),
// length, null count, offset, buffer addresses and lengths, children, dictionary. A
// buffer that does not lie in the Builder's memory is copied into it once; PutStats
// says how many bytes that was.
//
// A Get's result keeps the object pinned until the last of its buffers is released
// (like Plasma's PlasmaBuffer). The descriptor is input from another process or node:
// every buffer must lie inside the object's own extents, indices and counts must be
// consistent, and Arrow's full validation must pass; anything else is Corruption.
#pragma once

#include <arrow/api.h>

#include <chrono>
#include <memory>
#include <string_view>

#include "csm/client.h"

namespace csm {

// An arrow::MemoryPool that allocates inside a Builder's object (64-byte aligned).
// Arrow may call it from several threads; each call takes a lock and makes the Builder
// current on the calling thread for the allocation. Do not use the same Builder from
// another thread (Populate, csm::allocator) while Arrow is using the pool.
// Free() gives nothing back: the memory is reclaimed with the object. The pool must
// outlive every buffer allocated from it, since Arrow calls Free() when a buffer's last
// reference goes, and some readers (CSV) drop intermediate buffers from their own
// threads after returning. The Builder may be gone by then.
class HeapMemoryPool : public arrow::MemoryPool {
 public:
  explicit HeapMemoryPool(Builder* builder) : builder_(builder) {}

  using arrow::MemoryPool::Allocate;
  using arrow::MemoryPool::Free;
  using arrow::MemoryPool::Reallocate;
  arrow::Status Allocate(int64_t size, int64_t alignment, uint8_t** out) override;
  arrow::Status Reallocate(int64_t old_size, int64_t new_size, int64_t alignment,
                           uint8_t** ptr) override;
  void Free(uint8_t* buffer, int64_t size, int64_t alignment) override;
  int64_t bytes_allocated() const override { return bytes_allocated_.load(); }
  int64_t max_memory() const override { return max_memory_.load(); }
  int64_t total_bytes_allocated() const override { return total_allocated_.load(); }
  int64_t num_allocations() const override { return num_allocations_.load(); }
  std::string backend_name() const override { return "csm"; }

 private:
  Builder* builder_;
  std::mutex mu_;
  std::atomic<int64_t> bytes_allocated_{0}, max_memory_{0}, total_allocated_{0}, num_allocations_{0};
};

struct PutStats {
  uint64_t descriptor_bytes = 0;  // the descriptor (schema + layouts)
  uint64_t buffers_in_place = 0;  // buffers already in the Builder's memory
  uint64_t buffers_copied = 0;    // buffers copied in (built outside the heap pool)
  uint64_t bytes_copied = 0;
};

// Publishes `table` under `key` and commits `builder`. Buffers outside the Builder's
// memory are copied into it first (see PutStats).
Result<PutStats> PutTable(Builder& builder, std::string_view key, const arrow::Table& table);
Result<PutStats> PutRecordBatch(Builder& builder, std::string_view key, const arrow::RecordBatch& batch);
Result<PutStats> PutChunkedArray(Builder& builder, std::string_view key, const arrow::ChunkedArray& array);
Result<PutStats> PutArray(Builder& builder, std::string_view key, const arrow::Array& array);
// The same with a fresh Builder: every buffer is copied in.
Result<PutStats> PutTable(Client& client, std::string_view key, const arrow::Table& table);

// Tables that grow by parts, appended from any process of any node (docs/arrow.md).
// AppendTable commits `part` as the next part of the table under `key`: the first append
// publishes the table's head (its schema) under `key`, and part n is an ordinary table
// object under "<key>#<n>", owned by the node that appended it. Every part must have the
// head's schema (TypeMismatch otherwise). Parts are numbered by the order their commits
// reach the cluster directory; GetTable(key) returns every part's chunks in that order,
// so rows keep the order of the appends. Appending costs one directory round trip per
// existing part (the number is claimed by committing); deleting a part ends the table
// there.
inline constexpr size_t kMaxTableKeyLength = 160;  // the part keys add "#<n>"

struct AppendStats : PutStats {
  uint64_t part = 0;      // the part's number
  std::string part_key;   // "<key>#<part>"
};
Result<AppendStats> AppendTable(Client& client, Builder& builder, std::string_view key, const arrow::Table& part);
// The same with a fresh Builder: every buffer is copied in.
Result<AppendStats> AppendTable(Client& client, std::string_view key, const arrow::Table& part);

// Where the table under `key` lives: one entry per part, in row order (a table put
// whole is its own only part). Gets (and so fetches) every part.
struct TablePart {
  std::string key;
  uint32_t owner_node = 0;  // the node that committed it
  int64_t num_rows = 0;
  uint64_t bytes = 0;       // the part's object, descriptor included
};
Result<std::vector<TablePart>> TableParts(Client& client, std::string_view key,
                                          std::chrono::milliseconds timeout = {});

// Gets what was put under `key` (waiting up to `timeout` for it to appear). TypeMismatch
// if it is another kind (a RecordBatch can be read as a Table, and a one-column value as
// a ChunkedArray; an Array as a one-chunk ChunkedArray). GetTable also reads a table of
// parts: its parts on other nodes are fetched (once per node), and a part whose node is
// dead makes the Get fail with that part's error (Unavailable) rather than lose rows.
Result<std::shared_ptr<arrow::Table>> GetTable(Client& client, std::string_view key,
                                               std::chrono::milliseconds timeout = {});
// The same, saying how a table on another node comes here: with Fetch::kOnDemand it
// returns once its descriptor is here, and each column's pages move as it is read (a
// query that reads one column moves that column); docs/lazy.md. A table that was not
// fully validated where it was built is validated here, which reads every column.
Result<std::shared_ptr<arrow::Table>> GetTable(Client& client, std::string_view key, const GetOptions& options);
// Brings every byte of `column` (a column of a table got with Fetch::kLazy or kOnDemand)
// here at once, in as few requests as they fit, and returns when it can be read: a scan
// of the column then runs at memory speed instead of stopping at each block it reaches.
// At once if its bytes are here. Unavailable if its copy failed (its node died).
Status Prefetch(Client& client, const arrow::ChunkedArray& column);
Result<std::shared_ptr<arrow::RecordBatch>> GetRecordBatch(Client& client, std::string_view key,
                                                           std::chrono::milliseconds timeout = {});
Result<std::shared_ptr<arrow::ChunkedArray>> GetChunkedArray(Client& client, std::string_view key,
                                                             std::chrono::milliseconds timeout = {});
Result<std::shared_ptr<arrow::Array>> GetArray(Client& client, std::string_view key,
                                               std::chrono::milliseconds timeout = {});

}  // namespace csm
