// Compiled by ctest with one REJECT_* macro defined; each must fail to compile with the
// message the test expects (tests/CMakeLists.txt). Without a macro it compiles.
#include <string>

#include "csm/client.h"

struct Good {
  int32_t id;
  csm::string name;
};
CSM_REGISTER_TYPE(Good, 1, id, name)

#if defined(REJECT_virtual)
struct Virtual {
  virtual ~Virtual() = default;
  int32_t id;
};
CSM_REGISTER_TYPE(Virtual, 1, id)
#endif

#if defined(REJECT_std_string)
struct WithStdString {
  std::string name;  // allocates in the producer's private heap
};
CSM_REGISTER_TYPE(WithStdString, 1, name)
#endif

#if defined(REJECT_raw_pointer)
struct WithPointer {
  const char* name;  // may point at a string literal in one binary
};
CSM_REGISTER_TYPE(WithPointer, 1, name)
#endif

int main() {
  (void)csm::TypeId<Good>();
#if defined(REJECT_virtual)
  (void)csm::TypeId<Virtual>();
#endif
#if defined(REJECT_std_string)
  (void)csm::TypeId<WithStdString>();
#endif
#if defined(REJECT_raw_pointer)
  (void)csm::TypeId<WithPointer>();
#endif
}
