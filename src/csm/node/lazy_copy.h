// LazyCopy: the bookkeeping of one copy of another node's object whose bytes arrive
// after its Get returned (docs/lazy.md): how the object's bytes are cut into blocks,
// which blocks arrived and passed their check, which pages readers may see, and which
// blocks to ask the owner for next.
//
// Blocks are those of the object's checksum (Checksum::kBlockSize bytes of its extents
// in order, after the 64-byte header; block 0 also carries the header), so each is
// checked against its own digest from the owner (transport::Transport::BlockDigests)
// before any of its bytes is shown. A page is shown once every block with bytes on it
// passed. Blocks a reader waits for come first; then, when prefetching, the others in
// order.
//
// No I/O and no threads: LazyCopies (lazy_copies.h) drives it under its lock.
// Unit-tested in lazy_copy_test.cc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

#include "csm/object/object_layout.h"

namespace csm::node {

// A range of addresses: pages to show, bytes to fetch.
struct AddrRange {
  uint64_t addr;
  uint64_t length;
  bool operator==(const AddrRange&) const = default;
};

class LazyCopy {
 public:
  // `extents`: the object's, in order, the first starting with its header.
  // `block_size`: Checksum::kBlockSize but in tests.
  LazyCopy(std::vector<object::ObjectExtent> extents, uint64_t page_size, uint64_t block_size);

  size_t blocks() const { return state_.size(); }
  uint64_t bytes() const { return total_; }
  // Block k's bytes, as ranges of addresses in stream order (block 0 starts with the
  // header). `skip` of them are not hashed (the header's 64 in block 0, else 0).
  std::vector<AddrRange> PiecesOf(size_t k) const;
  // Blocks first..last's bytes, in stream order: one range per extent they touch (a
  // peer serves ranges inside one extent each).
  std::vector<AddrRange> PiecesOf(size_t first, size_t last) const;
  uint64_t HashSkipOf(size_t k) const;
  uint64_t BytesOf(size_t k) const;
  // The block holding the byte at `addr`, if the object has it.
  std::optional<size_t> BlockAt(uint64_t addr) const;
  // The blocks with bytes on the page at `page`.
  std::vector<size_t> BlocksOn(uint64_t page) const;
  // Every page the object has bytes on, as merged ranges: what readers register.
  std::vector<AddrRange> Pages() const;
  // The pages no reader may see yet, as merged ranges (to poison when it fails).
  std::vector<AddrRange> HiddenPages() const;

  // A reader waits for the bytes of `page`: its blocks come before any other (false if
  // the page is shown already or the object has no bytes there).
  bool Want(uint64_t page);
  // Block k is wanted as if a reader waited for it (read-ahead of a reader going forward).
  void WantBlock(size_t k);
  bool Visible(uint64_t page) const;
  // The next blocks to fetch, marked in flight: up to max_blocks wanted ones not yet
  // under way, in the order they were wanted (anywhere in the object); else, if
  // `prefetch`, the first missing block in order and those right after it. Empty if none.
  std::vector<size_t> Take(size_t max_blocks, bool prefetch);
  // Block k passed its check: the pages that became visible with it (merged).
  std::vector<AddrRange> Verified(size_t k);
  // Block k did not arrive (or failed its check): missing again, and wanted first if a
  // reader waited for it. Returns how many times it failed so far.
  int Failed(size_t k);
  bool complete() const { return verified_ == state_.size(); }
  bool IsVerified(size_t k) const { return state_[k] == State::kVerified; }
  size_t verified() const { return verified_; }
  uint64_t verified_bytes() const { return verified_bytes_; }
  // Blocks a reader is waiting for (or a hint asked for) that have not passed yet.
  bool AnyWanted() const;

 private:
  enum class State : uint8_t { kMissing, kInFlight, kVerified };
  // Stream offsets [begin, end) of block k.
  uint64_t StreamBegin(size_t k) const;
  uint64_t StreamEnd(size_t k) const;
  size_t BlockOfStream(uint64_t offset) const;
  std::vector<AddrRange> PiecesOfStream(uint64_t begin, uint64_t end) const;
  // The stream offset of `addr`, if the object has it.
  std::optional<uint64_t> StreamOf(uint64_t addr) const;

  std::vector<object::ObjectExtent> extents_;
  std::vector<uint64_t> starts_;  // each extent's stream offset
  std::vector<size_t> by_addr_;   // extent indices sorted by address
  uint64_t total_ = 0;
  uint64_t page_;
  uint64_t block_;
  std::vector<State> state_;
  std::vector<uint8_t> wanted_;   // a reader waits for it
  std::vector<uint8_t> failures_;
  std::deque<size_t> want_order_;  // wanted blocks, first asked first
  size_t cursor_ = 0;              // no missing block before it but failed ones (Failed)
  size_t verified_ = 0;
  uint64_t verified_bytes_ = 0;
};

}  // namespace csm::node
