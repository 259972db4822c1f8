// The blocks and pages of a lazy copy; see lazy_copy.h.
#include "csm/node/lazy_copy.h"

#include <algorithm>

namespace csm::node {

namespace {

constexpr uint64_t kHeader = sizeof(object::ObjectHeader);

// Sorts and merges touching ranges.
std::vector<AddrRange> Merged(std::vector<AddrRange> ranges) {
  std::sort(ranges.begin(), ranges.end(), [](const AddrRange& a, const AddrRange& b) { return a.addr < b.addr; });
  std::vector<AddrRange> out;
  for (const AddrRange& r : ranges) {
    if (!out.empty() && r.addr <= out.back().addr + out.back().length) {
      out.back().length = std::max(out.back().addr + out.back().length, r.addr + r.length) - out.back().addr;
    } else {
      out.push_back(r);
    }
  }
  return out;
}

}  // namespace

LazyCopy::LazyCopy(std::vector<object::ObjectExtent> extents, uint64_t page_size, uint64_t block_size)
    : extents_(std::move(extents)), page_(page_size), block_(block_size) {
  for (const auto& e : extents_) {
    starts_.push_back(total_);
    total_ += e.length;
  }
  by_addr_.resize(extents_.size());
  for (size_t i = 0; i < by_addr_.size(); ++i) by_addr_[i] = i;
  std::sort(by_addr_.begin(), by_addr_.end(), [&](size_t a, size_t b) { return extents_[a].addr < extents_[b].addr; });
  const uint64_t hashed = total_ > kHeader ? total_ - kHeader : 0;
  const size_t blocks = std::max<uint64_t>(1, (hashed + block_ - 1) / block_);
  state_.assign(blocks, State::kMissing);
  wanted_.assign(blocks, 0);
  failures_.assign(blocks, 0);
}

uint64_t LazyCopy::StreamBegin(size_t k) const { return k == 0 ? 0 : kHeader + k * block_; }
uint64_t LazyCopy::StreamEnd(size_t k) const { return std::min(total_, kHeader + (k + 1) * block_); }
uint64_t LazyCopy::HashSkipOf(size_t k) const { return k == 0 ? std::min(total_, kHeader) : 0; }
uint64_t LazyCopy::BytesOf(size_t k) const { return StreamEnd(k) - StreamBegin(k); }

size_t LazyCopy::BlockOfStream(uint64_t offset) const {
  if (offset < kHeader + block_) return 0;
  return std::min<size_t>(state_.size() - 1, (offset - kHeader) / block_);
}

std::optional<uint64_t> LazyCopy::StreamOf(uint64_t addr) const {
  auto it = std::upper_bound(by_addr_.begin(), by_addr_.end(), addr,
                             [&](uint64_t a, size_t i) { return a < extents_[i].addr; });
  if (it == by_addr_.begin()) return std::nullopt;
  const size_t i = *std::prev(it);
  if (addr - extents_[i].addr >= extents_[i].length) return std::nullopt;
  return starts_[i] + (addr - extents_[i].addr);
}

std::vector<AddrRange> LazyCopy::PiecesOf(size_t k) const { return PiecesOfStream(StreamBegin(k), StreamEnd(k)); }

std::vector<AddrRange> LazyCopy::PiecesOf(size_t first, size_t last) const {
  return PiecesOfStream(StreamBegin(first), StreamEnd(last));
}

std::vector<AddrRange> LazyCopy::PiecesOfStream(uint64_t b, uint64_t e) const {
  std::vector<AddrRange> out;
  for (size_t i = 0; i < extents_.size(); ++i) {
    const uint64_t s = starts_[i], t = s + extents_[i].length;
    const uint64_t from = std::max(b, s), to = std::min(e, t);
    if (from < to) out.push_back({extents_[i].addr + (from - s), to - from});
  }
  return out;
}

std::optional<size_t> LazyCopy::BlockAt(uint64_t addr) const {
  auto s = StreamOf(addr);
  if (!s) return std::nullopt;
  return BlockOfStream(*s);
}

std::vector<size_t> LazyCopy::BlocksOn(uint64_t page) const {
  const uint64_t end = page + page_;
  std::vector<size_t> out;
  // Extents by address: those that start before the page's end and end after its start.
  auto it = std::lower_bound(by_addr_.begin(), by_addr_.end(), end,
                             [&](size_t i, uint64_t a) { return extents_[i].addr < a; });
  while (it != by_addr_.begin()) {
    --it;
    const auto& x = extents_[*it];
    if (x.addr + x.length <= page) {
      // Extents are disjoint: earlier ones (by start) may still reach the page only if
      // this one lies inside the page; keep looking while starts are on the page.
      if (x.addr < page) break;
      continue;
    }
    const uint64_t from = std::max(page, x.addr), to = std::min(end, x.addr + x.length);
    const uint64_t s = starts_[*it] + (from - x.addr);
    for (size_t k = BlockOfStream(s); k <= BlockOfStream(s + (to - from) - 1); ++k) out.push_back(k);
    if (x.addr <= page) break;
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<AddrRange> LazyCopy::Pages() const {
  std::vector<AddrRange> pages;
  for (const auto& e : extents_) {
    const uint64_t from = e.addr / page_ * page_;
    const uint64_t to = (e.addr + e.length + page_ - 1) / page_ * page_;
    pages.push_back({from, to - from});
  }
  return Merged(std::move(pages));
}

bool LazyCopy::Visible(uint64_t page) const {
  std::vector<size_t> blocks = BlocksOn(page);
  if (blocks.empty()) return false;
  for (size_t k : blocks) {
    if (state_[k] != State::kVerified) return false;
  }
  return true;
}

std::vector<AddrRange> LazyCopy::HiddenPages() const {
  std::vector<AddrRange> hidden;
  for (const AddrRange& r : Pages()) {
    for (uint64_t p = r.addr; p < r.addr + r.length; p += page_) {
      if (!Visible(p)) hidden.push_back({p, page_});
    }
  }
  return Merged(std::move(hidden));
}

bool LazyCopy::Want(uint64_t page) {
  bool waits = false;
  for (size_t k : BlocksOn(page)) {
    if (state_[k] == State::kVerified) continue;
    waits = true;
    if (!wanted_[k]) {
      wanted_[k] = 1;
      want_order_.push_back(k);
    }
  }
  return waits;
}

void LazyCopy::WantBlock(size_t k) {
  if (k >= state_.size() || state_[k] == State::kVerified || wanted_[k]) return;
  wanted_[k] = 1;
  want_order_.push_back(k);
}

bool LazyCopy::AnyWanted() const {
  for (size_t k : want_order_) {
    if (state_[k] != State::kVerified) return true;
  }
  return false;
}

std::vector<size_t> LazyCopy::Take(size_t max_blocks, bool prefetch) {
  std::optional<size_t> first;
  while (!want_order_.empty()) {
    const size_t k = want_order_.front();
    if (state_[k] == State::kMissing) {
      first = k;
      break;
    }
    want_order_.pop_front();  // under way or done: Failed puts it back if need be
  }
  if (!first && prefetch) {
    while (cursor_ < state_.size() && state_[cursor_] != State::kMissing) ++cursor_;
    if (cursor_ < state_.size()) first = cursor_;
  }
  std::vector<size_t> out;
  if (!first) return out;
  const size_t most = std::max<size_t>(1, max_blocks);
  if (wanted_[*first] != 0) {
    // The blocks readers wait for, in the order they asked for them, wherever they lie:
    // one request brings a query's scattered pages (tables' offsets, a column's buffers).
    for (size_t k : want_order_) {
      if (out.size() == most) break;
      if (state_[k] != State::kMissing) continue;
      state_[k] = State::kInFlight;
      out.push_back(k);
    }
    return out;
  }
  for (size_t k = *first; k < state_.size() && out.size() < most && state_[k] == State::kMissing; ++k) {
    state_[k] = State::kInFlight;
    out.push_back(k);
  }
  return out;
}

std::vector<AddrRange> LazyCopy::Verified(size_t k) {
  if (state_[k] == State::kVerified) return {};
  state_[k] = State::kVerified;
  ++verified_;
  verified_bytes_ += BytesOf(k);
  std::vector<AddrRange> shown;
  for (const AddrRange& piece : PiecesOf(k)) {
    const uint64_t first = piece.addr / page_ * page_;
    const uint64_t last = (piece.addr + piece.length - 1) / page_ * page_;
    // Pages inside the piece hold bytes of block k alone; its edge pages may share
    // blocks with others.
    for (uint64_t p = first; p <= last; p += page_) {
      const bool edge = p == first || p == last;
      if (!edge || Visible(p)) shown.push_back({p, page_});
      if (p == first && last > first + page_) {  // the run between the edges at once
        shown.push_back({first + page_, last - first - page_});
        p = last - page_;
      }
    }
  }
  return Merged(std::move(shown));
}

int LazyCopy::Failed(size_t k) {
  if (state_[k] == State::kVerified) return failures_[k];
  state_[k] = State::kMissing;
  if (failures_[k] < 255) ++failures_[k];
  if (wanted_[k]) want_order_.push_front(k);
  cursor_ = std::min(cursor_, k);
  return failures_[k];
}

}  // namespace csm::node
