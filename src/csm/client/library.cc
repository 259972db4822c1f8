// libcsm.so, the library C++ applications link (`find_package(csm)`, target
// csm::client; docs/install.md): the client and the layers below it. This file holds
// what belongs to the library as a whole.
#include "csm/client.h"

namespace csm {

const char* Version() { return CSM_VERSION; }

}  // namespace csm
