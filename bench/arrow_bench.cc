// arrow_bench: Arrow tables in the global heap against Arrow's own default pool, in one
// run (scripts/run-bench starts a csmd and runs it):
//   build    a 1 GiB table (4 int64 columns) with Arrow's builders into the heap pool vs
//            Arrow's default pool, rounds interleaved: time and ratio
//   publish  PutTable of that table (built in the heap: nothing copied): time and
//            descriptor size, for 1 GiB and for a 1 MiB table (size independence)
//   get      GetTable of the 1 GiB table in another process: first and repeated
#include <arrow/api.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "csm/arrow.h"
#include "stats.h"

namespace {

using namespace csm::bench;

int Fail(const std::string& what) {
  std::fprintf(stderr, "arrow_bench: %s\n", what.c_str());
  return 1;
}

// `rows` rows of 4 int64 columns, built with Arrow's builders from `pool`.
std::shared_ptr<arrow::Table> Build(arrow::MemoryPool* pool, int64_t rows) {
  arrow::FieldVector fields;
  arrow::ArrayVector columns;
  for (int c = 0; c < 4; ++c) {
    arrow::Int64Builder b(pool);
    if (!b.Reserve(rows).ok()) return nullptr;
    for (int64_t i = 0; i < rows; ++i) b.UnsafeAppend(i * (c + 1));
    std::shared_ptr<arrow::Array> a;
    if (!b.Finish(&a).ok()) return nullptr;
    fields.push_back(arrow::field("c" + std::to_string(c), arrow::int64()));
    columns.push_back(std::move(a));
  }
  return arrow::Table::Make(arrow::schema(fields), columns);
}

int BuildAndPublish(csm::Client& client, int rounds, int64_t rows) {
  std::vector<double> heap, std_pool, publish, publish_small;
  uint64_t descriptor = 0, descriptor_small = 0;
  for (int r = 0; r < rounds; ++r) {
    {  // Arrow's default pool (jemalloc or mimalloc in the wheel)
      auto t0 = Clock::now();
      auto t = Build(arrow::default_memory_pool(), rows);
      if (t == nullptr) return Fail("build");
      std_pool.push_back(Seconds(t0, Clock::now()));
    }
    {
      auto builder = client.NewBuilder();
      if (!builder.ok()) return Fail(builder.status().ToString());
      csm::HeapMemoryPool pool(&*builder);
      auto t0 = Clock::now();
      auto t = Build(&pool, rows);
      if (t == nullptr) return Fail("build in the heap");
      heap.push_back(Seconds(t0, Clock::now()));
      std::string key = "bench/arrow/" + std::to_string(r);
      auto p0 = Clock::now();
      auto put = csm::PutTable(*builder, key, *t);
      publish.push_back(Seconds(p0, Clock::now()));
      if (!put.ok()) return Fail(put.status().ToString());
      if (put->bytes_copied != 0) return Fail("the heap-built table was copied");
      descriptor = put->descriptor_bytes;
      if (r + 1 < rounds && !client.Delete(key).ok()) return Fail("delete");
    }
    {
      auto builder = client.NewBuilder();
      csm::HeapMemoryPool pool(&*builder);
      auto t = Build(&pool, 32 << 10);  // 1 MiB
      // Timed once the GiB dropped just before is handed back (its unmapping takes this
      // process and csmd milliseconds here), so the row shows publish, not that.
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      auto p0 = Clock::now();
      auto put = csm::PutTable(*builder, "bench/arrow-small/" + std::to_string(r), *t);
      publish_small.push_back(Seconds(p0, Clock::now()));
      if (!put.ok()) return Fail(put.status().ToString());
      descriptor_small = put->descriptor_bytes;
    }
  }
  // The first round of each pool meets memory this process (and, on a VM, the guest)
  // never touched; later rounds show what a process that keeps building pays: Arrow's
  // pool reuses what it freed, csmd hands back the arenas of deleted tables (zeroed).
  std::printf("build 1 GiB table (4 x int64, %lld rows), %d rounds interleaved:\n",
              (long long)rows, rounds);
  std::printf("  first round   heap pool %s, default pool %s\n", Human(heap[0]).c_str(),
              Human(std_pool[0]).c_str());
  if (rounds > 1) {
    auto h = Summarize({heap.begin() + 1, heap.end()});
    auto s = Summarize({std_pool.begin() + 1, std_pool.end()});
    std::printf("  later rounds  heap pool     p50 %s (min %s, max %s)\n", Human(h.p50).c_str(),
                Human(h.min).c_str(), Human(h.max).c_str());
    std::printf("                default pool  p50 %s (min %s, max %s)   (%s)\n",
                Human(s.p50).c_str(), Human(s.min).c_str(), Human(s.max).c_str(),
                arrow::default_memory_pool()->backend_name().c_str());
    std::printf("                heap / default = %.3f\n", h.p50 / s.p50);
  }
  auto p = Summarize(publish), ps = Summarize(publish_small);
  std::printf("publish (PutTable + commit, nothing copied):\n");
  std::printf("  1 GiB table   p50 %s (max %s), descriptor %llu bytes\n", Human(p.p50).c_str(), Human(p.max).c_str(),
              (unsigned long long)descriptor);
  std::printf("  1 MiB table   p50 %s (max %s), descriptor %llu bytes\n", Human(ps.p50).c_str(),
              Human(ps.max).c_str(), (unsigned long long)descriptor_small);
  std::fflush(stdout);
  return 0;
}

// In a process of its own: the first GetTable, then `rounds` more (each a fresh Table).
int Get(csm::Client& client, const std::string& key, int rounds) {
  auto t0 = Clock::now();
  auto first = csm::GetTable(client, key);
  double first_s = Seconds(t0, Clock::now());
  if (!first.ok()) return Fail(first.status().ToString());
  std::vector<double> again;
  for (int i = 0; i < rounds; ++i) {
    auto a = Clock::now();
    auto t = csm::GetTable(client, key);
    again.push_back(Seconds(a, Clock::now()));
    if (!t.ok()) return Fail(t.status().ToString());
  }
  auto g = Summarize(again);
  std::printf("get the 1 GiB table in another process (%lld rows, buffers in place, validated):\n",
              (long long)(*first)->num_rows());
  std::printf("  first GetTable %s; repeated p50 %s (p99 %s, %zu gets)\n", Human(first_s).c_str(),
              Human(g.p50).c_str(), Human(g.p99).c_str(), g.n);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"arrow_bench: Arrow tables in the csm global heap"};
  app.require_subcommand(1);
  int rounds = 5;
  int64_t rows = (1LL << 30) / 32;  // 4 int64 columns: 1 GiB
  std::string key;
  auto* build = app.add_subcommand("build", "build and publish");
  build->add_option("--rounds", rounds);
  build->add_option("--rows", rows);
  auto* get = app.add_subcommand("get", "get in this process");
  get->add_option("--key", key)->required();
  get->add_option("--rounds", rounds);
  CLI11_PARSE(app, argc, argv);
  auto client = csm::Client::Connect();
  if (!client.ok()) return Fail(client.status().ToString());
  if (build->parsed()) return BuildAndPublish(**client, rounds, rows);
  return Get(**client, key, rounds * 200);
}
