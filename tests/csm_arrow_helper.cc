// csm_arrow_helper: the other process of the Arrow tests. Attaches to the node named by
// CSM_SOCKET.
//   produce KEY ROWS   build a table straight into the heap (HeapMemoryPool), put it
//   consume KEY ROWS   get the table, check every row, print where its values live
#include <arrow/api.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "csm/arrow.h"

namespace {

int Fail(const std::string& what) {
  std::printf("error: %s\n", what.c_str());
  std::fflush(stdout);
  return 1;
}

std::string Name(int64_t i) { return "row-" + std::to_string(i); }

int Produce(csm::Client& client, const std::string& key, int64_t rows) {
  auto builder = client.NewBuilder();
  if (!builder.ok()) return Fail(builder.status().ToString());
  csm::HeapMemoryPool pool(&*builder);
  arrow::Int64Builder ids(&pool);
  arrow::StringBuilder names(&pool);
  for (int64_t i = 0; i < rows; ++i) {
    if (!ids.Append(i * 7).ok() || !(i % 5 == 0 ? names.AppendNull() : names.Append(Name(i))).ok()) {
      return Fail("append");
    }
  }
  std::shared_ptr<arrow::Array> a, b;
  if (!ids.Finish(&a).ok() || !names.Finish(&b).ok()) return Fail("finish");
  auto table = arrow::Table::Make(
      arrow::schema({arrow::field("id", arrow::int64()), arrow::field("name", arrow::utf8())}), {a, b});
  auto put = csm::PutTable(*builder, key, *table);
  if (!put.ok()) return Fail(put.status().ToString());
  std::printf("committed values=0x%" PRIxPTR " copied=%" PRIu64 "\n",
              reinterpret_cast<uintptr_t>(a->data()->buffers[1]->data()), put->bytes_copied);
  std::fflush(stdout);
  return 0;
}

int Consume(csm::Client& client, const std::string& key, int64_t rows) {
  auto table = csm::GetTable(client, key, std::chrono::seconds(30));
  if (!table.ok()) return Fail(table.status().ToString());
  auto combined = (*table)->CombineChunksToBatch();
  if (!combined.ok()) return Fail(combined.status().ToString());
  if ((*table)->num_rows() != rows) return Fail("rows " + std::to_string((*table)->num_rows()));
  const auto& ids = static_cast<const arrow::Int64Array&>(*(*table)->column(0)->chunk(0));
  const auto& names = static_cast<const arrow::StringArray&>(*(*table)->column(1)->chunk(0));
  for (int64_t i = 0; i < rows; ++i) {
    if (ids.Value(i) != i * 7) return Fail("id of row " + std::to_string(i));
    if ((i % 5 == 0) != names.IsNull(i) || (i % 5 != 0 && names.GetView(i) != Name(i))) {
      return Fail("name of row " + std::to_string(i));
    }
  }
  std::printf("verified rows=%" PRId64 " values=0x%" PRIxPTR "\n", rows,
              reinterpret_cast<uintptr_t>(ids.data()->buffers[1]->data()));
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) return Fail("usage: csm_arrow_helper produce|consume KEY ROWS");
  auto client = csm::Client::Connect();
  if (!client.ok()) return Fail(client.status().ToString());
  std::string mode = argv[1];
  int64_t rows = std::atoll(argv[3]);
  if (mode == "produce") return Produce(**client, argv[2], rows);
  if (mode == "consume") return Consume(**client, argv[2], rows);
  return Fail("unknown mode " + mode);
}
