// Type id hashing; see include/csm/type_id.h.
#include "csm/type_id.h"

#include "csm/base/hash.h"

namespace csm::internal {

// Seed fixed forever: changing it changes every type id in every heap.
constexpr uint64_t kTypeIdSeed = 0x6373'6d74'7970'6531ULL;  // "csmtype1"

uint64_t TypeIdFromName(const std::string& descriptive_name) {
  return Hash64(descriptive_name, kTypeIdSeed);
}

std::string StructName(const char* name, uint32_t version, size_t size, size_t align,
                       const std::vector<std::pair<const char*, std::string>>& members) {
  std::string s = std::string(name) + "#v" + std::to_string(version) + "@" +
                  std::to_string(size) + "/" + std::to_string(align) + "{";
  for (const auto& [member, type] : members) s += std::string(member) + ":" + type + ";";
  return s + "}";
}

}  // namespace csm::internal
