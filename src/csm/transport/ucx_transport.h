// The `ucx` transport: one-sided gets into the same addresses (docs/transport.md).
//
// The path to RDMA clusters. A fetch runs in two planes:
//  - control: the authenticated TCP channel (os/tcp_channel.h, magic "CMSU") carries the
//    fetch request, the serving node's checks and verdict, then its UCX worker address
//    and one remote key per extent — so only a peer that knows the cluster secret, and
//    asks only for memory the server owns, ever learns a key;
//  - data: the fetching node reads each extent with ucp_get_nbx straight into the
//    sink's memory (the replica arena), then tells the server it is done, and the
//    server unregisters the memory.
//
// The server maps each requested extent read-only from its arena memfd and registers
// exactly those pages (UCP_MEM_MAP_PROT_REMOTE_READ). A progress thread keeps its
// worker turning: over UCX's tcp transport RMA is emulated in software and needs the
// target to progress (DESIGN.md).
//
// UCX picks its lanes from UCX_TLS; when that is unset we set it to "tcp", because the
// defaults choose shared-memory lanes that hang across network namespaces. A server
// bound to a specific address restricts UCX to that address's interface.
//
// Trust: the UCX tcp interface itself has no authentication and its software RMA does
// not check remote keys; run `ucx` only on a network where every host is a cluster
// member (as one would with RDMA).
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <memory>
#include <string>
#include <thread>

#include "csm/os/connection_pool.h"
#include "csm/os/tcp_channel.h"
#include "csm/transport/fetch_protocol.h"
#include "csm/transport/transport.h"

namespace csm::transport {

class UcxWorker;  // a UCP context and worker (ucx_transport.cc)

class UcxTransport : public Transport {
 public:
  static Result<std::unique_ptr<UcxTransport>> Create(PeerOptions options);
  ~UcxTransport() override;
  Status Fetch(const std::string& address, uint64_t object_id,
               const std::vector<object::ObjectExtent>& extents,
               const ExtentSink& sink, uint64_t* peer_digest = nullptr,
               const ArrivalObserver* arrived = nullptr) override;
  Result<std::vector<uint64_t>> BlockDigests(const std::string& address, uint64_t object_id,
                                             const std::vector<object::ObjectExtent>& extents) override;

 private:
  UcxTransport(PeerOptions options, std::unique_ptr<UcxWorker> worker);
  Status FetchOver(int fd, const std::string& address,
                   const std::vector<object::ObjectExtent>& extents, const ExtentSink& sink,
                   uint64_t* peer_digest, const ArrivalObserver* arrived);
  struct Endpoint;  // a UCX endpoint to one peer worker (ucx_transport.cc)
  static constexpr size_t kMaxEndpoints = 256;
  Result<std::shared_ptr<Endpoint>> EndpointTo(const std::string& worker_address);
  void ForgetEndpoint(const std::string& worker_address, const std::shared_ptr<Endpoint>& e);

  PeerOptions options_;
  os::ConnectionPool pool_;
  std::unique_ptr<UcxWorker> worker_;
  std::mutex endpoints_mu_;
  std::map<std::string, std::shared_ptr<Endpoint>> endpoints_;  // by peer worker address
};

class UcxTransportServer : public TransportServer {
 public:
  static Result<std::unique_ptr<UcxTransportServer>> Start(const std::string& address,
                                                           PeerOptions options,
                                                           ExtentSource source,
                                                           int max_connections = 256);
  ~UcxTransportServer() override;
  uint16_t port() const override { return server_->port(); }
  uint64_t bytes_served() const override { return bytes_served_.load(std::memory_order_relaxed); }

 private:
  UcxTransportServer(PeerOptions options, ExtentSource source, std::unique_ptr<UcxWorker> worker);
  void Serve(int fd);  // one control connection, until the peer hangs up or misbehaves
  void ProgressLoop();

  PeerOptions options_;
  ExtentSource source_;
  ServedDigests digests_;
  std::atomic<uint64_t> bytes_served_{0};
  std::unique_ptr<UcxWorker> worker_;
  std::atomic<bool> stop_{false};
  std::thread progress_;
  std::unique_ptr<os::TcpServer> server_;  // last: stopped before the rest goes
};

}  // namespace csm::transport
