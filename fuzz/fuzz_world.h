// The world the fuzz targets run in, shared with the seed writer (write_seeds.cc) so
// that its seeds mean something to the targets: the cluster, window and node a request
// meets, the object a fetch may name, and where an object's bytes lie.
#pragma once

#include <sys/mman.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "csm/cluster/cluster_directory.h"

namespace csm::fuzz {

// The cluster the coordinator serves and the records name.
inline constexpr const char* kCluster = "fuzz";
inline constexpr uint64_t kFingerprint = 42;
inline constexpr WindowConfig kWindow{0x100000000000, 1ULL << 40, 1ULL << 30};
// The segments of the node that reads records (directory_record_fuzz).
inline const std::vector<cluster::SegmentLease> kOurSegments = {{0, 4}, {100, 1}};

// The serving node of fetch_protocol_fuzz: one arena, holding object kFetchObject in two
// extents; requests carry kFetchMagic.
inline constexpr uint32_t kFetchMagic = 0x50435346;
inline constexpr uint64_t kFetchArena = 0x100000000000, kFetchArenaSize = 1 << 20;
inline constexpr uint64_t kFetchObject = 7;
inline const std::vector<object::ObjectExtent> kFetchExtents = {{kFetchArena + 4096, 65536},
                                                                {kFetchArena + 131072, 4096}};

// Where the targets that read objects in place (arrow_descriptor_fuzz) put the object's
// bytes: one fixed range, so that the pointers in a seed are valid when the fuzzer
// replays it. It is the default heap window's first bytes (csm/config.h), which
// AddressSanitizer leaves to the program.

inline constexpr uint64_t kImageBase = 0x200000000000;
inline constexpr size_t kImageSize = 1 << 20;

// Maps the range once (read-write); the same address every call.
inline uint8_t* MapImage() {
  static uint8_t* image = [] {
    void* p = mmap(reinterpret_cast<void*>(kImageBase), kImageSize, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p != reinterpret_cast<void*>(kImageBase)) {
      std::perror("mapping the fuzz image range");
      std::abort();
    }
    return static_cast<uint8_t*>(p);
  }();
  return image;
}

}  // namespace csm::fuzz
