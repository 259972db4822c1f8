// Fuzzes the node-to-node fetch protocol (transport/fetch_protocol.h) as a serving node
// meets it: a peer's request (its fixed part, then its extent list) checked against this
// node's objects and arenas by the real PeerServer, and, as a fetching node meets it, a
// server's verdict. Beyond "no crash", a request that passes the check may name only bytes
// inside the object's extents and inside the arena that holds them.
//
// Input: byte 0 picks the message (even: a request, odd: a verdict); the rest is the
// message as it would arrive on the socket.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "csm/node/peer_server.h"
#include "csm/transport/fetch_protocol.h"
#include "fuzz_world.h"

namespace {

using csm::object::ObjectExtent;

using namespace csm::fuzz;

// The serving node (fuzz_world.h): one arena holding object kFetchObject.
csm::node::PeerServer& Server() {
  static csm::node::PeerServer* server = [] {
    auto* s = new csm::node::PeerServer(1);
    s->ServeWithoutTransport();
    int fd = memfd_create("fetch-fuzz-arena", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, kFetchArenaSize) != 0) std::abort();
    s->AddArena(kFetchArena, kFetchArenaSize, fd);
    s->AddObject(kFetchObject, kFetchExtents);
    return s;
  }();
  return *server;
}

bool InsideObject(uint64_t addr, uint64_t len) {
  for (const auto& e : kFetchExtents) {
    if (addr >= e.addr && len <= e.length && addr - e.addr <= e.length - len) return true;
  }
  return false;
}

void Request(const uint8_t* data, size_t size) {
  if (size < csm::transport::kFetchHeaderBytes) return;
  auto request = csm::transport::ParseFetchHeader(data, kFetchMagic);
  if (!request.ok()) return;
  data += csm::transport::kFetchHeaderBytes;
  size -= csm::transport::kFetchHeaderBytes;
  const size_t list = request->extents.size() * sizeof(ObjectExtent);
  if (size < list) return;  // the server would wait for the rest, then time out
  std::memcpy(request->extents.data(), data, list);
  auto ranges = csm::transport::CheckFetchRequest(
      *request, [](uint64_t id, uint64_t addr, uint64_t len) { return Server().Range(id, addr, len); });
  if (!ranges.ok()) return;
  if (request->object_id != kFetchObject || ranges->size() != request->extents.size()) std::abort();
  for (size_t i = 0; i < ranges->size(); ++i) {
    const ObjectExtent& e = request->extents[i];
    const csm::transport::SourceRange& r = (*ranges)[i];
    if (!InsideObject(e.addr, e.length) || r.offset != e.addr - kFetchArena || r.offset + e.length > kFetchArenaSize) {
      std::abort();  // bytes outside what this node serves
    }
  }
}

void Verdict(const uint8_t* data, size_t size) {
  if (size < csm::transport::kVerdictHeaderBytes) return;
  int32_t status = 0;
  auto length = csm::transport::ParseVerdictHeader(data, &status);
  if (!length.ok()) return;
  if (*length > 4096) std::abort();
  const size_t have = size - csm::transport::kVerdictHeaderBytes;
  if (have < *length) return;
  std::string message(reinterpret_cast<const char*>(data) + csm::transport::kVerdictHeaderBytes, *length);
  if (status != 0 && csm::os::StatusFromWire(status, message).ok()) std::abort();  // a refusal stays one
}

}  // namespace

// csm's log (a line per join, per refused request …) would cost more than the input:
// errors only, unless CSM_LOG_LEVEL says otherwise.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  setenv("CSM_LOG_LEVEL", "error", /*overwrite=*/0);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  if (data[0] % 2 == 0) {
    Request(data + 1, size - 1);
  } else {
    Verdict(data + 1, size - 1);
  }
  return 0;
}
