// Put and Get of Arrow data through a descriptor object; see csm/arrow.h,
// arrow_layout.h and docs/arrow.md.
#include <arrow/extension_type.h>
#include <arrow/io/memory.h>
#include <arrow/ipc/api.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <future>
#include <optional>
#include <thread>

#include "csm/arrow.h"
#include "csm/arrow/arrow_layout.h"
#include "csm/arrow/descriptor_reader.h"
#include "csm/arrow/validation.h"

namespace csm {
namespace {

using arrow_validation::ValidatedBytes;
using arrow_validation::ValidateFully;

Status FromArrow(const arrow::Status& s, const std::string& what) {
  if (s.ok()) return Status::OK();
  if (s.IsOutOfMemory()) return CapacityExceeded(what + ": " + s.ToString());
  return InvalidArgument(what + ": " + s.ToString());
}

// ---- put ----------------------------------------------------------------------------

// Lays out ArrayData trees as flat ArrowArrayLayout/ArrowBufferLayout tables, copying
// into the Builder any buffer that is not already in its memory.
class DescriptorWriter {
 public:
  explicit DescriptorWriter(Builder& builder) : builder_(builder) {}

  Result<uint32_t> AddRoot(const arrow::ArrayData& data) {
    uint32_t index = static_cast<uint32_t>(arrays_.size());
    arrays_.emplace_back();
    CSM_RETURN_IF_ERROR(Fill(index, data));
    return index;
  }

  Status Finish(ArrowKind kind, int64_t num_rows, const arrow::Schema& schema,
                const std::vector<uint32_t>& column_chunks, const std::vector<uint32_t>& chunks) {
    auto schema_bytes = arrow::ipc::SerializeSchema(schema);
    if (!schema_bytes.ok()) return FromArrow(schema_bytes.status(), "serializing the schema");
    const arrow::Buffer& sb = **schema_bytes;
    CSM_ASSIGN_OR_RETURN(ArrowDescriptor * d, builder_.New<ArrowDescriptor>());
    return builder_.Populate([&] {
      d->magic = kArrowDescriptorMagic;
      d->version = kArrowDescriptorVersion;
      d->kind = static_cast<uint32_t>(kind);
      d->reserved = 0;
      d->num_rows = num_rows;
      d->schema.assign(sb.data(), sb.data() + sb.size());
      d->column_chunks.assign(column_chunks.begin(), column_chunks.end());
      d->chunks.assign(chunks.begin(), chunks.end());
      d->arrays.assign(arrays_.begin(), arrays_.end());
      d->buffers.assign(buffers_.begin(), buffers_.end());
      stats.descriptor_bytes = sizeof(ArrowDescriptor) + sb.size() +
                               (column_chunks.size() + chunks.size()) * sizeof(uint32_t) +
                               arrays_.size() * sizeof(ArrowArrayLayout) +
                               buffers_.size() * sizeof(ArrowBufferLayout);
    });
  }

  PutStats stats;

 private:
  Status Fill(uint32_t index, const arrow::ArrayData& data) {
    ArrowArrayLayout layout{};
    layout.length = data.length;
    layout.null_count = data.GetNullCount();
    layout.offset = data.offset;
    layout.first_buffer = static_cast<uint32_t>(buffers_.size());
    layout.buffer_count = static_cast<uint32_t>(data.buffers.size());
    for (const auto& b : data.buffers) CSM_RETURN_IF_ERROR(AddBuffer(b));
    layout.first_child = static_cast<uint32_t>(arrays_.size());
    layout.child_count = static_cast<uint32_t>(data.child_data.size());
    arrays_.resize(arrays_.size() + data.child_data.size());  // children sit side by side
    for (size_t i = 0; i < data.child_data.size(); ++i) {
      CSM_RETURN_IF_ERROR(Fill(layout.first_child + static_cast<uint32_t>(i), *data.child_data[i]));
    }
    layout.dictionary = -1;
    if (data.dictionary != nullptr) {
      layout.dictionary = static_cast<int64_t>(arrays_.size());
      arrays_.emplace_back();
      CSM_RETURN_IF_ERROR(Fill(static_cast<uint32_t>(layout.dictionary), *data.dictionary));
    }
    arrays_[index] = layout;
    return Status::OK();
  }

  Status AddBuffer(const std::shared_ptr<arrow::Buffer>& b) {
    if (b == nullptr) {
      buffers_.push_back({0, 0, 0});
      return Status::OK();
    }
    if (b->size() == 0) {
      buffers_.push_back({0, 0, 1});
      return Status::OK();
    }
    if (!b->is_cpu()) return InvalidArgument("only buffers in CPU memory can be put in the global heap");
    const size_t n = static_cast<size_t>(b->size());
    const uint8_t* data = b->data();
    if (builder_.Contains(data, n)) {
      ++stats.buffers_in_place;
    } else {
      void* copy = nullptr;
      CSM_RETURN_IF_ERROR(builder_.Populate([&] { copy = internal::Allocate(n, 64); }));
      std::memcpy(copy, data, n);
      data = static_cast<const uint8_t*>(copy);
      ++stats.buffers_copied;
      stats.bytes_copied += n;
    }
    buffers_.push_back({reinterpret_cast<uint64_t>(data), n, 1});
    return Status::OK();
  }

  Builder& builder_;
  std::vector<ArrowArrayLayout> arrays_;
  std::vector<ArrowBufferLayout> buffers_;
};

// Writes the descriptor of `columns` as the Builder's root (not committed yet).
Result<PutStats> WriteColumns(Builder& builder, ArrowKind kind, const arrow::Schema& schema, int64_t num_rows,
                              const std::vector<std::shared_ptr<arrow::ChunkedArray>>& columns) {
  DescriptorWriter writer(builder);
  std::vector<uint32_t> column_chunks, chunks;
  for (const auto& column : columns) {
    column_chunks.push_back(static_cast<uint32_t>(chunks.size()));
    for (const auto& chunk : column->chunks()) {
      CSM_ASSIGN_OR_RETURN(uint32_t root, writer.AddRoot(*chunk->data()));
      chunks.push_back(root);
    }
  }
  column_chunks.push_back(static_cast<uint32_t>(chunks.size()));
  CSM_RETURN_IF_ERROR(writer.Finish(kind, num_rows, schema, column_chunks, chunks));
  return writer.stats;
}

// The producer validates what it puts (the bytes copied are these): a valid table is
// marked at commit, on this node and in every copy on another, so no reader validates it
// again (docs/arrow.md). An invalid one is put all the same, unmarked: its readers refuse
// it with the reason. The validation runs while WriteColumns copies the buffers in (on
// another core when there is more than a few MiB to read).
Result<PutStats> WriteValidatedColumns(Builder& builder, ArrowKind kind, const arrow::Schema& schema,
                                       int64_t num_rows,
                                       const std::vector<std::shared_ptr<arrow::ChunkedArray>>& columns) {
  std::vector<const arrow::Array*> arrays;
  uint64_t bytes = 0;
  for (const auto& column : columns) {
    for (const auto& chunk : column->chunks()) {
      arrays.push_back(chunk.get());
      bytes += ValidatedBytes(*chunk->data());
    }
  }
  auto validate = [&] { return !ValidateFully(arrays, bytes).has_value(); };
  std::future<bool> valid = std::async(bytes >= (uint64_t{4} << 20) ? std::launch::async : std::launch::deferred,
                                       validate);
  Result<PutStats> stats = WriteColumns(builder, kind, schema, num_rows, columns);
  if (valid.get() && stats.ok()) internal::MarkArrowValidated(builder);
  return stats;
}

Result<PutStats> PutColumns(Builder& builder, std::string_view key, ArrowKind kind,
                            const arrow::Schema& schema, int64_t num_rows,
                            const std::vector<std::shared_ptr<arrow::ChunkedArray>>& columns) {
  CSM_ASSIGN_OR_RETURN(PutStats stats, WriteValidatedColumns(builder, kind, schema, num_rows, columns));
  builder.DeferChecksum();  // publishing costs the same for any size (docs/arrow.md)
  CSM_RETURN_IF_ERROR(builder.Commit(key));
  return stats;
}

std::shared_ptr<arrow::Schema> OneColumn(const std::shared_ptr<arrow::DataType>& type) {
  return arrow::schema({arrow::field("", type)});
}

// ---- get ----------------------------------------------------------------------------

// `fetch`: how a table on another node comes here (docs/lazy.md): lazily, a column's
// pages move when it is read.
Result<arrow_descriptor::Loaded> Load(Client& client, std::string_view key, std::chrono::milliseconds timeout,
                                      Fetch fetch = Fetch::kNodeDefault) {
  CSM_ASSIGN_OR_RETURN(Ref<ArrowDescriptor> ref, client.Get<ArrowDescriptor>(key, GetOptions{timeout, fetch}));
  CSM_ASSIGN_OR_RETURN(std::vector<Extent> extents, ref.Extents());
  auto pinned = std::make_shared<Ref<ArrowDescriptor>>(std::move(ref));
  const ArrowDescriptor& descriptor = **pinned;
  const ObjectInfo info = pinned->info();
  return arrow_descriptor::Read(descriptor, info, std::move(extents), pinned,
                               [pinned] { internal::ReportArrowValidated(*pinned); },
                               [&client](const std::vector<ByteRange>& ranges) { return client.Prefetch(ranges); });
}

const char* KindName(ArrowKind kind) {
  switch (kind) {
    case ArrowKind::kTable: return "a Table";
    case ArrowKind::kRecordBatch: return "a RecordBatch";
    case ArrowKind::kChunkedArray: return "a ChunkedArray";
    case ArrowKind::kArray: return "an Array";
    case ArrowKind::kTableHead: return "a table of parts";
  }
  return "?";
}

// ---- tables of parts ----------------------------------------------------------------

constexpr uint64_t kMaxParts = uint64_t{1} << 20;

std::string PartKey(std::string_view key, uint64_t n) { return std::string(key) + "#" + std::to_string(n); }

// What a key holds, read as a table: one Loaded per part (a table put whole is its own
// only part), in row order.
struct LoadedTable {
  std::shared_ptr<arrow::Schema> schema;
  std::vector<arrow_descriptor::Loaded> parts;
};

Result<LoadedTable> LoadTable(Client& client, std::string_view key, std::chrono::milliseconds timeout,
                              Fetch fetch = Fetch::kNodeDefault) {
  CSM_ASSIGN_OR_RETURN(auto head, Load(client, key, timeout, fetch));
  if (head.kind != ArrowKind::kTable && head.kind != ArrowKind::kRecordBatch && head.kind != ArrowKind::kTableHead) {
    return TypeMismatch("'" + std::string(key) + "' holds " + KindName(head.kind) + ", not a Table");
  }
  LoadedTable out{head.schema, {}};
  if (head.kind != ArrowKind::kTableHead) {
    out.parts.push_back(std::move(head));
    return out;
  }
  // Parts are committed under consecutive numbers (AppendTable claims the first free
  // one), so the first number with no part ends the table.
  for (uint64_t n = 0; n < kMaxParts; ++n) {
    std::string part_key = PartKey(key, n);
    auto part = Load(client, part_key, std::chrono::milliseconds(0), fetch);
    if (part.status().IsNotFound()) break;
    if (!part.ok()) {
      return part.status().WithContext("reading part " + std::to_string(n) + " of table '" + std::string(key) + "'");
    }
    if (part->kind != ArrowKind::kTable) {
      return Corruption("'" + part_key + "' holds " + KindName(part->kind) + ", not a part of table '" +
                        std::string(key) + "'");
    }
    if (!part->schema->Equals(*head.schema, /*check_metadata=*/false)) {
      return Corruption("'" + part_key + "' has schema {" + part->schema->ToString() + "}, its table '" +
                        std::string(key) + "' {" + head.schema->ToString() + "}");
    }
    out.parts.push_back(*std::move(part));
  }
  return out;
}

// The head of the table of parts under `key`, published now if there is none yet.
Result<std::shared_ptr<arrow::Schema>> EnsureHead(Client& client, std::string_view key,
                                                  const std::shared_ptr<arrow::Schema>& schema) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto head = Load(client, key, std::chrono::milliseconds(0));
    if (head.ok()) {
      if (head->kind != ArrowKind::kTableHead) {
        return FailedPrecondition("'" + std::string(key) + "' holds " + KindName(head->kind) +
                                  " put whole; append to a table started by AppendTable (or use another key)");
      }
      return head->schema;
    }
    if (!head.status().IsNotFound()) return head.status();
    CSM_ASSIGN_OR_RETURN(Builder builder, client.NewBuilder());
    std::vector<std::shared_ptr<arrow::ChunkedArray>> columns;
    for (const auto& field : schema->fields()) {  // no chunks: the head holds no rows
      columns.push_back(std::make_shared<arrow::ChunkedArray>(arrow::ArrayVector{}, field->type()));
    }
    Status s = PutColumns(builder, key, ArrowKind::kTableHead, *schema, 0, columns).status();
    if (s.ok()) return schema;
    if (!s.IsAlreadyExists()) return s;
    // Another appender published the head first: read theirs.
  }
  return FailedPrecondition("the head of table '" + std::string(key) +
                            "' was published and deleted while appending: retry");
}

}  // namespace

Result<PutStats> PutTable(Builder& builder, std::string_view key, const arrow::Table& table) {
  return PutColumns(builder, key, ArrowKind::kTable, *table.schema(), table.num_rows(), table.columns());
}

Result<PutStats> PutRecordBatch(Builder& builder, std::string_view key, const arrow::RecordBatch& batch) {
  std::vector<std::shared_ptr<arrow::ChunkedArray>> columns;
  for (const auto& column : batch.columns()) columns.push_back(std::make_shared<arrow::ChunkedArray>(column));
  return PutColumns(builder, key, ArrowKind::kRecordBatch, *batch.schema(), batch.num_rows(), columns);
}

Result<PutStats> PutChunkedArray(Builder& builder, std::string_view key, const arrow::ChunkedArray& array) {
  auto column = std::make_shared<arrow::ChunkedArray>(array.chunks(), array.type());
  return PutColumns(builder, key, ArrowKind::kChunkedArray, *OneColumn(array.type()), array.length(), {column});
}

Result<PutStats> PutArray(Builder& builder, std::string_view key, const arrow::Array& array) {
  auto column = std::make_shared<arrow::ChunkedArray>(arrow::MakeArray(array.data()));
  return PutColumns(builder, key, ArrowKind::kArray, *OneColumn(array.type()), array.length(), {column});
}

Result<PutStats> PutTable(Client& client, std::string_view key, const arrow::Table& table) {
  CSM_ASSIGN_OR_RETURN(Builder builder, client.NewBuilder());
  return PutTable(builder, key, table);
}

Result<AppendStats> AppendTable(Client& client, Builder& builder, std::string_view key, const arrow::Table& part) {
  CSM_RETURN_IF_ERROR(ValidateKey(key));
  if (key.size() > kMaxTableKeyLength) {
    return InvalidArgument("a table of parts needs a key of 1 to " + std::to_string(kMaxTableKeyLength) +
                           " bytes (its parts are '<key>#<n>')");
  }
  CSM_ASSIGN_OR_RETURN(auto schema, EnsureHead(client, key, part.schema()));
  if (!schema->Equals(*part.schema(), /*check_metadata=*/false)) {
    return TypeMismatch("the part has schema {" + part.schema()->ToString() + "}, table '" + std::string(key) +
                        "' {" + schema->ToString() + "}");
  }
  AppendStats stats;
  CSM_ASSIGN_OR_RETURN(static_cast<PutStats&>(stats), WriteValidatedColumns(builder, ArrowKind::kTable, *part.schema(),
                                                                            part.num_rows(), part.columns()));
  builder.DeferChecksum();
  // Claim the first free part number: a key is committed once cluster-wide, so two
  // appenders never take the same number, and a Builder stays usable on AlreadyExists.
  for (uint64_t n = 0; n < kMaxParts; ++n) {
    std::string part_key = PartKey(key, n);
    Status s = internal::CommitTablePart(builder, key, n);
    if (s.ok()) {
      stats.part = n;
      stats.part_key = std::move(part_key);
      return stats;
    }
    if (!s.IsAlreadyExists()) return s;
  }
  return CapacityExceeded("table '" + std::string(key) + "' has " + std::to_string(kMaxParts) + " parts already");
}

Result<AppendStats> AppendTable(Client& client, std::string_view key, const arrow::Table& part) {
  CSM_ASSIGN_OR_RETURN(Builder builder, client.NewBuilder());
  return AppendTable(client, builder, key, part);
}

Result<std::vector<TablePart>> TableParts(Client& client, std::string_view key, std::chrono::milliseconds timeout) {
  CSM_ASSIGN_OR_RETURN(LoadedTable loaded, LoadTable(client, key, timeout));
  std::vector<TablePart> parts;
  for (const auto& p : loaded.parts) parts.push_back({p.info.key, p.info.owner_node, p.num_rows, p.info.size});
  return parts;
}

Result<std::shared_ptr<arrow::Table>> GetTable(Client& client, std::string_view key,
                                               std::chrono::milliseconds timeout) {
  return GetTable(client, key, GetOptions{timeout, Fetch::kNodeDefault});
}

Result<std::shared_ptr<arrow::Table>> GetTable(Client& client, std::string_view key, const GetOptions& options) {
  CSM_ASSIGN_OR_RETURN(LoadedTable loaded, LoadTable(client, key, options.timeout, options.fetch));
  std::vector<std::shared_ptr<arrow::ChunkedArray>> columns;
  int64_t num_rows = 0;
  if (loaded.parts.size() == 1) {
    columns = loaded.parts[0].columns;
    num_rows = loaded.parts[0].num_rows;
  } else {
    for (int c = 0; c < loaded.schema->num_fields(); ++c) {
      arrow::ArrayVector chunks;
      for (const auto& p : loaded.parts) {
        const auto& part_chunks = p.columns[static_cast<size_t>(c)]->chunks();
        chunks.insert(chunks.end(), part_chunks.begin(), part_chunks.end());
      }
      columns.push_back(std::make_shared<arrow::ChunkedArray>(std::move(chunks), loaded.schema->field(c)->type()));
    }
    for (const auto& p : loaded.parts) num_rows += p.num_rows;
  }
  auto table = arrow::Table::Make(loaded.schema, std::move(columns), num_rows);
  // Every chunk passed ValidateFull as it was read; this checks the columns agree.
  arrow::Status valid = table->Validate();
  if (!valid.ok()) return Corruption("the table under '" + std::string(key) + "' is invalid: " + valid.ToString());
  return table;
}

Status Prefetch(Client& client, const arrow::ChunkedArray& column) {
  return client.Prefetch(arrow_descriptor::BuffersOf(column.chunks()));
}

Result<std::shared_ptr<arrow::RecordBatch>> GetRecordBatch(Client& client, std::string_view key,
                                                           std::chrono::milliseconds timeout) {
  CSM_ASSIGN_OR_RETURN(auto loaded, Load(client, key, timeout));
  if (loaded.kind != ArrowKind::kRecordBatch) {
    return TypeMismatch("'" + std::string(key) + "' holds " + KindName(loaded.kind) + ", not a RecordBatch");
  }
  arrow::ArrayVector columns;
  for (const auto& c : loaded.columns) {
    if (c->num_chunks() != 1) return Corruption("a RecordBatch column of '" + std::string(key) + "' is not one chunk");
    columns.push_back(c->chunk(0));
  }
  return arrow::RecordBatch::Make(loaded.schema, loaded.num_rows, std::move(columns));
}

Result<std::shared_ptr<arrow::ChunkedArray>> GetChunkedArray(Client& client, std::string_view key,
                                                             std::chrono::milliseconds timeout) {
  CSM_ASSIGN_OR_RETURN(auto loaded, Load(client, key, timeout));
  if (loaded.kind == ArrowKind::kTableHead) {
    return TypeMismatch("'" + std::string(key) + "' holds a table of parts: use GetTable");
  }
  if (loaded.columns.size() != 1) {
    return TypeMismatch("'" + std::string(key) + "' holds " + KindName(loaded.kind) + " of " +
                        std::to_string(loaded.columns.size()) + " columns, not one array");
  }
  return loaded.columns[0];
}

Result<std::shared_ptr<arrow::Array>> GetArray(Client& client, std::string_view key,
                                               std::chrono::milliseconds timeout) {
  CSM_ASSIGN_OR_RETURN(auto loaded, Load(client, key, timeout));
  if (loaded.kind != ArrowKind::kArray) {
    return TypeMismatch("'" + std::string(key) + "' holds " + KindName(loaded.kind) + ", not an Array");
  }
  if (loaded.columns.size() != 1 || loaded.columns[0]->num_chunks() != 1) {
    return Corruption("the Array under '" + std::string(key) + "' is not one chunk");
  }
  return loaded.columns[0]->chunk(0);
}

}  // namespace csm
