// The fetch request shared by the transports; see fetch_protocol.h.
#include "csm/transport/fetch_protocol.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "csm/base/hash.h"
#include "csm/base/log.h"
#include "csm/object/checksum.h"
#include "csm/os/memory.h"
#include "csm/os/tcp_channel.h"

namespace csm::transport {
namespace {

constexpr uint64_t kMaxFetchBytes = 1ULL << 40;
constexpr uint32_t kMaxVerdictMessage = 4096;

struct FetchHeader {
  uint32_t magic;
  uint32_t extent_count;
  uint64_t total_bytes;
  uint32_t flags;
  uint32_t reserved;
  uint64_t object_id;
};
static_assert(sizeof(FetchHeader) == kFetchHeaderBytes);

struct VerdictHeader {
  int32_t status;
  uint32_t message_length;
};
static_assert(sizeof(VerdictHeader) == kVerdictHeaderBytes);

}  // namespace

Status SendFetchRequest(int fd, uint32_t magic, uint64_t object_id,
                        const std::vector<object::ObjectExtent>& extents, uint32_t flags,
                        int timeout_ms) {
  if (extents.empty() || extents.size() > object::kMaxExtents) {
    return InvalidArgument("a fetch names 1 to " + std::to_string(object::kMaxExtents) + " extents");
  }
  uint64_t total = 0;
  for (const auto& e : extents) total += e.length;
  std::string request(sizeof(FetchHeader) + extents.size() * sizeof(object::ObjectExtent), '\0');
  FetchHeader header{magic, static_cast<uint32_t>(extents.size()), total, flags, 0, object_id};
  std::memcpy(request.data(), &header, sizeof(header));
  std::memcpy(request.data() + sizeof(header), extents.data(),
              extents.size() * sizeof(object::ObjectExtent));
  return os::WriteAll(fd, request.data(), request.size(), timeout_ms, "the request");
}

Result<uint32_t> ParseVerdictHeader(const void* header, int32_t* status) {
  VerdictHeader v{};
  std::memcpy(&v, header, sizeof(v));
  if (v.message_length > kMaxVerdictMessage) return Corruption("the peer sent an oversized reply");
  *status = v.status;
  return v.message_length;
}

Result<Verdict> ReceiveVerdict(int fd, int timeout_ms) {
  char header[kVerdictHeaderBytes];
  CSM_RETURN_IF_ERROR(os::ReadAll(fd, header, sizeof(header), timeout_ms, "the reply"));
  int32_t status = 0;
  CSM_ASSIGN_OR_RETURN(uint32_t length, ParseVerdictHeader(header, &status));
  std::string message(length, '\0');
  CSM_RETURN_IF_ERROR(os::ReadAll(fd, message.data(), message.size(), timeout_ms, "the reply"));
  if (status == 0) return Verdict{};
  return Verdict{os::StatusFromWire(status, std::move(message))};
}

Result<os::ConnectionPool::Lease> StartFetch(os::ConnectionPool& pool, const std::string& address,
                                             uint32_t magic, uint64_t object_id,
                                             const std::vector<object::ObjectExtent>& extents,
                                             uint32_t flags, int timeout_ms) {
  if (extents.empty() || extents.size() > object::kMaxExtents) {
    return InvalidArgument("a fetch names 1 to " + std::to_string(object::kMaxExtents) + " extents");
  }
  for (int attempt = 0;; ++attempt) {
    CSM_ASSIGN_OR_RETURN(os::ConnectionPool::Lease conn,
                         attempt == 0 ? pool.Acquire(address) : pool.Dial(address));
    Status sent = SendFetchRequest(conn.fd.get(), magic, object_id, extents, flags, timeout_ms);
    auto verdict = sent.ok() ? ReceiveVerdict(conn.fd.get(), timeout_ms) : Result<Verdict>(sent);
    if (!verdict.ok() && conn.reused && verdict.status().IsUnavailable()) continue;  // went stale
    if (!verdict.ok()) return verdict.status();
    if (!verdict->refusal.ok()) {
      pool.Release(address, std::move(conn.fd));
      return verdict->refusal;
    }
    return conn;
  }
}

Result<std::vector<uint64_t>> FetchBlockDigests(os::ConnectionPool& pool, const std::string& address,
                                                uint32_t magic, uint64_t object_id,
                                                const std::vector<object::ObjectExtent>& extents,
                                                int timeout_ms) {
  uint64_t total = 0;
  for (const auto& e : extents) total += e.length;
  const uint64_t hashed = total > sizeof(object::ObjectHeader) ? total - sizeof(object::ObjectHeader) : 0;
  const uint64_t expected = (hashed + Checksum::kBlockSize - 1) / Checksum::kBlockSize;
  CSM_ASSIGN_OR_RETURN(os::ConnectionPool::Lease conn,
                       StartFetch(pool, address, magic, object_id, extents, kWantBlockDigests, timeout_ms));
  uint32_t head[2] = {0, 0};
  CSM_RETURN_IF_ERROR(os::ReadAll(conn.fd.get(), head, sizeof(head), timeout_ms, "the block digests"));
  if (head[0] != expected || head[1] != 0) {
    return Corruption("peer " + address + " sent " + std::to_string(head[0]) + " block digests for " +
                      std::to_string(expected) + " blocks");
  }
  std::vector<uint64_t> digests(expected);
  CSM_RETURN_IF_ERROR(os::ReadAll(conn.fd.get(), digests.data(), digests.size() * sizeof(uint64_t), timeout_ms,
                                  "the block digests"));
  pool.Release(address, std::move(conn.fd));
  return digests;
}

Status ServeBlockDigests(int fd, const FetchRequest& request, const Result<std::vector<SourceRange>>& ranges,
                         ServedDigests& digests, int timeout_ms) {
  Result<std::vector<uint64_t>> blocks = ranges.ok() ? digests.Blocks(request, *ranges) : ranges.status();
  CSM_RETURN_IF_ERROR(SendVerdict(fd, blocks.status(), timeout_ms));
  if (!blocks.ok()) return Status::OK();
  const uint32_t head[2] = {static_cast<uint32_t>(blocks->size()), 0};
  CSM_RETURN_IF_ERROR(os::WriteAll(fd, head, sizeof(head), timeout_ms, "the block digests"));
  return os::WriteAll(fd, blocks->data(), blocks->size() * sizeof(uint64_t), timeout_ms, "the block digests");
}

os::TcpServerOptions ServerOptions(const PeerOptions& options, uint32_t magic, const char* service,
                                   int max_connections) {
  os::TcpServerOptions o;
  o.name = service;
  o.secret = options.secret;
  o.service_magic = magic;
  o.handshake_timeout_ms = std::min(options.timeout_ms, 2000);
  o.max_connections = max_connections;
  return o;
}

std::optional<FetchRequest> NextFetchRequest(int fd, uint32_t magic, int timeout_ms, const char* service) {
  auto request = ReceiveFetchRequest(fd, magic, timeout_ms);
  if (request.ok()) return std::move(*request);
  if (request.status().IsCorruption()) {
    CSM_LOG_WARN("%s: %s; closing the connection", service, request.status().message().c_str());
  }
  return std::nullopt;
}

Result<FetchRequest> ParseFetchHeader(const void* header, uint32_t magic) {
  FetchHeader h{};
  std::memcpy(&h, header, sizeof(h));
  if (h.magic != magic || h.extent_count == 0 || h.extent_count > object::kMaxExtents ||
      h.total_bytes > kMaxFetchBytes || (h.flags & ~(kWantDigest | kWantBlockDigests)) != 0 ||
      h.flags == (kWantDigest | kWantBlockDigests) || h.reserved != 0 || h.object_id == 0) {
    return Corruption("malformed fetch request");
  }
  FetchRequest r;
  r.object_id = h.object_id;
  r.total_bytes = h.total_bytes;
  r.want_digest = (h.flags & kWantDigest) != 0;
  r.want_block_digests = (h.flags & kWantBlockDigests) != 0;
  r.extents.resize(h.extent_count);
  return r;
}

Result<FetchRequest> ReceiveFetchRequest(int fd, uint32_t magic, int timeout_ms) {
  char header[kFetchHeaderBytes];
  CSM_RETURN_IF_ERROR(os::ReadAll(fd, header, sizeof(header), timeout_ms, "request"));
  CSM_ASSIGN_OR_RETURN(FetchRequest r, ParseFetchHeader(header, magic));
  CSM_RETURN_IF_ERROR(os::ReadAll(fd, r.extents.data(), r.extents.size() * sizeof(object::ObjectExtent),
                                  timeout_ms, "request"));
  return r;
}

Result<std::vector<SourceRange>> CheckFetchRequest(const FetchRequest& request,
                                                   const ExtentSource& source) {
  std::vector<SourceRange> ranges;
  ranges.reserve(request.extents.size());
  uint64_t sum = 0;
  for (const auto& e : request.extents) {
    if (e.length == 0 || e.addr + e.length < e.addr) return InvalidArgument("empty or wrapping extent");
    sum += e.length;
    CSM_ASSIGN_OR_RETURN(SourceRange r, source(request.object_id, e.addr, e.length));
    ranges.push_back(std::move(r));
  }
  if (sum != request.total_bytes) return InvalidArgument("extent lengths do not add up");
  return ranges;
}

Status SendVerdict(int fd, const Status& verdict, int timeout_ms) {
  VerdictHeader v{static_cast<int32_t>(verdict.code()),
                  static_cast<uint32_t>(std::min<size_t>(verdict.message().size(), kMaxVerdictMessage))};
  CSM_RETURN_IF_ERROR(os::WriteAll(fd, &v, sizeof(v), timeout_ms, "reply"));
  return os::WriteAll(fd, verdict.message().data(), v.message_length, timeout_ms, "reply");
}

ServedDigests::Key ServedDigests::KeyOf(const FetchRequest& request) {
  return {request.object_id, Hash64(request.extents.data(), request.extents.size() * sizeof(object::ObjectExtent))};
}

Result<std::vector<uint64_t>> ServedDigests::Blocks(const FetchRequest& request,
                                                    const std::vector<SourceRange>& ranges) {
  const Key key = KeyOf(request);
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = blocks_.find(key);
    if (it != blocks_.end()) return it->second;
  }
  // The ranges mapped read-only here, in order, then hashed as an object's extents.
  struct Mapped {
    void* map;
    uint64_t length;
  };
  std::vector<Mapped> maps;
  auto unmap = [&] {
    for (const Mapped& m : maps) ::munmap(m.map, m.length);
  };
  std::vector<object::ObjectExtent> here;
  const uint64_t page = os::PageSize();
  for (size_t i = 0; i < ranges.size(); ++i) {
    const uint64_t start = ranges[i].offset & ~(page - 1);
    const uint64_t length = ranges[i].offset - start + request.extents[i].length;
    void* map = ::mmap(nullptr, length, PROT_READ, MAP_SHARED, ranges[i].fd, static_cast<off_t>(start));
    if (map == MAP_FAILED) {
      unmap();
      return ErrnoError("mapping an extent to digest its blocks", errno);
    }
    maps.push_back({map, length});
    here.push_back({reinterpret_cast<uint64_t>(map) + (ranges[i].offset - start), request.extents[i].length});
  }
  std::vector<uint64_t> blocks = object::BlockDigestsOf(object::HashedPieces(here));
  unmap();
  std::lock_guard<std::mutex> lock(mu_);
  if (blocks_.emplace(key, blocks).second) {
    blocks_order_.push_back(key);
    if (blocks_order_.size() > kBlockListCapacity) {
      blocks_.erase(blocks_order_.front());
      blocks_order_.pop_front();
    }
  }
  return blocks;
}

std::future<Result<uint64_t>> ServedDigests::Start(const FetchRequest& request,
                                                   const std::vector<SourceRange>& ranges) {
  const Key key = KeyOf(request);
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = digests_.find(key);
    if (it != digests_.end()) {
      std::promise<Result<uint64_t>> known;
      known.set_value(it->second);
      return known.get_future();
    }
  }
  auto compute = [this, key, &request, &ranges]() -> Result<uint64_t> {
    Result<uint64_t> d = DigestRanges(ranges, request.extents);
    if (d.ok()) Remember(key, *d);
    return d;
  };
  // Starting a thread costs ~0.1 ms here: not worth it for a small fetch.
  constexpr uint64_t kSmall = 1 << 20;
  return std::async(request.total_bytes <= kSmall ? std::launch::deferred : std::launch::async, compute);
}

void ServedDigests::Remember(const Key& key, uint64_t digest) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!digests_.emplace(key, digest).second) return;
  order_.push_back(key);
  if (order_.size() > kCapacity) {
    digests_.erase(order_.front());
    order_.pop_front();
  }
}

size_t ServedDigests::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return digests_.size();
}

Result<uint64_t> DigestRanges(const std::vector<SourceRange>& ranges,
                              const std::vector<object::ObjectExtent>& extents) {
  Checksum sum;
  const uint64_t page = os::PageSize();
  for (size_t i = 0; i < ranges.size(); ++i) {
    const uint64_t start = ranges[i].offset & ~(page - 1);
    const uint64_t length = ranges[i].offset - start + extents[i].length;
    void* map = ::mmap(nullptr, length, PROT_READ, MAP_SHARED, ranges[i].fd, static_cast<off_t>(start));
    if (map == MAP_FAILED) return ErrnoError("mapping an extent to digest it", errno);
    (void)::madvise(map, length, MADV_SEQUENTIAL);
    sum.Update(static_cast<const char*>(map) + (ranges[i].offset - start), extents[i].length);
    ::munmap(map, length);
  }
  return sum.Digest();
}

}  // namespace csm::transport
