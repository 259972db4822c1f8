// See loan_service.h.
#include "csm/node/loan_service.h"

#include <nlohmann/json.hpp>

#include "csm/base/log.h"

namespace csm::node {
namespace {

using nlohmann::json;

constexpr uint32_t kMaxFrame = 4096;
constexpr uint64_t kMaxLoan = uint64_t{1} << 40;

json Reply(const Status& s) { return {{"code", static_cast<int32_t>(s.code())}, {"message", s.message()}}; }

}  // namespace

Result<json> LoanClient::Ask(const std::string& address, const json& request) {
  for (int attempt = 0;; ++attempt) {
    CSM_ASSIGN_OR_RETURN(os::ConnectionPool::Lease conn, attempt == 0 ? pool_.Acquire(address) : pool_.Dial(address));
    Status sent = os::SendFrame(conn.fd.get(), request.dump(), timeout_ms_);
    Result<std::string> frame = sent.ok() ? os::ReceiveFrame(conn.fd.get(), kMaxFrame, timeout_ms_)
                                          : Result<std::string>(sent);
    if (!frame.ok()) {
      if (conn.reused && attempt == 0) continue;  // the lender closed a kept connection
      return frame.status().WithContext("asking the lender at " + address);
    }
    json reply = json::parse(*frame, nullptr, /*allow_exceptions=*/false);
    if (!reply.is_object() || !reply.contains("code") || !reply["code"].is_number_integer() ||
        !reply.contains("message") || !reply["message"].is_string()) {
      return Corruption("malformed reply from the lender at " + address);
    }
    pool_.Release(address, std::move(conn.fd));
    CSM_RETURN_IF_ERROR(os::StatusFromWire(reply["code"].get<int32_t>(), reply["message"].get<std::string>()));
    return reply;
  }
}

Result<std::unique_ptr<LoanServer>> LoanServer::Start(const std::string& address, const std::string& secret,
                                                      int timeout_ms, Handlers handlers) {
  std::unique_ptr<LoanServer> s(new LoanServer(std::move(handlers), timeout_ms));
  os::TcpServerOptions o;
  o.name = "loans";
  o.secret = secret;
  o.service_magic = kLoanServiceMagic;
  o.handshake_timeout_ms = std::min(timeout_ms, 2000);
  o.max_connections = 64;
  CSM_ASSIGN_OR_RETURN(s->server_, os::TcpServer::Start(address, o, [raw = s.get()](int fd) { raw->Serve(fd); }));
  return s;
}

void LoanServer::Serve(int fd) {
  for (;;) {
    auto frame = os::ReceiveFrame(fd, kMaxFrame, timeout_ms_);
    if (!frame.ok()) return;  // hung up, or idle too long
    json request = json::parse(*frame, nullptr, /*allow_exceptions=*/false);
    json reply;
    try {
      const std::string op = request.at("op").get<std::string>();
      const uint32_t borrower = request.at("borrower").get<uint32_t>();
      if (op == "borrow") {
        BorrowRequest r{borrower, request.at("incarnation").get<uint64_t>(), request.at("size").get<uint64_t>()};
        if (r.size == 0 || r.size > kMaxLoan || borrower == 0) throw std::invalid_argument("size or borrower");
        Result<LoanGrant> grant = handlers_.borrow(r);
        reply = Reply(grant.status());
        if (grant.ok()) reply.update({{"addr", grant->addr}, {"size", grant->size}, {"offset", grant->offset}});
      } else if (op == "return") {
        reply = Reply(handlers_.give_back(borrower, request.at("addr").get<uint64_t>()));
      } else {
        throw std::invalid_argument("op");
      }
    } catch (const std::exception& e) {  // json's type and range errors too
      CSM_LOG_WARN("loans: malformed request (%s); closing the connection", e.what());
      return;
    }
    if (!os::SendFrame(fd, reply.dump(), timeout_ms_).ok()) return;
  }
}

Result<LoanGrant> LoanClient::Borrow(const std::string& address, const BorrowRequest& request) {
  CSM_ASSIGN_OR_RETURN(json reply, Ask(address, {{"op", "borrow"},
                                        {"borrower", request.borrower},
                                        {"incarnation", request.incarnation},
                                        {"size", request.size}}));
  try {
    return LoanGrant{reply.at("addr").get<uint64_t>(), reply.at("size").get<uint64_t>(),
                     reply.at("offset").get<uint64_t>()};
  } catch (const json::exception&) {
    return Corruption("malformed loan from the lender at " + address);
  }
}

Status LoanClient::GiveBack(const std::string& address, uint32_t borrower, uint64_t addr) {
  return Ask(address, {{"op", "return"}, {"borrower", borrower}, {"addr", addr}}).status();
}

}  // namespace csm::node
