// Authenticated TCP connections between csm nodes, and a small threaded TCP server.
//
// Every node-to-node connection (object transport, coordinator) starts with the same
// handshake: the server sends {magic, version, nonce}; the client answers with its own
// nonce and HMAC-SHA256(secret, "client" | server nonce | client nonce); the server
// replies with a status and HMAC(secret, "server" | client nonce | server nonce). So
// both ends prove they know the cluster secret before anything else is said, and a
// proof cannot be replayed. The magic names the service: a client that dials the wrong
// port gets a clear error instead of garbage. (docs/transport.md)
//
// All I/O is bounded: a stall longer than timeout_ms fails with Timeout.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>

#include "csm/os/fd.h"
#include "csm/status.h"

namespace csm::os {

inline constexpr uint16_t kChannelVersion = 1;

// Connects to "host:port" and authenticates. Unavailable if nothing answers,
// PermissionDenied if either side fails the handshake, Corruption if the peer speaks
// another service or version.
Result<UniqueFd> DialAuthenticated(const std::string& address, const std::string& secret,
                                   uint32_t service_magic, int timeout_ms);
// Server half of the handshake on an accepted connection.
Status AcceptAuthenticated(int fd, const std::string& secret, uint32_t service_magic,
                           int timeout_ms);

// Exactly len bytes, or an error. The deadline moves with progress: only a stall times
// out, not a long transfer.
Status ReadAll(int fd, void* buf, size_t len, int timeout_ms, const char* what);
Status WriteAll(int fd, const void* buf, size_t len, int timeout_ms, const char* what);
Status SendFileAll(int sock, int fd, uint64_t offset, uint64_t len, int timeout_ms);

// Length-prefixed messages (u32 length, then bytes), at most max_bytes.
Status SendFrame(int fd, const std::string& bytes, int timeout_ms);
Result<std::string> ReceiveFrame(int fd, uint32_t max_bytes, int timeout_ms);

// Accepts connections on "host:port" (port 0 picks one) and runs handler(fd) for each
// on its own thread, at most max_connections at once. The destructor stops accepting,
// shuts every open connection down and waits for the handlers to return.
class TcpServer {
 public:
  using Handler = std::function<void(int fd)>;
  static Result<std::unique_ptr<TcpServer>> Start(const std::string& address, Handler handler,
                                                  int max_connections = 64);
  ~TcpServer();
  uint16_t port() const { return port_; }

 private:
  TcpServer(Handler handler, int max_connections)
      : handler_(std::move(handler)), max_connections_(max_connections) {}
  void AcceptLoop();

  Handler handler_;
  int max_connections_;
  UniqueFd listen_fd_, stop_fd_;
  uint16_t port_ = 0;
  std::thread acceptor_;
  std::mutex mu_;
  std::condition_variable idle_;
  std::unordered_set<int> connections_;  // guarded by mu_
  bool stopping_ = false;                // guarded by mu_
};

// A status code received over the wire, checked.
Status StatusFromWire(int32_t code, std::string message);

// Hex HMAC-SHA256(secret, context): lets a shared store (etcd) hold proof that a joining
// node knows the cluster secret without holding the secret itself.
std::string SecretVerifier(const std::string& secret, const std::string& context);

}  // namespace csm::os
