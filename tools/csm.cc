// csm: the command-line tool. `csm node` runs the daemon; the other commands attach to
// the running node as a client.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

#include "csm/client.h"
#include "node_command.h"
#ifdef CSM_HAVE_ARROW
#include "arrow_commands.h"
#endif

namespace {

int Fail(const csm::Status& s) {
  std::fprintf(stderr, "csm: %s\n", s.ToString().c_str());
  return 1;
}

std::string Age(int64_t commit_ns) {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t secs = (int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec - commit_ns) / 1000000000;
  char buf[32];
  if (secs < 120) std::snprintf(buf, sizeof(buf), "%llds", (long long)secs);
  else if (secs < 7200) std::snprintf(buf, sizeof(buf), "%lldm", (long long)secs / 60);
  else std::snprintf(buf, sizeof(buf), "%lldh", (long long)secs / 3600);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"csm: share rich data between processes in place (csm --help; csm CMD --help)"};
  app.require_subcommand(1);
  std::string socket;
  app.add_option("--socket", socket, "csmd's socket (default: CSM_SOCKET or the configured one)");

  csm::tools::NodeFlags node_flags;
  auto* node = app.add_subcommand("node", "run the node daemon (csmd) in the foreground");
  csm::tools::AddNodeFlags(node, &node_flags);
  auto* ls = app.add_subcommand("ls", "list the node's objects");
  std::string key;
  auto* stat = app.add_subcommand("stat", "show one object's descriptor, extents and pins");
  stat->add_option("KEY", key)->required();
  auto* rm = app.add_subcommand("rm", "delete an object (memory is reused once unpinned)");
  rm->add_option("KEY", key)->required();
  auto* info = app.add_subcommand("info", "node capacity, use, objects and clients");
  auto* nodes = app.add_subcommand("nodes", "cluster members, liveness and segment leases");
#ifdef CSM_HAVE_ARROW
  csm::tools::ArrowFlags arrow_flags;
  auto arrow_commands = csm::tools::AddArrowCommands(app, &arrow_flags);
#endif
  CLI11_PARSE(app, argc, argv);

  if (node->parsed()) {
    if (node_flags.socket.empty()) node_flags.socket = socket;
    return csm::tools::RunNode(node_flags);
  }
  auto config = csm::LoadConfig();
  if (!config.ok()) return Fail(config.status());
  if (!socket.empty()) config->socket_path = socket;
  auto client = csm::Client::Connect(*config);
  if (!client.ok()) return Fail(client.status());
#ifdef CSM_HAVE_ARROW
  if (auto code = csm::tools::RunArrowCommand(arrow_commands, arrow_flags, **client)) return *code;
#endif

  if (ls->parsed()) {
    std::printf("%-32s %11s %5s %6s %5s %6s %5s  %s\n", "KEY", "SIZE", "NODE", "COPIES", "PINS", "AGE", "DISK",
                "TYPE");
    std::string after;
    size_t count = 0;
    for (bool more = true; more;) {
      auto json = (*client)->ListJson(after);
      if (!json.ok()) return Fail(json.status());
      auto page = nlohmann::json::parse(*json);
      for (const auto& o : page["objects"]) {
        std::string type = o["type_name"].get<std::string>();
        if (type.size() > 60) type = type.substr(0, 57) + "...";
        // DISK: spilled (its bytes in the node's spill directory until it is read).
        const bool spilled = o.value("spilled", false);
        // COPIES: on how many nodes it is kept (replicas, docs/cluster.md); "r": this
        // node holds one of them.
        const std::string copies =
            std::to_string(o.value("copies", 1u)) + (o.value("replica", false) ? " r" : "");
        std::printf("%-32s %11s %5u %6s %5llu %6s %5s  %s\n", o["key"].get<std::string>().c_str(),
                    csm::FormatSize(o["size"].get<uint64_t>()).c_str(), o["owner_node"].get<uint32_t>(),
                    copies.c_str(), (unsigned long long)o["pins"].get<uint64_t>(),
                    Age(o["commit_time_ns"].get<int64_t>()).c_str(), spilled ? "yes" : "", type.c_str());
        after = o["key"].get<std::string>();
        ++count;
      }
      more = page["more"].get<bool>();
    }
    std::printf("%zu objects\n", count);
    return 0;
  }
  if (stat->parsed()) {
    auto json = (*client)->StatJson(key);
    if (!json.ok()) return Fail(json.status());
    std::printf("%s\n", nlohmann::json::parse(*json).dump(2).c_str());
    return 0;
  }
  if (rm->parsed()) {
    csm::Status s = (*client)->Delete(key);
    if (!s.ok()) return Fail(s);
    std::printf("deleted %s\n", key.c_str());
    return 0;
  }
  if (nodes->parsed()) {
    auto json = (*client)->NodesJson();
    if (!json.ok()) return Fail(json.status());
    auto j = nlohmann::json::parse(*json);
    std::printf("cluster '%s', this is node %u\n", j["cluster"].get<std::string>().c_str(),
                j["node_id"].get<uint32_t>());
    std::printf("%-6s %-22s %-6s %10s  %s\n", "NODE", "PEER ADDRESS", "ALIVE", "SEEN", "LEASES");
    for (const auto& m : j["members"]) {
      std::string leases;
      for (const auto& l : m["leases"]) {
        leases += l["addr"].get<std::string>() + "+" + std::to_string(l["segments"].get<uint64_t>()) + " ";
      }
      std::printf("%-6u %-22s %-6s %8lldms  %s\n", m["node_id"].get<uint32_t>(),
                  m["peer_address"].get<std::string>().c_str(), m["alive"].get<bool>() ? "yes" : "NO",
                  (long long)m["last_seen_ms_ago"].get<int64_t>(), leases.c_str());
    }
    for (const auto& m : j["members"]) {
      if (!m.contains("memory")) continue;
      const auto& mem = m["memory"];
      std::printf("node %u memory: %s, domain %s, %s, %u-byte lines\n", m["node_id"].get<uint32_t>(),
                  mem["path"].get<std::string>().c_str(), mem["domain"].get<std::string>().c_str(),
                  mem["coherence"].get<std::string>().c_str(), mem["cache_line"].get<uint32_t>());
    }
    // Reader (row) × owner (column): how the reader gets the owner's objects.
    if (!j["fabrics"].empty()) {
      std::printf("fabric (row reads column's objects):\n%8s", "");
      for (const auto& m : j["members"]) std::printf(" %6u", m["node_id"].get<uint32_t>());
      std::printf("\n");
      for (const auto& r : j["members"]) {
        const uint32_t reader = r["node_id"].get<uint32_t>();
        std::printf("%8u", reader);
        for (const auto& o : j["members"]) {
          std::string fabric = "-";
          for (const auto& f : j["fabrics"]) {
            if (f["reader"] == reader && f["owner"] == o["node_id"]) fabric = f["fabric"].get<std::string>();
          }
          std::printf(" %6s", fabric.c_str());
        }
        std::printf("\n");
      }
    }
    return 0;
  }
  if (info->parsed()) {
    auto json = (*client)->InfoJson();
    if (!json.ok()) return Fail(json.status());
    auto j = nlohmann::json::parse(*json);
    std::printf("node %u at %s\n", j["node_id"].get<uint32_t>(), j["socket"].get<std::string>().c_str());
    std::printf("window    base %s, %s, segments of %s (%llu leased)\n",
                j["window"]["base"].get<std::string>().c_str(),
                csm::FormatSize(j["window"]["size"].get<uint64_t>()).c_str(),
                csm::FormatSize(j["window"]["segment_size"].get<uint64_t>()).c_str(),
                (unsigned long long)j["segments_leased"].get<uint64_t>());
    std::printf("capacity  %s, used %s; spare %s kept for reuse (%llu arenas reused it)\n",
                csm::FormatSize(j["capacity"].get<uint64_t>()).c_str(),
                csm::FormatSize(j["used"].get<uint64_t>()).c_str(),
                csm::FormatSize(j["spare_memory_bytes"].get<uint64_t>()).c_str(),
                (unsigned long long)j["spare_memory_reused"].get<uint64_t>());
    const auto& huge = j["huge_pages"];
    const char* pages =
        huge["used"].get<bool>()    ? "2 MiB in builders' arenas, 4 KiB in copies from other nodes"
        : huge["asked"].get<bool>() ? "4 KiB: the host allows no huge pages in shared memory"
                                    : "4 KiB (csmd --huge-pages off)";
    std::printf("pages     %s (host setting transparent_hugepage/shmem_enabled: %s)\n", pages,
                huge["setting"].get<std::string>().c_str());
    std::printf("objects   %llu live, %llu deleted awaiting unpin, %llu arenas\n",
                (unsigned long long)j["objects"].get<uint64_t>(),
                (unsigned long long)j["objects_awaiting_unpin"].get<uint64_t>(),
                (unsigned long long)j["arenas"].get<uint64_t>());
    if (j.contains("record_cache")) {
      const auto& rc = j["record_cache"];
      std::printf("records   %llu cached from the directory; lookups: %llu answered here, %llu asked\n",
                  (unsigned long long)rc["records"].get<uint64_t>(),
                  (unsigned long long)rc["hits"].get<uint64_t>(),
                  (unsigned long long)rc["misses"].get<uint64_t>());
      std::printf("directory %llu requests waiting for it now (commits, deletes, leases, listings)\n",
                  (unsigned long long)j["directory_requests_waiting"].get<uint64_t>());
    }
    if (j.contains("fabric")) {
      const auto& f = j["fabric"];
      std::printf("fabric    %s of %s (%s in arenas), %s, %u-byte lines, domain %s\n",
                  csm::FormatSize(f["size"].get<uint64_t>()).c_str(), f["path"].get<std::string>().c_str(),
                  csm::FormatSize(f["allocated"].get<uint64_t>()).c_str(),
                  f["coherence"].get<std::string>().c_str(), f["cache_line"].get<uint32_t>(),
                  f["domain"].get<std::string>().c_str());
      std::printf("          lent to other nodes %s of %s (%llu loans); borrowed from them %s\n",
                  csm::FormatSize(f["lent_bytes"].get<uint64_t>()).c_str(),
                  csm::FormatSize(f["lend_limit"].get<uint64_t>()).c_str(),
                  (unsigned long long)f["loans"].get<uint64_t>(),
                  csm::FormatSize(f["borrowed_bytes"].get<uint64_t>()).c_str());
      std::printf("          %llu objects of other nodes read in place; %s written back; %llu reads "
                  "retried, %llu failed (bytes still differed from the record)\n",
                  (unsigned long long)f["reads_in_place"].get<uint64_t>(),
                  csm::FormatSize(f["written_back_bytes"].get<uint64_t>()).c_str(),
                  (unsigned long long)f["read_retries"].get<uint64_t>(),
                  (unsigned long long)f["read_failures"].get<uint64_t>());
    }
    if (j.contains("spill")) {
      const auto& sp = j["spill"];
      std::printf("spill     %llu objects (%s) in %s; above %d%% of capacity down to %d%%\n",
                  (unsigned long long)sp["objects"].get<uint64_t>(), csm::FormatSize(sp["bytes"].get<uint64_t>()).c_str(),
                  sp["dir"].get<std::string>().c_str(), sp["high_percent"].get<int>(), sp["low_percent"].get<int>());
      std::printf("          %llu spills (%s written), %llu restores (%s read), %llu lost to damaged files, "
                  "%llu waiting for room\n",
                  (unsigned long long)sp["spills"].get<uint64_t>(),
                  csm::FormatSize(sp["bytes_written"].get<uint64_t>()).c_str(),
                  (unsigned long long)sp["restores"].get<uint64_t>(),
                  csm::FormatSize(sp["bytes_read"].get<uint64_t>()).c_str(),
                  (unsigned long long)sp["lost"].get<uint64_t>(),
                  (unsigned long long)sp["waiting_for_room"].get<uint64_t>());
    }
    if (j.contains("replicas")) {
      const auto& r = j["replicas"];
      std::printf("replicas  %u copies per commit by default; %llu replicas of other nodes' objects held here (%s), "
                  "%llu fetched as replicas, %llu objects taken over from dead owners; %llu copies evicted (%s)\n",
                  r["default_copies"].get<uint32_t>(), (unsigned long long)r["held"].get<uint64_t>(),
                  csm::FormatSize(r["held_bytes"].get<uint64_t>()).c_str(),
                  (unsigned long long)r["fetches"].get<uint64_t>(), (unsigned long long)r["taken_over"].get<uint64_t>(),
                  (unsigned long long)j["replicas_evicted"].get<uint64_t>(),
                  csm::FormatSize(j["replica_bytes_evicted"].get<uint64_t>()).c_str());
    }
    std::printf("peers     %s of object bytes sent to other nodes; %llu objects fetched from them\n",
                csm::FormatSize(j["peer_bytes_served"].get<uint64_t>()).c_str(),
                (unsigned long long)j["fetches"].get<uint64_t>());
    std::printf("clients   %zu\n", j["clients"].size());
    for (const auto& c : j["clients"]) {
      std::printf("  pid %-8d arenas %-4llu pins %llu\n", c["pid"].get<int>(),
                  (unsigned long long)c["arenas"].get<uint64_t>(),
                  (unsigned long long)c["pins"].get<uint64_t>());
    }
    return 0;
  }
  return 0;
}
