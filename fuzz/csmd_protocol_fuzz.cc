// Fuzzes the client ↔ csmd protocol decoder (protocol/messages.h): every message type,
// requests (what csmd decodes from any local process) and replies (what a client decodes
// from csmd). Beyond "no crash, no leak, no undefined behaviour", a message that decodes
// must encode to bytes that decode to the same message: decoder and encoder walk one
// field list, and this holds them to it.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "csm/protocol/messages.h"

namespace {

using namespace csm::protocol;

template <typename M>
void RoundTrip(WireReader& in, uint64_t request_id) {
  M m{};
  if (!Decode(in, &m).ok()) return;
  const std::string once = Encode(m, request_id).bytes();
  WireReader again(once);
  MessageType type{};
  M m2{};
  if (!again.ReadHeader(&type).ok() || type != M::kType || !Decode(again, &m2).ok()) std::abort();
  if (Encode(m2, request_id).bytes() != once) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  WireReader in(std::string_view(reinterpret_cast<const char*>(data), size));
  MessageType type{};
  if (!in.ReadHeader(&type).ok()) return 0;
  const uint64_t id = in.request_id();
  switch (type) {
    case MessageType::kHello: RoundTrip<Hello>(in, id); break;
    case MessageType::kAllocArena: RoundTrip<AllocArena>(in, id); break;
    case MessageType::kReleaseArena: RoundTrip<ReleaseArena>(in, id); break;
    case MessageType::kSyncArenas: RoundTrip<SyncArenas>(in, id); break;
    case MessageType::kCommit: RoundTrip<Commit>(in, id); break;
    case MessageType::kDelete: RoundTrip<Delete>(in, id); break;
    case MessageType::kStat: RoundTrip<Stat>(in, id); break;
    case MessageType::kInfo: RoundTrip<Info>(in, id); break;
    case MessageType::kUnpinned: RoundTrip<Unpinned>(in, id); break;
    case MessageType::kList: RoundTrip<List>(in, id); break;
    case MessageType::kNodes: RoundTrip<Nodes>(in, id); break;
    case MessageType::kResolve: RoundTrip<Resolve>(in, id); break;
    case MessageType::kArrowValidated: RoundTrip<ArrowValidated>(in, id); break;
    case MessageType::kClaimArenas: RoundTrip<ClaimArenas>(in, id); break;
    case MessageType::kClaimReply: RoundTrip<ClaimReply>(in, id); break;
    case MessageType::kHelloReply: RoundTrip<HelloReply>(in, id); break;
    case MessageType::kArenaReply: RoundTrip<ArenaReply>(in, id); break;
    case MessageType::kSyncReply: RoundTrip<SyncReply>(in, id); break;
    case MessageType::kCommitReply: RoundTrip<CommitReply>(in, id); break;
    case MessageType::kStatusReply: RoundTrip<StatusReply>(in, id); break;
    case MessageType::kJsonReply: RoundTrip<JsonReply>(in, id); break;
  }
  return 0;
}
