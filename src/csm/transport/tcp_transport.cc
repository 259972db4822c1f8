// The tcp transport; see tcp_transport.h and docs/transport.md.
#include "csm/transport/tcp_transport.h"

#include <cstring>

#include "csm/base/log.h"

namespace csm::transport {
namespace {

constexpr uint64_t kMaxFetchBytes = 1ULL << 40;

struct FetchHeader {
  uint32_t magic;
  uint32_t extent_count;
  uint64_t total_bytes;
};
static_assert(sizeof(FetchHeader) == 16);

struct FetchReply {
  int32_t status;
  uint32_t message_length;
};

}  // namespace

Status TcpTransport::Fetch(const std::string& address,
                           const std::vector<object::ObjectExtent>& extents,
                           const ExtentSink& sink) {
  const int timeout = options_.timeout_ms;
  auto context = [&](const Status& s) { return s.WithContext("fetching from peer " + address); };
  if (extents.empty() || extents.size() > object::kMaxExtents) {
    return InvalidArgument("a fetch names 1 to " + std::to_string(object::kMaxExtents) + " extents");
  }
  uint64_t total = 0;
  for (const auto& e : extents) total += e.length;
  CSM_ASSIGN_OR_RETURN(os::UniqueFd sock,
                       os::DialAuthenticated(address, options_.secret, kTransportMagic, timeout));
  std::string request(sizeof(FetchHeader) + extents.size() * sizeof(object::ObjectExtent), '\0');
  FetchHeader header{kTransportMagic, static_cast<uint32_t>(extents.size()), total};
  std::memcpy(request.data(), &header, sizeof(header));
  std::memcpy(request.data() + sizeof(header), extents.data(),
              extents.size() * sizeof(object::ObjectExtent));
  CSM_RETURN_IF_ERROR(context(os::WriteAll(sock.get(), request.data(), request.size(), timeout, "the request")));
  FetchReply fr{};
  CSM_RETURN_IF_ERROR(context(os::ReadAll(sock.get(), &fr, sizeof(fr), timeout, "the reply")));
  if (fr.message_length > 4096) return Corruption("peer " + address + " sent an oversized reply");
  std::string message(fr.message_length, '\0');
  CSM_RETURN_IF_ERROR(context(os::ReadAll(sock.get(), message.data(), message.size(), timeout, "the reply")));
  if (fr.status != 0) return context(os::StatusFromWire(fr.status, message));
  for (const auto& e : extents) {
    CSM_ASSIGN_OR_RETURN(char* dest, sink(e.addr, e.length));
    CSM_RETURN_IF_ERROR(context(os::ReadAll(sock.get(), dest, e.length, timeout, "an extent")));
  }
  return Status::OK();
}

Result<std::unique_ptr<TcpTransportServer>> TcpTransportServer::Start(
    const std::string& address, PeerOptions options, ExtentSource source, int max_connections) {
  if (options.secret.empty()) return InvalidArgument("the cluster secret must not be empty");
  std::unique_ptr<TcpTransportServer> s(new TcpTransportServer(std::move(options), std::move(source)));
  CSM_ASSIGN_OR_RETURN(s->server_,
                       os::TcpServer::Start(address, [raw = s.get()](int fd) { raw->Serve(fd); },
                                            max_connections));
  return s;
}

void TcpTransportServer::Serve(int fd) {
  const int timeout = options_.timeout_ms;
  Status auth = os::AcceptAuthenticated(fd, options_.secret, kTransportMagic, timeout);
  if (!auth.ok()) {
    if (auth.code() == StatusCode::kPermissionDenied) CSM_LOG_WARN("transport: %s", auth.message().c_str());
    return;
  }
  for (;;) {  // fetches until the peer hangs up
    FetchHeader h{};
    if (!os::ReadAll(fd, &h, sizeof(h), timeout, "request").ok()) return;
    if (h.magic != kTransportMagic || h.extent_count == 0 || h.extent_count > object::kMaxExtents ||
        h.total_bytes > kMaxFetchBytes) {
      CSM_LOG_WARN("transport: malformed fetch request; closing the connection");
      return;
    }
    std::vector<object::ObjectExtent> extents(h.extent_count);
    if (!os::ReadAll(fd, extents.data(), extents.size() * sizeof(object::ObjectExtent), timeout,
                     "request").ok()) {
      return;
    }
    // Check the whole request before sending a byte: every extent must lie in memory
    // this node owns, and the lengths must add up.
    Status verdict;
    std::vector<SourceRange> ranges;
    uint64_t sum = 0;
    for (const auto& e : extents) {
      if (e.length == 0 || e.addr + e.length < e.addr) {
        verdict = InvalidArgument("empty or wrapping extent");
        break;
      }
      sum += e.length;
      auto r = source_(e.addr, e.length);
      if (!r.ok()) {
        verdict = r.status();
        break;
      }
      ranges.push_back(*r);
    }
    if (verdict.ok() && sum != h.total_bytes) verdict = InvalidArgument("extent lengths do not add up");
    FetchReply fr{static_cast<int32_t>(verdict.code()),
                  static_cast<uint32_t>(std::min<size_t>(verdict.message().size(), 4096))};
    if (!os::WriteAll(fd, &fr, sizeof(fr), timeout, "reply").ok() ||
        !os::WriteAll(fd, verdict.message().data(), fr.message_length, timeout, "reply").ok()) {
      return;
    }
    if (!verdict.ok()) continue;
    for (size_t i = 0; i < extents.size(); ++i) {
      if (!os::SendFileAll(fd, ranges[i].fd, ranges[i].offset, extents[i].length, timeout).ok()) return;
    }
  }
}

}  // namespace csm::transport
