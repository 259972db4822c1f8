// Arrow data in the global heap against a real csmd: round trips of every type family
// (compared with Equals), tables built straight into the heap with no copy, a consumer
// in another process, and hostile descriptors rejected cleanly.
#include <arrow/api.h>
#include <arrow/csv/api.h>
#include <arrow/io/api.h>
#include <arrow/ipc/api.h>
#include <parquet/arrow/writer.h>
#include <arrow/extension/bool8.h>
#include <arrow/extension/uuid.h>
#include <arrow/json/from_string.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstring>
#include <functional>
#include <random>
#include <thread>

#include "csm/arrow.h"
#include "csm/arrow/arrow_layout.h"
#include "harness.h"

namespace csm {
namespace {

using arrow::json::ArrayFromJSONString;
using testing::Node;

std::shared_ptr<arrow::Array> Json(const std::shared_ptr<arrow::DataType>& type, const std::string& json) {
  auto a = ArrayFromJSONString(type, json);
  EXPECT_TRUE(a.ok()) << type->ToString() << ": " << a.status().ToString();
  return a.ok() ? *a : nullptr;
}

class ArrowTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = Client::Connect(node_.ClientConfig());
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    client_ = std::move(*c);
  }
  void TearDown() override { client_.reset(); }

  // Puts `array` (copied into a fresh Builder), gets it back, compares.
  void RoundTrip(const std::string& key, const std::shared_ptr<arrow::Array>& array) {
    ASSERT_NE(array, nullptr);
    ASSERT_TRUE(array->ValidateFull().ok());
    auto builder = client_->NewBuilder();
    ASSERT_TRUE(builder.ok());
    auto put = PutArray(*builder, key, *array);
    ASSERT_TRUE(put.ok()) << key << ": " << put.status().ToString();
    auto got = GetArray(*client_, key);
    ASSERT_TRUE(got.ok()) << key << ": " << got.status().ToString();
    EXPECT_TRUE((*got)->Equals(*array)) << key << ":\n" << (*got)->ToString() << "\nvs\n" << array->ToString();
    EXPECT_TRUE((*got)->type()->Equals(*array->type())) << key;
  }

  Node node_;
  std::unique_ptr<Client> client_;
};

TEST_F(ArrowTest, EveryTypeFamilyRoundTrips) {
  using namespace arrow;
  RoundTrip("null", Json(null(), "[null, null, null]"));
  RoundTrip("bool", Json(boolean(), "[true, false, null, true]"));
  for (const auto& t : {int8(), int16(), int32(), int64(), uint8(), uint16(), uint32(), uint64()}) {
    RoundTrip("int/" + t->ToString(), Json(t, "[1, 2, null, 100]"));
  }
  RoundTrip("half", Json(float16(), "[1.5, null, -2]"));
  RoundTrip("float", Json(float32(), "[1.5, null, -2.25]"));
  RoundTrip("double", Json(float64(), "[1.5, null, -2.25e10]"));
  RoundTrip("decimal128", Json(decimal128(10, 2), R"(["12.34", null, "-0.01"])"));
  RoundTrip("decimal256", Json(decimal256(40, 5), R"(["123456789.12345", null])"));
  RoundTrip("date32", Json(date32(), "[0, 19000, null]"));
  RoundTrip("date64", Json(date64(), "[86400000, null]"));
  RoundTrip("time32", Json(time32(TimeUnit::MILLI), "[1000, null]"));
  RoundTrip("time64", Json(time64(TimeUnit::NANO), "[1000000, null]"));
  RoundTrip("timestamp", Json(timestamp(TimeUnit::MICRO, "UTC"), "[1700000000000000, null]"));
  RoundTrip("duration", Json(duration(TimeUnit::SECOND), "[60, null]"));
  RoundTrip("interval_months", Json(month_interval(), "[3, null]"));
  RoundTrip("interval_dt", Json(day_time_interval(), "[[1, 2], null]"));
  RoundTrip("interval_mdn", Json(month_day_nano_interval(), "[[1, 2, 3], null]"));
  RoundTrip("utf8", Json(utf8(), R"(["a", null, "ccc", ""])"));
  RoundTrip("large_utf8", Json(large_utf8(), R"(["a", null, "ccc"])"));
  RoundTrip("binary", Json(binary(), R"(["ab", null])"));
  RoundTrip("large_binary", Json(large_binary(), R"(["ab", null])"));
  RoundTrip("utf8_view", Json(utf8_view(), R"(["short", null, "a string longer than twelve bytes"])"));
  RoundTrip("binary_view", Json(binary_view(), R"(["x", "another string longer than twelve bytes"])"));
  RoundTrip("fixed_size_binary", Json(fixed_size_binary(3), R"(["abc", null, "xyz"])"));
  RoundTrip("list", Json(list(int32()), "[[1, 2], null, [], [3]]"));
  RoundTrip("large_list", Json(large_list(utf8()), R"([["a"], null, []])"));
  RoundTrip("fixed_size_list", Json(fixed_size_list(int16(), 2), "[[1, 2], null, [3, 4]]"));
  RoundTrip("list_view", Json(list_view(int32()), "[[1, 2], null, [], [3]]"));
  RoundTrip("large_list_view", Json(large_list_view(int32()), "[[1], null]"));
  RoundTrip("struct", Json(struct_({field("a", int32()), field("b", utf8())}),
                           R"([{"a": 1, "b": "x"}, null, {"a": null, "b": "y"}])"));
  RoundTrip("map", Json(arrow::map(utf8(), int64()), R"([[["k", 1], ["l", 2]], null, []])"));
  RoundTrip("sparse_union", Json(sparse_union({field("i", int32()), field("s", utf8())}, {0, 1}),
                                 R"([[0, 5], [1, "x"], [0, null]])"));
  RoundTrip("dense_union", Json(dense_union({field("i", int32()), field("s", utf8())}, {0, 1}),
                                R"([[0, 5], [1, "x"], [1, null]])"));
  {
    auto dict = arrow::json::DictArrayFromJSONString(dictionary(int32(), utf8()), "[0, 1, 0, null, 2]",
                                                     R"(["red", "green", "blue"])");
    ASSERT_TRUE(dict.ok()) << dict.status().ToString();
    RoundTrip("dictionary", *dict);
  }
  {
    auto ree = RunEndEncodedArray::Make(7, Json(int32(), "[2, 5, 7]"), Json(utf8(), R"(["a", null, "c"])"));
    ASSERT_TRUE(ree.ok()) << ree.status().ToString();
    RoundTrip("run_end_encoded", *ree);
  }
  {
    auto storage = Json(int8(), "[1, 0, null, 1]");
    RoundTrip("extension/bool8", ExtensionType::WrapArray(extension::bool8(), storage));
    auto uuid_storage = Json(fixed_size_binary(16), R"(["0123456789abcdef", null])");
    RoundTrip("extension/uuid", ExtensionType::WrapArray(extension::uuid(), uuid_storage));
  }
  // Nested all the way down: list of struct of dictionary.
  RoundTrip("nested", Json(list(struct_({field("x", list(int64())), field("y", boolean())})),
                           R"([[{"x": [1, 2], "y": true}], null, [{"x": null, "y": false}, {"x": [], "y": null}]])"));
}

TEST_F(ArrowTest, SlicedArraysAndEmptyTables) {
  auto a = Json(arrow::utf8(), R"(["a", "b", null, "d", "e", "f"])");
  RoundTrip("sliced", a->Slice(2, 3));
  RoundTrip("sliced/empty", a->Slice(6, 0));
  auto l = Json(arrow::list(arrow::int32()), "[[1], [2, 3], null, [4, 5, 6]]");
  RoundTrip("sliced/list", l->Slice(1, 2));
  auto schema = arrow::schema({arrow::field("x", arrow::int64()), arrow::field("s", arrow::utf8())});
  auto empty = arrow::Table::MakeEmpty(schema);
  ASSERT_TRUE(empty.ok());
  ASSERT_TRUE(PutTable(*client_, "empty", **empty).ok());
  auto got = GetTable(*client_, "empty");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ((*got)->num_rows(), 0);
  EXPECT_TRUE((*got)->Equals(**empty));
}

TEST_F(ArrowTest, TableWithManyChunksKeepsItsRowOrder) {
  auto schema = arrow::schema({arrow::field("id", arrow::int64()), arrow::field("name", arrow::utf8())});
  std::vector<std::shared_ptr<arrow::RecordBatch>> batches;
  for (int b = 0; b < 20; ++b) {
    std::string ids = "[", names = "[";
    for (int i = 0; i < 50; ++i) {
      ids += std::to_string(b * 50 + i) + (i < 49 ? "," : "]");
      names += "\"n" + std::to_string(b * 50 + i) + "\"" + (i < 49 ? "," : "]");
    }
    batches.push_back(arrow::RecordBatch::Make(schema, 50, {Json(arrow::int64(), ids), Json(arrow::utf8(), names)}));
  }
  auto table = *arrow::Table::FromRecordBatches(schema, batches);
  auto put = PutTable(*client_, "chunks", *table);
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_EQ(put->buffers_in_place, 0u);
  EXPECT_GT(put->bytes_copied, 0u) << "built outside the heap: copied once";
  auto got = GetTable(*client_, "chunks");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ((*got)->column(0)->num_chunks(), 20);
  EXPECT_TRUE((*got)->Equals(*table));
  // The RecordBatch and ChunkedArray forms.
  auto builder = client_->NewBuilder();
  ASSERT_TRUE(PutRecordBatch(*builder, "batch", *batches[3]).ok());
  auto batch = GetRecordBatch(*client_, "batch");
  ASSERT_TRUE(batch.ok()) << batch.status().ToString();
  EXPECT_TRUE((*batch)->Equals(*batches[3]));
  auto as_table = GetTable(*client_, "batch");
  ASSERT_TRUE(as_table.ok());
  EXPECT_EQ((*as_table)->num_rows(), 50);
  auto column = GetChunkedArray(*client_, "chunks");
  EXPECT_EQ(column.status().code(), StatusCode::kTypeMismatch) << "two columns are not one array";
  auto builder2 = client_->NewBuilder();
  ASSERT_TRUE(PutChunkedArray(*builder2, "column", *table->column(1)).ok());
  auto chunked = GetChunkedArray(*client_, "column");
  ASSERT_TRUE(chunked.ok()) << chunked.status().ToString();
  EXPECT_TRUE((*chunked)->Equals(*table->column(1)));
  EXPECT_EQ(GetArray(*client_, "column").status().code(), StatusCode::kTypeMismatch);
}

// A table of `rows` rows: column "writer" = writer, column "seq" = first, first+1, ...
std::shared_ptr<arrow::Table> Part(int32_t writer, int64_t first, int64_t rows) {
  arrow::Int32Builder w;
  arrow::Int64Builder seq;
  for (int64_t i = 0; i < rows; ++i) {
    EXPECT_TRUE(w.Append(writer).ok());
    EXPECT_TRUE(seq.Append(first + i).ok());
  }
  return arrow::Table::Make(arrow::schema({arrow::field("writer", arrow::int32()), arrow::field("seq", arrow::int64())}),
                            {*w.Finish(), *seq.Finish()});
}

TEST_F(ArrowTest, AppendedPartsFormOneTableInAppendOrder) {
  for (int i = 0; i < 3; ++i) {
    auto appended = AppendTable(*client_, "parts", *Part(0, i * 10, 10));
    ASSERT_TRUE(appended.ok()) << appended.status().ToString();
    EXPECT_EQ(appended->part, static_cast<uint64_t>(i));
    EXPECT_EQ(appended->part_key, "parts#" + std::to_string(i));
  }
  auto got = GetTable(*client_, "parts");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ((*got)->num_rows(), 30);
  EXPECT_EQ((*got)->column(0)->num_chunks(), 3);
  auto whole = *arrow::ConcatenateTables({Part(0, 0, 10), Part(0, 10, 10), Part(0, 20, 10)});
  EXPECT_TRUE((*got)->Equals(*whole)) << (*got)->ToString();
  auto parts = TableParts(*client_, "parts");
  ASSERT_TRUE(parts.ok()) << parts.status().ToString();
  ASSERT_EQ(parts->size(), 3u);
  EXPECT_EQ((*parts)[2].key, "parts#2");
  EXPECT_EQ((*parts)[2].num_rows, 10);
  EXPECT_GT((*parts)[2].bytes, 0u);

  // Another schema is refused, and so is appending to a table put whole.
  auto other = arrow::Table::Make(arrow::schema({arrow::field("x", arrow::utf8())}), {Json(arrow::utf8(), R"(["a"])")});
  auto refused = AppendTable(*client_, "parts", *other);
  EXPECT_TRUE(refused.status().IsTypeMismatch()) << refused.status().ToString();
  ASSERT_TRUE(PutTable(*client_, "whole", *Part(0, 0, 3)).ok());
  auto not_parts = AppendTable(*client_, "whole", *Part(0, 3, 3));
  EXPECT_EQ(not_parts.status().code(), StatusCode::kFailedPrecondition) << not_parts.status().ToString();
  EXPECT_TRUE(AppendTable(*client_, std::string(kMaxTableKeyLength + 1, 'k'), *Part(0, 0, 1)).status().code() ==
              StatusCode::kInvalidArgument);
  // Only GetTable reads a table of parts (a one-column one is not a ChunkedArray).
  ASSERT_TRUE(AppendTable(*client_, "one-column", *other).ok());
  EXPECT_TRUE(GetChunkedArray(*client_, "one-column").status().IsTypeMismatch());
  EXPECT_TRUE(GetRecordBatch(*client_, "one-column").status().IsTypeMismatch());
  EXPECT_TRUE(GetArray(*client_, "one-column").status().IsTypeMismatch());
  // Nothing but AppendTable commits under a part key ('#' is reserved, csm/key.h).
  auto builder = client_->NewBuilder();
  EXPECT_EQ(PutArray(*builder, "parts#3", *Json(arrow::int32(), "[1]")).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ((*GetTable(*client_, "parts"))->num_rows(), 30);
}

TEST_F(ArrowTest, ConcurrentAppendersEachKeepTheirOrder) {
  constexpr int kWriters = 4, kAppends = 6, kRows = 5;
  std::vector<std::thread> writers;
  std::atomic<int> failures{0};
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < kAppends; ++i) {
        if (!AppendTable(*client_, "busy", *Part(w, i * kRows, kRows)).ok()) ++failures;
      }
    });
  }
  for (auto& t : writers) t.join();
  EXPECT_EQ(failures.load(), 0);
  auto got = GetTable(*client_, "busy");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_EQ((*got)->num_rows(), kWriters * kAppends * kRows);
  // Every row once; each writer's rows in the order it appended them.
  std::vector<int64_t> next(kWriters, 0);
  for (const auto& batch : *arrow::TableBatchReader(**got).ToRecordBatches()) {
    const auto& writer = static_cast<const arrow::Int32Array&>(*batch->column(0));
    const auto& seq = static_cast<const arrow::Int64Array&>(*batch->column(1));
    for (int64_t r = 0; r < batch->num_rows(); ++r) {
      ASSERT_EQ(seq.Value(r), next[writer.Value(r)]++) << "writer " << writer.Value(r);
    }
  }
  for (int w = 0; w < kWriters; ++w) EXPECT_EQ(next[w], kAppends * kRows);
}

// Offsets and lengths past 2^31: a 2.25 GiB column and a large_binary column whose data
// buffer is past 2 GiB, built in the heap, put, got back and compared.
TEST_F(ArrowTest, TablesLargerThan2GiB) {
  constexpr int64_t kRows = (int64_t{9} << 30) / 4 / 8;  // 2.25 GiB of int64
  auto builder = client_->NewBuilder();
  ASSERT_TRUE(builder.ok());
  HeapMemoryPool pool(&*builder);
  auto values = arrow::AllocateBuffer(kRows * 8, &pool);
  ASSERT_TRUE(values.ok()) << values.status().ToString();
  auto* v = reinterpret_cast<int64_t*>((*values)->mutable_data());
  for (int64_t i = 0; i < kRows; ++i) v[i] = i * 3;
  auto ints = std::make_shared<arrow::Int64Array>(kRows, std::shared_ptr<arrow::Buffer>(std::move(*values)));
  auto table = arrow::Table::Make(arrow::schema({arrow::field("n", arrow::int64())}), {ints});
  auto put = PutTable(*builder, "big", *table);
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_EQ(put->bytes_copied, 0u);
  auto got = GetTable(*client_, "big");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_EQ((*got)->num_rows(), kRows);
  EXPECT_TRUE((*got)->Equals(*table));
  const auto& n = static_cast<const arrow::Int64Array&>(*(*got)->column(0)->chunk(0));
  EXPECT_EQ(n.Value(kRows - 1), (kRows - 1) * 3);
  got->reset();
  table.reset();
  ints.reset();
  ASSERT_TRUE(client_->Delete("big").ok());

  auto blob_builder = client_->NewBuilder();
  ASSERT_TRUE(blob_builder.ok());
  HeapMemoryPool blob_pool(&*blob_builder);
  // 3 rows of large_binary: the last value starts past 2 GiB.
  constexpr int64_t kBlob = (int64_t{1} << 30) + 7;
  auto data = arrow::AllocateBuffer(2 * kBlob + 5, &blob_pool);
  ASSERT_TRUE(data.ok());
  std::memset((*data)->mutable_data(), 'x', static_cast<size_t>((*data)->size()));
  std::memcpy((*data)->mutable_data() + 2 * kBlob, "tail!", 5);
  auto offsets = arrow::AllocateBuffer(4 * 8, &blob_pool);
  ASSERT_TRUE(offsets.ok());
  auto* o = reinterpret_cast<int64_t*>((*offsets)->mutable_data());
  o[0] = 0, o[1] = kBlob, o[2] = 2 * kBlob, o[3] = 2 * kBlob + 5;
  auto blobs = std::make_shared<arrow::LargeBinaryArray>(3, std::shared_ptr<arrow::Buffer>(std::move(*offsets)),
                                                         std::shared_ptr<arrow::Buffer>(std::move(*data)));
  auto blob_table = arrow::Table::Make(arrow::schema({arrow::field("b", arrow::large_binary())}), {blobs});
  auto blob_put = PutTable(*blob_builder, "blobs", *blob_table);
  ASSERT_TRUE(blob_put.ok()) << blob_put.status().ToString();
  EXPECT_EQ(blob_put->bytes_copied, 0u);
  auto got_blobs = GetTable(*client_, "blobs");
  ASSERT_TRUE(got_blobs.ok()) << got_blobs.status().ToString();
  const auto& b = static_cast<const arrow::LargeBinaryArray&>(*(*got_blobs)->column(0)->chunk(0));
  EXPECT_EQ(b.value_offset(2), 2 * kBlob);
  EXPECT_EQ(b.GetView(2), "tail!");
  EXPECT_EQ(b.GetView(0).size(), static_cast<size_t>(kBlob));
}

TEST_F(ArrowTest, ArraysBuiltWithTheHeapPoolArePutWithoutACopy) {
  auto builder = client_->NewBuilder();
  ASSERT_TRUE(builder.ok());
  HeapMemoryPool pool(&*builder);
  arrow::Int64Builder ints(&pool);
  arrow::StringBuilder strings(&pool);
  for (int64_t i = 0; i < 100000; ++i) {
    ASSERT_TRUE(ints.Append(i * 3).ok());
    ASSERT_TRUE(strings.Append("value-" + std::to_string(i)).ok());
  }
  std::shared_ptr<arrow::Array> a, s;
  ASSERT_TRUE(ints.Finish(&a).ok());
  ASSERT_TRUE(strings.Finish(&s).ok());
  EXPECT_GT(pool.bytes_allocated(), 100000 * 8);
  EXPECT_EQ(pool.backend_name(), "csm");
  auto table = arrow::Table::Make(arrow::schema({arrow::field("i", arrow::int64()), arrow::field("s", arrow::utf8())}),
                                  {a, s});
  EXPECT_TRUE(builder->Contains(a->data()->buffers[1]->data(), 100000 * 8)) << "the values are in the object";
  auto put = PutTable(*builder, "pooled", *table);
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_EQ(put->buffers_copied, 0u);
  EXPECT_EQ(put->bytes_copied, 0u);
  EXPECT_EQ(put->buffers_in_place, 3u) << "int64 values, utf8 offsets and characters (no nulls: no bitmaps)";
  EXPECT_LT(put->descriptor_bytes, 4096u) << "the descriptor does not grow with the data";
  auto got = GetTable(*client_, "pooled");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE((*got)->Equals(*table));
  EXPECT_EQ((*got)->column(0)->chunk(0)->data()->buffers[1]->data(), a->data()->buffers[1]->data())
      << "the consumer reads the producer's bytes at the same address";
}

TEST_F(ArrowTest, ATableBuiltInOneProcessIsReadInAnotherAtTheSameAddresses) {
  const std::string helper = testing::BinaryDir() + "/csm_arrow_helper";
  auto producer = testing::Process::Spawn({helper, "produce", "shared/table", "200000"}, node_.Env());
  std::string committed = producer->WaitForLine("committed", 60000);
  ASSERT_EQ(producer->Wait(), 0) << producer->output();
  EXPECT_EQ(testing::Field(committed, "copied"), "0") << "built in the heap: nothing to copy";
  auto validated = [&] {
    auto info = client_->Lookup("shared/table");
    return info.ok() && info->arrow_validated;
  };
  // Its producer validated what it put: the node knows before anyone reads it, so no
  // reader runs Arrow's full validation again (a forged copy below is validated by its
  // first reader instead: HostileDescriptorTest.UntouchedCopyIsAccepted).
  EXPECT_TRUE(testing::Eventually(validated, 5000));
  // A consumer process, and this one.
  auto consumer = testing::Process::Spawn({helper, "consume", "shared/table", "200000"}, node_.Env());
  std::string verified = consumer->WaitForLine("verified", 60000);
  ASSERT_EQ(consumer->Wait(), 0) << consumer->output();
  EXPECT_EQ(testing::Field(verified, "values"), testing::Field(committed, "values"));
  auto table = GetTable(*client_, "shared/table");
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  EXPECT_EQ((*table)->num_rows(), 200000);
  // The object stays pinned while any buffer of the table lives, like Plasma's buffers.
  auto pins = [&] {
    auto stat = client_->StatJson("shared/table");
    return stat.ok() ? nlohmann::json::parse(*stat)["pins"].get<int>() : -1;
  };
  auto values = (*table)->column(0)->chunk(0)->data()->buffers[1];
  table->reset();
  EXPECT_EQ(reinterpret_cast<const int64_t*>(values->data())[199999], 199999 * 7);
  EXPECT_TRUE(testing::Eventually([&] { return pins() == 1; }, 5000)) << pins();
  values.reset();
  EXPECT_TRUE(testing::Eventually([&] { return pins() == 0; }, 5000)) << pins();
}

TEST_F(ArrowTest, CliPutsFilesStraightIntoTheHeapAndGetsAndCatsThem) {
  auto table = arrow::Table::Make(
      arrow::schema({arrow::field("id", arrow::int64()), arrow::field("name", arrow::utf8())}),
      {Json(arrow::int64(), "[1, 2, 3]"), Json(arrow::utf8(), R"(["a", "b", "c"])")});
  const std::string dir = ::testing::TempDir();
  {
    auto out = arrow::io::FileOutputStream::Open(dir + "/t.parquet");
    ASSERT_TRUE(out.ok());
    ASSERT_TRUE(parquet::arrow::WriteTable(*table, arrow::default_memory_pool(), *out, 1024).ok());
    ASSERT_TRUE((*out)->Close().ok());
    auto csv = arrow::io::FileOutputStream::Open(dir + "/t.csv");
    ASSERT_TRUE(csv.ok());
    ASSERT_TRUE(arrow::csv::WriteCSV(*table, arrow::csv::WriteOptions::Defaults(), csv->get()).ok());
    ASSERT_TRUE((*csv)->Close().ok());
  }
  const std::string csm = testing::BinaryDir() + "/csm";
  for (const char* kind : {"parquet", "csv"}) {
    auto put = testing::Run({csm, "put", dir + "/t." + kind, "--key", std::string("cli/") + kind}, node_.Env());
    ASSERT_EQ(put.exit_code, 0) << put.out << put.err;
    EXPECT_NE(put.out.find("3 rows, 2 columns"), std::string::npos) << put.out;
    EXPECT_NE(put.out.find("0 B copied"), std::string::npos) << put.out;
    auto got = GetTable(*client_, std::string("cli/") + kind);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_TRUE((*got)->Equals(*table)) << (*got)->ToString();
  }
  auto get = testing::Run({csm, "get", "cli/parquet"}, node_.Env());
  ASSERT_EQ(get.exit_code, 0) << get.err;
  EXPECT_NE(get.out.find("rows:    3"), std::string::npos) << get.out;
  EXPECT_NE(get.out.find("name: string"), std::string::npos) << get.out;
  auto cat = testing::Run({csm, "cat", "cli/csv", "--format", "csv"}, node_.Env());
  ASSERT_EQ(cat.exit_code, 0) << cat.err;
  EXPECT_EQ(cat.out, "\"id\",\"name\"\n1,\"a\"\n2,\"b\"\n3,\"c\"\n");
  // An Arrow IPC file on stdout whatever stdout is: a pipe (here), /dev/null.
  auto ipc = testing::Run({csm, "cat", "cli/parquet", "--format", "arrow"}, node_.Env());
  ASSERT_EQ(ipc.exit_code, 0) << ipc.err;
  auto ipc_reader = arrow::ipc::RecordBatchFileReader::Open(
      std::make_shared<arrow::io::BufferReader>(arrow::Buffer::FromString(ipc.out)));
  ASSERT_TRUE(ipc_reader.ok()) << ipc_reader.status().ToString();
  auto ipc_table = (*ipc_reader)->ToTable();
  ASSERT_TRUE(ipc_table.ok());
  EXPECT_TRUE((*ipc_table)->Equals(*table)) << (*ipc_table)->ToString();
  auto devnull = testing::Run({"/bin/sh", "-c", csm + " cat cli/parquet --format arrow > /dev/null"}, node_.Env());
  EXPECT_EQ(devnull.exit_code, 0) << devnull.err;
  auto missing = testing::Run({csm, "get", "cli/none"}, node_.Env());
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.err.find("NotFound"), std::string::npos) << missing.err;
  // Two files appended as the parts of one table.
  for (const char* kind : {"parquet", "csv"}) {
    auto append = testing::Run({csm, "put", dir + "/t." + kind, "--key", "cli/parts", "--append"}, node_.Env());
    ASSERT_EQ(append.exit_code, 0) << append.out << append.err;
  }
  auto parts = testing::Run({csm, "get", "cli/parts"}, node_.Env());
  ASSERT_EQ(parts.exit_code, 0) << parts.err;
  EXPECT_NE(parts.out.find("rows:    6"), std::string::npos) << parts.out;
  EXPECT_NE(parts.out.find("parts:   2"), std::string::npos) << parts.out;
  EXPECT_NE(parts.out.find("cli/parts#1"), std::string::npos) << parts.out;
  auto unknown = testing::Run({csm, "put", dir + "/t.parquet", "--key", "cli/parquet"}, node_.Env());
  EXPECT_NE(unknown.exit_code, 0) << "the key is taken";
  EXPECT_NE(unknown.err.find("AlreadyExists"), std::string::npos) << unknown.err;
}

// On a terminal `csm put` draws a progress line on standard error and ends it at 100%;
// piped (scripts, CI) it prints nothing of the kind.
TEST_F(ArrowTest, CliPutShowsProgressOnATerminalOnly) {
  const std::string file = ::testing::TempDir() + "/progress.arrow";
  {
    auto ids = Json(arrow::int64(), "[1, 2, 3, 4, 5, 6, 7, 8]");
    auto table = arrow::Table::Make(arrow::schema({arrow::field("id", arrow::int64())}), {ids});
    auto out = arrow::io::FileOutputStream::Open(file);
    ASSERT_TRUE(out.ok());
    auto writer = arrow::ipc::MakeFileWriter(*out, table->schema());
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE((*writer)->WriteTable(*table).ok());
    ASSERT_TRUE((*writer)->Close().ok());
  }
  const std::string csm = testing::BinaryDir() + "/csm";
  auto piped = testing::Run({csm, "put", file, "--key", "progress/piped"}, node_.Env());
  ASSERT_EQ(piped.exit_code, 0) << piped.out << piped.err;
  EXPECT_EQ(piped.err.find("100%"), std::string::npos) << piped.err;
  // script(1) runs the command on a pseudo-terminal and copies what it wrote.
  auto tty = testing::Run({"/usr/bin/script", "-qec", csm + " put " + file + " --key progress/tty", "/dev/null"}, node_.Env());
  ASSERT_EQ(tty.exit_code, 0) << tty.out << tty.err;
  EXPECT_NE(tty.out.find("put progress/tty"), std::string::npos) << tty.out;
  EXPECT_NE(tty.out.find("100%"), std::string::npos) << tty.out;
  EXPECT_TRUE(client_->Lookup("progress/tty").ok());
}

// '#' is reserved for the parts of appended tables: a table put whole under "T#0" would
// be read back as a part of "T".
TEST_F(ArrowTest, KeysOfTablePartsCannotBeTakenByOtherObjects) {
  auto part = Json(arrow::int32(), "[1, 2, 3]");
  auto whole = arrow::Table::Make(arrow::schema({arrow::field("x", arrow::int32())}), {part});
  auto other = arrow::Table::Make(arrow::schema({arrow::field("x", arrow::int32())}),
                                  {Json(arrow::int32(), "[100, 200]")});
  auto put = PutTable(*client_, "T#0", *other);
  EXPECT_EQ(put.status().code(), StatusCode::kInvalidArgument) << put.status().ToString();
  EXPECT_NE(put.status().message().find("reserved"), std::string::npos);
  auto appended = AppendTable(*client_, "T", *whole);
  ASSERT_TRUE(appended.ok()) << appended.status().ToString();
  EXPECT_EQ(appended->part_key, "T#0");
  auto got = GetTable(*client_, "T");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE((*got)->Equals(*whole)) << (*got)->ToString();
  EXPECT_EQ(AppendTable(*client_, "U#1", *whole).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(AppendTable(*client_, std::string(kMaxTableKeyLength + 1, 't'), *whole).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(ArrowTest, WrongKindAndMissingKeyAreClearErrors) {
  auto builder = client_->NewBuilder();
  ASSERT_TRUE(PutArray(*builder, "one", *Json(arrow::int32(), "[1]")).ok());
  auto table = GetTable(*client_, "one");
  EXPECT_EQ(table.status().code(), StatusCode::kTypeMismatch);
  EXPECT_NE(table.status().message().find("an Array, not a Table"), std::string::npos) << table.status().ToString();
  EXPECT_TRUE(GetTable(*client_, "absent").status().IsNotFound());
  // Another csm type under the key.
  auto other = client_->NewBuilder();
  auto v = other->New<csm::vector<int>>();
  ASSERT_TRUE(v.ok());
  ASSERT_TRUE(other->Commit("not-arrow").ok());
  EXPECT_TRUE(GetTable(*client_, "not-arrow").status().IsTypeMismatch());
}

// ---- hostile descriptors ---------------------------------------------------------------

// Puts a valid int32 array, then a copy of its descriptor with `forge` applied.
class HostileDescriptorTest : public ArrowTest {
 protected:
  Status GetForged(const std::string& key, const std::function<void(ArrowDescriptor&)>& forge) {
    auto builder = client_->NewBuilder();
    EXPECT_TRUE(PutArray(*builder, key + "/valid", *Json(arrow::utf8(), R"(["a", "bb", null, "dddd"])")).ok());
    auto valid = client_->Get<ArrowDescriptor>(key + "/valid");
    EXPECT_TRUE(valid.ok());
    auto forged = client_->NewBuilder();
    auto d = forged->New<ArrowDescriptor>();
    EXPECT_TRUE(d.ok());
    Status s = forged->Populate([&] {
      const ArrowDescriptor& from = **valid;
      ArrowDescriptor& to = **d;
      to.magic = from.magic;
      to.version = from.version;
      to.kind = from.kind;
      to.num_rows = from.num_rows;
      to.schema.assign(from.schema.begin(), from.schema.end());
      to.column_chunks.assign(from.column_chunks.begin(), from.column_chunks.end());
      to.chunks.assign(from.chunks.begin(), from.chunks.end());
      to.arrays.assign(from.arrays.begin(), from.arrays.end());
      // Buffers copied into this object, so the forged descriptor starts out valid.
      for (const auto& b : from.buffers) {
        ArrowBufferLayout copy = b;
        if (b.length > 0) {
          void* p = internal::Allocate(b.length, 64);
          std::memcpy(p, reinterpret_cast<const void*>(b.addr), b.length);
          copy.addr = reinterpret_cast<uint64_t>(p);
        }
        to.buffers.push_back(copy);
      }
      forge(to);
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    EXPECT_TRUE(forged->Commit(key).ok());
    return GetArray(*client_, key).status();
  }
};

TEST_F(HostileDescriptorTest, UntouchedCopyIsAccepted) {
  EXPECT_TRUE(GetForged("control", [](ArrowDescriptor&) {}).ok());
  // Committed without the Arrow layer, so unmarked until a reader validated it: the
  // first Get did, and the node now says so to every later reader.
  EXPECT_TRUE(testing::Eventually(
      [&] {
        auto info = client_->Lookup("control");
        return info.ok() && info->arrow_validated;
      },
      5000));
}

TEST_F(HostileDescriptorTest, BufferOutsideTheObjectIsRejected) {
  static const char outside[64] = {};
  Status s = GetForged("outside", [](ArrowDescriptor& d) { d.buffers[2].addr = reinterpret_cast<uint64_t>(outside); });
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(s.message().find("outside the object"), std::string::npos) << s.ToString();
  s = GetForged("wild", [](ArrowDescriptor& d) { d.buffers[1].addr = 0x10; });
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  s = GetForged("wrap", [](ArrowDescriptor& d) { d.buffers[1].length = ~0ULL - 8; });
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
}

TEST_F(HostileDescriptorTest, WrongLengthsAndOffsetsAreRejected) {
  Status s = GetForged("long", [](ArrowDescriptor& d) { d.arrays[0].length = 1000; });
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(s.message().find("validation"), std::string::npos) << s.ToString();
  s = GetForged("offset", [](ArrowDescriptor& d) { d.arrays[0].offset = 3; });
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  s = GetForged("nulls", [](ArrowDescriptor& d) { d.arrays[0].null_count = 9; });
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  // Offsets that point past the character data.
  s = GetForged("bad-offsets", [](ArrowDescriptor& d) {
    auto* offsets = reinterpret_cast<int32_t*>(d.buffers[1].addr);
    offsets[2] = 1 << 20;
  });
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  s = GetForged("short-buffer", [](ArrowDescriptor& d) { d.buffers[1].length = 4; });
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  s = GetForged("buffer-count", [](ArrowDescriptor& d) { d.arrays[0].buffer_count = 1000; });
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  // Fewer buffers than the type has (found by fuzz/arrow_descriptor_fuzz: Arrow's
  // ArrayData::Make read a missing buffer 0).
  s = GetForged("no-buffers", [](ArrowDescriptor& d) {
    d.arrays[0].buffer_count = 0;
    d.arrays[0].null_count = 0;
  });
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(s.message().find("buffers"), std::string::npos) << s.ToString();
  s = GetForged("children", [](ArrowDescriptor& d) { d.arrays[0].child_count = 2; });
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
}

TEST_F(HostileDescriptorTest, BadSchemaAndTablesAreRejected) {
  Status s = GetForged("truncated", [](ArrowDescriptor& d) { d.schema.resize(d.schema.size() / 2); });
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(s.message().find("schema"), std::string::npos) << s.ToString();
  s = GetForged("garbage-schema", [](ArrowDescriptor& d) { std::fill(d.schema.begin(), d.schema.end(), 0xff); });
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  s = GetForged("magic", [](ArrowDescriptor& d) { d.magic = 1; });
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  s = GetForged("columns", [](ArrowDescriptor& d) { d.column_chunks.push_back(7); });
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  s = GetForged("chunk-index", [](ArrowDescriptor& d) { d.chunks[0] = 99; });
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
}

// Large enough that the chunks are validated on several threads: the bad one is named.
TEST_F(ArrowTest, InvalidUtf8InOneChunkOfALargeTableIsCorruption) {
  constexpr int kChunks = 20;
  constexpr int64_t kValue = 1024, kRows = 1024;  // 1 MiB of string data a chunk
  arrow::ArrayVector chunks;
  for (int c = 0; c < kChunks; ++c) {
    auto offsets = *arrow::AllocateBuffer((kRows + 1) * 4);
    auto* o = reinterpret_cast<int32_t*>(offsets->mutable_data());
    for (int64_t i = 0; i <= kRows; ++i) o[i] = static_cast<int32_t>(i * kValue);
    auto data = *arrow::AllocateBuffer(kRows * kValue);
    std::memset(data->mutable_data(), 'a', static_cast<size_t>(data->size()));
    if (c == 13) data->mutable_data()[5000] = static_cast<uint8_t>(0xff);  // not UTF-8
    chunks.push_back(std::make_shared<arrow::StringArray>(kRows, std::move(offsets), std::move(data)));
  }
  auto table = arrow::Table::Make(arrow::schema({arrow::field("s", arrow::utf8())}),
                                  {std::make_shared<arrow::ChunkedArray>(chunks)});
  ASSERT_TRUE(PutTable(*client_, "bad-utf8", *table).ok());
  auto got = GetTable(*client_, "bad-utf8");
  EXPECT_TRUE(got.status().IsCorruption()) << got.status().ToString();
  EXPECT_NE(got.status().message().find("column 0 chunk 13"), std::string::npos) << got.status().ToString();
  // A process remembers the objects it validated, not the ones that failed, and the
  // node records only success.
  EXPECT_TRUE(GetTable(*client_, "bad-utf8").status().IsCorruption());
  auto info = client_->Lookup("bad-utf8");
  ASSERT_TRUE(info.ok());
  EXPECT_FALSE(info->arrow_validated);
}

// One string column of one 24 MiB chunk is validated in slices of its rows, on every
// core: damage at either end, or where two slices meet, is found all the same.
TEST_F(ArrowTest, ALargeSingleChunkIsValidatedWholeInSlices) {
  constexpr int64_t kValue = 1024, kRows = 24 * 1024;
  auto make = [&](const std::function<void(int32_t*, uint8_t*)>& damage) {
    auto offsets = *arrow::AllocateBuffer((kRows + 1) * 4);
    auto* o = reinterpret_cast<int32_t*>(offsets->mutable_data());
    for (int64_t i = 0; i <= kRows; ++i) o[i] = static_cast<int32_t>(i * kValue);
    auto data = *arrow::AllocateBuffer(kRows * kValue);
    std::memset(data->mutable_data(), 'a', static_cast<size_t>(data->size()));
    damage(o, data->mutable_data());
    auto array = std::make_shared<arrow::StringArray>(kRows, std::move(offsets), std::move(data));
    return arrow::Table::Make(arrow::schema({arrow::field("s", arrow::utf8())}), {array});
  };
  auto table = make([](int32_t*, uint8_t*) {});
  ASSERT_TRUE(PutTable(*client_, "single/valid", *table).ok());
  auto info = client_->Lookup("single/valid");
  ASSERT_TRUE(info.ok());
  EXPECT_TRUE(info->arrow_validated);
  ASSERT_TRUE(GetTable(*client_, "single/valid").ok());

  struct Damage {
    std::string name;
    std::function<void(int32_t*, uint8_t*)> apply;
  };
  const std::vector<Damage> damages = {
      {"first-byte", [](int32_t*, uint8_t* d) { d[0] = 0xff; }},
      {"last-byte", [](int32_t*, uint8_t* d) { d[kRows * kValue - 1] = 0xff; }},
      {"middle-row", [](int32_t*, uint8_t* d) { d[kRows / 2 * kValue] = 0xff; }},
      {"quarter-row", [](int32_t*, uint8_t* d) { d[kRows / 4 * kValue - 1] = 0xff; }},
      {"offsets-at-middle", [](int32_t* o, uint8_t*) { o[kRows / 2] = o[kRows / 2 + 1] + 1; }},
  };
  for (const auto& damage : damages) {
    const std::string key = "single/" + damage.name;
    ASSERT_TRUE(PutTable(*client_, key, *make(damage.apply)).ok()) << damage.name;
    auto lookup = client_->Lookup(key);
    ASSERT_TRUE(lookup.ok());
    EXPECT_FALSE(lookup->arrow_validated) << damage.name;
    auto got = GetTable(*client_, key);
    EXPECT_TRUE(got.status().IsCorruption()) << damage.name << ": " << got.status().ToString();
    EXPECT_NE(got.status().message().find("column 0 chunk 0"), std::string::npos) << got.status().ToString();
  }
}

TEST_F(HostileDescriptorTest, RandomDamageNeverCrashes) {
  // Flip random words of the descriptor tables: every outcome is OK or an error.
  std::mt19937_64 rng(20261121);
  for (int round = 0; round < 200; ++round) {
    Status s = GetForged("fuzz/" + std::to_string(round), [&](ArrowDescriptor& d) {
      auto* arrays = reinterpret_cast<uint64_t*>(d.arrays.data());
      auto* buffers = reinterpret_cast<uint64_t*>(d.buffers.data());
      size_t na = d.arrays.size() * sizeof(ArrowArrayLayout) / 8, nb = d.buffers.size() * sizeof(ArrowBufferLayout) / 8;
      for (int k = 0; k < 2; ++k) {
        uint64_t value = rng() % 4 == 0 ? rng() : rng() % 64;
        if (rng() % 2) arrays[rng() % na] = value; else buffers[rng() % nb] = value;
      }
    });
    EXPECT_TRUE(s.ok() || s.IsCorruption()) << s.ToString();
  }
}

}  // namespace
}  // namespace csm
