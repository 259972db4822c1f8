// The client ↔ csmd messages, one struct each (docs/protocol.md has the table).
//
// Every message lists its fields once, in `Fields(self, io)`; Encode and Decode both walk
// that list, so the client and csmd cannot disagree on a layout. A reply starts with the
// status of the request; a reply whose status is not OK carries nothing else.
//
// Decoding checks what a hostile peer could get wrong: truncation, string lengths, list
// lengths, bytes left over (all Corruption). What the values mean (a window, an address)
// is the receiver's to check.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "csm/config.h"
#include "csm/protocol/protocol.h"
#include "csm/status.h"

namespace csm::protocol {

inline constexpr uint32_t kMaxKeyField = 4096;          // a key as sent (csm/key.h: at most 168 used)
inline constexpr uint32_t kMaxJsonField = 1u << 20;     // a JSON reply
inline constexpr uint32_t kMaxArenasListed = 1u << 16;  // arenas in one sync reply
inline constexpr uint32_t kMaxWantedRanges = 1u << 15;  // ranges in one LazyWant

// ---- requests ----

struct Hello {
  static constexpr MessageType kType = MessageType::kHello;
  uint64_t fingerprint = 0;  // BuildFingerprint() of the client
  WindowConfig window{};
  template <typename Self, typename Io>
  static Status Fields(Self& m, Io& io) {
    CSM_RETURN_IF_ERROR(io.Value(m.fingerprint));
    return io.Value(m.window);
  }
};

struct AllocArena {
  static constexpr MessageType kType = MessageType::kAllocArena;
  uint64_t min_size = 0;
  uint8_t dedicated = 0;  // alloc::ArenaUse: 1, 2 one allocation's arena, sized for it
                          // (2: overwritten wholly by the client, so it may be unzeroed)
  uint32_t home_node = 0;  // in that node's memory (a loan over the fabric); 0: this node's
  template <typename Self, typename Io>
  static Status Fields(Self& m, Io& io) {
    CSM_RETURN_IF_ERROR(io.Value(m.min_size));
    CSM_RETURN_IF_ERROR(io.Value(m.dedicated));
    return io.Value(m.home_node);
  }
};

struct ReleaseArena {  // one-way
  static constexpr MessageType kType = MessageType::kReleaseArena;
  uint64_t arena_id = 0;
  template <typename Self, typename Io>
  static Status Fields(Self& m, Io& io) { return io.Value(m.arena_id); }
};

struct SyncArenas {
  static constexpr MessageType kType = MessageType::kSyncArenas;
  uint64_t synced = 0;  // the arena sequence number the client has mapped up to
  template <typename Self, typename Io>
  static Status Fields(Self& m, Io& io) { return io.Value(m.synced); }
};

struct Commit {
  static constexpr MessageType kType = MessageType::kCommit;
  uint64_t header = 0;  // address of the object's header
  uint64_t type_id = 0;
  uint32_t copies = 0;  // on how many nodes, this one's included; 0: the node's default
  std::string key, type_name;
  template <typename Self, typename Io>
  static Status Fields(Self& m, Io& io) {
    CSM_RETURN_IF_ERROR(io.Value(m.header));
    CSM_RETURN_IF_ERROR(io.Value(m.type_id));
    CSM_RETURN_IF_ERROR(io.Value(m.copies));
    CSM_RETURN_IF_ERROR(io.Text(m.key, kMaxKeyField));
    return io.Text(m.type_name, kMaxKeyField);
  }
};

// Delete, Stat and Resolve name one key.
template <MessageType T>
struct KeyRequest {
  static constexpr MessageType kType = T;
  std::string key;
  template <typename Self, typename Io>
  static Status Fields(Self& m, Io& io) { return io.Text(m.key, kMaxKeyField); }
};
using Delete = KeyRequest<MessageType::kDelete>;    // → StatusReply
using Stat = KeyRequest<MessageType::kStat>;        // → JsonReply

// How a Get brings another node's object here (csm::Fetch): 0 the node's default, 1 whole
// before the Get returns, 2 lazily with the rest prefetched in order, 3 lazily, only what
// is read.
inline constexpr uint32_t kMaxFetchMode = 3;
struct Resolve {  // → StatusReply once the key is here (or, lazily, its copy under way)
  static constexpr MessageType kType = MessageType::kResolve;
  std::string key;
  uint32_t fetch = 0;
  template <typename Self, typename Io>
  static Status Fields(Self& m, Io& io) {
    CSM_RETURN_IF_ERROR(io.Text(m.key, kMaxKeyField));
    CSM_RETURN_IF_ERROR(io.Value(m.fetch));
    if (m.fetch > kMaxFetchMode) return Corruption("unknown fetch mode " + std::to_string(m.fetch));
    return Status::OK();
  }
};

// Info and Nodes carry nothing.
template <MessageType T>
struct EmptyRequest {
  static constexpr MessageType kType = T;
  template <typename Self, typename Io>
  static Status Fields(Self&, Io&) { return Status::OK(); }
};
using Info = EmptyRequest<MessageType::kInfo>;    // → JsonReply
using Nodes = EmptyRequest<MessageType::kNodes>;  // → JsonReply

struct List {  // → JsonReply
  static constexpr MessageType kType = MessageType::kList;
  std::string after;  // keys after this one, in order
  uint32_t limit = 0;
  template <typename Self, typename Io>
  static Status Fields(Self& m, Io& io) {
    CSM_RETURN_IF_ERROR(io.Text(m.after, kMaxKeyField));
    return io.Value(m.limit);
  }
};

struct Unpinned {  // one-way: the client dropped its last pin on a deleted object
  static constexpr MessageType kType = MessageType::kUnpinned;
  uint64_t object_id = 0;
  template <typename Self, typename Io>
  static Status Fields(Self& m, Io& io) { return io.Value(m.object_id); }
};

struct ArrowValidated {  // one-way: a reader validated the object fully; the node records it
  static constexpr MessageType kType = MessageType::kArrowValidated;
  uint64_t object_id = 0;
  template <typename Self, typename Io>
  static Status Fields(Self& m, Io& io) { return io.Value(m.object_id); }
};

struct LazyWatch {  // → RangesReply; its userfaultfd attached the first time
  static constexpr MessageType kType = MessageType::kLazyWatch;
  uint64_t object_id = 0;
  template <typename Self, typename Io>
  static Status Fields(Self& m, Io& io) { return io.Value(m.object_id); }
};

struct LazyRegistered {  // one-way
  static constexpr MessageType kType = MessageType::kLazyRegistered;
  uint64_t object_id = 0;
  template <typename Self, typename Io>
  static Status Fields(Self& m, Io& io) { return io.Value(m.object_id); }
};

struct LazyWant {  // → StatusReply once every range of lazily got objects can be read
  static constexpr MessageType kType = MessageType::kLazyWant;
  std::vector<uint64_t> ranges;  // address, length, address, length, …
  template <typename Self, typename Io>
  static Status Fields(Self& m, Io& io) { return io.Values(m.ranges, 2 * kMaxWantedRanges); }
};

struct ClaimArenas {  // a process attached again to a restarted csmd: its arenas
  static constexpr MessageType kType = MessageType::kClaimArenas;
  std::vector<uint64_t> arena_ids;
  template <typename Self, typename Io>
  static Status Fields(Self& m, Io& io) { return io.Values(m.arena_ids, kMaxArenasListed); }
};

// ---- replies ----

struct HelloReply {  // + the directory's fd and this process's pin table fd
  static constexpr MessageType kType = MessageType::kHelloReply;
  Status status;
  uint64_t client_id = 0;
  uint32_t node_id = 0;
  uint32_t slots = 0;  // directory slots
  uint32_t pins = 0;   // pin table entries
  uint64_t arena_size = 0;
  uint8_t clustered = 0;
  // The node keeps its state in files (--state-dir): when csmd ends, a new csmd takes
  // its objects back, and the process waits for it rather than giving up.
  uint8_t keeps_state = 0;
  template <typename Self, typename Io>
  static Status Fields(Self& m, Io& io) {
    CSM_RETURN_IF_ERROR(io.Outcome(m.status));
    if (!m.status.ok()) return Status::OK();
    CSM_RETURN_IF_ERROR(io.Value(m.client_id));
    CSM_RETURN_IF_ERROR(io.Value(m.node_id));
    CSM_RETURN_IF_ERROR(io.Value(m.slots));
    CSM_RETURN_IF_ERROR(io.Value(m.pins));
    CSM_RETURN_IF_ERROR(io.Value(m.arena_size));
    CSM_RETURN_IF_ERROR(io.Value(m.clustered));
    return io.Value(m.keeps_state);
  }
};

struct ArenaReply {  // + the arena's writable fd
  static constexpr MessageType kType = MessageType::kArenaReply;
  Status status;
  uint64_t arena_id = 0, seq = 0, addr = 0, size = 0;
  uint64_t offset = 0;     // where the arena starts in the fd (a fabric device's range)
  uint8_t huge_pages = 0;  // the process should ask for 2 MiB pages
  template <typename Self, typename Io>
  static Status Fields(Self& m, Io& io) {
    CSM_RETURN_IF_ERROR(io.Outcome(m.status));
    if (!m.status.ok()) return Status::OK();
    CSM_RETURN_IF_ERROR(io.Value(m.arena_id));
    CSM_RETURN_IF_ERROR(io.Value(m.seq));
    CSM_RETURN_IF_ERROR(io.Value(m.addr));
    CSM_RETURN_IF_ERROR(io.Value(m.size));
    CSM_RETURN_IF_ERROR(io.Value(m.offset));
    return io.Value(m.huge_pages);
  }
};

struct ArenaRef {
  uint64_t id, addr, size;
  uint64_t offset;  // where it starts in its fd (fresh arenas; 0 in `destroyed`)
};

struct SyncReply {  // + a read-only fd for each of `fresh`, in order
  static constexpr MessageType kType = MessageType::kSyncReply;
  Status status;
  std::vector<ArenaRef> destroyed;  // arenas it had mapped that csmd freed since
  uint64_t upto = 0;                // arenas up to this sequence number are now listed
  std::vector<ArenaRef> fresh;      // arenas new to it
  template <typename Self, typename Io>
  static Status Fields(Self& m, Io& io) {
    CSM_RETURN_IF_ERROR(io.Outcome(m.status));
    if (!m.status.ok()) return Status::OK();
    CSM_RETURN_IF_ERROR(io.Values(m.destroyed, kMaxArenasListed));
    CSM_RETURN_IF_ERROR(io.Value(m.upto));
    return io.Values(m.fresh, kMaxArenasListed);
  }
};

struct CommitReply {
  static constexpr MessageType kType = MessageType::kCommitReply;
  Status status;
  uint64_t object_id = 0;
  template <typename Self, typename Io>
  static Status Fields(Self& m, Io& io) {
    CSM_RETURN_IF_ERROR(io.Outcome(m.status));
    if (!m.status.ok()) return Status::OK();
    return io.Value(m.object_id);
  }
};

struct ClaimReply {
  static constexpr MessageType kType = MessageType::kClaimReply;
  Status status;
  std::vector<uint64_t> claimed;  // of those asked, the arenas the process writes again
  template <typename Self, typename Io>
  static Status Fields(Self& m, Io& io) {
    CSM_RETURN_IF_ERROR(io.Outcome(m.status));
    if (!m.status.ok()) return Status::OK();
    return io.Values(m.claimed, kMaxArenasListed);
  }
};

// The page ranges of a lazy copy a reader registers: {addr, length} pairs, flattened.
inline constexpr size_t kMaxRangeWords = 2 * 4096;
struct RangesReply {
  static constexpr MessageType kType = MessageType::kRangesReply;
  Status status;
  std::vector<uint64_t> ranges;
  template <typename Self, typename Io>
  static Status Fields(Self& m, Io& io) {
    CSM_RETURN_IF_ERROR(io.Outcome(m.status));
    if (!m.status.ok()) return Status::OK();
    CSM_RETURN_IF_ERROR(io.Values(m.ranges, kMaxRangeWords));
    if (m.ranges.size() % 2 != 0) return Corruption("an odd number of range words");
    return Status::OK();
  }
};

struct StatusReply {
  static constexpr MessageType kType = MessageType::kStatusReply;
  Status status;
  template <typename Self, typename Io>
  static Status Fields(Self& m, Io& io) { return io.Outcome(m.status); }
};

struct JsonReply {
  static constexpr MessageType kType = MessageType::kJsonReply;
  Status status;
  std::string json;
  template <typename Self, typename Io>
  static Status Fields(Self& m, Io& io) {
    CSM_RETURN_IF_ERROR(io.Outcome(m.status));
    if (!m.status.ok()) return Status::OK();
    return io.Text(m.json, kMaxJsonField);
  }
};

// ---- encoding and decoding: the same Fields, walked both ways ----

namespace detail {
struct Writer {
  WireWriter& out;
  template <typename T>
  Status Value(const T& v) {
    out.Put(v);
    return Status::OK();
  }
  Status Text(const std::string& s, uint32_t) {
    out.PutString(s);
    return Status::OK();
  }
  Status Outcome(const Status& s) {
    out.PutStatus(s);
    return Status::OK();
  }
  template <typename T>
  Status Values(const std::vector<T>& v, uint32_t) {
    out.Put(static_cast<uint32_t>(v.size()));
    for (const T& e : v) out.Put(e);
    return Status::OK();
  }
};
struct Reader {
  WireReader& in;
  template <typename T>
  Status Value(T& v) { return in.Get(&v); }
  Status Text(std::string& s, uint32_t max_length) { return in.GetString(&s, max_length); }
  Status Outcome(Status& s) { return in.GetStatus(&s); }
  template <typename T>
  Status Values(std::vector<T>& v, uint32_t max_count) {
    uint32_t n = 0;
    CSM_RETURN_IF_ERROR(in.Get(&n));
    if (n > max_count || n > in.remaining() / sizeof(T)) {
      return Corruption("a list of " + std::to_string(n) + " entries does not fit the message");
    }
    v.resize(n);
    for (T& e : v) CSM_RETURN_IF_ERROR(in.Get(&e));
    return Status::OK();
  }
};
}  // namespace detail

// The whole message, header included, answering (or making) request `request_id`.
template <typename M>
WireWriter Encode(const M& m, uint64_t request_id = 0) {
  WireWriter out(M::kType, request_id);
  detail::Writer w{out};
  (void)M::Fields(m, w);
  return out;
}

// The body of a message whose header `in` has read (its type must be M::kType).
template <typename M>
Status Decode(WireReader& in, M* m) {
  detail::Reader r{in};
  CSM_RETURN_IF_ERROR(M::Fields(*m, r));
  if (in.remaining() != 0) {
    return Corruption(std::to_string(in.remaining()) + " bytes past the end of a message of type " +
                      std::to_string(static_cast<int>(M::kType)));
  }
  return Status::OK();
}

// A reply of type `type` that says only that the request failed (every reply type
// encodes a failure so).
inline WireWriter FailureReply(MessageType type, const Status& status, uint64_t request_id = 0) {
  WireWriter out(type, request_id);
  out.PutStatus(status);
  return out;
}

}  // namespace csm::protocol
