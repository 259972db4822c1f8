// Fuzzes the embedded coordinator's requests (cluster/coordinator.h,
// AnswerCoordinatorRequest) as a node would send them, one after another, to one fresh
// Coordinator: join, lease, publish, lookup, list, watch, stale … with any JSON. Every
// reply must be a JSON object carrying a status code, whatever came in.
//
// Input: up to 16 requests, one per line (a JSON text holds no raw newline).
// CSM_FUZZ_VERBOSE=1: every reply on stderr.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "csm/cluster/coordinator.h"
#include "fuzz_world.h"

namespace {

using namespace csm::fuzz;

void CheckReply(const std::string& reply) {
  auto j = nlohmann::json::parse(reply, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("status") || !j["status"].is_number_integer()) std::abort();
}

}  // namespace

// csm's log (a line per join, per refused request …) would cost more than the input:
// errors only, unless CSM_LOG_LEVEL says otherwise.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  setenv("CSM_LOG_LEVEL", "error", /*overwrite=*/0);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // heartbeat 0: no recovery window to wait out (a fresh coordinator, not a restarted one).
  csm::cluster::Coordinator coordinator(kCluster, kWindow, kFingerprint, "fuzz build",
                                        /*dead_after_ms=*/10000, /*heartbeat_ms=*/0);
  static const bool verbose = std::getenv("CSM_FUZZ_VERBOSE") != nullptr;
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  for (int n = 0; n < 16 && !rest.empty(); ++n) {
    const size_t end = rest.find('\n');
    const std::string request(rest.substr(0, end));
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    const std::string reply = csm::cluster::AnswerCoordinatorRequest(coordinator, request, /*longest_watch_ms=*/0);
    if (verbose) std::fprintf(stderr, "%s\n", reply.c_str());
    CheckReply(reply);
  }
  return 0;
}
