// Hex(v): "0x…", how csm writes addresses, type ids and checksums in messages and JSON.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace csm {

inline std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace csm
