// See loan_book.h.
#include "csm/node/loan_book.h"

#include <set>

#include "csm/base/hex.h"
#include "csm/base/range.h"
#include "csm/config.h"

namespace csm::node {

Status LoanBook::CheckRoom(uint64_t size) const {
  if (lent_ + size <= limit_) return Status::OK();
  return CapacityExceeded("this node lends at most " + FormatSize(limit_) + " of its shared memory (" +
                          FormatSize(lent_) + " lent now), not " + FormatSize(size) +
                          " more: build in your own node's memory, or raise the lender's --lend-limit");
}

void LoanBook::Add(const Loan& loan) {
  loans_[loan.addr] = loan;
  lent_ += loan.size;
}

Result<Loan> LoanBook::Take(uint64_t addr, uint32_t borrower) {
  auto it = loans_.find(addr);
  if (it == loans_.end() || it->second.borrower != borrower) {
    return NotFound("node " + std::to_string(borrower) + " holds no loan at " + Hex(addr));
  }
  Loan loan = it->second;
  loans_.erase(it);
  lent_ -= loan.size;
  return loan;
}

std::vector<Loan> LoanBook::TakeStale(uint32_t borrower, uint64_t alive_incarnation) {
  std::vector<Loan> stale;
  for (auto it = loans_.begin(); it != loans_.end();) {
    if (it->second.borrower == borrower && it->second.incarnation != alive_incarnation) {
      stale.push_back(it->second);
      lent_ -= it->second.size;
      it = loans_.erase(it);
    } else {
      ++it;
    }
  }
  return stale;
}

bool LoanBook::Covers(uint64_t addr, uint64_t size, uint32_t borrower) const {
  auto it = loans_.upper_bound(addr);
  if (it == loans_.begin()) return false;
  --it;
  return it->second.borrower == borrower && RangeWithin(addr, size, it->second.addr, it->second.size);
}

std::vector<uint32_t> LoanBook::Borrowers() const {
  std::set<uint32_t> ids;
  for (const auto& [addr, loan] : loans_) ids.insert(loan.borrower);
  return {ids.begin(), ids.end()};
}

}  // namespace csm::node
