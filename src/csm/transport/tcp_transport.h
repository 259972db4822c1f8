// The `tcp` transport: one TCP connection per fetch (docs/transport.md).
//
// Both ends prove they know the cluster secret (HMAC-SHA256 over fresh nonces) before
// any byte of an object moves. The server sends extents with sendfile() from its arena
// memfds (no copy through user space); the client receives each extent with recv()
// straight into the sink's memory.
//
// TcpTransportServer: owned by csmd (or a test). Thread-safety: Start/Stop from one
// thread; connections are served on their own threads (at most max_connections), and
// the ExtentSource must be callable from any of them.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "csm/os/fd.h"
#include "csm/transport/transport.h"

namespace csm::transport {

class TcpTransport : public Transport {
 public:
  explicit TcpTransport(PeerOptions options) : options_(std::move(options)) {}
  Status Fetch(const std::string& address, const std::vector<object::ObjectExtent>& extents,
               const ExtentSink& sink) override;

 private:
  PeerOptions options_;
};

class TcpTransportServer {
 public:
  // Listens on `address` ("host:port"; port 0 picks one: see port()).
  static Result<std::unique_ptr<TcpTransportServer>> Start(const std::string& address,
                                                           PeerOptions options,
                                                           ExtentSource source,
                                                           int max_connections = 64);
  ~TcpTransportServer();  // stops and joins every connection thread
  uint16_t port() const { return port_; }

 private:
  TcpTransportServer(PeerOptions options, ExtentSource source, int max_connections)
      : options_(std::move(options)), source_(std::move(source)), max_connections_(max_connections) {}
  void AcceptLoop();
  void Serve(int fd);  // one connection, until the peer hangs up or misbehaves

  PeerOptions options_;
  ExtentSource source_;
  int max_connections_;
  os::UniqueFd listen_fd_;
  os::UniqueFd stop_fd_;
  uint16_t port_ = 0;
  std::thread acceptor_;
  // Connection threads are detached; the destructor shuts their sockets down and waits
  // until the last one has left.
  std::mutex mu_;
  std::condition_variable idle_;
  std::unordered_set<int> connections_;  // guarded by mu_
  bool stopping_ = false;                // guarded by mu_
};

}  // namespace csm::transport
