// Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/seed-*) with csm's own
// encoders, so that each target starts from well-formed input it can mutate: every csmd
// message, a fetch that passes the serving node's check, a node's requests to the
// coordinator from join to unpublish, records that pass CheckRecord, and Arrow
// descriptors of tables of many types laid out where arrow_descriptor_fuzz reads them.
//
//   write_seeds <corpus dir>      (scripts/run-fuzz --seeds runs it)
#include <arrow/api.h>
#include <arrow/ipc/api.h>
#include <arrow/json/from_string.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "csm/arrow/arrow_layout.h"
#include "csm/cluster/records_json.h"
#include "csm/protocol/messages.h"
#include "csm/transport/fetch_protocol.h"
#include "fuzz_world.h"

namespace {

using namespace csm;
using namespace csm::fuzz;
namespace fs = std::filesystem;

fs::path corpus;

void Write(const std::string& target, const std::string& name, const std::string& bytes) {
  fs::create_directories(corpus / target);
  std::ofstream(corpus / target / ("seed-" + name), std::ios::binary) << bytes;
}

// ---- csmd protocol --------------------------------------------------------------------

void ProtocolSeeds() {
  using namespace csm::protocol;
  const char* t = "csmd_protocol_fuzz";
  Write(t, "hello", Encode(Hello{kFingerprint, kWindow}, 1).bytes());
  Write(t, "alloc-arena", Encode(AllocArena{64 << 20, 0, 0}, 2).bytes());
  Write(t, "release-arena", Encode(ReleaseArena{3}).bytes());
  Write(t, "sync-arenas", Encode(SyncArenas{5}, 3).bytes());
  Write(t, "commit", Encode(Commit{0x200000001000, 99, 0, "table/part-1", "csm::ArrowDescriptor"}, 4).bytes());
  Write(t, "delete", Encode(Delete{"k"}, 5).bytes());
  Write(t, "stat", Encode(Stat{"k"}, 6).bytes());
  Write(t, "resolve", Encode(Resolve{"k"}, 7).bytes());
  Write(t, "info", Encode(Info{}, 8).bytes());
  Write(t, "nodes", Encode(Nodes{}, 9).bytes());
  Write(t, "list", Encode(List{"a", 100}, 10).bytes());
  Write(t, "unpinned", Encode(Unpinned{12}).bytes());
  Write(t, "arrow-validated", Encode(ArrowValidated{12}).bytes());
  Write(t, "hello-reply", Encode(HelloReply{Status::OK(), 1, 1, 1024, 256, 64 << 20, 1}, 1).bytes());
  Write(t, "hello-refused", Encode(HelloReply{FailedPrecondition("another build"), 0, 0, 0, 0, 0, 0}, 1).bytes());
  Write(t, "arena-reply", Encode(ArenaReply{Status::OK(), 1, 1, 0x200000000000, 64 << 20, 0, 1}, 2).bytes());
  SyncReply sync{Status::OK(), {{1, 0x200000000000, 64 << 20, 0}}, 7, {{2, 0x200004000000, 64 << 20, 4096}}};
  Write(t, "sync-reply", Encode(sync, 3).bytes());
  Write(t, "commit-reply", Encode(CommitReply{Status::OK(), 17}, 4).bytes());
  Write(t, "status-reply", Encode(StatusReply{NotFound("no object 'k'")}, 5).bytes());
  Write(t, "json-reply", Encode(JsonReply{Status::OK(), R"({"node_id":1,"objects":[]})"}, 6).bytes());
}

// ---- fetch protocol -------------------------------------------------------------------

// What a TCP socket carries, as fetch_protocol_fuzz reads it (its first byte: the kind).
void FetchSeeds() {
  const char* t = "fetch_protocol_fuzz";
  struct {
    uint32_t magic, count;
    uint64_t total;
    uint32_t flags, reserved;
    uint64_t object_id;
  } header{kFetchMagic, 2, 65536 + 4096, transport::kWantDigest, 0, kFetchObject};
  static_assert(sizeof(header) == transport::kFetchHeaderBytes);
  std::string request(1, '\0');
  request.append(reinterpret_cast<const char*>(&header), sizeof(header));
  request.append(reinterpret_cast<const char*>(kFetchExtents.data()), kFetchExtents.size() * sizeof(kFetchExtents[0]));
  Write(t, "request", request);
  std::string verdict(1, '\1');
  const int32_t code = static_cast<int32_t>(StatusCode::kNotFound);
  const std::string message = "object 7 is not served here";
  const uint32_t length = static_cast<uint32_t>(message.size());
  verdict.append(reinterpret_cast<const char*>(&code), 4).append(reinterpret_cast<const char*>(&length), 4).append(message);
  Write(t, "verdict", verdict);
}

// ---- coordinator and records ------------------------------------------------------------

cluster::NodeInfo Node(uint32_t id) {
  cluster::NodeInfo n;
  n.node_id = id;
  n.cluster = kCluster;
  n.peer_address = "10.0.0." + std::to_string(id) + ":7000";
  n.window = kWindow;
  n.fingerprint = kFingerprint;
  n.fingerprint_text = "fuzz build";
  n.incarnation = 1000 + id;
  return n;
}

// An object of node `owner` in segment `segment`: one arena, two extents.
cluster::ObjectRecord Record(uint32_t owner, uint64_t segment, const std::string& key) {
  cluster::ObjectRecord r;
  const uint64_t arena = kWindow.base + segment * kWindow.segment_size;
  r.key = key;
  r.owner_node = owner;
  r.object_id = 5;
  r.type_id = 99;
  r.type_name = "csm::map<int, csm::string>";
  r.header = arena;
  r.root = arena + 64;
  r.extents = {{arena, 4096}, {arena + 8192, 4096}};
  r.size = 8192;
  r.checksum = 0x1234;
  r.arenas = {{arena, 64 << 20}};
  r.commit_time_ns = 1;
  return r;
}

void CoordinatorSeeds() {
  using nlohmann::json;
  const char* t = "coordinator_request_fuzz";
  const json join = {{"op", "join"}, {"node_id", 2}, {"node", cluster::ToJson(Node(2))}};
  const json lease = {{"op", "lease"}, {"node_id", 2}, {"count", 1}};
  const json publish = {{"op", "publish"}, {"node_id", 2}, {"record", cluster::ToJson(Record(2, 0, "k"))}};
  std::string session = join.dump() + "\n" + lease.dump() + "\n" + publish.dump() + "\n";
  session += json{{"op", "lookup"}, {"node_id", 2}, {"key", "k"}}.dump() + "\n";
  session += json{{"op", "list"}, {"node_id", 2}, {"after", ""}, {"limit", 10}}.dump() + "\n";
  session += json{{"op", "watch"}, {"node_id", 2}, {"after", 0}, {"wait_ms", 0}}.dump() + "\n";
  session += json{{"op", "stale"}, {"node_id", 2}, {"held", {{"k", 5, 2}}}}.dump() + "\n";
  session += json{{"op", "heartbeat"}, {"node_id", 2}}.dump() + "\n";
  session += json{{"op", "members"}, {"node_id", 2}}.dump() + "\n";
  session += json{{"op", "unpublish"}, {"node_id", 2}, {"key", "k"}}.dump() + "\n";
  Write(t, "session", session);
  const json rejoin = {{"op", "rejoin"}, {"node_id", 3}, {"node", cluster::ToJson(Node(3))}, {"leases", {{1, 1}}}};
  const json reregister = {{"op", "reregister"}, {"node_id", 3}, {"records", {cluster::ToJson(Record(3, 1, "r"))}}};
  Write(t, "rejoin", rejoin.dump() + "\n" + reregister.dump() + "\n" +
                         json{{"op", "lookup"}, {"node_id", 3}, {"key", "r"}}.dump() + "\n");
}

void RecordSeeds() {
  const char* t = "directory_record_fuzz";
  Write(t, "record", cluster::ToJson(Record(2, 5, "k")).dump());
  cluster::ObjectRecord fabric = Record(2, 6, "on-fabric");
  fabric.memory = {"machine:fuzz", "/dev/shm/csm-node-2", "flush", 64, "10.0.0.2:7001"};
  fabric.arena_offsets = {2 << 20};
  fabric.arena_paths = {"/dev/shm/csm-node-3"};
  fabric.checksum_deferred = true;
  fabric.arrow_validated = true;
  Write(t, "record-on-fabric", cluster::ToJson(fabric).dump());
  cluster::NodeInfo node = Node(2);
  node.memory = fabric.memory;
  node.leases = {{5, 2}};
  node.alive = true;
  Write(t, "node", cluster::ToJson(node).dump());
}

// ---- Arrow descriptors --------------------------------------------------------------------

// Lays out a descriptor and the buffers it names in the fuzz image, as csm::PutTable lays
// them out in the heap (arrays flat, children after their parent, dictionaries after).
class ImageWriter {
 public:
  ImageWriter() : used_(sizeof(ArrowDescriptor)) { std::memset(MapImage(), 0, kImageSize); }

  std::string Table(ArrowKind kind, const arrow::Table& table) {
    std::vector<uint32_t> column_chunks, chunks;
    for (const auto& column : table.columns()) {
      column_chunks.push_back(static_cast<uint32_t>(chunks.size()));
      for (const auto& chunk : column->chunks()) chunks.push_back(Root(*chunk->data()));
    }
    column_chunks.push_back(static_cast<uint32_t>(chunks.size()));
    auto schema = arrow::ipc::SerializeSchema(*table.schema()).ValueOrDie();
    auto* d = reinterpret_cast<RawDescriptor*>(MapImage());
    *d = {kArrowDescriptorMagic, kArrowDescriptorVersion, static_cast<uint32_t>(kind), 0, table.num_rows(),
          Vector(schema->data(), static_cast<size_t>(schema->size())), Vector(column_chunks), Vector(chunks),
          Vector(arrays_), Vector(buffers_)};
    return std::string(reinterpret_cast<const char*>(MapImage()), used_);
  }

 private:
  struct RawVector {  // a csm::vector as libstdc++ lays it out: begin, end, end of storage
    uint64_t begin, end, capacity;
  };
  struct RawDescriptor {
    uint32_t magic, version, kind, reserved;
    int64_t num_rows;
    RawVector schema, column_chunks, chunks, arrays, buffers;
  };
  static_assert(sizeof(RawDescriptor) == sizeof(ArrowDescriptor) && sizeof(RawVector) == sizeof(csm::vector<uint8_t>));

  uint64_t Place(const void* data, size_t n) {
    used_ = (used_ + 63) & ~size_t{63};
    if (used_ + n > kImageSize) {
      std::fprintf(stderr, "write_seeds: a seed table does not fit the fuzz image\n");
      std::exit(1);
    }
    std::memcpy(MapImage() + used_, data, n);
    used_ += n;
    return kImageBase + used_ - n;
  }
  template <typename T>
  RawVector Vector(const std::vector<T>& v) { return Vector(v.data(), v.size()); }
  template <typename T>
  RawVector Vector(const T* data, size_t n) {
    const uint64_t at = n == 0 ? 0 : Place(data, n * sizeof(T));
    return {at, at + n * sizeof(T), at + n * sizeof(T)};
  }

  uint32_t Root(const arrow::ArrayData& data) {
    arrays_.emplace_back();
    Fill(static_cast<uint32_t>(arrays_.size() - 1), data);
    return static_cast<uint32_t>(arrays_.size() - 1) - Count(data) + 1;
  }
  static uint32_t Count(const arrow::ArrayData& data) {  // arrays a tree takes
    uint32_t n = 1;
    for (const auto& c : data.child_data) n += Count(*c);
    if (data.dictionary) n += Count(*data.dictionary);
    return n;
  }
  void Fill(uint32_t index, const arrow::ArrayData& data) {
    ArrowArrayLayout a{data.length, data.GetNullCount(), data.offset, static_cast<uint32_t>(buffers_.size()),
                       static_cast<uint32_t>(data.buffers.size()), 0, static_cast<uint32_t>(data.child_data.size()), -1};
    for (const auto& b : data.buffers) {
      if (b == nullptr) buffers_.push_back({0, 0, 0});
      else if (b->size() == 0) buffers_.push_back({0, 0, 1});
      else buffers_.push_back({Place(b->data(), static_cast<size_t>(b->size())), static_cast<uint64_t>(b->size()), 1});
    }
    a.first_child = static_cast<uint32_t>(arrays_.size());
    arrays_.resize(arrays_.size() + data.child_data.size());
    for (size_t i = 0; i < data.child_data.size(); ++i) Fill(a.first_child + static_cast<uint32_t>(i), *data.child_data[i]);
    if (data.dictionary) {
      a.dictionary = static_cast<int64_t>(arrays_.size());
      arrays_.emplace_back();
      Fill(static_cast<uint32_t>(a.dictionary), *data.dictionary);
    }
    arrays_[index] = a;
  }

  size_t used_;
  std::vector<ArrowArrayLayout> arrays_;
  std::vector<ArrowBufferLayout> buffers_;
};

std::shared_ptr<arrow::Array> Json(const std::shared_ptr<arrow::DataType>& type, const std::string& json) {
  return arrow::json::ArrayFromJSONString(type, json).ValueOrDie();
}

void ArrowSeeds() {
  const char* t = "arrow_descriptor_fuzz";
  auto table = [](std::vector<std::shared_ptr<arrow::Field>> fields, arrow::ArrayVector columns) {
    return arrow::Table::Make(arrow::schema(std::move(fields)), std::move(columns));
  };
  auto ints = table({arrow::field("x", arrow::int64())}, {Json(arrow::int64(), "[1, 2, null, 4]")});
  Write(t, "int64", ImageWriter().Table(ArrowKind::kTable, *ints));
  auto mixed = table({arrow::field("s", arrow::utf8()), arrow::field("d", arrow::float64()),
                      arrow::field("b", arrow::boolean())},
                     {Json(arrow::utf8(), R"(["a", null, "ccc"])"), Json(arrow::float64(), "[1.5, 2, 3]"),
                      Json(arrow::boolean(), "[true, false, null]")});
  Write(t, "mixed", ImageWriter().Table(ArrowKind::kTable, *mixed));
  auto list_type = arrow::list(arrow::int32());
  auto struct_type = arrow::struct_({arrow::field("a", arrow::int16()), arrow::field("b", arrow::large_binary())});
  auto nested = table({arrow::field("l", list_type), arrow::field("st", struct_type)},
                      {Json(list_type, "[[1, 2], null, []]"), Json(struct_type, R"([{"a": 1, "b": "x"}, null, {"a": 3, "b": ""}])")});
  Write(t, "nested", ImageWriter().Table(ArrowKind::kRecordBatch, *nested));
  auto dict_type = arrow::dictionary(arrow::int8(), arrow::utf8());
  auto dict = arrow::DictionaryArray::FromArrays(dict_type, Json(arrow::int8(), "[0, 1, 0, null]"),
                                                 Json(arrow::utf8(), R"(["red", "green"])"))
                  .ValueOrDie();
  auto dictionary = table({arrow::field("c", dict_type)}, {dict});
  Write(t, "dictionary", ImageWriter().Table(ArrowKind::kTable, *dictionary));
  auto no_chunks = std::make_shared<arrow::ChunkedArray>(arrow::ArrayVector{}, arrow::int64());
  auto head = arrow::Table::Make(ints->schema(), {no_chunks}, 0);  // a table of parts: its schema only
  Write(t, "table-head", ImageWriter().Table(ArrowKind::kTableHead, *head));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: write_seeds <corpus dir>\n");
    return 2;
  }
  corpus = argv[1];
  ProtocolSeeds();
  FetchSeeds();
  CoordinatorSeeds();
  RecordSeeds();
  ArrowSeeds();
  std::printf("write_seeds: seeds written under %s\n", corpus.c_str());
  return 0;
}
