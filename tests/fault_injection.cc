// csm_fault_injection: kill -9 at random points of producers, consumers and csmd, and
// after every trial check what csm promises (docs/fault_injection.md):
//   1. nothing committed is lost or changed: every commit a producer was told succeeded
//      is there, with the bytes it was built with (its content and its checksum);
//   2. no partial object is visible: every object the node lists is whole;
//   3. no leaked bytes: once every object is deleted and no process builds, the node
//      holds no memory and no arena.
// The node keeps its state (--state-dir), so a csmd killed in the middle of commits is
// restarted and must take every acknowledged object back. With --nodes 3 the trials run
// on a cluster of three such nodes (node 1 hosts the coordinator): producers on some
// nodes, a consumer reading their objects from another, and the csmd killed is any
// node's; it rejoins with its objects, and the promises are checked from every node.
//
//   csm_fault_injection [--trials N] [--seed S] [--nodes 1|3]  the trials (exit 1 on a broken promise)
//   csm_fault_injection worker produce PREFIX COUNT   a producer (this binary's own workers)
//   csm_fault_injection worker consume MILLIS [PREFIX...]  a consumer (of listed objects, or
//                                                      of the producers' keys in a cluster)
//   csm_fault_injection worker check KEY...           checks those keys from its node
//   csm_fault_injection worker check-listed           checks every object its node lists
//   csm_fault_injection worker delete-own             deletes the objects its node owns
//   csm_fault_injection worker empty                  waits for its node to hold nothing
#include <signal.h>
#include <unistd.h>

#include <cstdlib>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "csm/base/hash.h"
#include "csm/client.h"
#include "csm/os/memory.h"
#include "harness.h"
#include "workload.h"

namespace csm::faults {
namespace {

using Longs = csm::vector<int64_t>;
using workload::HeapMap;

// ---- objects whose content follows from their key ----------------------------------
// "<prefix>/v<i>": a vector of Longs; "<prefix>/m<i>": a map (pointer-rich). Sizes and
// values come from the key's hash, so any process can check any object.

uint64_t SeedOf(std::string_view key) { return Hash64(key); }
bool IsMap(std::string_view key) {
  const size_t slash = key.rfind('/');
  return slash != std::string_view::npos && slash + 1 < key.size() && key[slash + 1] == 'm';
}
size_t VectorLength(uint64_t seed) { return 1 + seed % 40000; }  // up to 320 KB
int32_t MapKeys(uint64_t seed) { return static_cast<int32_t>(1 + seed % 1500); }

Status Build(Client& c, const std::string& key, std::unique_ptr<Builder>* out) {
  CSM_ASSIGN_OR_RETURN(Builder b, c.NewBuilder());
  const uint64_t seed = SeedOf(key);
  if (IsMap(key)) {
    CSM_ASSIGN_OR_RETURN(HeapMap * m, b.New<HeapMap>());
    CSM_RETURN_IF_ERROR(b.Populate([&] { workload::Fill(*m, MapKeys(seed)); }));
  } else {
    CSM_ASSIGN_OR_RETURN(Longs * v, b.New<Longs>());
    CSM_RETURN_IF_ERROR(b.Populate([&] {
      const size_t n = VectorLength(seed);
      v->reserve(n);
      for (size_t j = 0; j < n; ++j) v->push_back(static_cast<int64_t>(seed + j * 7));
    }));
  }
  *out = std::make_unique<Builder>(std::move(b));
  return Status::OK();
}

// "" if the object under `key` is whole: its content and its commit checksum.
// `wait`: for a key not here yet (a cluster's node still rejoining).
std::string Check(Client& c, const std::string& key, Status* not_there = nullptr,
                  std::chrono::milliseconds wait = std::chrono::milliseconds(0)) {
  const uint64_t seed = SeedOf(key);
  std::string why;
  Status verified;
  if (IsMap(key)) {
    auto m = c.Get<HeapMap>(key, wait);
    if (!m.ok()) {
      if (not_there != nullptr) *not_there = m.status();
      return "Get: " + m.status().ToString();
    }
    why = workload::Verify(**m, MapKeys(seed));
    verified = m->Verify();
  } else {
    auto v = c.Get<Longs>(key, wait);
    if (!v.ok()) {
      if (not_there != nullptr) *not_there = v.status();
      return "Get: " + v.status().ToString();
    }
    const Longs& longs = **v;
    if (longs.size() != VectorLength(seed)) why = "length " + std::to_string(longs.size());
    for (size_t j = 0; why.empty() && j < longs.size(); ++j) {
      if (longs[j] != static_cast<int64_t>(seed + j * 7)) why = "value " + std::to_string(j);
    }
    verified = v->Verify();
  }
  if (!why.empty()) return "content differs: " + why;
  if (!verified.ok()) return "checksum: " + verified.ToString();
  return "";
}

void Say(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

// ---- workers ------------------------------------------------------------------------

int Produce(const std::string& prefix, int count) {
  auto client = Client::Connect();
  if (!client.ok()) return 2;
  for (int i = 0; i < count; ++i) {
    const std::string key = prefix + (i % 3 == 2 ? "/m" : "/v") + std::to_string(i);
    std::unique_ptr<Builder> b;
    Status s = Build(**client, key, &b);
    // A commit whose reply was lost with csmd is tried again once csmd is back: it lands,
    // or the first one had (AlreadyExists: the key is this producer's alone).
    for (int attempt = 0; s.ok() || attempt == 0; ++attempt) {
      if (s.ok()) s = b->Commit(key);
      if (s.ok() || s.IsAlreadyExists() || attempt >= 5 || !(s.IsUnavailable() || s.IsTimeout())) break;
      s = Status::OK();
      // A cluster's coordinator may be restarting too: give it the time to.
      std::this_thread::sleep_for(std::chrono::milliseconds(200 * (attempt + 1)));
    }
    if (s.ok() || s.IsAlreadyExists()) {
      Say("committed " + key);
    } else {
      Say("failed " + key + ": " + s.ToString());
    }
  }
  return 0;
}

// The keys a producer with `prefix` may commit (Produce's, for COUNT ≤ 20).
std::vector<std::string> KeysOf(const std::string& prefix) {
  std::vector<std::string> keys;
  for (int i = 0; i < 20; ++i) keys.push_back(prefix + (i % 3 == 2 ? "/m" : "/v") + std::to_string(i));
  return keys;
}

// Reads objects the node lists, or (`prefixes`: in a cluster, where another node's
// objects are listed only once fetched) the producers' keys, and checks each.
int Consume(int millis, const std::vector<std::string>& prefixes) {
  auto client = Client::Connect();
  if (!client.ok()) return 2;
  std::mt19937_64 rng(static_cast<uint64_t>(::getpid()));
  const int64_t end = os::MonotonicNanos() + int64_t{millis} * 1000000;
  uint64_t checked = 0;
  std::vector<std::string> wanted;
  for (const std::string& p : prefixes) {
    for (std::string& k : KeysOf(p)) wanted.push_back(std::move(k));
  }
  while (os::MonotonicNanos() < end) {
    std::vector<std::string> all = wanted;
    if (all.empty()) {
      for (const ObjectInfo& o : (*client)->List()) all.push_back(o.key);
    }
    for (int k = 0; k < 8 && !all.empty(); ++k) {
      const std::string& key = all[rng() % all.size()];
      Status missing;
      std::string why = Check(**client, key, &missing);
      if (!why.empty() && !missing.ok()) continue;  // deleted meanwhile, or csmd restarting
      if (!why.empty()) {
        Say("bad " + key + ": " + why);
        return 3;
      }
      ++checked;
    }
  }
  Say("checked " + std::to_string(checked));
  return 0;
}

// The nodes of a cluster trial (--nodes 3): the workers that check wait for all.
constexpr int kClusterNodes = 3;

// Waits (30 s at most) until the node's csmd sees `nodes` live members.
bool AwaitMembers(Client& c, int nodes) {
  return testing::Eventually([&] {
    auto text = c.NodesJson();
    if (!text.ok()) return false;
    const nlohmann::json members = nlohmann::json::parse(*text).at("members");
    int alive = 0;
    for (const auto& m : members) alive += m.value("alive", false) ? 1 : 0;
    return alive == nodes;
  }, 30000);
}

// Checks `keys` (every one must be there, whole), or with none every object the node
// lists; "bad KEY: why" lines, then "checked N".
int CheckFromHere(int nodes, const std::vector<std::string>& keys) {
  auto client = Client::Connect();
  if (!client.ok()) return 2;
  if (nodes > 1 && !AwaitMembers(**client, nodes)) {
    auto text = (*client)->NodesJson();
    Say("bad cluster: not every node is alive after 30 s: " + (text.ok() ? *text : text.status().ToString()));
    return 0;
  }
  std::vector<std::string> all = keys;
  if (all.empty()) {
    for (const ObjectInfo& o : (*client)->List()) all.push_back(o.key);
  }
  uint64_t checked = 0;
  for (const std::string& key : all) {
    std::string why = Check(**client, key, nullptr, std::chrono::milliseconds(keys.empty() ? 0 : 10000));
    if (!why.empty() && keys.empty() && (*client)->Lookup(key).status().IsNotFound()) continue;  // a copy dropped meanwhile
    if (!why.empty()) Say("bad " + key + ": " + why);
    ++checked;
  }
  Say("checked " + std::to_string(checked));
  return 0;
}

int DeleteOwn() {
  auto client = Client::Connect();
  if (!client.ok()) return 2;
  auto info = (*client)->Info();
  if (!info.ok()) return 2;
  for (const ObjectInfo& o : (*client)->List()) {
    if (o.owner_node != info->node_id) continue;
    Status s = (*client)->Delete(o.key);
    if (!s.ok() && !s.IsNotFound()) Say("bad delete " + o.key + ": " + s.ToString());
  }
  Say("deleted");
  return 0;
}

uint64_t InfoField(Client& c, const char* field);

int AwaitEmpty() {
  auto client = Client::Connect();
  if (!client.ok()) return 2;
  Client& c = **client;
  if (!testing::Eventually([&] { return InfoField(c, "used") == 0 && InfoField(c, "arenas") == 0; }, 30000)) {
    Say("bad leak: " + std::to_string(InfoField(c, "used")) + " bytes in " + std::to_string(InfoField(c, "arenas")) +
        " arenas after every object was deleted");
  }
  Say("empty");
  return 0;
}

// ---- trials -------------------------------------------------------------------------

enum class Victim { kProducer, kConsumer, kCsmd };
const char* Name(Victim v) {
  switch (v) {
    case Victim::kProducer: return "producer";
    case Victim::kConsumer: return "consumer";
    case Victim::kCsmd: return "csmd";
  }
  return "?";
}

struct Totals {
  std::map<std::string, int> kills;
  uint64_t acknowledged = 0, listed_whole = 0, consumer_checks = 0, restarts = 0;
};

std::vector<std::string> Lines(const std::string& output, const std::string& prefix) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < output.size()) {
    size_t end = output.find('\n', at);
    if (end == std::string::npos) break;  // a line cut by the kill
    std::string line = output.substr(at, end - at);
    if (line.rfind(prefix, 0) == 0) out.push_back(line.substr(prefix.size()));
    at = end + 1;
  }
  return out;
}

uint64_t InfoField(Client& c, const char* field) {
  auto info = c.InfoJson();
  return info.ok() ? nlohmann::json::parse(*info)[field].get<uint64_t>() : ~uint64_t{0};
}

// One trial; "" if every promise held.
std::string Trial(int trial, std::mt19937_64& rng, testing::Node& node, Client& c, Totals& totals) {
  const std::string me = testing::BinaryDir() + "/csm_fault_injection";
  const Victim victim = static_cast<Victim>(rng() % 3);
  ++totals.kills[Name(victim)];
  std::vector<std::unique_ptr<testing::Process>> producers;
  for (int p = 0; p < 2; ++p) {
    const int count = 4 + static_cast<int>(rng() % 16);
    producers.push_back(testing::Process::Spawn(
        {me, "worker", "produce", "t" + std::to_string(trial) + "/p" + std::to_string(p), std::to_string(count)},
        node.Env()));
  }
  auto consumer = testing::Process::Spawn({me, "worker", "consume", "400"}, node.Env());
  // A random point: from before the workers attached to the middle of their commits.
  std::this_thread::sleep_for(std::chrono::microseconds(rng() % 120000));
  switch (victim) {
    case Victim::kProducer: producers[rng() % 2]->Kill(SIGKILL); break;
    case Victim::kConsumer: consumer->Kill(SIGKILL); break;
    case Victim::kCsmd:
      node.Kill(SIGKILL);
      node.Start();
      ++totals.restarts;
      break;
  }
  std::vector<std::string> acknowledged;
  for (auto& p : producers) {
    const int status = p->Wait(120000);
    if (status == -1) return "a producer did not end within 120 s: " + p->output();
    for (const std::string& key : Lines(p->output(), "committed ")) acknowledged.push_back(key);
  }
  const int consumer_status = consumer->Wait(120000);
  if (consumer_status == -1) return "the consumer did not end within 120 s";
  if (!Lines(consumer->output(), "bad ").empty()) return "the consumer read a changed object: " + consumer->output();
  for (const std::string& n : Lines(consumer->output(), "checked ")) totals.consumer_checks += std::stoull(n);

  // 1. Every acknowledged commit is there, whole.
  for (const std::string& key : acknowledged) {
    std::string why = Check(c, key);
    if (!why.empty()) return "acknowledged '" + key + "' (" + Name(victim) + " killed): " + why;
  }
  totals.acknowledged += acknowledged.size();
  // 2. Everything listed is whole (a commit cut short never shows).
  std::vector<ObjectInfo> listed = c.List();
  for (const ObjectInfo& o : listed) {
    std::string why = Check(c, o.key);
    if (!why.empty()) return "listed '" + o.key + "' (" + Name(victim) + " killed): " + why;
  }
  totals.listed_whole += listed.size();
  // 3. Once everything is deleted and reclamation ran (and a restarted csmd's wait for
  // its predecessor's processes ended), the node holds nothing.
  for (const ObjectInfo& o : listed) {
    Status s = c.Delete(o.key);
    if (!s.ok() && !s.IsNotFound()) return "delete '" + o.key + "': " + s.ToString();
  }
  if (!testing::Eventually([&] { return InfoField(c, "used") == 0 && InfoField(c, "arenas") == 0; }, 30000)) {
    return "leak: " + std::to_string(InfoField(c, "used")) + " bytes in " + std::to_string(InfoField(c, "arenas")) +
           " arenas after every object was deleted (" + Name(victim) + " killed)";
  }
  return "";
}

// Runs a worker on `node` to its end (120 s at most); its output, or why it broke a
// promise ("bad …" lines, a crash, a hang) in *broken.
std::string RunWorker(testing::Node& node, std::vector<std::string> args, std::string* broken) {
  args.insert(args.begin(), {testing::BinaryDir() + "/csm_fault_injection", "worker"});
  auto p = testing::Process::Spawn(args, node.Env());
  const int status = p->Wait(120000);
  if (status != 0) {
    *broken = "worker " + args[2] + " " + (status == -1 ? "did not end within 120 s" : "failed") + ": " + p->output();
  } else if (!Lines(p->output(), "bad ").empty()) {
    *broken = "worker " + args[2] + ": " + p->output();
  }
  return p->output();
}

// One trial on a cluster of three nodes; "" if every promise held.
std::string ClusterTrial(int trial, std::mt19937_64& rng, std::vector<std::unique_ptr<testing::Node>>& nodes,
                         Totals& totals) {
  const std::string me = testing::BinaryDir() + "/csm_fault_injection";
  const int n = static_cast<int>(nodes.size());
  const Victim victim = static_cast<Victim>(rng() % 3);
  ++totals.kills[Name(victim)];
  std::vector<std::unique_ptr<testing::Process>> producers;
  std::vector<std::string> prefixes;
  for (int p = 0; p < 2; ++p) {
    const int count = 4 + static_cast<int>(rng() % 16);
    prefixes.push_back("t" + std::to_string(trial) + "/p" + std::to_string(p));
    producers.push_back(testing::Process::Spawn({me, "worker", "produce", prefixes.back(), std::to_string(count)},
                                                nodes[rng() % n]->Env()));
  }
  std::vector<std::string> consume = {me, "worker", "consume", "400"};
  consume.insert(consume.end(), prefixes.begin(), prefixes.end());
  auto consumer = testing::Process::Spawn(consume, nodes[rng() % n]->Env());
  std::this_thread::sleep_for(std::chrono::microseconds(rng() % 120000));
  int killed_node = 0;
  switch (victim) {
    case Victim::kProducer: producers[rng() % 2]->Kill(SIGKILL); break;
    case Victim::kConsumer: consumer->Kill(SIGKILL); break;
    case Victim::kCsmd:
      killed_node = 1 + static_cast<int>(rng() % n);
      ++totals.kills["csmd of node " + std::to_string(killed_node)];
      nodes[killed_node - 1]->Kill(SIGKILL);
      nodes[killed_node - 1]->Start();
      ++totals.restarts;
      break;
  }
  const std::string what = std::string(Name(victim)) + (killed_node ? " of node " + std::to_string(killed_node) : "") + " killed";
  std::vector<std::string> acknowledged;
  for (auto& p : producers) {
    if (p->Wait(120000) == -1) return "a producer did not end within 120 s: " + p->output();
    for (const std::string& key : Lines(p->output(), "committed ")) acknowledged.push_back(key);
  }
  if (consumer->Wait(120000) == -1) return "the consumer did not end within 120 s";
  if (!Lines(consumer->output(), "bad ").empty()) return "the consumer read a changed object (" + what + "): " + consumer->output();
  for (const std::string& c : Lines(consumer->output(), "checked ")) totals.consumer_checks += std::stoull(c);

  std::string broken;
  // 1. Every acknowledged commit is there, whole, read from a node picked at random
  // (usually not its owner: the bytes travel).
  std::vector<std::string> check = {"check"};
  check.insert(check.end(), acknowledged.begin(), acknowledged.end());
  if (!acknowledged.empty()) RunWorker(*nodes[rng() % n], check, &broken);
  if (!broken.empty()) return "acknowledged commits (" + what + "): " + broken;
  totals.acknowledged += acknowledged.size();
  // 2. Everything each node lists (its own objects and its copies) is whole.
  for (auto& node : nodes) {
    const std::string out = RunWorker(*node, {"check-listed"}, &broken);
    if (!broken.empty()) return "listed objects (" + what + "): " + broken;
    for (const std::string& c : Lines(out, "checked ")) totals.listed_whole += std::stoull(c);
  }
  // 3. Each owner deletes its objects; then every node, copies dropped, holds nothing.
  for (auto& node : nodes) RunWorker(*node, {"delete-own"}, &broken);
  if (!broken.empty()) return "deleting (" + what + "): " + broken;
  for (auto& node : nodes) RunWorker(*node, {"empty"}, &broken);
  if (!broken.empty()) return "after deleting every object (" + what + "): " + broken;
  return "";
}

int RunTrials(int trials, uint64_t seed, int node_count) {
  const std::vector<std::string> common = {"--reattach-grace-ms", "300", "--capacity", "2G"};
  std::vector<std::unique_ptr<testing::Node>> nodes;
  if (node_count == 1) {
    nodes.push_back(std::make_unique<testing::Node>(common, "", /*keeps_state=*/true));
  } else {
    const std::string coordinator = "127.0.0.1:" + std::to_string(testing::FreePort());
    for (int id = 1; id <= node_count; ++id) {
      std::vector<std::string> f = common;
      f.insert(f.end(), {"--node-id", std::to_string(id), "--cluster-secret", "faults", "--dead-after-ms", "1000",
                         "--peer-address", "127.0.0.1:0", "--arena-size", "8M", id == 1 ? "--coordinate" : "--join",
                         coordinator});
      nodes.push_back(std::make_unique<testing::Node>(f, "", /*keeps_state=*/true));
    }
  }
  std::unique_ptr<Client> client;
  if (node_count == 1) {
    auto c = Client::Connect(nodes[0]->ClientConfig());
    if (!c.ok()) {
      std::fprintf(stderr, "%s\n", c.status().ToString().c_str());
      return 1;
    }
    client = std::move(*c);
  }
  std::mt19937_64 rng(seed);
  Totals totals;
  const int64_t start = os::MonotonicNanos();
  for (int t = 0; t < trials; ++t) {
    std::string broken = node_count == 1 ? Trial(t, rng, *nodes[0], *client, totals) : ClusterTrial(t, rng, nodes, totals);
    if (!broken.empty()) {
      std::printf("trial %d of seed %llu: %s\n", t, (unsigned long long)seed, broken.c_str());
      return 1;
    }
    if ((t + 1) % 50 == 0) std::printf("%d trials\n", t + 1), std::fflush(stdout);
  }
  std::printf("%d trials (seed %llu, %d node%s) in %.1f s, every promise held: kill -9 of %d producers, %d consumers, "
              "%d csmd (restarted); %llu acknowledged commits found whole, %llu listed objects whole, "
              "%llu reads checked by consumers, no leaked bytes after any trial\n",
              trials, (unsigned long long)seed, node_count, node_count == 1 ? "" : "s", (os::MonotonicNanos() - start) / 1e9, totals.kills["producer"],
              totals.kills["consumer"], totals.kills["csmd"], (unsigned long long)totals.acknowledged,
              (unsigned long long)totals.listed_whole, (unsigned long long)totals.consumer_checks);
  if (node_count > 1) {
    std::printf("csmd killed per node:");
    for (int id = 1; id <= node_count; ++id) {
      std::printf(" node %d%s %d", id, id == 1 ? " (the coordinator's)" : "", totals.kills["csmd of node " + std::to_string(id)]);
    }
    std::printf("\n");
  }
  return 0;
}

}  // namespace
}  // namespace csm::faults

int main(int argc, char** argv) {
  if (argc >= 3 && std::string(argv[1]) == "worker") {
    const std::string what = argv[2];
    if (what == "produce" && argc == 5) return csm::faults::Produce(argv[3], std::atoi(argv[4]));
    const std::vector<std::string> rest(argv + 3, argv + argc);
    if (what == "consume" && argc >= 4) return csm::faults::Consume(std::atoi(argv[3]), {rest.begin() + 1, rest.end()});
    if (what == "check" && argc >= 4) return csm::faults::CheckFromHere(csm::faults::kClusterNodes, rest);
    if (what == "check-listed" && argc == 3) return csm::faults::CheckFromHere(csm::faults::kClusterNodes, {});
    if (what == "delete-own" && argc == 3) return csm::faults::DeleteOwn();
    if (what == "empty" && argc == 3) return csm::faults::AwaitEmpty();
    std::fprintf(stderr, "usage: csm_fault_injection worker produce PREFIX COUNT | consume MILLIS [PREFIX...] | "
                         "check KEY... | check-listed | delete-own | empty\n");
    return 2;
  }
  CLI::App app{"kill -9 at random points of csm's producers, consumers and csmd; check nothing is lost"};
  int trials = 20;
  uint64_t seed = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  app.add_option("--trials", trials, "trials to run")->check(CLI::Range(1, 1000000));
  app.add_option("--seed", seed, "random seed (printed, to run a failure again)");
  int nodes = 1;
  app.add_option("--nodes", nodes, "1: one node; 3: a cluster of three (embedded coordinator on node 1)")
      ->check(CLI::IsMember({1, csm::faults::kClusterNodes}));
  CLI11_PARSE(app, argc, argv);
  ::setenv("CSM_LOG_LEVEL", "warn", 0);  // csmd's restarts and the workers' reattaching are expected
  return csm::faults::RunTrials(trials, seed, nodes);
}
