// The node daemon's command line; see node_command.h.
#include "node_command.h"

#include <sys/resource.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>

#include "csm/config.h"
#include "csm/cluster/cluster_directory.h"  // kMaxCopies
#include "csm/node/daemon.h"

namespace csm::tools {
namespace {
node::Daemon* g_daemon = nullptr;  // for the signal handler only
void OnSignal(int) {
  if (g_daemon != nullptr) g_daemon->Stop();
}
}  // namespace

void AddNodeFlags(CLI::App* app, NodeFlags* f) {
  app->add_option("--socket", f->socket, "Unix socket path (default: CSM_SOCKET or /run/csm/node.sock)");
  app->add_option("--capacity", f->capacity, "memory the node may hand out, e.g. 8G");
  app->add_option("--arena-size", f->arena_size, "largest shared arena a writing process is handed (its arenas grow from 2 MiB to this), e.g. 64M");
  app->add_option("--heap-base", f->heap_base, "window base address, e.g. 0x200000000000");
  app->add_option("--heap-size", f->heap_size, "window size, e.g. 16T");
  app->add_option("--segment-size", f->segment_size, "segment size, e.g. 1G");
  app->add_option("--max-objects", f->max_objects,
                  "objects the node holds at most, copies included (power of two)");
  app->add_option("--max-clients", f->max_clients, "processes attached at once")
      ->check(CLI::Range(1u, 1u << 20));
  app->add_option("--node-id", f->node_id, "this node's id, unique in its cluster")
      ->check(CLI::Range(1u, 1u << 30));
  app->add_option("--cluster", f->cluster, "cluster name (nodes of other clusters are refused)");
  app->add_option("--cluster-secret", f->cluster_secret,
                  "secret shared by every node (default: CSM_CLUSTER_SECRET)");
  app->add_option("--coordinate", f->coordinate,
                  "host:port: host the cluster's coordinator here (the first node)");
  app->add_option("--join", f->join, "host:port of the cluster's coordinator");
  app->add_option("--etcd", f->etcd, "http://host:port: keep the cluster directory in etcd");
  app->add_option("--peer-address", f->peer_address, "host:port where this node serves objects");
  app->add_option("--transport", f->transport, "how peers fetch this node's objects: tcp or ucx")
      ->check(CLI::IsMember({"tcp", "ucx"}));
  app->add_option("--spare-memory-ms", f->spare_memory_ms,
                  "keep a destroyed arena's memory this long for the next arena of its size (0: never)")
      ->check(CLI::Range(0, 600000));
  app->add_option("--spill-dir", f->spill_dir,
                  "write objects no process pins here when memory passes --spill-high, and bring them back "
                  "on a Get (docs/operations.md, \"Spilling\")");
  app->add_option("--spill-high", f->spill_high, "spill once memory in use passes this percent of capacity")
      ->check(CLI::Range(1, 100));
  app->add_option("--spill-low", f->spill_low, "and spill until it is under this percent")->check(CLI::Range(1, 100));
  app->add_option("--spill-wait-ms", f->spill_wait_ms,
                  "how long a builder whose memory does not fit waits for spilling before CapacityExceeded")
      ->check(CLI::Range(0, 3600000));
  app->add_option("--huge-pages", f->huge_pages,
                  "on: builders' arenas ask for 2 MiB pages where the host allows them; off: 4 KiB")
      ->check(CLI::IsMember({"on", "off"}));
  app->add_option("--replicas", f->replicas,
                  "copies of each object committed here, on as many nodes, this node's included, unless a "
                  "commit asks for another count (1: none); the other nodes fetch theirs as the object is "
                  "published and take it over if this node dies")
      ->check(CLI::Range(1u, csm::cluster::kMaxCopies));
  app->add_option("--fetch", f->fetch,
                  "how a Get brings another node's object here when it does not say: whole (before it "
                  "returns), lazy (it returns at once; pages arrive as they are read, the rest in order) or "
                  "on-demand (lazily, only what is read); docs/lazy.md")
      ->check(CLI::IsMember({"whole", "lazy", "on-demand"}));
  app->add_option("--copy-ahead-below", f->copy_ahead_below,
                  "copy other nodes' objects up to this size here when they are published, "
                  "so that their Get is local (0: only when asked)");
  app->add_option("--shared-memory", f->shared_memory,
                  "put the node's memory on a shared-memory fabric: a DAX device or a file on a DAX or "
                  "shared-memory file system (/dev/shm/... on one machine) that the nodes of its domain "
                  "map in place (docs/fabric.md)");
  app->add_option("--shared-memory-offset", f->shared_memory_offset,
                  "where the node's memory starts in it (a multiple of 2M)");
  app->add_option("--shared-memory-size", f->shared_memory_size,
                  "how much of it the node uses (default: its --capacity)");
  app->add_option("--fabric-domain", f->fabric_domain,
                  "the nodes that can all map each other's --shared-memory (default: this machine)");
  app->add_option("--coherence", f->coherence,
                  "the fabric's caches: coherent, flush (not coherent: write back and invalidate "
                  "lines), stale-model (a test mode that behaves like non-coherent caches), or auto "
                  "(coherent on one machine, flush otherwise)")
      ->check(CLI::IsMember({"auto", "coherent", "flush", "stale-model"}));
  app->add_option("--cache-line", f->cache_line, "cache line size for write-back and invalidate "
                  "(default: the CPU's; POWER9: 128)");
  app->add_option("--lend-limit", f->lend_limit,
                  "how much of its shared memory other nodes of the fabric may borrow to build in "
                  "(processes with CSM_HOME_NODE=this node; default: half of it)");
  app->add_option("--fabric-fault", f->fabric_fault,
                  "tests of the stale-cache model only: leave a step of the protocol out")
      ->check(CLI::IsMember({"skip-write-back", "skip-invalidate"}))
      ->group("");
  app->add_option("--state-dir", f->state_dir,
                  "keep the node's memory and directory as files in this directory (on a memory file "
                  "system, e.g. /dev/shm/csm-node): a restarted csmd takes every committed object back "
                  "and attached processes carry on (docs/operations.md); default: they end with csmd");
  app->add_flag("--fresh", f->fresh, "with --state-dir: discard what an earlier csmd left there");
  app->add_option("--reattach-grace-ms", f->reattach_grace_ms,
                  "with --state-dir: how long a restarted csmd waits for processes to attach again "
                  "before it frees the arenas and deleted objects none claimed")
      ->check(CLI::Range(0, 600000));
  app->add_option("--dead-after-ms", f->dead_after_ms,
                  "coordinator: a node silent this long is dead")->check(CLI::Range(100, 3600000));
}

int RunNode(const NodeFlags& f) {
  auto config = LoadConfig();
  if (!config.ok()) {
    std::fprintf(stderr, "csmd: %s\n", config.status().ToString().c_str());
    return 1;
  }
  auto set = [](const std::string& text, uint64_t* field) -> Status {
    if (text.empty()) return Status::OK();
    CSM_ASSIGN_OR_RETURN(*field, ParseSize(text));
    return Status::OK();
  };
  Status s;
  if (!f.socket.empty()) config->socket_path = f.socket;
  if (s.ok()) s = set(f.capacity, &config->capacity);
  if (s.ok()) s = set(f.arena_size, &config->arena_size);
  if (s.ok()) s = set(f.heap_base, &config->window.base);
  if (s.ok()) s = set(f.heap_size, &config->window.size);
  if (s.ok()) s = set(f.segment_size, &config->window.segment_size);
  if (f.max_objects != 0) config->max_objects = f.max_objects;
  if (f.max_clients != 0) config->max_clients = f.max_clients;
  if (s.ok()) s = ValidateConfig(*config);
  node::NodeOptions options;
  options.node_id = f.node_id;
  options.cluster.name = f.cluster;
  options.cluster.secret = f.cluster_secret;
  if (options.cluster.secret.empty() && std::getenv("CSM_CLUSTER_SECRET") != nullptr) {
    options.cluster.secret = std::getenv("CSM_CLUSTER_SECRET");
  }
  options.cluster.coordinate = f.coordinate;
  options.cluster.join = f.join;
  options.cluster.etcd = f.etcd;
  options.cluster.peer_address = f.peer_address;
  options.cluster.transport = f.transport;
  options.cluster.dead_after_ms = f.dead_after_ms;
  options.cluster.copies = f.replicas;
  options.cluster.fetch = f.fetch;
  if (s.ok()) s = set(f.copy_ahead_below, &options.cluster.copy_ahead_below);
  options.spare_memory_ms = f.spare_memory_ms;
  options.spill_dir = f.spill_dir;
  options.spill_high_percent = f.spill_high;
  options.spill_low_percent = f.spill_low;
  options.spill_wait_ms = f.spill_wait_ms;
  options.huge_pages = f.huge_pages == "on";
  options.shared_memory.path = f.shared_memory;
  if (s.ok()) s = set(f.shared_memory_offset, &options.shared_memory.offset);
  if (s.ok()) s = set(f.shared_memory_size, &options.shared_memory.size);
  if (s.ok()) s = set(f.lend_limit, &options.shared_memory.lend_limit);
  options.shared_memory.domain = f.fabric_domain;
  options.shared_memory.coherence = f.coherence;
  options.shared_memory.cache_line = f.cache_line;
  options.shared_memory.fault = f.fabric_fault;
  options.state_dir = f.state_dir;
  options.fresh = f.fresh;
  options.reattach_grace_ms = f.reattach_grace_ms;
  // Every attached process holds two descriptors here (socket, pin table), every arena
  // one: the usual soft limit of 1024 would refuse clients long before max_clients.
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &files);
  }
  auto daemon = s.ok() ? node::Daemon::Create(*config, options)
                       : Result<std::unique_ptr<node::Daemon>>(s);
  if (!daemon.ok()) {
    std::fprintf(stderr, "csmd: %s\n", daemon.status().ToString().c_str());
    return 1;
  }
  g_daemon = daemon->get();
  struct sigaction sa{};
  sa.sa_handler = OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  if (uint16_t port = (*daemon)->coordinator_port()) {
    std::printf("csmd coordinator port %u\n", port);
  }
  std::printf("csmd ready at %s\n", config->socket_path.c_str());
  std::fflush(stdout);
  Status run = (*daemon)->Run();
  g_daemon = nullptr;
  if (!run.ok()) {
    std::fprintf(stderr, "csmd: %s\n", run.ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace csm::tools
