// wire_bench: csm's cross-node get against serializers over the same link, in one run
// (scripts/run-wire-bench sets up two network namespaces joined by veth).
//
//   produce-csm  on node A: commit every workload `rounds` times in the global heap
//   serve        in A's namespace: on request, serialize a workload with a format and
//                send it (the structure is already in memory, as csm's is)
//   csm-get      on node B (spawned by measure, one process per cluster and workload):
//                Get every round's object, print the medians
//   measure      in B's namespace: for each workload and format, time
//                  usable: request → a process on B holds a usable structure
//                          (csm: Get returns; serializer: serialize + send + receive +
//                          deserialize, or verify + attach for in-place formats)
//                  used:   usable + one traversal that checksums every entry
//                and print medians, wire bytes and ratios against csm.
//   local-during-fetch  on node B: one thread Gets an object committed on B over and
//                over, first alone, then while another thread of the same process Gets
//                each round's ints-64M (256 MiB) from node A; prints both latency
//                distributions side by side.
#include <arpa/inet.h>
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <random>

#include <CLI/CLI.hpp>
#include <boost/archive/binary_iarchive.hpp>
#include <boost/archive/binary_oarchive.hpp>
#include <boost/iostreams/device/array.hpp>
#include <boost/iostreams/device/back_inserter.hpp>
#include <boost/iostreams/stream.hpp>
#include <boost/serialization/map.hpp>
#include <boost/serialization/string.hpp>
#include <boost/serialization/vector.hpp>
#include <cereal/archives/binary.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>
#include <atomic>
#include <filesystem>
#include <sstream>
#include <thread>
#include <type_traits>

#include "csm/client.h"
#include "sockets.h"
#include "stats.h"
#include "wire.capnp.h"
#include "wire.pb.h"
#include "wire_generated.h"
#include "workload.h"

namespace {

using namespace csm::bench;
using StdMap = csm::workload::StdMap;
using StdInts = std::vector<int32_t>;
using HeapInts = csm::vector<int32_t>;

struct Workload {
  std::string name;
  bool is_map;
  int64_t n;             // keys or ints
  bool compact = false;  // csm builds the map in compact containers (csm::flat_map)
};
const std::vector<Workload> kWorkloads = {
    {"tiny-map", true, 5},          {"map-1k", true, 1000},      {"map-100k", true, 100000},
    {"map-1M", true, 1000000},      {"map-1M-flat", true, 1000000, true},
    {"ints-1M", false, 1 << 20},    {"ints-64M", false, 64 << 20}};
// The same data as map-1M: only the in-place formats are measured again beside it.
bool MeasuredFor(const Workload& w, const std::string& format) {
  return !w.compact || format == "raw-link" || format == "flatbuffers" || format == "capnp-inplace";
}
const std::vector<std::string> kFormats = {"raw-link", "cereal", "boost", "protobuf",
                                           "flatbuffers", "capnp-inplace", "capnp-materialized"};

int Fail(const std::string& what) {
  std::fprintf(stderr, "wire_bench: %s\n", what.c_str());
  return 1;
}

// ---- traversals: the "used" measure, the same work for every representation ----------

uint64_t Mix(uint64_t h, uint64_t v) { return (h ^ v) * 0x100000001b3ULL; }

template <typename Map>
uint64_t TraverseMap(const Map& m) {
  uint64_t h = 0;
  for (const auto& [k, v] : m) {
    h = Mix(h, static_cast<uint64_t>(k));
    for (const auto& s : v) h = Mix(Mix(h, s.size()), static_cast<uint8_t>(s[s.size() - 1]));
  }
  return h;
}
template <typename Vec>
uint64_t TraverseInts(const Vec& v) {
  uint64_t h = 0;
  for (int32_t x : v) h += static_cast<uint64_t>(x);
  return h;
}

// ---- serializers: build from the in-memory structure, send; receive, make usable --------

std::string Serialize(const std::string& format, const StdMap* m, const StdInts* v) {
  if (format == "cereal") {
    std::ostringstream os;
    cereal::BinaryOutputArchive ar(os);
    if (m) ar(*m); else ar(*v);
    return std::move(os).str();
  }
  if (format == "boost") {
    std::string out;
    boost::iostreams::stream<boost::iostreams::back_insert_device<std::string>> os(out);
    {
      boost::archive::binary_oarchive ar(os, boost::archive::no_header);
      if (m) ar << *m; else ar << *v;
    }
    os.flush();
    return out;
  }
  if (format == "protobuf") {
    if (m) {
      csmbench::Map msg;
      for (const auto& [k, vals] : *m) {
        auto* e = msg.add_entries();
        e->set_key(k);
        for (const auto& s : vals) e->add_values(s);
      }
      return msg.SerializeAsString();
    }
    csmbench::Ints msg;
    msg.mutable_v()->Add(v->begin(), v->end());
    return msg.SerializeAsString();
  }
  if (format == "flatbuffers") {
    flatbuffers::FlatBufferBuilder b(1 << 20);
    if (m) {
      std::vector<flatbuffers::Offset<csmbench::fb::Entry>> entries;
      entries.reserve(m->size());
      std::vector<flatbuffers::Offset<flatbuffers::String>> strs;
      for (const auto& [k, vals] : *m) {
        strs.clear();
        for (const auto& s : vals) strs.push_back(b.CreateString(s));
        entries.push_back(csmbench::fb::CreateEntry(b, k, b.CreateVector(strs)));
      }
      b.Finish(csmbench::fb::CreateMap(b, b.CreateVector(entries)));
    } else {
      b.Finish(csmbench::fb::CreateInts(b, b.CreateVector(*v)));
    }
    return std::string(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize());
  }
  // capnp (both ways of reading send the same message)
  capnp::MallocMessageBuilder msg;
  if (m) {
    auto entries = msg.initRoot<Map>().initEntries(static_cast<unsigned>(m->size()));
    unsigned i = 0;
    for (const auto& [k, vals] : *m) {
      auto e = entries[i++];
      e.setKey(k);
      auto list = e.initValues(static_cast<unsigned>(vals.size()));
      for (unsigned j = 0; j < vals.size(); ++j) list.set(j, vals[j]);
    }
  } else {
    auto list = msg.initRoot<Ints>().initV(static_cast<unsigned>(v->size()));
    for (unsigned i = 0; i < v->size(); ++i) list.set(i, (*v)[i]);
  }
  auto words = capnp::messageToFlatArray(msg);
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

// Makes the received bytes usable (deserialize, or verify + attach), then traverses.
// Returns {usable_seconds, used_seconds} measured from `t0`.
std::pair<double, double> UseBytes(const std::string& format, const std::string& bytes, bool is_map,
                                   Clock::time_point t0, uint64_t* sum) {
  Clock::time_point usable;
  if (format == "cereal" || format == "boost") {
    StdMap m;
    StdInts v;
    if (format == "cereal") {
      std::istringstream is(bytes);
      cereal::BinaryInputArchive ar(is);
      if (is_map) ar(m); else ar(v);
    } else {
      boost::iostreams::stream<boost::iostreams::array_source> is(bytes.data(), bytes.size());
      boost::archive::binary_iarchive ar(is, boost::archive::no_header);
      if (is_map) ar >> m; else ar >> v;
    }
    usable = Clock::now();
    *sum = is_map ? TraverseMap(m) : TraverseInts(v);
  } else if (format == "protobuf") {
    if (is_map) {
      csmbench::Map msg;
      if (!msg.ParseFromString(bytes)) throw std::runtime_error("protobuf parse");
      usable = Clock::now();
      uint64_t h = 0;
      for (const auto& e : msg.entries()) {
        h = Mix(h, static_cast<uint64_t>(e.key()));
        for (const auto& s : e.values()) h = Mix(Mix(h, s.size()), static_cast<uint8_t>(s[s.size() - 1]));
      }
      *sum = h;
    } else {
      csmbench::Ints msg;
      if (!msg.ParseFromString(bytes)) throw std::runtime_error("protobuf parse");
      usable = Clock::now();
      *sum = TraverseInts(msg.v());
    }
  } else if (format == "flatbuffers") {
    flatbuffers::Verifier verifier(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                                   64, 1u << 31);
    if (is_map) {
      if (!verifier.VerifyBuffer<csmbench::fb::Map>(nullptr)) throw std::runtime_error("flatbuffers verify");
      auto* map = flatbuffers::GetRoot<csmbench::fb::Map>(bytes.data());
      usable = Clock::now();
      uint64_t h = 0;
      for (const auto* e : *map->entries()) {
        h = Mix(h, static_cast<uint64_t>(e->key()));
        for (const auto* s : *e->values()) h = Mix(Mix(h, s->size()), static_cast<uint8_t>(s->c_str()[s->size() - 1]));
      }
      *sum = h;
    } else {
      if (!verifier.VerifyBuffer<csmbench::fb::Ints>(nullptr)) throw std::runtime_error("flatbuffers verify");
      auto* ints = flatbuffers::GetRoot<csmbench::fb::Ints>(bytes.data());
      usable = Clock::now();
      *sum = TraverseInts(*ints->v());
    }
  } else {  // capnp
    kj::ArrayPtr<const capnp::word> words(reinterpret_cast<const capnp::word*>(bytes.data()),
                                          bytes.size() / sizeof(capnp::word));
    capnp::ReaderOptions options;
    options.traversalLimitInWords = UINT64_MAX / 16;
    capnp::FlatArrayMessageReader reader(words, options);
    bool inplace = format == "capnp-inplace";
    if (is_map) {
      auto entries = reader.getRoot<Map>().getEntries();
      if (inplace) {
        usable = Clock::now();
        uint64_t h = 0;
        for (auto e : entries) {
          h = Mix(h, static_cast<uint64_t>(e.getKey()));
          for (auto s : e.getValues()) h = Mix(Mix(h, s.size()), static_cast<uint8_t>(s[s.size() - 1]));
        }
        *sum = h;
      } else {
        StdMap m;
        for (auto e : entries) {
          auto& vals = m[e.getKey()];
          for (auto s : e.getValues()) vals.emplace_back(s.cStr(), s.size());
        }
        usable = Clock::now();
        *sum = TraverseMap(m);
      }
    } else {
      auto list = reader.getRoot<Ints>().getV();
      if (inplace) {
        usable = Clock::now();
        uint64_t h = 0;
        for (int32_t x : list) h += static_cast<uint64_t>(x);
        *sum = h;
      } else {
        StdInts v;
        v.reserve(list.size());
        for (int32_t x : list) v.push_back(x);
        usable = Clock::now();
        *sum = TraverseInts(v);
      }
    }
  }
  Clock::time_point used = Clock::now();
  return {Seconds(t0, usable), Seconds(t0, used)};
}

void BuildStd(const Workload& w, StdMap* m, StdInts* v) {
  if (w.is_map) {
    csm::workload::Fill(*m, static_cast<int32_t>(w.n));
  } else {
    v->resize(static_cast<size_t>(w.n));
    for (int64_t i = 0; i < w.n; ++i) (*v)[i] = static_cast<int32_t>(i * 7);
  }
}

// ---- roles ---------------------------------------------------------------------------

int ProduceCsm(int rounds, const std::string& only) {
  auto client = csm::Client::Connect();
  if (!client.ok()) return Fail(client.status().ToString());
  for (const auto& w : kWorkloads) {
    if (!only.empty() && w.name != only) continue;
    for (int r = 0; r < rounds; ++r) {
      auto b = (*client)->NewBuilder();
      if (!b.ok()) return Fail(b.status().ToString());
      csm::Status s;
      if (w.compact) {
        auto m = b->New<csm::workload::CompactMap>();
        s = b->Populate([&] { csm::workload::Fill(**m, static_cast<int32_t>(w.n)); });
      } else if (w.is_map) {
        auto m = b->New<csm::workload::HeapMap>();
        s = b->Populate([&] { csm::workload::Fill(**m, static_cast<int32_t>(w.n)); });
      } else {
        auto v = b->New<HeapInts>();
        s = b->Populate([&] {
          (*v)->resize(static_cast<size_t>(w.n));
          for (int64_t i = 0; i < w.n; ++i) (**v)[i] = static_cast<int32_t>(i * 7);
        });
      }
      if (s.ok()) s = b->Commit("bench/" + w.name + "/" + std::to_string(r));
      if (!s.ok()) return Fail(s.ToString());
    }
  }
  std::printf("committed\n");
  std::fflush(stdout);
  return 0;
}

// Deletes what produce-csm committed (the copies on other nodes go with it), so each
// workload is measured with the same memory in use.
int DropCsm(int rounds, const std::string& only) {
  auto client = csm::Client::Connect();
  if (!client.ok()) return Fail(client.status().ToString());
  for (const auto& w : kWorkloads) {
    if (!only.empty() && w.name != only) continue;
    for (int r = 0; r < rounds; ++r) {
      csm::Status s = (*client)->Delete("bench/" + w.name + "/" + std::to_string(r));
      if (!s.ok() && !s.IsNotFound()) return Fail(s.ToString());
    }
  }
  return 0;
}

int Serve(int port) {
  int ls = Listen(port);
  std::vector<StdMap> maps(kWorkloads.size());
  std::vector<StdInts> ints(kWorkloads.size());
  for (size_t i = 0; i < kWorkloads.size(); ++i) BuildStd(kWorkloads[i], &maps[i], &ints[i]);
  std::printf("serving\n");
  std::fflush(stdout);
  std::string raw(64 << 20, '\0');
  int fd = -1;
  for (;;) {
    if (fd < 0) {  // one measuring process after another
      fd = ::accept(ls, nullptr, nullptr);
      if (fd < 0) return Fail("accept");
      Tune(fd);
    }
    uint32_t req[2];  // workload index, format index
    try {
      RecvAll(fd, req, sizeof(req));
    } catch (...) {
      ::close(fd);
      fd = -1;
      continue;
    }
    const Workload& w = kWorkloads.at(req[0]);
    const std::string& format = kFormats.at(req[1]);
    if (format == "raw-link") {  // the link's limit: the csm object's bytes, 1 MiB writes
      uint64_t n = 0;
      RecvAll(fd, &n, sizeof(n));
      SendAll(fd, &n, sizeof(n));
      for (uint64_t left = n; left > 0;) {
        uint64_t k = std::min<uint64_t>(left, raw.size());
        SendAll(fd, raw.data(), k);
        left -= k;
      }
      continue;
    }
    std::string bytes = Serialize(format, w.is_map ? &maps[req[0]] : nullptr, w.is_map ? nullptr : &ints[req[0]]);
    uint64_t n = bytes.size();
    SendAll(fd, &n, sizeof(n));
    SendAll(fd, bytes.data(), bytes.size());
  }
}

// One process on node B: Get each round's copy of a workload (fetched from node A into
// the same addresses), traverse it, print "usable_p50 used_p50 bytes checksum". `fetch`:
// how the Get brings it (docs/lazy.md). `lookups` > 0 (maps): instead of the traversal,
// that many lookups of random keys ("used" is then the Get and the lookups).
int CsmGet(const std::string& workload, int rounds, csm::Fetch fetch, int lookups) {
  auto client = csm::Client::Connect();
  if (!client.ok()) return Fail(client.status().ToString());
  const Workload* w = nullptr;
  for (const auto& candidate : kWorkloads) {
    if (candidate.name == workload) w = &candidate;
  }
  if (w == nullptr) return Fail("unknown workload " + workload);
  std::vector<double> cu, cd;
  uint64_t bytes = 0, sum = 0;
  for (int r = 0; r < rounds; ++r) {
    std::string key = "bench/" + w->name + "/" + std::to_string(r);
    auto t0 = Clock::now();
    auto get = [&](auto tag) -> csm::Status {
      using T = typename decltype(tag)::type;
      auto ref = (*client)->Get<T>(key, csm::GetOptions{std::chrono::seconds(60), fetch});
      if (!ref.ok()) return ref.status();
      auto t1 = Clock::now();
      if constexpr (std::is_same_v<T, HeapInts>) {
        sum += TraverseInts(**ref);
      } else {
        if (lookups > 0) {
          std::mt19937 rng(static_cast<uint32_t>(r) * 7919u + 1);
          for (int i = 0; i < lookups; ++i) {
            auto it = (*ref)->find(static_cast<int32_t>(rng() % static_cast<uint32_t>(w->n)));
            if (it != (*ref)->end()) sum += it->second.size();
          }
        } else {
          sum += TraverseMap(**ref);
        }
      }
      cu.push_back(Seconds(t0, t1));
      cd.push_back(Seconds(t0, Clock::now()));
      bytes = ref->info().size;
      return csm::Status::OK();
    };
    csm::Status s = w->compact  ? get(std::type_identity<csm::workload::CompactMap>{})
                    : w->is_map ? get(std::type_identity<csm::workload::HeapMap>{})
                                : get(std::type_identity<HeapInts>{});
    if (!s.ok()) return Fail(s.ToString());
  }
  std::printf("%.9f %.9f %llu %llu\n", Summarize(cu).p50, Summarize(cd).p50,
              (unsigned long long)bytes, (unsigned long long)sum);
  return 0;
}

// A local Get's latency while nothing else happens, then while another thread of the
// same process waits for remote fetches of 256 MiB (a Get must not wait behind another
// thread's round trip, nor behind csmd's work for it).
int LocalDuringFetch(int rounds) {
  auto client = csm::Client::Connect();
  if (!client.ok()) return Fail(client.status().ToString());
  const std::string local = "bench/local-during-fetch";
  auto b = (*client)->NewBuilder();
  if (!b.ok()) return Fail(b.status().ToString());
  auto m = b->New<csm::workload::HeapMap>();
  if (!m.ok()) return Fail(m.status().ToString());
  csm::Status s = b->Populate([&] { csm::workload::Fill(**m, 5); });
  if (s.ok()) s = b->Commit(local);
  if (!s.ok()) return Fail(s.ToString());
  auto sample = [&](std::vector<double>* out) -> csm::Status {
    auto t0 = Clock::now();
    auto ref = (*client)->Get<csm::workload::HeapMap>(local);
    out->push_back(Seconds(t0, Clock::now()));
    return ref.status();
  };
  std::vector<double> alone, during;
  for (int i = 0; i < 20000 && s.ok(); ++i) s = sample(&alone);
  std::atomic<bool> fetching{true};
  csm::Status fetched;
  uint64_t bytes = 0;
  std::thread fetcher([&] {
    for (int r = 0; r < rounds && fetched.ok(); ++r) {
      auto ref = (*client)->Get<HeapInts>("bench/ints-64M/" + std::to_string(r), std::chrono::seconds(60));
      fetched = ref.status();
      if (ref.ok()) bytes += ref->info().size;
    }
    fetching = false;
  });
  while (fetching && s.ok()) s = sample(&during);
  fetcher.join();
  s = s.ok() ? (*client)->Delete(local) : s;
  if (!fetched.ok()) return Fail("the remote Get: " + fetched.ToString());
  if (!s.ok()) return Fail(s.ToString());
  Summary a = Summarize(alone), d = Summarize(during);
  std::printf("local Get of a tiny map on node B (%zu samples alone, %zu during %d fetches of 256 MiB)\n",
              a.n, d.n, rounds);
  std::printf("%-34s %10s %10s %10s\n", "", "p50", "p99", "max");
  std::printf("%-34s %10s %10s %10s\n", "alone", Human(a.p50).c_str(), Human(a.p99).c_str(), Human(a.max).c_str());
  std::printf("%-34s %10s %10s %10s\n", "while this process fetches 256 MiB", Human(d.p50).c_str(),
              Human(d.p99).c_str(), Human(d.max).c_str());
  std::printf("(%.1f MiB fetched)\n", bytes / 1048576.0);
  return 0;
}

struct CsmResult {
  double usable = 0, used = 0;
  uint64_t bytes = 0;
};

// Runs csm-get in a child process against the node at `socket` (one client per process:
// each cluster's window sits at the same base).
CsmResult RunCsmGet(const std::string& self, const std::string& socket, const std::string& workload,
                    int rounds, uint64_t* sum, const std::string& fetch, int lookups) {
  std::string command = "CSM_SOCKET='" + socket + "' '" + self + "' csm-get --workload " + workload +
                        " --rounds " + std::to_string(rounds) + " --fetch " + fetch +
                        " --lookups " + std::to_string(lookups);
  FILE* child = ::popen(command.c_str(), "r");
  if (child == nullptr) throw std::runtime_error("cannot run " + command);
  CsmResult r;
  unsigned long long bytes = 0, checksum = 0;
  int fields = std::fscanf(child, "%lf %lf %llu %llu", &r.usable, &r.used, &bytes, &checksum);
  int status = ::pclose(child);
  if (fields != 4 || status != 0) throw std::runtime_error("csm-get failed for " + workload + " on " + socket);
  r.bytes = bytes;
  *sum += checksum;
  return r;
}

// `csms`: (transport label, csmd socket on node B) of each cluster to measure.
// `csm_only`: no serializer rows; `lookups`: csm's "used" is its Get and that many
// random lookups (CsmGet). A label ending in "lazy" or "on-demand lazy" Gets that way.
int Measure(const std::string& self, const std::vector<std::pair<std::string, std::string>>& csms,
            const std::string& peer, int port, int rounds, const std::string& only, bool header,
            bool csm_only, int lookups) {
  if (csms.empty()) return Fail("name at least one csm cluster with --csm LABEL=SOCKET");
  int fd = Dial(peer, port);
  uint64_t sum = 0;  // keeps every traversal's result alive
  std::string warm;  // raw-link receive buffer, reused
  if (header) {
    std::printf("%-9s %-19s %11s %11s %11s %8s %8s\n", "workload", "format", "wire bytes",
                "usable p50", "used p50", "usable", "used");
    std::printf("%-9s %-19s %11s %11s %11s %8s %8s\n", "", "", "", "", "", "vs csm", "vs csm");
    std::printf("(ratios: the format's time / csm (%s)'s; > 1 means csm is faster)\n", csms[0].first.c_str());
  }
  for (size_t wi = 0; wi < kWorkloads.size(); ++wi) {
    const Workload& w = kWorkloads[wi];
    if (!only.empty() && w.name != only) continue;
    // csm: Get on this node fetches the object from node A into the same addresses.
    std::vector<CsmResult> csm_results;
    for (const auto& [label, socket] : csms) {
      const std::string fetch = label.ends_with("on-demand lazy") ? "on-demand"
                                : label.ends_with("lazy")           ? "lazy"
                                                                    : "node";
      csm_results.push_back(RunCsmGet(self, socket, w.name, rounds, &sum, fetch, w.is_map ? lookups : 0));
      const CsmResult& c = csm_results.back();
      char ru[16] = "1.00", rd[16] = "1.00";
      if (csm_results.size() > 1) {
        std::snprintf(ru, sizeof(ru), "%.2fx", c.usable / csm_results[0].usable);
        std::snprintf(rd, sizeof(rd), "%.2fx", c.used / csm_results[0].used);
      }
      std::printf("%-9s %-19s %11llu %11s %11s %8s %8s\n", csm_results.size() == 1 ? w.name.c_str() : "",
                  ("csm (" + label + ")").c_str(), (unsigned long long)c.bytes, Human(c.usable).c_str(),
                  Human(c.used).c_str(), ru, rd);
    }
    if (csm_only) continue;
    const double csm_usable = csm_results[0].usable, csm_used = csm_results[0].used;
    const uint64_t csm_bytes = csm_results[0].bytes;
    for (size_t fi = 0; fi < kFormats.size(); ++fi) {
      if (!MeasuredFor(w, kFormats[fi])) continue;
      std::vector<double> us, ud;
      uint64_t wire = 0;
      for (int r = 0; r < rounds; ++r) {
        uint32_t req[2] = {static_cast<uint32_t>(wi), static_cast<uint32_t>(fi)};
        auto t0 = Clock::now();
        SendAll(fd, req, sizeof(req));
        if (kFormats[fi] == "raw-link") {
          SendAll(fd, &csm_bytes, sizeof(csm_bytes));
        }
        uint64_t n = 0;
        RecvAll(fd, &n, sizeof(n));
        wire = n;
        if (kFormats[fi] == "raw-link") {
          // The link's limit: into a buffer already faulted in, so only the link counts.
          if (warm.size() < n) warm.assign(n, 1);
          RecvAll(fd, warm.data(), n);
          double t = Seconds(t0, Clock::now());
          us.push_back(t);
          ud.push_back(t);
          continue;
        }
        std::string bytes(n, '\0');
        RecvAll(fd, bytes.data(), n);
        auto [usable, used] = UseBytes(kFormats[fi], bytes, w.is_map, t0, &sum);
        us.push_back(usable);
        ud.push_back(used);
      }
      double u = Summarize(us).p50, d = Summarize(ud).p50;
      char ru[16], rd[16];
      std::snprintf(ru, sizeof(ru), "%.2fx", u / csm_usable);
      std::snprintf(rd, sizeof(rd), "%.2fx", d / csm_used);
      std::printf("%-9s %-19s %11llu %11s %11s %8s %8s\n", "", kFormats[fi].c_str(),
                  (unsigned long long)wire, Human(u).c_str(), Human(d).c_str(), ru, rd);
    }
    std::fflush(stdout);
  }
  std::fprintf(stderr, "(checksum %llu)\n",
              (unsigned long long)sum);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"wire_bench: csm cross-node get vs serializers over one link"};
  app.require_subcommand(1);
  int rounds = 5, port = 7500;
  std::string peer;
  auto* produce = app.add_subcommand("produce-csm", "commit the workloads on this node");
  auto* serve = app.add_subcommand("serve", "serialize and send on request");
  auto* measure = app.add_subcommand("measure", "time every format from the other node");
  auto* csm_get = app.add_subcommand("csm-get", "(for measure) Get one workload's objects");
  auto* drop = app.add_subcommand("drop-csm", "delete what produce-csm committed");
  auto* during = app.add_subcommand("local-during-fetch",
                                    "a local Get's latency while this process fetches ints-64M");
  for (auto* s : {produce, measure, csm_get, drop, during}) s->add_option("--rounds", rounds);
  bool no_header = false;
  measure->add_flag("--no-header", no_header, "print the rows only");
  std::string workload, fetch = "node";
  int lookups = 0;
  csm_get->add_option("--workload", workload)->required();
  csm_get->add_option("--fetch", fetch, "node (its --fetch), whole, lazy or on-demand")
      ->check(CLI::IsMember({"node", "whole", "lazy", "on-demand"}));
  for (auto* s : {csm_get, measure}) s->add_option("--lookups", lookups, "maps: that many random lookups, no traversal");
  bool csm_only = false;
  measure->add_flag("--csm-only", csm_only, "csm's rows only");
  std::vector<std::string> csm_flags;
  measure->add_option("--csm", csm_flags, "LABEL=SOCKET: a csm cluster's node B (repeat; the first is the baseline)");
  for (auto* s : {serve, measure}) s->add_option("--port", port);
  measure->add_option("--peer", peer, "serve's IPv4 address")->required();
  std::string only;
  for (auto* s : {produce, measure, drop}) s->add_option("--only", only, "this workload only");
  CLI11_PARSE(app, argc, argv);
  try {
    if (produce->parsed()) return ProduceCsm(rounds, only);
    if (drop->parsed()) return DropCsm(rounds, only);
    if (serve->parsed()) return Serve(port);
    if (csm_get->parsed()) {
      const csm::Fetch f = fetch == "whole"       ? csm::Fetch::kWhole
                           : fetch == "lazy"      ? csm::Fetch::kLazy
                           : fetch == "on-demand" ? csm::Fetch::kOnDemand
                                                  : csm::Fetch::kNodeDefault;
      return CsmGet(workload, rounds, f, lookups);
    }
    if (during->parsed()) return LocalDuringFetch(rounds);
    std::vector<std::pair<std::string, std::string>> csms;
    for (const auto& f : csm_flags) {
      size_t eq = f.find('=');
      if (eq == std::string::npos) return Fail("--csm takes LABEL=SOCKET, not " + f);
      csms.emplace_back(f.substr(0, eq), f.substr(eq + 1));
    }
    return Measure(std::filesystem::read_symlink("/proc/self/exe").string(), csms, peer, port, rounds, only,
                   !no_header, csm_only, lookups);
  } catch (const std::exception& e) {
    return Fail(e.what());
  }
}
