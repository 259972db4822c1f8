// Configuration loading; see include/csm/config.h.
#include "csm/config.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

namespace csm {

Config DefaultConfig() {
  Config c;
#if defined(__SANITIZE_THREAD__)
  c.window = {0x001000000000ULL, 256ULL << 30, 1ULL << 30};
#else
  c.window = {0x200000000000ULL, 16ULL << 40, 1ULL << 30};
#endif
  c.socket_path = getuid() == 0 ? "/run/csm/node.sock"
                                : "/tmp/csm-" + std::to_string(getuid()) + "/node.sock";
  uint64_t phys = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) *
                  static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  c.capacity = phys / 2;
  c.arena_size = 64ULL << 20;
  c.max_objects = 1u << 16;
  c.pins_per_client = 4096;
  c.max_clients = 1024;
  return c;
}

Result<uint64_t> ParseSize(const std::string& text) {
  if (text.empty()) return InvalidArgument("empty size");
  char* end = nullptr;
  errno = 0;
  bool hex = text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X');
  unsigned long long v = std::strtoull(text.c_str(), &end, hex ? 16 : 10);
  if (errno != 0 || end == text.c_str()) {
    return InvalidArgument("'" + text + "' is not a size (examples: 4096, 64M, 1G, 0x1000)");
  }
  std::string suffix(end);
  uint64_t mult = 1;
  if (suffix == "" || suffix == "B") mult = 1;
  else if (suffix == "K" || suffix == "KiB") mult = 1ULL << 10;
  else if (suffix == "M" || suffix == "MiB") mult = 1ULL << 20;
  else if (suffix == "G" || suffix == "GiB") mult = 1ULL << 30;
  else if (suffix == "T" || suffix == "TiB") mult = 1ULL << 40;
  else return InvalidArgument("'" + text + "': unknown size suffix '" + suffix + "' (use K, M, G, T)");
  if (v > UINT64_MAX / mult) return InvalidArgument("'" + text + "' overflows 64 bits");
  return static_cast<uint64_t>(v) * mult;
}

std::string FormatSize(uint64_t bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", v, kUnits[u]);
  return buf;
}

namespace {

bool IsPowerOfTwo(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

// Applies one setting by name; shared by the file and the environment.
Status Apply(Config& c, const std::string& name, const std::string& value) {
  auto size = [&](uint64_t& field) -> Status {
    CSM_ASSIGN_OR_RETURN(field, ParseSize(value));
    return Status::OK();
  };
  if (name == "heap_base") return size(c.window.base);
  if (name == "heap_size") return size(c.window.size);
  if (name == "segment_size") return size(c.window.segment_size);
  if (name == "capacity") return size(c.capacity);
  if (name == "arena_size") return size(c.arena_size);
  if (name == "socket") {
    c.socket_path = value;
    return Status::OK();
  }
  uint64_t n = 0;
  CSM_RETURN_IF_ERROR(size(n));
  if (n > UINT32_MAX) return InvalidArgument(name + " is too large");
  if (name == "max_objects") c.max_objects = static_cast<uint32_t>(n);
  else if (name == "pins_per_client") c.pins_per_client = static_cast<uint32_t>(n);
  else if (name == "max_clients") c.max_clients = static_cast<uint32_t>(n);
  else if (name == "home_node") c.home_node = static_cast<uint32_t>(n);
  else return InvalidArgument("unknown setting '" + name + "'");
  return Status::OK();
}

Status ApplyFile(Config& c, const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFound("cannot open config file " + path);
  nlohmann::json doc = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return InvalidArgument("config file " + path + " is not a JSON object");
  }
  for (auto& [name, value] : doc.items()) {
    std::string text = value.is_string() ? value.get<std::string>() : value.dump();
    CSM_RETURN_IF_ERROR(Apply(c, name, text).WithContext("config file " + path));
  }
  return Status::OK();
}

}  // namespace

Status ValidateConfig(const Config& c) {
  const auto& w = c.window;
  if (!IsPowerOfTwo(w.segment_size) || w.segment_size < (2ULL << 20)) {
    return InvalidArgument("segment_size " + std::to_string(w.segment_size) +
                           " must be a power of two of at least 2 MiB");
  }
  if (w.base % w.segment_size != 0 || w.size % w.segment_size != 0 || w.size == 0) {
    return InvalidArgument("heap_base and heap_size must be non-zero multiples of "
                           "segment_size (" + FormatSize(w.segment_size) + ")");
  }
  if (w.base + w.size < w.base || w.base + w.size > (1ULL << 47)) {
    return InvalidArgument("the window must end below 0x800000000000 (user space)");
  }
  if (c.arena_size % (2ULL << 20) != 0 || c.arena_size > w.segment_size) {
    return InvalidArgument("arena_size must be a multiple of 2 MiB and at most segment_size");
  }
  if (!IsPowerOfTwo(c.max_objects) || c.max_objects < 16 || c.max_objects > (1u << 24)) {
    return InvalidArgument("max_objects must be a power of two from 16 to 16777216");
  }
  if (c.capacity < c.arena_size) {
    return InvalidArgument("capacity (" + FormatSize(c.capacity) + ") must hold at least one arena (" +
                           FormatSize(c.arena_size) + "): a node with less can store nothing");
  }
  if (c.pins_per_client == 0 || c.max_clients == 0) {
    return InvalidArgument("pins_per_client and max_clients must be positive");
  }
  return Status::OK();
}

Result<Config> LoadConfig() {
  Config c = DefaultConfig();
  const char* file = std::getenv("CSM_CONFIG");
  if (file != nullptr && *file != '\0') {
    CSM_RETURN_IF_ERROR(ApplyFile(c, file));
  } else if (std::ifstream("/etc/csm/csm.json")) {
    CSM_RETURN_IF_ERROR(ApplyFile(c, "/etc/csm/csm.json"));
  }
  static const std::pair<const char*, const char*> kEnv[] = {
      {"CSM_HEAP_BASE", "heap_base"},   {"CSM_HEAP_SIZE", "heap_size"},
      {"CSM_SEGMENT_SIZE", "segment_size"}, {"CSM_SOCKET", "socket"},
      {"CSM_CAPACITY", "capacity"},     {"CSM_ARENA_SIZE", "arena_size"},
      {"CSM_MAX_OBJECTS", "max_objects"}, {"CSM_HOME_NODE", "home_node"}};
  for (auto [env, name] : kEnv) {
    const char* v = std::getenv(env);
    if (v != nullptr && *v != '\0') {
      CSM_RETURN_IF_ERROR(Apply(c, name, v).WithContext(std::string("environment ") + env));
    }
  }
  CSM_RETURN_IF_ERROR(ValidateConfig(c));
  return c;
}

}  // namespace csm
