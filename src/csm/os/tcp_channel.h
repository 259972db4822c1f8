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
#include <unordered_map>

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

// How a TcpServer admits connections. Until a connection has proved it knows the
// secret it costs the server a thread and a slot, so it gets little of either: a short
// deadline, a cap per source address and a cap overall, the oldest unproven connection
// making way for a new one. A flood of idle or garbage connections therefore neither
// starves authenticated peers nor keeps a new peer out for long.
struct TcpServerOptions {
  std::string name = "server";        // in log lines: "transport", "coordinator"
  std::string secret;                 // the cluster secret
  uint32_t service_magic = 0;         // names the service in the handshake
  int handshake_timeout_ms = 2000;    // to prove the secret, from accept
  int max_connections = 256;          // authenticated connections served at once
  int max_handshakes = 64;            // connections still in their handshake
  int max_handshakes_per_source = 8;  // of those, from one peer address
};

// Accepts connections on "host:port" (port 0 picks one), authenticates each
// (AcceptAuthenticated) and runs handler(fd) for the authenticated ones, each on its
// own thread. The destructor stops accepting, shuts every open connection down and
// waits for the handlers to return. Thread-safety: the counters may be read from any
// thread.
class TcpServer {
 public:
  using Handler = std::function<void(int fd)>;
  static Result<std::unique_ptr<TcpServer>> Start(const std::string& address,
                                                  TcpServerOptions options, Handler handler);
  ~TcpServer();
  uint16_t port() const { return port_; }

  struct Counters {
    uint64_t accepted = 0;       // connections accepted
    uint64_t authenticated = 0;  // of those, proved the secret
    uint64_t evicted = 0;        // unproven, closed to make room for newer ones
    uint64_t refused = 0;        // closed because max_connections were being served
  };
  Counters counters() const;

 private:
  TcpServer(TcpServerOptions options, Handler handler)
      : options_(std::move(options)), handler_(std::move(handler)) {}
  void AcceptLoop();
  void Admit(UniqueFd conn);
  // With mu_ held: shuts down the oldest connection still in its handshake (from
  // `source` if not empty), so its thread ends and frees the slot.
  void EvictOldestHandshake(const std::string& source);
  void Run(int fd);

  struct Connection {
    std::string source;     // peer address
    uint64_t order = 0;     // accept order: lower is older
    bool authenticated = false;
    bool evicted = false;
  };
  const TcpServerOptions options_;
  Handler handler_;
  UniqueFd listen_fd_, stop_fd_;
  uint16_t port_ = 0;
  std::thread acceptor_;
  mutable std::mutex mu_;
  std::condition_variable idle_;
  std::unordered_map<int, Connection> connections_;  // by fd; guarded by mu_
  uint64_t next_order_ = 0;                           // guarded by mu_
  Counters counters_;                                 // guarded by mu_
  bool stopping_ = false;                             // guarded by mu_
};

// A status code received over the wire, checked.
Status StatusFromWire(int32_t code, std::string message);

// Hex HMAC-SHA256(secret, context): lets a shared store (etcd) hold proof that a joining
// node knows the cluster secret without holding the secret itself.
std::string SecretVerifier(const std::string& secret, const std::string& context);

}  // namespace csm::os
