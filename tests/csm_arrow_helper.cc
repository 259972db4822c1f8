// csm_arrow_helper: the other process of the Arrow tests. Attaches to the node named by
// CSM_SOCKET.
//   produce KEY ROWS         build a table straight into the heap (HeapMemoryPool), put it
//   append KEY FIRST ROWS    build rows FIRST.. the same way, append them as the next part
//   consume KEY ROWS         get the table, check every row, print where its first values
//                            live and which nodes its parts are on
//   produce-wide KEY ROWS    four int64 columns (column c, row i: i * (c + 1))
//   sum-lazily KEY ROWS      get that table on demand (docs/lazy.md), sum column 0 only
//   prefetch-sum KEY ROWS    the same, csm::Prefetch of column 0 first
#include <arrow/api.h>

#include <nlohmann/json.hpp>

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

// Row i: id i*7, name "row-i" or null every fifth row.
int Produce(csm::Client& client, const std::string& key, int64_t first, int64_t rows, bool append) {
  auto builder = client.NewBuilder();
  if (!builder.ok()) return Fail(builder.status().ToString());
  csm::HeapMemoryPool pool(&*builder);
  arrow::Int64Builder ids(&pool);
  arrow::StringBuilder names(&pool);
  for (int64_t i = first; i < first + rows; ++i) {
    if (!ids.Append(i * 7).ok() || !(i % 5 == 0 ? names.AppendNull() : names.Append(Name(i))).ok()) {
      return Fail("append");
    }
  }
  std::shared_ptr<arrow::Array> a, b;
  if (!ids.Finish(&a).ok() || !names.Finish(&b).ok()) return Fail("finish");
  auto table = arrow::Table::Make(
      arrow::schema({arrow::field("id", arrow::int64()), arrow::field("name", arrow::utf8())}), {a, b});
  csm::PutStats put;
  std::string committed = key;
  if (append) {
    auto appended = csm::AppendTable(client, *builder, key, *table);
    if (!appended.ok()) return Fail(appended.status().ToString());
    put = *appended;
    committed = appended->part_key;
  } else {
    auto whole = csm::PutTable(*builder, key, *table);
    if (!whole.ok()) return Fail(whole.status().ToString());
    put = *whole;
  }
  std::printf("committed key=%s values=0x%" PRIxPTR " copied=%" PRIu64 "\n", committed.c_str(),
              reinterpret_cast<uintptr_t>(a->data()->buffers[1]->data()), put.bytes_copied);
  std::fflush(stdout);
  return 0;
}

int Consume(csm::Client& client, const std::string& key, int64_t rows) {
  auto table = csm::GetTable(client, key, std::chrono::seconds(30));
  if (!table.ok()) return Fail(table.status().ToString());
  if ((*table)->num_rows() != rows) return Fail("rows " + std::to_string((*table)->num_rows()));
  // Row by row across the chunks (a table of parts has one or more chunks per part).
  const auto& id_column = *(*table)->column(0);
  const auto& name_column = *(*table)->column(1);
  if (id_column.num_chunks() != name_column.num_chunks()) return Fail("columns chunked differently");
  int64_t i = 0;
  for (int c = 0; c < id_column.num_chunks(); ++c) {
    const auto& ids = static_cast<const arrow::Int64Array&>(*id_column.chunk(c));
    const auto& names = static_cast<const arrow::StringArray&>(*name_column.chunk(c));
    if (ids.length() != names.length()) return Fail("chunk " + std::to_string(c) + " lengths differ");
    for (int64_t j = 0; j < ids.length(); ++j, ++i) {
      if (ids.Value(j) != i * 7) return Fail("id of row " + std::to_string(i));
      if ((i % 5 == 0) != names.IsNull(j) || (i % 5 != 0 && names.GetView(j) != Name(i))) {
        return Fail("name of row " + std::to_string(i));
      }
    }
  }
  auto parts = csm::TableParts(client, key);
  if (!parts.ok()) return Fail(parts.status().ToString());
  std::string owners;
  for (const auto& p : *parts) owners += (owners.empty() ? "" : ",") + std::to_string(p.owner_node);
  std::printf("verified rows=%" PRId64 " values=0x%" PRIxPTR " chunks=%d owners=%s\n", rows,
              reinterpret_cast<uintptr_t>(id_column.chunk(0)->data()->buffers[1]->data()),
              id_column.num_chunks(), owners.c_str());
  std::fflush(stdout);
  return 0;
}

int ProduceWide(csm::Client& client, const std::string& key, int64_t rows) {
  auto builder = client.NewBuilder();
  if (!builder.ok()) return Fail(builder.status().ToString());
  csm::HeapMemoryPool pool(&*builder);
  std::vector<std::shared_ptr<arrow::Array>> columns;
  std::vector<std::shared_ptr<arrow::Field>> fields;
  for (int c = 0; c < 4; ++c) {
    arrow::Int64Builder b(&pool);
    if (!b.Reserve(rows).ok()) return Fail("reserve");
    for (int64_t i = 0; i < rows; ++i) b.UnsafeAppend(i * (c + 1));
    std::shared_ptr<arrow::Array> a;
    if (!b.Finish(&a).ok()) return Fail("finish");
    columns.push_back(a);
    fields.push_back(arrow::field("c" + std::to_string(c), arrow::int64()));
  }
  auto put = csm::PutTable(*builder, key, *arrow::Table::Make(arrow::schema(fields), columns));
  if (!put.ok()) return Fail(put.status().ToString());
  std::printf("committed\n");
  std::fflush(stdout);
  return 0;
}

// The page faults this node's lazy copies served so far (csm info).
uint64_t LazyFaults(csm::Client& client) {
  auto info = client.InfoJson();
  return info.ok() ? nlohmann::json::parse(*info)["lazy"].value("faults", uint64_t{0}) : 0;
}

// `prefetch`: the column is brought with csm::Prefetch first, and the sum then takes no
// page fault (it prints how many it took).
int SumLazily(csm::Client& client, const std::string& key, int64_t rows, bool prefetch) {
  auto table = csm::GetTable(client, key, csm::GetOptions{std::chrono::seconds(20), csm::Fetch::kOnDemand});
  if (!table.ok()) return Fail(table.status().ToString());
  uint64_t faults = 0;
  if (prefetch) {
    csm::Status s = csm::Prefetch(client, *(*table)->column(0));
    if (!s.ok()) return Fail(s.ToString());
    faults = LazyFaults(client);
  }
  int64_t sum = 0, n = 0;
  for (const auto& chunk : (*table)->column(0)->chunks()) {
    const auto& ints = static_cast<const arrow::Int64Array&>(*chunk);
    for (int64_t j = 0; j < ints.length(); ++j) sum += ints.Value(j);
    n += ints.length();
  }
  if (n != rows || sum != rows * (rows - 1) / 2) return Fail("column 0 sums to " + std::to_string(sum));
  if (prefetch) std::printf("faults while summing=%" PRIu64 "\n", LazyFaults(client) - faults);
  std::printf("sum=%" PRId64 "\n", sum);
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (argc != (mode == "append" ? 5 : 4)) {
    return Fail("usage: csm_arrow_helper produce KEY ROWS | append KEY FIRST ROWS | consume KEY ROWS");
  }
  auto client = csm::Client::Connect();
  if (!client.ok()) return Fail(client.status().ToString());
  const int64_t rows = std::atoll(argv[argc - 1]);
  if (mode == "produce") return Produce(**client, argv[2], 0, rows, false);
  if (mode == "append") return Produce(**client, argv[2], std::atoll(argv[3]), rows, true);
  if (mode == "consume") return Consume(**client, argv[2], rows);
  if (mode == "produce-wide") return ProduceWide(**client, argv[2], rows);
  if (mode == "sum-lazily") return SumLazily(**client, argv[2], rows, false);
  if (mode == "prefetch-sum") return SumLazily(**client, argv[2], rows, true);
  return Fail("unknown mode " + mode);
}
