// csm_bench: the foundation's benchmarks, each against its peer in the same run.
//
//   produce   commit handoff objects (64 B, 1 MiB, 1 GiB) from this process
//   handoff   in another process: Get latency of those objects (first Get of each, and
//             repeated Gets), beside one csmd socket round trip (what Plasma/Ray-style
//             stores pay per get at least)
//   build     1M-key map<int, vector<string>>: csm::allocator in the heap vs
//             std::allocator in private memory (measured before connecting, while the
//             process is single-threaded: glibc malloc's best case)
//   alloc     small allocations: csm::allocator vs glibc malloc
//
// scripts/run-bench starts a node and runs them all; docs/benchmarks.md has results.
#include <malloc.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "csm/client.h"
#include "csm/protocol/protocol.h"
#include "csm/os/unix_socket.h"
#include "stats.h"
#include "workload.h"

namespace {

using namespace csm::bench;
using Bytes = csm::vector<uint8_t>;

int Fail(const csm::Status& s) {
  std::fprintf(stderr, "csm_bench: %s\n", s.ToString().c_str());
  return 1;
}

struct SizeClass {
  const char* name;
  uint64_t bytes;
  int objects;
};
const SizeClass kSizes[] = {{"64B", 64, 200}, {"1MiB", 1 << 20, 100}, {"1GiB", 1ULL << 30, 3}};

std::string Key(const SizeClass& s, int i) { return std::string("handoff/") + s.name + "/" + std::to_string(i); }

int Produce(csm::Client& c) {
  for (const auto& s : kSizes) {
    for (int i = 0; i < s.objects; ++i) {
      auto b = c.NewBuilder();
      if (!b.ok()) return Fail(b.status());
      auto v = b->New<Bytes>();
      if (!v.ok()) return Fail(v.status());
      csm::Status st = b->Populate([&] { (*v)->assign(s.bytes - sizeof(Bytes), uint8_t(i)); });
      if (st.ok()) st = b->Commit(Key(s, i));
      if (!st.ok()) return Fail(st);
    }
  }
  std::printf("produced handoff objects\n");
  return 0;
}

// One request/reply with csmd that does no work (Stat of a missing key).
double SocketRoundTrip(const std::string& socket) {
  auto sock = csm::os::ConnectUnix(socket);
  csm::protocol::WireWriter hello(csm::protocol::MessageType::kHello);
  hello.Put(csm::protocol::BuildFingerprint()).Put(csm::DefaultConfig().window);
  (void)csm::os::SendMessage(sock->get(), hello.bytes());
  (void)csm::os::ReceiveMessage(sock->get(), 5000);
  csm::protocol::WireWriter stat(csm::protocol::MessageType::kStat);
  stat.PutString("no-such-key");
  std::vector<double> t;
  for (int i = 0; i < 2000; ++i) {
    auto a = Clock::now();
    (void)csm::os::SendMessage(sock->get(), stat.bytes());
    (void)csm::os::ReceiveMessage(sock->get(), 5000);
    t.push_back(Seconds(a, Clock::now()));
  }
  return Summarize(t).p50;
}

int Handoff(csm::Client& c) {
  double rtt = SocketRoundTrip(c.config().socket_path);
  std::printf("\n== local handoff: Get latency in a consumer process (producer is another process)\n");
  std::printf("csmd socket round trip (the floor of a Plasma/Ray-style get): p50 %s\n", Human(rtt).c_str());
  std::printf("%-6s %-8s %10s %10s %10s %10s   %s\n", "size", "get", "p50", "p99", "min", "max",
              "p50 vs socket round trip");
  for (const auto& s : kSizes) {
    std::vector<double> first, repeat;
    std::vector<csm::Ref<Bytes>> keep;
    for (int i = 0; i < s.objects; ++i) {
      auto a = Clock::now();
      auto ref = c.Get<Bytes>(Key(s, i), std::chrono::seconds(60));
      first.push_back(Seconds(a, Clock::now()));
      if (!ref.ok()) return Fail(ref.status());
      if ((**ref)[0] != uint8_t(i)) return Fail(csm::Corruption("wrong bytes"));
      keep.push_back(std::move(*ref));
    }
    for (int round = 0; round < 20000; ++round) {
      int i = round % s.objects;
      auto a = Clock::now();
      auto ref = c.Get<Bytes>(Key(s, i));
      double t = Seconds(a, Clock::now());
      if (!ref.ok()) return Fail(ref.status());
      repeat.push_back(t);
    }
    for (auto [label, v] : {std::pair{"first", &first}, std::pair{"repeat", &repeat}}) {
      Summary m = Summarize(*v);
      std::printf("%-6s %-8s %10s %10s %10s %10s   %.1fx faster\n", s.name, label, Human(m.p50).c_str(),
                  Human(m.p99).c_str(), Human(m.min).c_str(), Human(m.max).c_str(), rtt / m.p50);
    }
  }
  std::printf("(first: the consumer's first Get of each object; a new arena costs one round\n"
              " trip to map it read-only. repeat: Gets of objects already mapped here.)\n");
  return 0;
}

// The private-memory baseline runs before the process connects: a single-threaded
// process, where glibc malloc takes its lock-free fast path (its best case).
std::vector<double> BuildPrivate(int keys, int rounds) {
  std::vector<double> priv;
  for (int r = 0; r < rounds; ++r) {
    auto a = Clock::now();
    auto* m = new csm::workload::StdMap();
    csm::workload::Fill(*m, keys);
    priv.push_back(Seconds(a, Clock::now()));
    delete m;
    malloc_trim(0);
  }
  return priv;
}

// Every key, every string's length and first byte: what a reader of the whole map does.
template <typename Map>
uint64_t Traverse(const Map& m) {
  uint64_t sum = 0;
  for (const auto& [k, v] : m) {
    sum += static_cast<uint64_t>(k);
    for (const auto& str : v) sum += str.size() + static_cast<unsigned char>(str[0]);
  }
  return sum;
}

struct HeapRounds {
  std::vector<double> build, commit, traverse;
  uint64_t bytes = 0;
};

// Builds the workload's map as `Map` in the heap, commits it, traverses it in place.
template <typename Map>
csm::Status BuildInHeap(csm::Client& c, int keys, const std::string& key, HeapRounds* out) {
  auto a = Clock::now();
  auto b = c.NewBuilder();
  if (!b.ok()) return b.status();
  auto m = b->New<Map>();
  CSM_RETURN_IF_ERROR(m.status());
  CSM_RETURN_IF_ERROR(b->Populate([&] { csm::workload::Fill(**m, keys); }));
  auto built = Clock::now();
  out->build.push_back(Seconds(a, built));
  out->bytes = b->bytes_used();
  CSM_RETURN_IF_ERROR(b->Commit(key));
  out->commit.push_back(Seconds(built, Clock::now()));
  auto ref = c.Get<Map>(key);
  CSM_RETURN_IF_ERROR(ref.status());
  auto t = Clock::now();
  volatile uint64_t sum = Traverse(**ref);
  (void)sum;
  out->traverse.push_back(Seconds(t, Clock::now()));
  ref->Reset();
  return c.Delete(key);
}

int Build(csm::Client& c, int keys, int rounds, const std::vector<double>& priv) {
  std::printf("\n== build cost: map<int, vector<string>> of %d keys\n", keys);
  std::vector<double> priv_after, priv_traverse;
  HeapRounds tree, flat;
  for (int r = 0; r < rounds; ++r) {
    priv_after.push_back(BuildPrivate(keys, 1)[0]);  // same process, rounds interleaved
    {
      csm::workload::StdMap m;
      csm::workload::Fill(m, keys);
      auto t = Clock::now();
      volatile uint64_t sum = Traverse(m);
      (void)sum;
      priv_traverse.push_back(Seconds(t, Clock::now()));
    }
    csm::Status s = BuildInHeap<csm::workload::HeapMap>(c, keys, "build/tree/" + std::to_string(r), &tree);
    if (s.ok()) s = BuildInHeap<csm::workload::CompactMap>(c, keys, "build/flat/" + std::to_string(r), &flat);
    if (!s.ok()) return Fail(s);
  }
  Summary h = Summarize(tree.build), f = Summarize(flat.build), p = Summarize(priv),
          k = Summarize(tree.commit), pa = Summarize(priv_after);
  std::printf("std::allocator (private, before connecting)  p50 %s  [%s .. %s]\n", Human(p.p50).c_str(), Human(p.min).c_str(), Human(p.max).c_str());
  std::printf("csm::allocator (heap)                       p50 %s  [%s .. %s]  object %s\n", Human(h.p50).c_str(),
              Human(h.min).c_str(), Human(h.max).c_str(), csm::FormatSize(tree.bytes).c_str());
  std::printf("csm::flat_map + compact containers (heap)   p50 %s  [%s .. %s]  object %s\n", Human(f.p50).c_str(),
              Human(f.min).c_str(), Human(f.max).c_str(), csm::FormatSize(flat.bytes).c_str());
  std::printf("std::allocator (private, interleaved)       p50 %s  [%s .. %s]\n", Human(pa.p50).c_str(),
              Human(pa.min).c_str(), Human(pa.max).c_str());
  std::printf("ratio csm/std (p50): %.3f vs interleaved rounds, %.3f vs before-connect rounds "
              "(target <= 1.10); compact: %.3f vs interleaved\n", h.p50 / pa.p50, h.p50 / p.p50, f.p50 / pa.p50);
  std::printf("commit (checksum + publish) p50 %s\n", Human(k.p50).c_str());
  Summary tp = Summarize(priv_traverse), tt = Summarize(tree.traverse), tf = Summarize(flat.traverse);
  std::printf("full traversal p50: std (private) %s, csm::map in place %s, csm::flat_map in place %s "
              "(flat/map %.2f); image flat/map %.2f\n",
              Human(tp.p50).c_str(), Human(tt.p50).c_str(), Human(tf.p50).c_str(), tf.p50 / tt.p50,
              static_cast<double>(flat.bytes) / static_cast<double>(tree.bytes));
  return 0;
}

std::vector<double> MallocRounds(int count, int rounds) {
  std::vector<void*> ptrs(static_cast<size_t>(count));
  std::vector<double> mal;
  for (int r = 0; r < rounds; ++r) {
    auto a = Clock::now();
    for (int i = 0; i < count; ++i) ptrs[i] = std::malloc(16 + (i % 8) * 16);
    for (int i = 0; i < count; ++i) std::free(ptrs[i]);
    mal.push_back(Seconds(a, Clock::now()));
  }
  return mal;
}

// `single` was measured before connecting (single-threaded process: malloc's best case).
int Alloc(csm::Client& c, int count, int rounds, const std::vector<double>& single) {
  std::printf("\n== small allocations: %d blocks of 16..136 bytes per round\n", count);
  std::vector<void*> ptrs(static_cast<size_t>(count));
  std::vector<double> csmv;
  std::vector<double> mal = MallocRounds(count, rounds);
  for (int r = 0; r < rounds; ++r) {
    auto b = c.NewBuilder();
    if (!b.ok()) return Fail(b.status());
    auto a = Clock::now();
    {
      auto scope = b->MakeCurrent();
      csm::allocator<char> alloc;
      for (int i = 0; i < count; ++i) ptrs[i] = alloc.allocate(16 + (i % 8) * 16);
      for (int i = count - 1; i >= 0; --i) alloc.deallocate(static_cast<char*>(ptrs[i]), 16 + (i % 8) * 16);
    }
    csmv.push_back(Seconds(a, Clock::now()));
  }
  Summary s = Summarize(single), m = Summarize(mal), k = Summarize(csmv);
  std::printf("glibc malloc+free, single-threaded process  p50 %s  (%.0f M allocs/s)\n",
              Human(s.p50).c_str(), count / s.p50 / 1e6);
  std::printf("glibc malloc+free, multi-threaded process   p50 %s  (%.0f M allocs/s)\n",
              Human(m.p50).c_str(), count / m.p50 / 1e6);
  std::printf("csm::allocator                              p50 %s  (%.0f M allocs/s)\n",
              Human(k.p50).c_str(), count / k.p50 / 1e6);
  std::printf("throughput csm/malloc %.2fx vs single-threaded, %.2fx vs multi-threaded (target >= 1.0)\n",
              s.p50 / k.p50, m.p50 / k.p50);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"csm_bench: csm foundation benchmarks"};
  app.require_subcommand(1);
  int keys = 1000000, rounds = 5, count = 4000000;
  app.add_subcommand("produce", "commit the handoff objects");
  app.add_subcommand("handoff", "Get latency of the handoff objects");
  auto* build = app.add_subcommand("build", "map build cost, heap vs private");
  build->add_option("--keys", keys);
  build->add_option("--rounds", rounds);
  auto* alloc = app.add_subcommand("alloc", "small allocation throughput");
  alloc->add_option("--count", count);
  alloc->add_option("--rounds", rounds);
  CLI11_PARSE(app, argc, argv);
  std::string cmd = app.get_subcommands()[0]->get_name();
  std::vector<double> baseline;  // measured before Connect starts the client's thread
  if (cmd == "build") baseline = BuildPrivate(keys, rounds);
  if (cmd == "alloc") baseline = MallocRounds(count, rounds);
  auto client = csm::Client::Connect();
  if (!client.ok()) return Fail(client.status());
  if (cmd == "produce") return Produce(**client);
  if (cmd == "handoff") return Handoff(**client);
  if (cmd == "build") return Build(**client, keys, rounds, baseline);
  return Alloc(**client, count, rounds, baseline);
}
