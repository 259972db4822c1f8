// The client ↔ csmd protocol over a Unix SOCK_SEQPACKET socket (docs/protocol.md).
//
// One message per request and per reply (one-way messages, marked below, get none).
// Every message starts with a MessageHeader; a reply carries the request id of the
// request it answers, so a client's threads may have several requests out at once and
// csmd may answer them in any order. Fields follow little-endian, strings as u32 length
// + bytes. Replies start with a status code and message. Everything received is input:
// WireReader bounds-checks every read and reports Corruption.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

#include "csm/status.h"

namespace csm::protocol {

inline constexpr uint32_t kProtocolMagic = 0x50534d43;  // "CMSP"
inline constexpr uint16_t kProtocolVersion = 4;

enum class MessageType : uint16_t {
  kHello = 1,         // → kHelloReply (+ directory fd, pin table fd)
  kAllocArena = 2,    // → kArenaReply (+ writable arena fd)
  kReleaseArena = 3,  // one-way
  kSyncArenas = 4,    // → kSyncReply (+ read-only fds of arenas new to this process)
  kCommit = 5,        // → kCommitReply
  kDelete = 6,        // → kStatusReply
  kStat = 7,          // → kJsonReply
  kInfo = 8,          // → kJsonReply
  kUnpinned = 9,      // one-way: this process dropped its last pin on a deleted object
  kList = 10,         // → kJsonReply: one page of objects, in key order
  kNodes = 11,        // → kJsonReply: the cluster's members, liveness and leases
  kResolve = 12,      // → kStatusReply once the key's object is in the local directory
                      //   (fetched from its owner node if need be)
  kArrowValidated = 13,  // one-way: this process ran Arrow's full validation on an object
  kClaimArenas = 14,     // → kClaimReply: attached again to a restarted csmd, the arenas
                         //   this process was building in
  kLazyWatch = 15,       // → kRangesReply: this process reads a lazy copy (+ its userfaultfd,
                         //   the first time): the pages to register (docs/lazy.md)
  kLazyRegistered = 16,  // one-way: it registered them; what arrived is mapped into it
  kLazyWant = 17,        // → kStatusReply once a range of a lazy copy can be read (a hint)
  kHelloReply = 101,
  kArenaReply = 102,
  kSyncReply = 104,
  kCommitReply = 105,
  kStatusReply = 106,
  kJsonReply = 107,
  kClaimReply = 108,
  kRangesReply = 109,
};

struct MessageHeader {
  uint32_t magic;
  uint16_t version;
  uint16_t type;
  uint64_t request_id;  // chosen by the client; a reply carries its request's
};
static_assert(sizeof(MessageHeader) == 16 && std::is_standard_layout_v<MessageHeader>);

class WireWriter {
 public:
  explicit WireWriter(MessageType type, uint64_t request_id = 0) {
    MessageHeader h{kProtocolMagic, kProtocolVersion, static_cast<uint16_t>(type), request_id};
    Put(h);
  }
  void SetRequestId(uint64_t id) {
    std::memcpy(bytes_.data() + offsetof(MessageHeader, request_id), &id, sizeof(id));
  }
  template <typename T>
  WireWriter& Put(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    bytes_.append(reinterpret_cast<const char*>(&v), sizeof(v));
    return *this;
  }
  WireWriter& PutString(std::string_view s) {
    Put(static_cast<uint32_t>(s.size()));
    bytes_.append(s.data(), s.size());
    return *this;
  }
  WireWriter& PutStatus(const Status& s) {
    Put(static_cast<int32_t>(s.code()));
    return PutString(s.message());
  }
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

class WireReader {
 public:
  explicit WireReader(std::string_view bytes) : bytes_(bytes) {}

  // Reads and checks the header; `type` receives the message type.
  Status ReadHeader(MessageType* type);
  uint64_t request_id() const { return request_id_; }  // after ReadHeader
  template <typename T>
  Status Get(T* out) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (bytes_.size() - pos_ < sizeof(T)) return Truncated();
    std::memcpy(out, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return Status::OK();
  }
  Status GetString(std::string* out, uint32_t max_length);
  // Reads a status code + message; returns the status it carries (or Corruption).
  Status GetStatus(Status* out);
  size_t remaining() const { return bytes_.size() - pos_; }

 private:
  Status Truncated() const {
    return Corruption("truncated protocol message (" + std::to_string(bytes_.size()) +
                      " bytes)");
  }
  std::string_view bytes_;
  size_t pos_ = 0;
  uint64_t request_id_ = 0;
};

// Identifies the binary layout of heap objects: compiler, standard library, csm
// version and layout versions. Client and csmd must agree (objects built by one are
// read in place by the other's clients).
uint64_t BuildFingerprint();
std::string BuildFingerprintText();

}  // namespace csm::protocol
