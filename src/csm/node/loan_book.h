// LoanBook: the memory a node on a shared-memory fabric has lent to other nodes, so that
// processes there build objects in this node's memory (docs/fabric.md, "Building in
// another node's memory").
//
// A loan is a range of this node's addresses (from its own segments) and the same-sized
// range of its shared memory, held by one incarnation of a borrower node until it gives
// it back or dies. The book bounds what is lent in all, answers whether a range is a
// borrower's (so this node may map that borrower's objects in it), and hands back the
// loans of a borrower that died.
//
// Owner: the event loop. Thread-safety: none.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "csm/status.h"

namespace csm::node {

struct Loan {
  uint64_t addr = 0, size = 0;  // in this node's segments
  uint64_t offset = 0;          // in its shared memory
  uint32_t borrower = 0;
  uint64_t incarnation = 0;  // the borrower's csmd
};

class LoanBook {
 public:
  explicit LoanBook(uint64_t limit) : limit_(limit) {}

  // CapacityExceeded if `size` more would pass the limit.
  Status CheckRoom(uint64_t size) const;
  void Add(const Loan& loan);
  // The loan at `addr` if `borrower` holds it (it gives it back), else NotFound.
  Result<Loan> Take(uint64_t addr, uint32_t borrower);
  // Every loan of `borrower` not made to `alive_incarnation` (0: all of them): its
  // earlier incarnations', or all when it is dead.
  std::vector<Loan> TakeStale(uint32_t borrower, uint64_t alive_incarnation);
  // Whether [addr, +size) lies inside a loan to `borrower`.
  bool Covers(uint64_t addr, uint64_t size, uint32_t borrower) const;
  std::vector<uint32_t> Borrowers() const;

  uint64_t lent() const { return lent_; }
  uint64_t limit() const { return limit_; }
  size_t count() const { return loans_.size(); }

 private:
  uint64_t limit_, lent_ = 0;
  std::map<uint64_t, Loan> loans_;  // by addr
};

}  // namespace csm::node
