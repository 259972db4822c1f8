// Keys: the names objects are committed under. The rules, written once and checked on
// every path (Builder::Commit, Client::Get/Delete/Lookup, the Arrow calls, the csm CLI,
// the Python module, and csmd itself for whatever reaches its socket).
//
//   - 1 to kMaxKeyLength (168) bytes;
//   - no control characters (bytes 0x00-0x1f and 0x7f): a key is printed on one line by
//     `csm ls`, and a NUL would make two keys look the same;
//   - '#' is reserved: the parts of an appended table are committed as "<table>#<n>"
//     (csm/arrow.h), so a program commits no key containing '#'. Such keys can still be
//     read, listed and deleted by name.
//
// Any other bytes (UTF-8 included, '/' as a namespace separator by convention) are fine.
#pragma once

#include <cstdint>
#include <string_view>

#include "csm/status.h"

namespace csm {

inline constexpr uint32_t kMaxKeyLength = 168;
// The character that separates a table's key from its part numbers.
inline constexpr char kPartSeparator = '#';

// A key a program may commit under: InvalidArgument saying which rule it breaks.
Status ValidateKey(std::string_view key);
// A key that may name an existing object (Get, Lookup, Delete, csm stat): the rules
// above except that '#' is allowed, so table parts can be read by name.
Status ValidateKeyToRead(std::string_view key);

}  // namespace csm
