// Fuzzes the reading of an Arrow descriptor (arrow/descriptor_reader.h): the object a
// csm::GetTable reader finds in the heap, written by a process or node it does not
// trust. The input is the object's bytes, placed where fuzz_world.h says objects
// lie (the descriptor first); every vector and buffer the descriptor names must lie in
// them. Beyond "no crash": the bytes past the object are poisoned for AddressSanitizer,
// so a reader that follows a pointer out of the object is caught, and a table that reads
// must print (every value reachable) and validate. CSM_FUZZ_VERBOSE=1: each input's verdict
// on stderr.
#include <sanitizer/asan_interface.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "csm/arrow/descriptor_reader.h"
#include "fuzz_world.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace csm::fuzz;
  if (size < sizeof(csm::ArrowDescriptor) || size > kImageSize) return 0;
  static uint64_t object_id = 0;  // a new object each time: no "validated before" memory
  uint8_t* image = MapImage();
  ASAN_UNPOISON_MEMORY_REGION(image, kImageSize);
  std::memcpy(image, data, size);
  std::memset(image + size, 0, kImageSize - size);
  ASAN_POISON_MEMORY_REGION(image + size, kImageSize - size);

  csm::ObjectInfo info{};
  info.key = "fuzz";
  info.object_id = ++object_id;
  info.header = kImageBase;
  info.root = kImageBase;
  info.size = size;
  const auto* descriptor = reinterpret_cast<const csm::ArrowDescriptor*>(image);
  auto loaded = csm::arrow_descriptor::Read(*descriptor, info, {{kImageBase, size}}, nullptr, {});
  if (std::getenv("CSM_FUZZ_VERBOSE")) std::fprintf(stderr, "%s\n", loaded.status().ToString().c_str());
  if (!loaded.ok()) {
    if (!loaded.status().IsCorruption()) std::abort();  // a bad descriptor is Corruption, nothing else
    return 0;
  }
  for (const auto& column : loaded->columns) {
    (void)column->ToString();
    if (!column->ValidateFull().ok()) std::abort();  // Read let an invalid column through
  }
  return 0;
}
