// The `tcp` transport: fetches over authenticated TCP connections, kept open for the
// next fetch from the same peer (docs/transport.md).
//
// Both ends prove they know the cluster secret (os/tcp_channel.h) before any byte of an
// object moves. The server sends extents with sendfile() from its arena memfds (no copy
// through user space); the client receives each extent with recv() straight into the
// sink's memory.
//
// TcpTransportServer: owned by csmd (or a test). Connections are served on their own
// threads, so the ExtentSource must be callable from any thread.
#pragma once

#include <atomic>

#include <memory>
#include <string>

#include "csm/os/connection_pool.h"
#include "csm/os/tcp_channel.h"
#include "csm/transport/fetch_protocol.h"
#include "csm/transport/transport.h"

namespace csm::transport {

inline constexpr uint32_t kTransportMagic = 0x54534d43;  // "CMST"


class TcpTransport : public Transport {
 public:
  explicit TcpTransport(PeerOptions options)
      : options_(std::move(options)),
        pool_(options_.secret, kTransportMagic, options_.timeout_ms, options_.timeout_ms / 2) {}
  Status Fetch(const std::string& address, uint64_t object_id,
               const std::vector<object::ObjectExtent>& extents,
               const ExtentSink& sink, uint64_t* peer_digest = nullptr,
               const ArrivalObserver* arrived = nullptr) override;
  Result<std::vector<uint64_t>> BlockDigests(const std::string& address, uint64_t object_id,
                                             const std::vector<object::ObjectExtent>& extents) override;

 private:
  PeerOptions options_;
  os::ConnectionPool pool_;
};

class TcpTransportServer : public TransportServer {
 public:
  // Listens on `address` ("host:port"; port 0 picks one: see port()).
  static Result<std::unique_ptr<TcpTransportServer>> Start(const std::string& address,
                                                           PeerOptions options,
                                                           ExtentSource source,
                                                           int max_connections = 256);
  uint16_t port() const override { return server_->port(); }
  uint64_t bytes_served() const override { return bytes_served_.load(std::memory_order_relaxed); }

 private:
  TcpTransportServer(PeerOptions options, ExtentSource source)
      : options_(std::move(options)), source_(std::move(source)) {}
  void Serve(int fd);  // one connection, until the peer hangs up or misbehaves

  PeerOptions options_;
  ExtentSource source_;
  ServedDigests digests_;
  std::atomic<uint64_t> bytes_served_{0};
  std::unique_ptr<os::TcpServer> server_;  // last: stopped before the rest goes
};

}  // namespace csm::transport
