// Configuration shared by csmd and every client: where the global heap window lies and
// how the node is sized.
//
// Sources, later ones winning: built-in defaults; the JSON file named by CSM_CONFIG (or
// /etc/csm/csm.json if it exists); the environment (CSM_HEAP_BASE, CSM_HEAP_SIZE,
// CSM_SEGMENT_SIZE, CSM_SOCKET, CSM_CAPACITY, CSM_ARENA_SIZE, CSM_MAX_OBJECTS); then
// command-line flags of csmd/csm. Sizes accept suffixes K, M, G, T (powers of 1024).
#pragma once

#include <cstdint>
#include <string>

#include "csm/status.h"

namespace csm {

// The window every process of a cluster maps at the same address. All nodes must agree
// on all four fields; a node or client that differs is refused with an error.
struct WindowConfig {
  uint64_t base;          // first byte of the window
  uint64_t size;          // bytes reserved (PROT_NONE, no memory) in every process
  uint64_t segment_size;  // unit of ownership: each segment has one owner node
  bool operator==(const WindowConfig&) const = default;
};

struct Config {
  WindowConfig window;
  std::string socket_path;      // csmd's Unix socket
  uint64_t capacity;            // bytes of memory the node may hand out
  uint64_t arena_size;          // largest shared arena a client process is handed (they grow from 2 MiB)
  uint32_t max_objects;         // directory slots (power of two)
  uint32_t pins_per_client;     // distinct objects one process may pin at once
  uint32_t max_clients;         // connected processes at once
  // The node whose memory this process builds its objects in (CSM_HOME_NODE): 0 for its
  // own node; another node of the same shared-memory fabric lends it memory
  // (docs/fabric.md, "Building in another node's memory").
  uint32_t home_node = 0;
};

// Defaults: base 0x200000000000 and 16 TiB (under ThreadSanitizer, which owns that
// range, base 0x001000000000 and 256 GiB); 1 GiB segments; 64 MiB arenas; capacity half
// of physical memory; socket /run/csm/node.sock for root, else /tmp/csm-<uid>/node.sock.
Config DefaultConfig();

// Defaults, then the config file, then the environment.
Result<Config> LoadConfig();

// Checks the fields fit together (alignment, sizes, powers of two).
Status ValidateConfig(const Config& config);

// "64M" → 67108864; "0x200000000000" → hex. InvalidArgument on anything else.
Result<uint64_t> ParseSize(const std::string& text);
std::string FormatSize(uint64_t bytes);  // "64.0 MiB"

}  // namespace csm
