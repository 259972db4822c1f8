// See descriptor_reader.h.
#include "csm/arrow/descriptor_reader.h"

#include <arrow/array/validate.h>
#include <arrow/extension_type.h>
#include <arrow/io/memory.h>
#include <arrow/ipc/api.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "csm/arrow/validation.h"

namespace csm::arrow_descriptor {
namespace {

using arrow_validation::Validated;
using arrow_validation::ValidatedObjects;
using arrow_validation::ValidateFully;

alignas(64) const uint8_t kEmpty[64] = {};

// A buffer inside a pinned object; the object stays pinned while any such buffer lives.
class HeapBuffer : public arrow::Buffer {
 public:
  HeapBuffer(const uint8_t* data, int64_t size, std::shared_ptr<const void> pin)
      : arrow::Buffer(data, size), pin_(std::move(pin)) {}

 private:
  std::shared_ptr<const void> pin_;
};

// Reads a descriptor that another process or node wrote: every index, count and range
// is checked before it is followed.
class DescriptorReader {
 public:
  DescriptorReader(const ArrowDescriptor& descriptor, ObjectInfo info, std::vector<Extent> extents,
                   std::shared_ptr<const void> pin, std::function<void()> report_validated, PrefetchFn prefetch)
      : d_(descriptor),
        info_(std::move(info)),
        extents_(std::move(extents)),
        pin_(std::move(pin)),
        report_validated_(std::move(report_validated)),
        prefetch_(std::move(prefetch)) {
    std::sort(extents_.begin(), extents_.end(), [](const Extent& a, const Extent& b) { return a.addr < b.addr; });
  }

  Result<Loaded> Read() {
    if (d_.magic != kArrowDescriptorMagic) return Bad("not an Arrow descriptor (bad magic)");
    if (d_.version != kArrowDescriptorVersion) {
      return Bad("descriptor version " + std::to_string(d_.version) + ", this build reads " +
                 std::to_string(kArrowDescriptorVersion));
    }
    if (d_.kind < 1 || d_.kind > 5) return Bad("unknown kind " + std::to_string(d_.kind));
    CSM_RETURN_IF_ERROR(CheckVector(d_.schema, "schema"));
    CSM_RETURN_IF_ERROR(CheckVector(d_.column_chunks, "column table"));
    CSM_RETURN_IF_ERROR(CheckVector(d_.chunks, "chunk table"));
    CSM_RETURN_IF_ERROR(CheckVector(d_.arrays, "array table"));
    CSM_RETURN_IF_ERROR(CheckVector(d_.buffers, "buffer table"));
    if (d_.kind == static_cast<uint32_t>(ArrowKind::kTableHead) && (!d_.chunks.empty() || d_.num_rows != 0)) {
      return Bad("a table head holds rows");
    }

    Loaded out{info_, static_cast<ArrowKind>(d_.kind), nullptr, {}, d_.num_rows};
    auto schema_buffer = std::make_shared<arrow::Buffer>(d_.schema.data(), static_cast<int64_t>(d_.schema.size()));
    arrow::io::BufferReader reader(schema_buffer);
    arrow::ipc::DictionaryMemo memo;  // dictionaries are not in the schema: they are arrays here
    auto schema = arrow::ipc::ReadSchema(&reader, &memo);
    if (!schema.ok()) return Bad("its schema bytes do not decode: " + schema.status().ToString());
    out.schema = *schema;

    const size_t columns = static_cast<size_t>(out.schema->num_fields());
    if (d_.column_chunks.size() != columns + 1 || d_.column_chunks.front() != 0 ||
        d_.column_chunks.back() != d_.chunks.size()) {
      return Bad("its column table does not match the schema's " + std::to_string(columns) + " columns");
    }
    used_.assign(d_.arrays.size(), false);
    // Every chunk's arrays first (no buffer read), so that what the checks below read of
    // a lazily got object is asked for at once.
    std::vector<std::vector<std::shared_ptr<arrow::ArrayData>>> built(columns);
    for (size_t c = 0; c < columns; ++c) {
      uint32_t begin = d_.column_chunks[c], end = d_.column_chunks[c + 1];
      if (begin > end) return Bad("its column table is not in order");
      const auto& type = out.schema->field(static_cast<int>(c))->type();
      for (uint32_t i = begin; i < end; ++i) {
        CSM_ASSIGN_OR_RETURN(auto data, Build(d_.chunks[i], type, 0));
        built[c].push_back(std::move(data));
      }
    }
    if (info_.arriving && prefetch_) {
      std::vector<ByteRange> edges;
      for (const auto& column : built) {
        for (const auto& data : column) OffsetEdges(*data, &edges);
      }
      CSM_RETURN_IF_ERROR(prefetch_(edges));
    }
    std::vector<Unvalidated> to_validate;
    for (size_t c = 0; c < columns; ++c) {
      const auto& type = out.schema->field(static_cast<int>(c))->type();
      arrow::ArrayVector chunks;
      int64_t rows = 0;
      const uint32_t begin = d_.column_chunks[c];
      for (uint32_t i = begin; i < d_.column_chunks[c + 1]; ++i) {
        const auto& data = built[c][i - begin];
        // Arrow's structural checks (buffer counts and sizes, a union's absent validity
        // buffer …; of values, only offsets' first and last) before MakeArray, which
        // aborts the process on some.
        if (auto st = arrow::internal::ValidateArray(*data); !st.ok()) {
          return Bad("column " + std::to_string(c) + " chunk " + std::to_string(i - begin) +
                     " fails Arrow's validation: " + st.ToString());
        }
        auto array = arrow::MakeArray(data);
        rows += array->length();
        to_validate.push_back({c, i - begin, array});
        chunks.push_back(std::move(array));
      }
      if (rows != d_.num_rows && out.kind != ArrowKind::kChunkedArray && out.kind != ArrowKind::kArray) {
        return Bad("column " + std::to_string(c) + " has " + std::to_string(rows) + " rows, the table " +
                   std::to_string(d_.num_rows));
      }
      auto column = arrow::ChunkedArray::Make(std::move(chunks), type);
      if (!column.ok()) return Bad(column.status().ToString());
      out.columns.push_back(*column);
    }
    CSM_RETURN_IF_ERROR(ValidateAll(to_validate));
    return out;
  }

 private:
  struct Unvalidated {
    size_t column;
    uint32_t chunk;
    std::shared_ptr<arrow::Array> array;
  };

  // Arrow's full validation of every chunk (ValidateFully), unless the node or this
  // process has it done already.
  Status ValidateAll(const std::vector<Unvalidated>& chunks) const {
    // Validated once per node: by its producer, by another reader here (its slot says
    // so; docs/arrow.md), or by this process before.
    if (info_.arrow_validated) return Status::OK();
    const ValidatedObjects::Id id = ValidatedObjects::Of(info_);
    if (Validated().Contains(id)) return Status::OK();
    std::vector<const arrow::Array*> arrays;
    for (const auto& c : chunks) arrays.push_back(c.array.get());
    if (auto invalid = ValidateFully(arrays, validated_bytes_)) {
      const Unvalidated& c = chunks[invalid->index];
      return Bad("column " + std::to_string(c.column) + " chunk " + std::to_string(c.chunk) +
                 " fails Arrow's validation: " + invalid->status.ToString());
    }
    Validated().Add(id);
    if (report_validated_) report_validated_();  // for the node's later readers
    return Status::OK();
  }

  static constexpr int kMaxDepth = 64;

  // The values of `data`'s offsets (and its children's, dictionary's) that Arrow's
  // structural checks read: the first and the last of its slice.
  static void OffsetEdges(const arrow::ArrayData& data, std::vector<ByteRange>* out) {
    const arrow::DataType* storage = data.type.get();
    if (storage->id() == arrow::Type::EXTENSION) {
      storage = static_cast<const arrow::ExtensionType&>(*storage).storage_type().get();
    }
    const arrow::Type::type id = storage->id();
    int width = 0;
    if (id == arrow::Type::STRING || id == arrow::Type::BINARY || id == arrow::Type::LIST ||
        id == arrow::Type::MAP) {
      width = 4;
    } else if (id == arrow::Type::LARGE_STRING || id == arrow::Type::LARGE_BINARY || id == arrow::Type::LARGE_LIST) {
      width = 8;
    }
    if (width != 0 && data.buffers.size() > 1 && data.buffers[1] != nullptr && data.buffers[1]->size() > 0) {
      const uint8_t* offsets = data.buffers[1]->data();
      const auto size = static_cast<uint64_t>(data.buffers[1]->size());
      for (int64_t i : {data.offset, data.offset + data.length}) {
        const uint64_t at = static_cast<uint64_t>(i) * static_cast<uint64_t>(width);
        if (i >= 0 && at + static_cast<uint64_t>(width) <= size) out->push_back({offsets + at, static_cast<size_t>(width)});
      }
    }
    for (const auto& child : data.child_data) OffsetEdges(*child, out);
    if (data.dictionary != nullptr) OffsetEdges(*data.dictionary, out);
  }

  Status Bad(const std::string& what) const {
    return Corruption("the Arrow descriptor of '" + info_.key + "' is invalid: " + what);
  }

  bool InObject(uint64_t addr, uint64_t len) const {
    auto it = std::upper_bound(extents_.begin(), extents_.end(), addr,
                               [](uint64_t a, const Extent& e) { return a < e.addr; });
    if (it == extents_.begin()) return false;
    --it;
    return len <= it->length && addr - it->addr <= it->length - len;
  }

  // A vector's pointers were written by another process: its storage must lie in the
  // object, hold whole values and be aligned for them. Read as the raw words libstdc++
  // keeps (begin, end, end of storage): through the vector's own functions the compiler
  // may assume what is being checked (that end - begin is a whole number of values).
  template <typename V>
  Status CheckVector(const V& v, const char* what) const {
    using T = typename V::value_type;
    struct Raw {
      uint64_t begin, end, capacity;
    } raw;
    static_assert(sizeof(V) == sizeof(Raw));
    std::memcpy(&raw, static_cast<const void*>(&v), sizeof(raw));
    const uint64_t bytes = raw.end - raw.begin;
    if (raw.end < raw.begin || bytes > info_.size || bytes % sizeof(T) != 0 ||
        (bytes > 0 && !InObject(raw.begin, bytes))) {
      return Bad(std::string("its ") + what + " lies outside the object");
    }
    if (raw.begin % alignof(T) != 0) return Bad(std::string("its ") + what + " is not aligned");
    return Status::OK();
  }

  Result<std::shared_ptr<arrow::Buffer>> MakeBuffer(const ArrowBufferLayout& b) const {
    if (b.present == 0) {
      if (b.addr != 0 || b.length != 0) return Bad("an absent buffer has an address or length");
      return std::shared_ptr<arrow::Buffer>();
    }
    if (b.present != 1) return Bad("a buffer has an unknown presence flag");
    if (b.length == 0) return std::shared_ptr<arrow::Buffer>(std::make_shared<arrow::Buffer>(kEmpty, 0));
    if (b.length > static_cast<uint64_t>(INT64_MAX) || !InObject(b.addr, b.length)) {
      return Bad("a buffer [0x" + Hex(b.addr) + ", +" + std::to_string(b.length) +
                 ") lies outside the object's memory");
    }
    return std::shared_ptr<arrow::Buffer>(std::make_shared<HeapBuffer>(
        reinterpret_cast<const uint8_t*>(b.addr), static_cast<int64_t>(b.length), pin_));
  }

  Result<std::shared_ptr<arrow::ArrayData>> Build(uint64_t index, const std::shared_ptr<arrow::DataType>& type,
                                                  int depth) {
    if (depth > kMaxDepth) return Bad("arrays nest deeper than " + std::to_string(kMaxDepth));
    if (index >= d_.arrays.size()) return Bad("an array index is out of range");
    if (used_[index]) return Bad("an array is referenced twice");
    used_[index] = true;
    const ArrowArrayLayout a = d_.arrays[index];
    if (a.length < 0 || a.offset < 0 || a.null_count < -1 || a.null_count > a.length) {
      return Bad("an array has a negative length or offset, or more nulls than values");
    }
    if (uint64_t{a.first_buffer} + a.buffer_count > d_.buffers.size()) return Bad("a buffer index is out of range");
    const arrow::DataType* storage = type.get();
    if (type->id() == arrow::Type::EXTENSION) {
      storage = static_cast<const arrow::ExtensionType&>(*type).storage_type().get();
    }
    if (a.child_count != static_cast<uint32_t>(storage->num_fields())) {
      return Bad("an array of type " + type->ToString() + " has " + std::to_string(a.child_count) +
                 " children, its type " + std::to_string(storage->num_fields()));
    }
    if (a.child_count > 0 && (a.first_child <= index || uint64_t{a.first_child} + a.child_count > d_.arrays.size())) {
      return Bad("a child index is out of range");
    }
    // As many buffers as the type's layout has (more only for the variadic buffers of
    // view types): Arrow's ArrayData::Make reads buffer 0 before any validation.
    const arrow::DataTypeLayout layout = storage->layout();
    if (a.buffer_count < layout.buffers.size() || (!layout.variadic_spec && a.buffer_count != layout.buffers.size())) {
      return Bad("an array of type " + type->ToString() + " has " + std::to_string(a.buffer_count) +
                 " buffers, its type " + std::to_string(layout.buffers.size()));
    }
    std::vector<std::shared_ptr<arrow::Buffer>> buffers;
    const arrow::Type::type id = storage->id();
    const bool read_by_validation = arrow_validation::ReadByFullValidation(id);
    for (uint32_t i = 0; i < a.buffer_count; ++i) {
      CSM_ASSIGN_OR_RETURN(auto b, MakeBuffer(d_.buffers[a.first_buffer + i]));
      const auto kind = i < layout.buffers.size() ? layout.buffers[i].kind : arrow::DataTypeLayout::FIXED_WIDTH;
      if (b != nullptr && kind == arrow::DataTypeLayout::ALWAYS_NULL) {
        return Bad("an array of type " + type->ToString() + " has buffer " + std::to_string(i) +
                   ", which its type never has");  // e.g. a union's validity bitmap
      }
      // Only the validity bitmap (buffer 0) may be absent: Arrow's own checks dereference
      // the others (a view type's even when it has no rows).
      if (b == nullptr && i != 0 && kind != arrow::DataTypeLayout::ALWAYS_NULL &&
          (a.length > 0 || arrow::is_binary_view_like(id) || arrow::is_list_view(id))) {
        return Bad("an array of type " + type->ToString() + " lacks its buffer " + std::to_string(i));
      }
      if (read_by_validation && b != nullptr) validated_bytes_ += static_cast<uint64_t>(b->size());
      buffers.push_back(std::move(b));
    }
    std::vector<std::shared_ptr<arrow::ArrayData>> children;
    for (uint32_t i = 0; i < a.child_count; ++i) {
      CSM_ASSIGN_OR_RETURN(auto child, Build(a.first_child + i, storage->field(static_cast<int>(i))->type(), depth + 1));
      children.push_back(std::move(child));
    }
    auto data = arrow::ArrayData::Make(type, a.length, std::move(buffers), std::move(children), a.null_count, a.offset);
    const bool is_dictionary = storage->id() == arrow::Type::DICTIONARY;
    if (is_dictionary != (a.dictionary >= 0)) return Bad("a dictionary is missing or unexpected");
    if (is_dictionary) {
      if (a.dictionary <= static_cast<int64_t>(index)) return Bad("a dictionary index is out of range");
      const auto& value_type = static_cast<const arrow::DictionaryType&>(*storage).value_type();
      CSM_ASSIGN_OR_RETURN(data->dictionary, Build(static_cast<uint64_t>(a.dictionary), value_type, depth + 1));
    }
    return data;
  }

  static std::string Hex(uint64_t v) {
    char text[32];
    std::snprintf(text, sizeof(text), "%llx", static_cast<unsigned long long>(v));
    return text;
  }

  const ArrowDescriptor& d_;
  const ObjectInfo info_;
  std::vector<Extent> extents_;
  std::shared_ptr<const void> pin_;
  std::function<void()> report_validated_;
  PrefetchFn prefetch_;
  std::vector<bool> used_;
  uint64_t validated_bytes_ = 0;  // bytes ValidateFull will read (see ValidateAll)
};

}  // namespace

Result<Loaded> Read(const ArrowDescriptor& descriptor, ObjectInfo info, std::vector<Extent> extents,
                    std::shared_ptr<const void> pin, std::function<void()> report_validated,
                    const PrefetchFn& prefetch) {
  DescriptorReader reader(descriptor, std::move(info), std::move(extents), std::move(pin),
                          std::move(report_validated), prefetch);
  return reader.Read();
}

namespace {
void AddBuffers(const arrow::ArrayData& data, std::vector<ByteRange>* out) {
  for (const auto& b : data.buffers) {
    if (b != nullptr && b->size() > 0) out->push_back({b->data(), static_cast<size_t>(b->size())});
  }
  for (const auto& child : data.child_data) AddBuffers(*child, out);
  if (data.dictionary != nullptr) AddBuffers(*data.dictionary, out);
}
}  // namespace

std::vector<ByteRange> BuffersOf(const std::vector<std::shared_ptr<arrow::Array>>& arrays) {
  std::vector<ByteRange> out;
  for (const auto& a : arrays) AddBuffers(*a->data(), &out);
  return out;
}

}  // namespace csm::arrow_descriptor
