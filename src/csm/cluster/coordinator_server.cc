// The embedded coordinator's server: JSON requests from nodes over authenticated TCP;
// see coordinator.h and docs/cluster.md.
#include "csm/cluster/coordinator.h"

#include <sys/socket.h>

#include <algorithm>
#include <chrono>

#include "csm/base/log.h"
#include "csm/os/memory.h"

namespace csm::cluster {

Result<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(const std::string& address,
                                                                    std::string secret,
                                                                    int timeout_ms,
                                                                    Coordinator* coordinator) {
  if (secret.empty()) return InvalidArgument("the cluster secret must not be empty");
  std::unique_ptr<CoordinatorServer> s(new CoordinatorServer(std::move(secret), timeout_ms, coordinator));
  // Every other node keeps two connections: its requests and its record watch.
  os::TcpServerOptions o;
  o.name = "coordinator";
  o.secret = s->secret_;
  o.service_magic = kCoordinatorMagic;
  o.handshake_timeout_ms = std::min(timeout_ms, 2000);
  o.max_connections = 1024;
  CSM_ASSIGN_OR_RETURN(s->server_, os::TcpServer::Start(address, std::move(o),
                                                        [raw = s.get()](int fd) { raw->Serve(fd); }));
  return s;
}

void CoordinatorServer::Serve(int fd) {
  for (;;) {
    auto request = os::ReceiveFrame(fd, 16 << 20, timeout_ms_);
    if (!request.ok()) return;
    const std::string reply = AnswerCoordinatorRequest(*coordinator_, *request, timeout_ms_ / 2);
    if (!os::SendFrame(fd, reply, timeout_ms_).ok()) return;
  }
}

}  // namespace csm::cluster
