// `csmd` and `csm node` share this: flags that override the configuration, and the
// daemon's main loop with signal handling.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace csm::tools {

struct NodeFlags {
  std::string socket, capacity, arena_size, heap_base, heap_size, segment_size;
  uint32_t max_objects = 0;
  uint32_t max_clients = 0;
  uint32_t node_id = 1;
  std::string cluster = "csm", cluster_secret, coordinate, join, etcd, peer_address;
  std::string transport = "tcp";
  int dead_after_ms = 3000;
  int spare_memory_ms = 3000;
  std::string huge_pages = "on";
  std::string copy_ahead_below = "256K";
  uint32_t replicas = 1;
  std::string fetch = "whole";
  // A shared-memory fabric (docs/fabric.md).
  std::string shared_memory, shared_memory_offset, shared_memory_size, fabric_domain, lend_limit;
  std::string coherence = "auto";
  uint32_t cache_line = 0;
  std::string fabric_fault;
  std::string state_dir;
  bool fresh = false;
  int reattach_grace_ms = 10000;
  std::string spill_dir;
  int spill_high = 90, spill_low = 70, spill_wait_ms = 30000;
};

void AddNodeFlags(CLI::App* app, NodeFlags* flags);
// Runs the daemon until SIGINT/SIGTERM. Returns the process exit code.
int RunNode(const NodeFlags& flags);

}  // namespace csm::tools
