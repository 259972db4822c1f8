// Transport: brings an object's extents from the node that owns them to this node, so
// they can be mapped here at the same addresses (docs/transport.md).
//
// A transport moves raw bytes only: what to fetch (the extents of a descriptor) comes
// from the directory, which the transport knows nothing about. The serving side answers
// only for ranges inside memory its node owns (ExtentSource); the fetching side writes
// each extent straight into the memory its ExtentSink names (a replica arena), with no
// staging buffer.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "csm/object/object_layout.h"
#include "csm/status.h"

namespace csm::transport {

// Where the serving node keeps the bytes of [addr, addr+len) of its object `object_id`:
// a file (an arena memfd) and the offset of addr in it. NotFound/InvalidArgument if the
// node has no such object (deleted since the fetcher looked it up) or the range is not
// inside it: a peer is served only committed objects of the server's own, by their id.
struct SourceRange {
  int fd;
  uint64_t offset;
  std::shared_ptr<void> keep_alive;  // holds fd open while the range is being sent
};
using ExtentSource = std::function<Result<SourceRange>(uint64_t object_id, uint64_t addr, uint64_t len)>;

// Where the fetching node wants the bytes of [addr, addr+len) written: writable memory
// of at least len bytes (typically a mapping of the replica arena that will appear at
// addr in every local process).
using ExtentSink = std::function<Result<char*>(uint64_t addr, uint64_t len)>;

// Told, on the fetching thread, of each piece of the extents (in stream order) as soon
// as it has landed in the sink's memory: its bytes are still in this core's cache then,
// the cheapest moment to hash them (FetchCompanion).
using ArrivalObserver = std::function<void(const char* data, uint64_t length)>;

struct PeerOptions {
  std::string secret;       // the cluster secret: both sides must know it
  int timeout_ms = 30000;   // bound on connect, authentication and each transfer's stalls
};

// Fetches `extents` of the peer's object `object_id` (its owner's id for it, from the
// object's record) from the peer at `address` ("host:port") into `sink`.
// Unavailable if the peer cannot be reached (dead node), PermissionDenied if either
// side fails authentication, the peer's error if it refuses the request, Timeout if a
// transfer stalls, Corruption if the peer breaks the protocol.
// Thread-safety: Fetch may be called from several threads at once.
class Transport {
 public:
  virtual ~Transport() = default;
  // With `peer_digest`, the peer also computes the csm::Checksum of every byte it serves
  // (the extents in order, headers included) and it is stored there, for the caller to
  // compare with what arrived (used for objects committed without a checksum).
  // With `arrived`, every byte of the extents is shown to it once, in order, as it lands
  // (the tcp transport in pieces of 256 KiB; one that cannot tell earlier, at the end).
  virtual Status Fetch(const std::string& address, uint64_t object_id,
                       const std::vector<object::ObjectExtent>& extents,
                       const ExtentSink& sink, uint64_t* peer_digest = nullptr,
                       const ArrivalObserver* arrived = nullptr) = 0;
  // The digests of the blocks of `extents` (the object's, in order), as its checksum
  // cuts them (object::BlockDigestsOf: Checksum::kBlockSize blocks of the bytes after
  // the header), for checking each block of a lazy copy as it arrives. The peer hashes
  // its memory once per object and remembers. Errors as Fetch's.
  virtual Result<std::vector<uint64_t>> BlockDigests(const std::string& address, uint64_t object_id,
                                                     const std::vector<object::ObjectExtent>& extents) = 0;
};

// Serves this node's memory to peers until destroyed. The ExtentSource is called from
// the server's own threads.
class TransportServer {
 public:
  virtual ~TransportServer() = default;
  virtual uint16_t port() const = 0;  // the TCP port peers dial (its control channel)
  // Object bytes sent to peers so far (block digests and refused requests not counted).
  virtual uint64_t bytes_served() const = 0;
};

// The transports a cluster can use. A node advertises its peer address with the
// transport's scheme ("ucx://host:port"; plain "host:port" is tcp), so a fetching node
// knows how to talk to each owner.
enum class TransportKind { kTcp, kUcx };

Result<TransportKind> ParseTransportKind(std::string_view name);  // "tcp" | "ucx"
const char* TransportName(TransportKind kind);
// "ucx://10.0.0.1:7000" -> {kUcx, "10.0.0.1:7000"}; "10.0.0.1:7000" -> {kTcp, same}.
Result<std::pair<TransportKind, std::string>> SplitPeerAddress(const std::string& address);
std::string JoinPeerAddress(TransportKind kind, const std::string& host_port);

Result<std::unique_ptr<Transport>> MakeTransport(TransportKind kind, PeerOptions options);
// Listens on `address` ("host:port"; port 0 picks one: see port()).
Result<std::unique_ptr<TransportServer>> StartTransportServer(TransportKind kind,
                                                              const std::string& address,
                                                              PeerOptions options,
                                                              ExtentSource source);

}  // namespace csm::transport
