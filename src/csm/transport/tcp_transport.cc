// The tcp transport; see tcp_transport.h and docs/transport.md.
#include "csm/transport/tcp_transport.h"

#include <future>

#include "csm/base/log.h"
#include "csm/transport/fetch_protocol.h"

namespace csm::transport {

Status TcpTransport::Fetch(const std::string& address, uint64_t object_id,
                           const std::vector<object::ObjectExtent>& extents,
                           const ExtentSink& sink, uint64_t* peer_digest,
                           const ArrivalObserver* arrived) {
  const int timeout = options_.timeout_ms;
  auto context = [&](const Status& s) { return s.WithContext("fetching from peer " + address); };
  auto conn = StartFetch(pool_, address, kTransportMagic, object_id, extents,
                         peer_digest != nullptr ? kWantDigest : 0, timeout);
  if (!conn.ok()) return context(conn.status());
  // Shown to `arrived` in pieces that fit this core's L2 cache (1 MiB on the machines
  // measured), so hashing them reads the cache, not memory.
  constexpr uint64_t kPiece = 256 << 10;
  for (const auto& e : extents) {
    CSM_ASSIGN_OR_RETURN(char* dest, sink(e.addr, e.length));
    for (uint64_t at = 0; at < e.length;) {
      const uint64_t n = arrived != nullptr ? std::min(kPiece, e.length - at) : e.length - at;
      CSM_RETURN_IF_ERROR(context(os::ReadAll(conn->fd.get(), dest + at, n, timeout, "an extent")));
      if (arrived != nullptr) (*arrived)(dest + at, n);
      at += n;
    }
  }
  if (peer_digest != nullptr) {
    CSM_RETURN_IF_ERROR(context(os::ReadAll(conn->fd.get(), peer_digest, sizeof(*peer_digest), timeout,
                                            "the digest")));
  }
  pool_.Release(address, std::move(conn->fd));
  return Status::OK();
}

Result<std::vector<uint64_t>> TcpTransport::BlockDigests(const std::string& address, uint64_t object_id,
                                                         const std::vector<object::ObjectExtent>& extents) {
  auto digests = FetchBlockDigests(pool_, address, kTransportMagic, object_id, extents, options_.timeout_ms);
  if (!digests.ok()) return digests.status().WithContext("asking peer " + address + " for block digests");
  return digests;
}

Result<std::unique_ptr<TcpTransportServer>> TcpTransportServer::Start(
    const std::string& address, PeerOptions options, ExtentSource source, int max_connections) {
  if (options.secret.empty()) return InvalidArgument("the cluster secret must not be empty");
  std::unique_ptr<TcpTransportServer> s(new TcpTransportServer(std::move(options), std::move(source)));
  CSM_ASSIGN_OR_RETURN(s->server_,
                       os::TcpServer::Start(address, ServerOptions(s->options_, kTransportMagic, "transport", max_connections),
                                            [raw = s.get()](int fd) { raw->Serve(fd); }));
  return s;
}

void TcpTransportServer::Serve(int fd) {
  const int timeout = options_.timeout_ms;
  for (;;) {  // fetches until the peer hangs up
    auto request = NextFetchRequest(fd, kTransportMagic, timeout, "transport");
    if (!request) return;
    auto ranges = CheckFetchRequest(*request, source_);
    if (request->want_block_digests) {
      if (!ServeBlockDigests(fd, *request, ranges, digests_, timeout).ok()) return;
      continue;
    }
    if (!SendVerdict(fd, ranges.status(), timeout).ok()) return;
    if (!ranges.ok()) continue;
    // The digest is computed beside the sending, from the same memory (or known).
    std::future<Result<uint64_t>> digest;
    if (request->want_digest) digest = digests_.Start(*request, *ranges);
    bool sent = true;
    for (size_t i = 0; sent && i < ranges->size(); ++i) {
      const SourceRange& r = (*ranges)[i];
      sent = os::SendFileAll(fd, r.fd, r.offset, request->extents[i].length, timeout).ok();
      if (sent) bytes_served_.fetch_add(request->extents[i].length, std::memory_order_relaxed);
    }
    if (request->want_digest) {
      auto d = digest.get();
      if (!d.ok()) CSM_LOG_WARN("transport: %s", d.status().ToString().c_str());
      if (!sent || !d.ok() || !os::WriteAll(fd, &*d, sizeof(uint64_t), timeout, "the digest").ok()) return;
    }
    if (!sent) return;
  }
}

}  // namespace csm::transport
