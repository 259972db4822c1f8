// Choosing a transport by name or by a peer address's scheme; see transport.h.
#include "csm/transport/transport.h"

#include "csm/transport/tcp_transport.h"
#ifdef CSM_HAVE_UCX
#include "csm/transport/ucx_transport.h"
#endif

namespace csm::transport {
namespace {
[[maybe_unused]] Status NoUcx() {
  return FailedPrecondition("this csm was built without UCX (libucx-dev missing, or CSM_WITH_UCX=OFF): "
                            "use --transport tcp, or rebuild with UCX");
}
}  // namespace

Result<TransportKind> ParseTransportKind(std::string_view name) {
  if (name == "tcp") return TransportKind::kTcp;
  if (name == "ucx") return TransportKind::kUcx;
  return InvalidArgument("unknown transport '" + std::string(name) + "': use tcp or ucx");
}

const char* TransportName(TransportKind kind) { return kind == TransportKind::kUcx ? "ucx" : "tcp"; }

Result<std::pair<TransportKind, std::string>> SplitPeerAddress(const std::string& address) {
  size_t scheme = address.find("://");
  if (scheme == std::string::npos) return std::make_pair(TransportKind::kTcp, address);
  CSM_ASSIGN_OR_RETURN(TransportKind kind, ParseTransportKind(address.substr(0, scheme)));
  return std::make_pair(kind, address.substr(scheme + 3));
}

std::string JoinPeerAddress(TransportKind kind, const std::string& host_port) {
  return kind == TransportKind::kTcp ? host_port : std::string(TransportName(kind)) + "://" + host_port;
}

Result<std::unique_ptr<Transport>> MakeTransport(TransportKind kind, PeerOptions options) {
  if (kind == TransportKind::kTcp) return std::unique_ptr<Transport>(new TcpTransport(std::move(options)));
#ifdef CSM_HAVE_UCX
  CSM_ASSIGN_OR_RETURN(auto ucx, UcxTransport::Create(std::move(options)));
  return std::unique_ptr<Transport>(std::move(ucx));
#else
  return NoUcx();
#endif
}

Result<std::unique_ptr<TransportServer>> StartTransportServer(TransportKind kind,
                                                              const std::string& address,
                                                              PeerOptions options,
                                                              ExtentSource source) {
  if (kind == TransportKind::kTcp) {
    CSM_ASSIGN_OR_RETURN(auto tcp, TcpTransportServer::Start(address, std::move(options), std::move(source)));
    return std::unique_ptr<TransportServer>(std::move(tcp));
  }
#ifdef CSM_HAVE_UCX
  CSM_ASSIGN_OR_RETURN(auto ucx, UcxTransportServer::Start(address, std::move(options), std::move(source)));
  return std::unique_ptr<TransportServer>(std::move(ucx));
#else
  (void)address, (void)options, (void)source;
  return NoUcx();
#endif
}

}  // namespace csm::transport
