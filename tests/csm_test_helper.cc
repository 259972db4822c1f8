// csm_test_helper: the "other process" of the multi-process tests. Each subcommand
// attaches to the node named by CSM_SOCKET, does one thing and reports on stdout.
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "csm/client.h"
#include "csm/os/memory.h"
#include "workload.h"

namespace {

using csm::workload::HeapMap;
using Bytes = csm::vector<uint8_t>;

int Fail(const csm::Status& s) {
  std::printf("error: %s\n", s.ToString().c_str());
  std::fflush(stdout);
  return 1;
}

// "<perms> <inode> <path>" of the mapping that holds addr.
std::string Mapping(uint64_t addr) {
  std::string line = csm::os::MappingAt(addr);
  char perms[8] = {0}, path[256] = {0};
  unsigned long long lo, hi, offset, inode;
  char dev[16];
  std::sscanf(line.c_str(), "%llx-%llx %7s %llx %15s %llu %255[^\n]", &lo, &hi, perms,
              &offset, dev, &inode, path);
  return std::string(perms) + " inode=" + std::to_string(inode) + " path=" + path;
}

void Say(const std::string& s) {
  std::printf("%s\n", s.c_str());
  std::fflush(stdout);
}

// Builds a map of n keys and commits it under `key`; its root stays in this process's
// (writable) arena mapping.
// `copies`: Builder::SetCopies (0: the node's default).
csm::Result<HeapMap*> Produce(csm::Client& c, const std::string& key, long n, uint32_t copies = 0) {
  CSM_ASSIGN_OR_RETURN(auto b, c.NewBuilder());
  CSM_ASSIGN_OR_RETURN(HeapMap * m, b.New<HeapMap>());
  CSM_RETURN_IF_ERROR(b.Populate([&] { csm::workload::Fill(*m, static_cast<int32_t>(n)); }));
  b.SetCopies(copies);
  CSM_RETURN_IF_ERROR(b.Commit(key));
  return m;
}

}  // namespace

// Builds a T with `fill` and commits it under `key`.
template <typename T, typename Fill>
csm::Status BuildAndCommit(csm::Client& c, const std::string& key, Fill fill) {
  auto b = c.NewBuilder();
  CSM_RETURN_IF_ERROR(b.status());
  auto root = b->New<T>();
  CSM_RETURN_IF_ERROR(root.status());
  CSM_RETURN_IF_ERROR(b->Populate([&] { fill(**root); }));
  return b->Commit(key);
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: csm_test_helper CMD KEY [N]\n");
    return 2;
  }
  // A page of a lazy copy that never came raises SIGBUS (docs/lazy.md); the tests expect
  // this process to die of it, also under a sanitizer that would report it and exit.
  ::signal(SIGBUS, [](int) { ::signal(SIGBUS, SIG_DFL); });  // the access faults again, fatally
  std::string cmd = argv[1], key = argv[2];
  long n = argc > 3 ? std::atol(argv[3]) : 0;
  long count = argc > 4 ? std::atol(argv[4]) : 0;  // a second number, for the commands that take one
  auto client = csm::Client::Connect();
  if (!client.ok()) return Fail(client.status());
  csm::Client& c = **client;

  if (cmd == "produce") {  // build a map of n keys and commit it (count: copies, 0: the node's default)
    auto map = Produce(c, key, n, static_cast<uint32_t>(count));
    if (!map.ok()) return Fail(map.status());
    char buf[64];
    std::snprintf(buf, sizeof(buf), "root=0x%" PRIx64 " ", reinterpret_cast<uint64_t>(*map));
    Say(std::string("committed ") + buf + Mapping(reinterpret_cast<uint64_t>(*map)));
    return 0;
  }
  if (cmd == "consume-keys") {  // KEY/0 .. KEY/(count-1), maps of n keys: get each, verify every entry and its checksum
    for (long i = 0; i < count; ++i) {
      const std::string k = key + "/" + std::to_string(i);
      auto ref = c.Get<HeapMap>(k, std::chrono::seconds(30));
      if (!ref.ok()) return Fail(ref.status().WithContext(k));
      std::string problem = csm::workload::Verify(**ref, static_cast<int32_t>(n));
      if (!problem.empty()) return Fail(csm::Corruption(k + ": " + problem));
      csm::Status s = ref->Verify();
      if (!s.ok()) return Fail(s.WithContext(k));
      Say("got " + std::to_string(i));
    }
    Say("verified all");
    return 0;
  }
  if (cmd == "produce-damaged") {  // commit a map of n keys, then change one of its bytes
    auto m = Produce(c, key, n);
    if (!m.ok()) return Fail(m.status());
    // A committed object is read-only in its producer too (sealed): made writable again
    // here, as only a deliberate mprotect could, so that the bytes csmd now serves no
    // longer match the checksum taken at commit (what a bad DIMM would do).
    csm::string& value = (*m)->rbegin()->second.back();
    const uint64_t page = reinterpret_cast<uint64_t>(value.data()) & ~uint64_t{4095};
    if (::mprotect(reinterpret_cast<void*>(page), 4096, PROT_READ | PROT_WRITE) != 0) return Fail(csm::Internal("mprotect"));
    value[0] = static_cast<char>(value[0] ^ 0x20);
    Say("damaged");
    return 0;
  }
  if (cmd == "write-after-commit") {  // commit a map of n keys, then write into it (faults)
    auto m = Produce(c, key, n);
    if (!m.ok()) return Fail(m.status());
    Say("committed");
    csm::string& value = (*m)->rbegin()->second.back();
    value[0] = static_cast<char>(value[0] ^ 0x20);  // SIGSEGV here: the object is sealed
    Say("wrote into a committed object");
    return 0;
  }
  if (cmd == "produce-book") {  // unordered_map<string, vector<Trade>> with n venues
    csm::Status s = BuildAndCommit<csm::workload::TradeBook>(
        c, key, [&](auto& book) { csm::workload::FillBook(book, static_cast<int>(n)); });
    if (!s.ok()) return Fail(s);
    Say("committed");
    return 0;
  }
  if (cmd == "produce-compact") {  // the workload's map of n keys in compact containers
    csm::Status s = BuildAndCommit<csm::workload::CompactMap>(
        c, key, [&](auto& m) { csm::workload::Fill(m, static_cast<int32_t>(n)); });
    if (!s.ok()) return Fail(s);
    Say("committed");
    return 0;
  }
  if (cmd == "consume-compact") {
    auto ref = c.Get<csm::workload::CompactMap>(key, std::chrono::seconds(20));
    if (!ref.ok()) return Fail(ref.status());
    std::string problem = csm::workload::Verify(**ref, static_cast<int32_t>(n));
    if (problem.empty()) {  // a lookup in place, no allocation in the reader
      auto it = (*ref)->find(static_cast<int32_t>(n / 2));
      if (it == (*ref)->end() || it->second.size() != static_cast<size_t>(csm::workload::ValuesFor(n / 2))) {
        problem = "find of the middle key failed";
      }
    }
    if (!problem.empty()) return Fail(csm::Corruption(problem));
    Say("verified size=" + std::to_string(ref->info().size));
    return 0;
  }
  if (cmd == "consume-book") {
    auto ref = c.Get<csm::workload::TradeBook>(key, std::chrono::seconds(20));
    if (!ref.ok()) return Fail(ref.status());
    std::string problem = csm::workload::VerifyBook(**ref, static_cast<int>(n));
    if (!problem.empty()) return Fail(csm::Corruption(problem));
    Say("verified");
    return 0;
  }
  if (cmd == "consume") {  // get the map, verify every entry
    auto ref = c.Get<HeapMap>(key, std::chrono::seconds(20));
    if (!ref.ok()) return Fail(ref.status());
    std::string problem = csm::workload::Verify(**ref, static_cast<int32_t>(n));
    if (!problem.empty()) return Fail(csm::Corruption(problem));
    csm::Status s = ref->Verify();
    if (!s.ok()) return Fail(s);
    char buf[64];
    std::snprintf(buf, sizeof(buf), "root=0x%" PRIx64 " ", ref->info().root);
    Say(std::string("verified ") + buf + Mapping(ref->info().root));
    return 0;
  }
  if (cmd == "small-and-stay") {  // commit n small objects KEY/i, then stay until killed
    for (long i = 0; i < n; ++i) {
      csm::Status s = BuildAndCommit<csm::workload::SmallObject>(
          c, key + "/" + std::to_string(i), [&](csm::workload::SmallObject& o) { csm::workload::FillSmall(o, i); });
      if (!s.ok()) return Fail(s);
    }
    Say("committed");
    std::this_thread::sleep_for(std::chrono::minutes(5));
    return 0;
  }
  if (cmd == "attach") {  // stay attached until killed (5 minutes at most)
    Say("attached");
    std::this_thread::sleep_for(std::chrono::minutes(5));
    return 0;
  }
  if (cmd == "pin") {  // hold a pin until killed
    auto ref = c.Get<HeapMap>(key, std::chrono::seconds(20));
    if (!ref.ok()) return Fail(ref.status());
    Say("pinned");
    std::this_thread::sleep_for(std::chrono::minutes(5));
    return 0;
  }
  if (cmd == "build-forever") {  // allocate n MiB, report, then wait to be killed
    auto b = c.NewBuilder();
    if (!b.ok()) return Fail(b.status());
    auto v = b->New<csm::vector<Bytes>>();
    if (!v.ok()) return Fail(v.status());
    csm::Status s = b->Populate([&] {
      for (long i = 0; i < n; ++i) (*v)->emplace_back(1 << 20, uint8_t(i));
    });
    if (!s.ok()) return Fail(s);
    Say("building");
    std::this_thread::sleep_for(std::chrono::minutes(5));
    return 0;
  }
  if (cmd == "build-then-commit") {  // build n MiB, report, commit once $CSM_TEST_GO exists
    auto b = c.NewBuilder();
    if (!b.ok()) return Fail(b.status());
    auto v = b->New<Bytes>();
    if (!v.ok()) return Fail(v.status());
    csm::Status s = b->Populate([&] { (*v)->resize(static_cast<size_t>(n) << 20, 7); });
    if (!s.ok()) return Fail(s);
    Say("building");
    const char* go = std::getenv("CSM_TEST_GO");
    for (int i = 0; go != nullptr && i < 6000 && ::access(go, F_OK) != 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    s = b->Commit(key);
    if (!s.ok()) return Fail(s);
    Say("committed");
    return 0;
  }
  if (cmd == "big") {  // one object of n MiB in a single extent
    auto b = c.NewBuilder();
    if (!b.ok()) return Fail(b.status());
    auto v = b->New<Bytes>();
    if (!v.ok()) return Fail(v.status());
    uint64_t bytes = static_cast<uint64_t>(n) << 20;
    csm::Status s = b->Populate([&] {
      (*v)->resize(bytes);
      for (uint64_t i = 0; i < bytes; i += 4096) (**v)[i] = static_cast<uint8_t>(i >> 12);
      (**v)[bytes - 1] = 0x5a;
    });
    if (s.ok()) s = b->Commit(key);
    if (!s.ok()) return Fail(s);
    Say("committed");
    return 0;
  }
  if (cmd == "check-big") {
    auto ref = c.Get<Bytes>(key, std::chrono::seconds(20));
    if (!ref.ok()) return Fail(ref.status());
    const Bytes& v = **ref;
    uint64_t bytes = static_cast<uint64_t>(n) << 20;
    if (v.size() != bytes) return Fail(csm::Corruption("size " + std::to_string(v.size())));
    for (uint64_t i = 0; i < bytes; i += 4096) {
      if (v[i] != static_cast<uint8_t>(i >> 12)) return Fail(csm::Corruption("byte " + std::to_string(i)));
    }
    if (v[bytes - 1] != 0x5a) return Fail(csm::Corruption("last byte"));
    Say("verified size=" + std::to_string(v.size()));
    return 0;
  }
  // Lazy Gets (docs/lazy.md). MODE: whole, lazy or on-demand (the argument after N).
  const std::string mode = argc > 4 ? argv[4] : "lazy";
  const csm::GetOptions lazily{std::chrono::seconds(20), mode == "whole"       ? csm::Fetch::kWhole
                                                         : mode == "on-demand" ? csm::Fetch::kOnDemand
                                                                               : csm::Fetch::kLazy};
  if (cmd == "consume-lazy") {  // KEY N MODE: the map of n keys, every entry and its checksum
    auto ref = c.Get<HeapMap>(key, lazily);
    if (!ref.ok()) return Fail(ref.status());
    std::string problem = csm::workload::Verify(**ref, static_cast<int32_t>(n));
    if (!problem.empty()) return Fail(csm::Corruption(problem));
    csm::Status s = ref->Verify();
    if (!s.ok()) return Fail(s);
    Say("verified");
    return 0;
  }
  if (cmd == "check-big-lazy") {  // KEY N MODE: what "big" committed, every page and its checksum
    auto ref = c.Get<Bytes>(key, lazily);
    if (!ref.ok()) return Fail(ref.status());
    const Bytes& v = **ref;
    const uint64_t bytes = static_cast<uint64_t>(n) << 20;
    if (v.size() != bytes) return Fail(csm::Corruption("size " + std::to_string(v.size())));
    for (uint64_t i = 0; i < bytes; i += 4096) {
      if (v[i] != static_cast<uint8_t>(i >> 12)) return Fail(csm::Corruption("byte " + std::to_string(i)));
    }
    if (v[bytes - 1] != 0x5a) return Fail(csm::Corruption("last byte"));
    csm::Status s = ref->Verify();
    if (!s.ok()) return Fail(s);
    Say("verified");
    return 0;
  }
  if (cmd == "touch-lazy") {  // KEY N MODE: reads one byte of each of its first, middle and last MiB
    auto ref = c.Get<Bytes>(key, lazily);
    if (!ref.ok()) return Fail(ref.status());
    const Bytes& v = **ref;
    const uint64_t bytes = static_cast<uint64_t>(n) << 20;
    for (uint64_t i : {uint64_t{0}, bytes / 2 / 4096 * 4096, (bytes - 1) / 4096 * 4096}) {
      if (v[i] != static_cast<uint8_t>(i >> 12)) return Fail(csm::Corruption("byte " + std::to_string(i)));
    }
    Say("touched");
    return 0;
  }
  if (cmd == "prefetch-lazy") {  // KEY N MODE: asks for its last 2 MiB first (a hint), then reads them
    auto ref = c.Get<Bytes>(key, lazily);
    if (!ref.ok()) return Fail(ref.status());
    const Bytes& v = **ref;
    const uint64_t bytes = static_cast<uint64_t>(n) << 20;
    csm::Status s = c.Prefetch(key, v.data() + bytes - (2 << 20), 2 << 20);
    if (!s.ok()) return Fail(s);
    Say("prefetched");
    for (uint64_t i = bytes - (2 << 20); i < bytes; i += 4096) {
      if (v[i] != static_cast<uint8_t>(i >> 12)) return Fail(csm::Corruption("byte " + std::to_string(i)));
    }
    Say("read");
    return 0;
  }
  if (cmd == "read-lazy-after-go") {  // KEY N MODE: reads page 0, says so, reads all once $CSM_TEST_GO exists
    auto ref = c.Get<Bytes>(key, lazily);
    if (!ref.ok()) return Fail(ref.status());
    const Bytes& v = **ref;
    if (v[0] != 0) return Fail(csm::Corruption("byte 0"));
    Say("read page 0");
    const char* go = std::getenv("CSM_TEST_GO");
    for (int i = 0; go != nullptr && i < 6000 && ::access(go, F_OK) != 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    const uint64_t bytes = static_cast<uint64_t>(n) << 20;
    for (uint64_t i = 0; i < bytes; i += 4096) {  // SIGBUS here for pages that never came
      if (v[i] != static_cast<uint8_t>(i >> 12)) return Fail(csm::Corruption("byte " + std::to_string(i)));
    }
    Say("read all");
    return 0;
  }
  std::fprintf(stderr, "unknown command %s\n", cmd.c_str());
  return 2;
}
