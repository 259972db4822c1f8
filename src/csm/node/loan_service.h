// The lending conversation between nodes of one shared-memory fabric (docs/fabric.md,
// "Building in another node's memory"): a borrower asks a lender for a range of its
// memory and gives it back. Over an authenticated TCP connection (os/tcp_channel.h,
// service magic "CSML"), one JSON frame each way:
//
//   borrow  {"op":"borrow","borrower":N,"incarnation":I,"size":S}
//           → {"code":0,"message":"","addr":A,"size":S,"offset":O}
//   return  {"op":"return","borrower":N,"addr":A} → {"code":0,"message":""}
//
// A refusal comes back as its status code and message. A malformed request closes the
// connection. A borrower keeps its connections to lenders (a process building a GiB
// borrows a 64 MiB arena at a time: a dial and handshake per loan cost ~10% of the build).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "csm/os/connection_pool.h"
#include "csm/os/tcp_channel.h"
#include "csm/status.h"

namespace csm::node {

inline constexpr uint32_t kLoanServiceMagic = 0x4c4d5343;  // "CSML"

struct BorrowRequest {
  uint32_t borrower = 0;
  uint64_t incarnation = 0;
  uint64_t size = 0;
};
struct LoanGrant {
  uint64_t addr = 0, size = 0, offset = 0;
};

class LoanServer {
 public:
  // Called on the server's connection threads.
  struct Handlers {
    std::function<Result<LoanGrant>(const BorrowRequest&)> borrow;
    std::function<Status(uint32_t borrower, uint64_t addr)> give_back;
  };
  // Listens on "host:port" (port 0 picks one).
  static Result<std::unique_ptr<LoanServer>> Start(const std::string& address, const std::string& secret,
                                                   int timeout_ms, Handlers handlers);
  uint16_t port() const { return server_->port(); }

 private:
  LoanServer(Handlers handlers, int timeout_ms) : handlers_(std::move(handlers)), timeout_ms_(timeout_ms) {}
  void Serve(int fd);
  Handlers handlers_;
  int timeout_ms_;
  std::unique_ptr<os::TcpServer> server_;
};

// Borrower side: connections to lenders kept for reuse; every call bounded by
// timeout_ms. Thread-safe.
class LoanClient {
 public:
  LoanClient(const std::string& secret, int timeout_ms)
      : timeout_ms_(timeout_ms), pool_(secret, kLoanServiceMagic, timeout_ms, /*max_idle_ms=*/30000) {}
  Result<LoanGrant> Borrow(const std::string& address, const BorrowRequest& request);
  Status GiveBack(const std::string& address, uint32_t borrower, uint64_t addr);

 private:
  // One request and its reply; a kept connection the lender closed is redialed once.
  Result<nlohmann::json> Ask(const std::string& address, const nlohmann::json& request);
  int timeout_ms_;
  os::ConnectionPool pool_;
};

}  // namespace csm::node
