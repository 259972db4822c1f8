// The tcp transport; see tcp_transport.h and docs/transport.md.
#include "csm/transport/tcp_transport.h"

#include "csm/base/log.h"
#include "csm/transport/fetch_protocol.h"

namespace csm::transport {

Status TcpTransport::Fetch(const std::string& address,
                           const std::vector<object::ObjectExtent>& extents,
                           const ExtentSink& sink) {
  const int timeout = options_.timeout_ms;
  auto context = [&](const Status& s) { return s.WithContext("fetching from peer " + address); };
  if (extents.empty() || extents.size() > object::kMaxExtents) {
    return InvalidArgument("a fetch names 1 to " + std::to_string(object::kMaxExtents) + " extents");
  }
  for (int attempt = 0;; ++attempt) {
    CSM_ASSIGN_OR_RETURN(os::ConnectionPool::Lease conn,
                         attempt == 0 ? pool_.Acquire(address) : pool_.Dial(address));
    const int fd = conn.fd.get();
    Status sent = SendFetchRequest(fd, kTransportMagic, extents, timeout);
    auto verdict = sent.ok() ? ReceiveVerdict(fd, timeout) : Result<Verdict>(sent);
    if (!verdict.ok() && conn.reused && verdict.status().IsUnavailable()) continue;  // went stale
    if (!verdict.ok()) return context(verdict.status());
    if (!verdict->refusal.ok()) {
      pool_.Release(address, std::move(conn.fd));
      return context(verdict->refusal);
    }
    for (const auto& e : extents) {
      CSM_ASSIGN_OR_RETURN(char* dest, sink(e.addr, e.length));
      CSM_RETURN_IF_ERROR(context(os::ReadAll(fd, dest, e.length, timeout, "an extent")));
    }
    pool_.Release(address, std::move(conn.fd));
    return Status::OK();
  }
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
    auto request = ReceiveFetchRequest(fd, kTransportMagic, timeout);
    if (!request.ok()) {
      if (request.status().IsCorruption()) {
        CSM_LOG_WARN("transport: %s; closing the connection", request.status().message().c_str());
      }
      return;
    }
    auto ranges = CheckFetchRequest(*request, source_);
    if (!SendVerdict(fd, ranges.status(), timeout).ok()) return;
    if (!ranges.ok()) continue;
    for (size_t i = 0; i < ranges->size(); ++i) {
      const SourceRange& r = (*ranges)[i];
      if (!os::SendFileAll(fd, r.fd, r.offset, request->extents[i].length, timeout).ok()) return;
    }
  }
}

}  // namespace csm::transport
