// The fetch request both transports speak on their TCP channel (docs/transport.md):
// what a fetching node asks for, how the serving node checks it, and the verdict.
//
//   request: {u32 magic, u32 extent_count (1..kMaxExtents), u64 total_bytes (<= 1 TiB),
//             u32 flags (kWantDigest, kWantBlockDigests or 0), u32 0, u64 object_id (not 0)}
//            then extent_count x {u64 addr, u64 length}
//   verdict: {i32 status, u32 message_length (<= 4096)} then the message
//
// After an OK verdict each transport moves the bytes its own way; with kWantDigest the
// server ends the fetch with a u64: the XXH3-64 of the bytes it served (DigestRanges).
// With kWantBlockDigests the server sends no bytes but, after its OK verdict,
// {u32 count, u32 0} then count u64s: the digests of the named bytes' blocks, leaving out
// their first 64 (an object's header, which its checksum leaves out): what a lazy copy
// checks each block against as it arrives (object::BlockDigestsOf).
#pragma once

#include <cstdint>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "csm/object/object_layout.h"
#include "csm/os/connection_pool.h"
#include "csm/os/tcp_channel.h"
#include "csm/transport/transport.h"

namespace csm::transport {

// The ucx transport's control connection (ucx_transport.h); here, so that builds
// without UCX still know it.
inline constexpr uint32_t kUcxTransportMagic = 0x55534d43;  // "CMSU"

inline constexpr uint32_t kWantDigest = 1;
inline constexpr uint32_t kWantBlockDigests = 2;
inline constexpr size_t kFetchHeaderBytes = 32;   // the request's fixed part
inline constexpr size_t kVerdictHeaderBytes = 8;  // the verdict's, before its message

struct FetchRequest {
  uint64_t object_id = 0;  // the server's id of the object the extents belong to
  std::vector<object::ObjectExtent> extents;
  uint64_t total_bytes = 0;
  bool want_digest = false;
  bool want_block_digests = false;
};

// Client side.
Status SendFetchRequest(int fd, uint32_t magic, uint64_t object_id,
                        const std::vector<object::ObjectExtent>& extents, uint32_t flags,
                        int timeout_ms);
// The serving node's verdict: OK, or its refusal (e.g. NotFound for a range it does not
// own; the connection stays usable). An error of the Result itself is a broken
// connection or protocol.
struct Verdict {
  Status refusal;
};
Result<Verdict> ReceiveVerdict(int fd, int timeout_ms);

// Client side, whole exchange up to the bytes: sends the request on a kept connection
// to `address` (redialing once if a kept one went stale) and reads the verdict. A
// refusal is returned as the error (the connection goes back to the pool); on OK the
// caller moves the bytes, then gives the connection back with pool.Release.
Result<os::ConnectionPool::Lease> StartFetch(os::ConnectionPool& pool, const std::string& address,
                                             uint32_t magic, uint64_t object_id,
                                             const std::vector<object::ObjectExtent>& extents,
                                             uint32_t flags, int timeout_ms);
// Client side, whole exchange: the block digests of `extents` of the peer's object
// (kWantBlockDigests). Corruption if the peer sends another count than the bytes have
// blocks.
Result<std::vector<uint64_t>> FetchBlockDigests(os::ConnectionPool& pool, const std::string& address,
                                                uint32_t magic, uint64_t object_id,
                                                const std::vector<object::ObjectExtent>& extents,
                                                int timeout_ms);

// Server side: how a transport's TcpServer admits peers (the handshake within 2 s at
// most, a wrong secret logged as `service`; see os::TcpServerOptions).
os::TcpServerOptions ServerOptions(const PeerOptions& options, uint32_t magic, const char* service,
                                   int max_connections);
// The next request, or nullopt when the peer hung up or broke the protocol (logged).
std::optional<FetchRequest> NextFetchRequest(int fd, uint32_t magic, int timeout_ms, const char* service);

// Server side. An error means the peer broke the protocol (or hung up): close the
// connection. Bad magic, counts or sizes are refused before anything is allocated.
Result<FetchRequest> ReceiveFetchRequest(int fd, uint32_t magic, int timeout_ms);
// The request's fixed part (kFetchHeaderBytes at `header`), checked: a request whose
// `extents` are sized for the extent list that follows it. ReceiveFetchRequest's first
// step, apart so that it can be fuzzed (fuzz/fetch_protocol_fuzz.cc).
Result<FetchRequest> ParseFetchHeader(const void* header, uint32_t magic);
// Client side: the verdict's fixed part (kVerdictHeaderBytes): its status code into
// `status`, and the length of the message that follows (at most 4096).
Result<uint32_t> ParseVerdictHeader(const void* header, int32_t* status);
// Checks the whole request before a byte is served: every extent non-empty and lying in
// the named object of this node's (`source`), the lengths adding up to total_bytes.
Result<std::vector<SourceRange>> CheckFetchRequest(const FetchRequest& request,
                                                   const ExtentSource& source);
Status SendVerdict(int fd, const Status& verdict, int timeout_ms);
class ServedDigests;
// Server side: answers a checked kWantBlockDigests request, verdict included. An error
// means the connection is broken.
Status ServeBlockDigests(int fd, const FetchRequest& request, const Result<std::vector<SourceRange>>& ranges,
                         ServedDigests& digests, int timeout_ms);
// Server side: the XXH3-64 of the checked ranges' bytes, in order (read through a
// read-only mapping of each).
Result<uint64_t> DigestRanges(const std::vector<SourceRange>& ranges,
                              const std::vector<object::ObjectExtent>& extents);

// The digests a server has taken of what it served, by object id and extents: an object
// is hashed at the first fetch that asks for a digest, and later ones (many nodes
// fetching one table) are answered from here. Bytes changed after that first fetch (a
// producer writing into its committed object) then no longer match the digest, and the
// fetching node refuses them, as it would against a commit checksum.
// Thread-safety: internally locked.
class ServedDigests {
 public:
  // The digest of `ranges` (checked for `request`): ready when known; else computed on
  // another thread beside the sending (on the caller's, at get(), for small fetches)
  // and remembered once it succeeds. `request` and `ranges` must outlive the future.
  std::future<Result<uint64_t>> Start(const FetchRequest& request,
                                      const std::vector<SourceRange>& ranges);
  // The block digests of `ranges` (ServeBlockDigests): known, or computed now on the
  // caller's thread (and on helpers, for large objects) and remembered.
  Result<std::vector<uint64_t>> Blocks(const FetchRequest& request, const std::vector<SourceRange>& ranges);
  size_t size() const;

 private:
  using Key = std::pair<uint64_t, uint64_t>;  // object id, hash of the extents
  static constexpr size_t kCapacity = 4096;
  static constexpr size_t kBlockListCapacity = 256;
  static Key KeyOf(const FetchRequest& request);
  void Remember(const Key& key, uint64_t digest);
  mutable std::mutex mu_;
  std::map<Key, uint64_t> digests_;
  std::deque<Key> order_;  // oldest first
  std::map<Key, std::vector<uint64_t>> blocks_;
  std::deque<Key> blocks_order_;  // oldest first
};

}  // namespace csm::transport
