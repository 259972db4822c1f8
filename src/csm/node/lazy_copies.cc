// Lazy copies: fetching blocks, showing pages, serving faults; see lazy_copies.h.
#include "csm/node/lazy_copies.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include <boost/asio/post.hpp>

#include "csm/base/hash.h"
#include "csm/base/log.h"
#include "csm/base/range.h"
#include "csm/os/memory.h"

namespace csm::node {

namespace {

constexpr int kFetchThreads = 4;

// The header fields a record fixes (the extent table's place is the object's own).
bool HeaderMatches(const object::ObjectHeader& got, const object::ObjectHeader& want) {
  return got.magic == want.magic && got.layout_version == want.layout_version && got.type_id == want.type_id &&
         got.data_size == want.data_size && got.root == want.root && got.checksum == want.checksum &&
         (got.flags & object::kFlagChecksumDeferred) == (want.flags & object::kFlagChecksumDeferred);
}

}  // namespace

struct LazyCopies::Reader {
  uint64_t session;
  std::shared_ptr<os::UserFaults> faults;
};

struct LazyCopies::Copy {
  Copy(uint64_t copy_id, std::string copy_key, std::vector<object::ObjectExtent> object_extents, uint64_t page,
       uint64_t block)
      : id(copy_id), key(std::move(copy_key)), lazy(object_extents, page, block), extents(std::move(object_extents)) {}
  const uint64_t id;
  const std::string key;
  // Guarded by LazyCopies::mu_:
  LazyCopy lazy;
  std::set<uint64_t> readers;  // sessions that read it
  std::vector<Hint> hints;
  int fetching = 0;            // jobs under way
  bool failed = false;
  Status failure;              // why, once failed
  bool cancelled = false;
  bool digests_asked = false;
  // Read-ahead for readers going forward (a column, a traversal without prefetch): the
  // block where the next fault lands if they do, and how many blocks the last fault asked.
  size_t next_fault_block = SIZE_MAX;
  size_t window = 1;
  // Immutable once Begin returns:
  std::vector<object::ObjectExtent> extents;
  std::vector<ReplicaTarget> targets;
  object::ObjectHeader header{};
  Source source{};
  bool prefetch = true;           // guarded by mu_ (PrefetchRest turns it on)
  std::vector<AddrRange> pages;  // what readers register
  // `ranges` cut at the arenas' edges: each arena is its own mapping in a reader, and a
  // call on pages reaches into one mapping only.
  std::vector<AddrRange> Split(const std::vector<AddrRange>& ranges) const {
    std::vector<AddrRange> out;
    for (const AddrRange& r : ranges) {
      for (const ReplicaTarget& t : targets) {
        const uint64_t from = std::max(r.addr, t.addr), to = std::min(r.addr + r.length, t.addr + t.size);
        if (from < to) out.push_back({from, to - from});
      }
    }
    std::sort(out.begin(), out.end(), [](const AddrRange& a, const AddrRange& b) { return a.addr < b.addr; });
    return out;
  }
  // Written once by the first fetch job, before any block is fetched (under mu_):
  std::vector<uint64_t> digests;
  bool have_digests = false;
};

LazyCopies::LazyCopies(Options options, Done done) : options_(options), done_(std::move(done)) {}

LazyCopies::~LazyCopies() {
  std::vector<std::shared_ptr<Copy>> copies;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    for (auto& [id, c] : copies_) copies.push_back(c);
  }
  for (auto& c : copies) Fail(c, Unavailable("csmd stopped before the object arrived"), false);
  if (pool_ != nullptr) pool_->join();
  Wakeup();
  if (fault_thread_.joinable()) fault_thread_.join();
}

Status LazyCopies::Start() {
  auto probe = os::UserFaults::Create();
  if (!probe.ok()) return probe.status();
  if (!os::UserFaults::CanPoison()) {
    return Unavailable("this kernel cannot make a page that will never arrive fault with SIGBUS (Linux >= 6.6 "
                       "needed): lazy Gets are off, Gets fetch whole objects");
  }
  epoll_.Reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_.valid()) return ErrnoError("epoll_create1", errno);
  wake_.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_.valid()) return ErrnoError("eventfd", errno);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;  // sessions are numbered from 1
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &ev) != 0) return ErrnoError("epoll_ctl", errno);
  pool_ = std::make_unique<boost::asio::thread_pool>(kFetchThreads);
  fault_thread_ = std::thread([this] { ServeFaults(); });
  return Status::OK();
}

void LazyCopies::Wakeup() {
  if (!wake_.valid()) return;
  const uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof(one));
}

// ---- copies ---------------------------------------------------------------------------

void LazyCopies::Begin(uint64_t copy_id, std::string key, std::vector<object::ObjectExtent> extents,
                       std::vector<ReplicaTarget> targets, object::ObjectHeader header, Source source,
                       bool prefetch) {
  auto copy = std::make_shared<Copy>(copy_id, std::move(key), extents, os::PageSize(), options_.block_size);
  copy->targets = std::move(targets);
  copy->header = header;
  copy->source = std::move(source);
  copy->prefetch = prefetch;
  copy->pages = copy->Split(copy->lazy.Pages());
  std::lock_guard<std::mutex> lock(mu_);
  copies_[copy_id] = copy;
  for (const AddrRange& r : copy->pages) by_addr_[r.addr] = copy;
  totals_.bytes += copy->lazy.bytes();
  ++totals_.copies;
  KickLocked(copy);
}

void LazyCopies::KickLocked(const std::shared_ptr<Copy>& copy) {
  if (stopping_ || copy->failed || copy->cancelled || copy->lazy.complete() || pool_ == nullptr) return;
  // Without prefetch, fetch jobs run only while readers wait for blocks.
  const int wanted_jobs = copy->prefetch || copy->lazy.AnyWanted() || !copy->have_digests
                              ? options_.fetches_per_copy : 0;
  while (copy->fetching < wanted_jobs) {
    ++copy->fetching;
    boost::asio::post(*pool_, [this, copy] { RunFetches(copy); });
  }
}

void LazyCopies::RunFetches(std::shared_ptr<Copy> copy) {
  Result<bool> have = FetchDigests(copy);
  if (!have.ok() || !*have) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      --copy->fetching;
    }
    if (!have.ok()) Fail(copy, have.status(), true);
    return;  // another job asks for the digests, and starts the others once they are here
  }
  for (;;) {
    std::vector<size_t> run;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!stopping_ && !copy->failed && !copy->cancelled) {
        run = copy->lazy.Take(BlocksIn(options_.request_bytes), copy->prefetch);
      }
      if (run.empty()) {
        --copy->fetching;
        return;
      }
    }
    FetchRun(copy, run);
  }
}

Result<bool> LazyCopies::FetchDigests(const std::shared_ptr<Copy>& copy) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (copy->have_digests) return true;
    if (Deferred(*copy)) {
      // Committed without a checksum (an Arrow table, docs/arrow.md): no block digests
      // to check against, and hashing the whole object before the first block would
      // cost its owner what the commit saved. Each request's bytes are checked against
      // the owner's digest of what it sent instead (FetchRun).
      copy->have_digests = true;
      return true;
    }
    if (copy->digests_asked) return false;
    copy->digests_asked = true;
  }
  auto digests = copy->source.transport->BlockDigests(copy->source.address, copy->source.object_id, copy->extents);
  std::lock_guard<std::mutex> lock(mu_);
  copy->digests_asked = false;
  if (!digests.ok()) return digests.status();
  const uint64_t hashed = copy->lazy.bytes() - copy->lazy.HashSkipOf(0);
  if (digests->size() != (hashed == 0 ? 0 : copy->lazy.blocks())) {
    return Corruption("node " + std::to_string(copy->source.owner_node) + " sent " +
                      std::to_string(digests->size()) + " block digests for '" + copy->key + "' of " +
                      std::to_string(copy->lazy.blocks()) + " blocks");
  }
  // The digests must be those the object was committed with.
  if (!(copy->header.flags & object::kFlagChecksumDeferred) &&
      Checksum::OfBlocks(digests->data(), digests->size()) != copy->header.checksum) {
    return Corruption("the bytes of '" + copy->key + "' on node " + std::to_string(copy->source.owner_node) +
                      " no longer match its checksum: delete the object and put it again");
  }
  copy->digests = std::move(*digests);
  copy->have_digests = true;
  KickLocked(copy);  // the jobs that ended while this one asked
  return true;
}

void LazyCopies::FetchRun(const std::shared_ptr<Copy>& copy, const std::vector<size_t>& run) {
  // The run's bytes, in stream order, and where each block ends in them.
  std::vector<object::ObjectExtent> pieces;
  std::vector<uint64_t> ends;  // cumulative
  uint64_t total = 0;
  for (size_t i = 0; i < run.size();) {
    size_t j = i;  // run[i..j]: consecutive blocks
    while (j + 1 < run.size() && run[j + 1] == run[j] + 1) ++j;
    for (const AddrRange& p : copy->lazy.PiecesOf(run[i], run[j])) pieces.push_back({p.addr, p.length});
    i = j + 1;
  }
  for (size_t k : run) {
    total += copy->lazy.BytesOf(k);
    ends.push_back(total);
  }
  auto locate = [&](uint64_t addr, uint64_t len) -> Result<char*> {
    for (const auto& t : copy->targets) {
      if (t.view != nullptr && RangeWithin(addr, len, t.addr, t.size)) return t.view->data() + (addr - t.addr);
    }
    return Corruption("a block of '" + copy->key + "' lies outside its arenas");
  };
  // Each block is hashed as it lands and shown the moment it passes; without block
  // digests (Deferred), once the whole request's bytes match the owner's digest of them.
  const bool deferred = Deferred(*copy);
  size_t current = 0;  // index in run
  uint64_t at = 0;     // bytes of the run arrived
  Xxh3Stream hash;
  Checksum all;        // deferred: every byte of the run, as the owner digests what it sends
  uint64_t owner_digest = 0;
  object::ObjectHeader header{};
  std::vector<bool> done(run.size(), false);
  std::vector<size_t> held;  // deferred: the run's blocks (indices) that passed their other checks
  auto finish_block = [&](size_t i) {
    const size_t k = run[i];
    bool good = deferred || (k < copy->digests.size() ? hash.Digest() == copy->digests[k] : copy->digests.empty());
    if (k == 0) good = good && HeaderMatches(header, copy->header);
    done[i] = true;
    if (good && deferred) {
      held.push_back(i);
      return;
    }
    if (good) {
      Passed(copy, k);
      return;
    }
    CSM_LOG_WARN("block %zu of '%s' from node %u failed its check", k, copy->key.c_str(), copy->source.owner_node);
    int failures;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++totals_.blocks_failed;
      failures = copy->lazy.Failed(k);
    }
    if (failures >= options_.tries_per_block) {
      Fail(copy, Corruption("block " + std::to_string(k) + " of '" + copy->key + "' fetched from node " +
                            std::to_string(copy->source.owner_node) + " failed its check " +
                            std::to_string(failures) + " times"), true);
    }
  };
  const transport::ArrivalObserver arrived = [&](const char* data, uint64_t length) {
    while (length > 0 && current < run.size()) {
      const size_t k = run[current];
      const uint64_t block_start = current == 0 ? 0 : ends[current - 1];
      const uint64_t n = std::min(length, ends[current] - at);
      if (deferred) all.Update(data, n);
      // Block 0's header is checked field by field, not hashed.
      const uint64_t skip = copy->lazy.HashSkipOf(k);
      const uint64_t offset = at - block_start;
      uint64_t hashed_from = 0;
      if (offset < skip) {
        const uint64_t h = std::min(n, skip - offset);
        std::memcpy(reinterpret_cast<char*>(&header) + offset, data, std::min<uint64_t>(h, sizeof(header) - offset));
        hashed_from = h;
      }
      if (n > hashed_from) hash.Update(data + hashed_from, n - hashed_from);
      at += n;
      data += n;
      length -= n;
      if (at == ends[current]) {
        finish_block(current);
        hash.Reset();
        ++current;
      }
    }
  };
  Status s = copy->source.transport->Fetch(copy->source.address, copy->source.object_id, pieces, locate,
                                           deferred ? &owner_digest : nullptr, &arrived);
  if (deferred && !held.empty()) {
    if (s.ok() && all.Digest() == owner_digest) {
      for (size_t i : held) Passed(copy, run[i]);
    } else {
      // Not shown: fetched again, as blocks that did not arrive.
      if (s.ok()) CSM_LOG_WARN("a request's bytes of '%s' from node %u do not match the owner's digest of them",
                               copy->key.c_str(), copy->source.owner_node);
      for (size_t i : held) done[i] = false;
    }
  }
  // Blocks that did not arrive whole go back; a dead owner fails them all in turn.
  bool any_lost = false;
  int worst = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < run.size(); ++i) {
      if (done[i]) continue;
      any_lost = true;
      ++totals_.blocks_failed;
      worst = std::max(worst, copy->lazy.Failed(run[i]));
    }
    totals_.blocks_fetched += run.size();
  }
  if (any_lost && worst >= options_.tries_per_block) {
    Fail(copy, (s.ok() ? Corruption("the owner's bytes did not arrive whole, or not as it sent them") : s)
                   .WithContext("fetching '" + copy->key + "' from node " + std::to_string(copy->source.owner_node)),
         true);
  }
}

void LazyCopies::Passed(const std::shared_ptr<Copy>& copy, size_t k) {
  std::vector<AddrRange> shown;
  std::vector<std::shared_ptr<os::UserFaults>> readers;
  std::vector<std::function<void(Status)>> ready;
  bool complete = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (copy->failed || copy->cancelled) return;
    const uint64_t before = copy->lazy.verified_bytes();
    shown = copy->Split(copy->lazy.Verified(k));
    totals_.verified_bytes += copy->lazy.verified_bytes() - before;
    for (uint64_t s : copy->readers) {
      auto it = readers_.find(s);
      if (it != readers_.end()) readers.push_back(it->second->faults);
    }
    for (auto it = copy->hints.begin(); it != copy->hints.end();) {
      it->blocks.erase(std::remove(it->blocks.begin(), it->blocks.end(), k), it->blocks.end());
      if (it->blocks.empty()) {
        ready.push_back(std::move(it->ready));
        it = copy->hints.erase(it);
      } else {
        ++it;
      }
    }
    complete = copy->lazy.complete();
  }
  // Mapped into every reader (waking those waiting there); a reader that has not
  // registered them yet faults on them later and is served then.
  for (const auto& faults : readers) {
    for (const AddrRange& r : shown) (void)faults->Continue(r.addr, r.length);
  }
  for (auto& r : ready) r(Status::OK());
  if (complete) {
    CSM_LOG_DEBUG("lazy copy of '%s' complete", copy->key.c_str());
    done_(copy->id, Status::OK());
  }
}

void LazyCopies::Fail(const std::shared_ptr<Copy>& copy, const Status& why, bool call_done) {
  std::vector<AddrRange> hidden;
  std::vector<std::shared_ptr<os::UserFaults>> readers;
  std::vector<Hint> hints;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (copy->failed || copy->lazy.complete()) return;
    copy->failed = true;
    copy->failure = why;
    ++totals_.copies_failed;
    hidden = copy->Split(copy->lazy.HiddenPages());
    for (uint64_t s : copy->readers) {
      auto it = readers_.find(s);
      if (it != readers_.end()) readers.push_back(it->second->faults);
    }
    hints = std::move(copy->hints);
  }
  if (call_done) CSM_LOG_WARN("lazy copy of '%s' failed: %s", copy->key.c_str(), why.ToString().c_str());
  for (const auto& faults : readers) {
    for (const AddrRange& r : hidden) {
      Status s = faults->Poison(r.addr, r.length);
      if (!s.ok()) CSM_LOG_DEBUG("lazy copy of '%s': %s", copy->key.c_str(), s.ToString().c_str());
    }
  }
  for (Hint& h : hints) h.ready(why);
  if (call_done) done_(copy->id, why);
}

void LazyCopies::PrefetchRest(uint64_t copy_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = copies_.find(copy_id);
  if (it == copies_.end() || it->second->prefetch) return;
  it->second->prefetch = true;
  KickLocked(it->second);
}

void LazyCopies::Cancel(uint64_t copy_id) {
  std::shared_ptr<Copy> copy;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = copies_.find(copy_id);
    if (it == copies_.end()) return;
    copy = it->second;
  }
  Fail(copy, Unavailable("the copy was dropped before it arrived"), false);
  {
    std::lock_guard<std::mutex> lock(mu_);
    copy->cancelled = true;
  }
  Release(copy_id);
}

void LazyCopies::Release(uint64_t copy_id) {
  std::shared_ptr<Copy> copy;
  std::vector<std::shared_ptr<os::UserFaults>> readers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = copies_.find(copy_id);
    if (it == copies_.end()) return;
    copy = it->second;
    copies_.erase(it);
    for (const AddrRange& r : copy->pages) {
      auto at = by_addr_.find(r.addr);
      if (at != by_addr_.end() && at->second == copy) by_addr_.erase(at);
    }
    totals_.bytes -= copy->lazy.bytes();
    totals_.verified_bytes -= std::min(totals_.verified_bytes, copy->lazy.verified_bytes());
    --totals_.copies;
    for (uint64_t s : copy->readers) {
      auto r = readers_.find(s);
      if (r != readers_.end()) readers.push_back(r->second->faults);
    }
  }
  // Faults there are the kernel's again: every page is in the file. A failed copy's
  // stay registered (its hidden pages would read as holes) until the reader unmaps them;
  // their faults find no copy and are poisoned (ServeFault).
  if (!copy->failed) {
    for (const auto& faults : readers) {
      for (const AddrRange& r : copy->pages) (void)faults->Unregister(r.addr, r.length);
    }
  }
}

void LazyCopies::Want(const std::vector<AddrRange>& ranges, std::function<void(Status)> ready) {
  const uint64_t page = os::PageSize();
  std::map<std::shared_ptr<Copy>, std::vector<size_t>> blocks;  // not verified yet, per copy
  Status failed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const AddrRange& r : ranges) {
      if (r.length == 0 || r.addr + r.length < r.addr) continue;
      for (uint64_t p = r.addr / page * page; p < r.addr + r.length; p += page) {
        std::shared_ptr<Copy> copy = CopyAtLocked(p);
        if (copy == nullptr || copy->cancelled || copy->lazy.complete()) continue;
        if (copy->failed) {
          failed = Unavailable("the lazy copy of '" + copy->key + "' failed");
          break;
        }
        if (!copy->lazy.Want(p)) continue;  // shown already
        for (size_t k : copy->lazy.BlocksOn(p)) {
          if (!copy->lazy.IsVerified(k)) blocks[copy].push_back(k);
        }
      }
    }
    if (failed.ok() && !blocks.empty()) {
      // One answer for all the copies' hints: the first failure, else when the last ends.
      struct Group {
        std::function<void(Status)> ready;
        std::atomic<size_t> left;
        std::atomic<bool> answered{false};
      };
      auto group = std::make_shared<Group>();
      group->ready = std::move(ready);
      group->left = blocks.size();
      for (auto& [copy, wanted] : blocks) {
        std::sort(wanted.begin(), wanted.end());
        wanted.erase(std::unique(wanted.begin(), wanted.end()), wanted.end());
        copy->hints.push_back(Hint{std::move(wanted), [group](Status s) {
          if ((!s.ok() || group->left.fetch_sub(1) == 1) && !group->answered.exchange(true)) group->ready(s);
        }});
        KickLocked(copy);
      }
      return;
    }
  }
  ready(failed);
}

// ---- readers and faults ---------------------------------------------------------------

Status LazyCopies::AddReader(uint64_t session_id, os::UniqueFd fd) {
  CSM_ASSIGN_OR_RETURN(os::UserFaults faults, os::UserFaults::Adopt(std::move(fd)));
  auto reader = std::make_shared<Reader>(Reader{session_id, std::make_shared<os::UserFaults>(std::move(faults))});
  std::lock_guard<std::mutex> lock(mu_);
  if (!epoll_.valid()) return Unavailable("lazy copies are off on this node");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = session_id;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, reader->faults->fd(), &ev) != 0) {
    return ErrnoError("epoll_ctl(userfaultfd)", errno);
  }
  readers_[session_id] = std::move(reader);
  ++totals_.readers;
  return Status::OK();
}

bool LazyCopies::HasReader(uint64_t session_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return readers_.count(session_id) != 0;
}

void LazyCopies::DropReader(uint64_t session_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = readers_.find(session_id);
  if (it == readers_.end()) return;
  (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second->faults->fd(), nullptr);
  readers_.erase(it);
  --totals_.readers;
  for (auto& [id, c] : copies_) c->readers.erase(session_id);
}

Result<std::vector<AddrRange>> LazyCopies::Watch(uint64_t copy_id, uint64_t session_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = copies_.find(copy_id);
  if (it == copies_.end()) return NotFound("no lazy copy " + std::to_string(copy_id) + " here");
  if (!readers_.count(session_id)) return FailedPrecondition("this process has not sent its userfaultfd");
  Copy& copy = *it->second;
  if (copy.failed) return copy.failure;
  if (copy.lazy.complete()) return std::vector<AddrRange>{};
  copy.readers.insert(session_id);
  return copy.pages;
}

void LazyCopies::Registered(uint64_t copy_id, uint64_t session_id) {
  std::shared_ptr<os::UserFaults> faults;
  std::vector<AddrRange> shown;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = copies_.find(copy_id);
    auto r = readers_.find(session_id);
    if (it == copies_.end() || r == readers_.end()) return;
    faults = r->second->faults;
    const LazyCopy& lazy = it->second->lazy;
    for (size_t k = 0; k < lazy.blocks(); ++k) {
      if (!lazy.IsVerified(k)) continue;
      for (const AddrRange& piece : lazy.PiecesOf(k)) {
        // Whole pages of the piece; its edge pages if every block on them passed.
        const uint64_t page = os::PageSize();
        const uint64_t first = piece.addr / page * page;
        const uint64_t last = (piece.addr + piece.length - 1) / page * page;
        if (lazy.Visible(first)) shown.push_back({first, page});
        if (last > first + page) shown.push_back({first + page, last - first - page});
        if (last > first && lazy.Visible(last)) shown.push_back({last, page});
      }
    }
    shown = it->second->Split(shown);
  }
  // What arrived before the reader registered, mapped at once rather than fault by fault.
  for (const AddrRange& r : shown) (void)faults->Continue(r.addr, r.length);
}

bool LazyCopies::Deferred(const Copy& copy) { return (copy.header.flags & object::kFlagChecksumDeferred) != 0; }

std::shared_ptr<LazyCopies::Copy> LazyCopies::CopyAtLocked(uint64_t page) const {
  auto it = by_addr_.upper_bound(page);
  if (it == by_addr_.begin()) return nullptr;
  --it;
  for (const AddrRange& r : it->second->pages) {
    if (page >= r.addr && page - r.addr < r.length) return it->second;
  }
  return nullptr;
}

void LazyCopies::ServeFaults() {
  constexpr int kEvents = 16;
  epoll_event events[kEvents];
  for (;;) {
    const int n = ::epoll_wait(epoll_.get(), events, kEvents, 1000);
    if (n < 0 && errno != EINTR) {
      CSM_LOG_ERROR("lazy copies: epoll_wait: %s", strerror(errno));
      return;
    }
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == 0) {
        uint64_t drained;
        (void)!::read(wake_.get(), &drained, sizeof(drained));
        continue;
      }
      std::shared_ptr<Reader> reader;
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = readers_.find(events[i].data.u64);
        if (it != readers_.end()) reader = it->second;
      }
      if (reader == nullptr) continue;
      for (;;) {
        auto fault = reader->faults->Next();
        if (!fault.ok() || !fault->has_value()) break;
        ServeFault(reader, **fault);
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
  }
}

void LazyCopies::ServeFault(const std::shared_ptr<Reader>& reader, const os::UserFaults::Fault& fault) {
  const uint64_t page = os::PageSize();
  enum class Do { kMap, kPoison, kWait } act = Do::kMap;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++totals_.faults;
    std::shared_ptr<Copy> copy = CopyAtLocked(fault.page);
    if (copy != nullptr) {
      copy->readers.insert(reader->session);
      if (copy->failed || copy->cancelled) {
        act = Do::kPoison;
      } else if (!copy->lazy.Visible(fault.page) && copy->lazy.Want(fault.page)) {
        act = Do::kWait;  // its block's arrival maps it (Passed)
        // A fault where the last read-ahead ended: the reader goes forward, so twice as
        // many blocks are asked for ahead of it (as the kernel reads ahead of files).
        const size_t k = copy->lazy.BlockAt(fault.page).value_or(SIZE_MAX);
        if (k != SIZE_MAX) {
          copy->window = k == copy->next_fault_block ? std::min(copy->window * 2, BlocksIn(options_.max_readahead_bytes))
                                                     : 1;
          for (size_t b = k + 1; b < k + copy->window; ++b) copy->lazy.WantBlock(b);
          copy->next_fault_block = k + copy->window;
        }
        KickLocked(copy);
      }
    }
  }
  if (act == Do::kPoison) {
    (void)reader->faults->Poison(fault.page, page);
  } else if (act == Do::kMap) {
    // Shown already, or no longer lazy (its copy completed meanwhile): the file has it.
    // Else it is a failed copy's, released: those bytes will never come.
    if (!reader->faults->Continue(fault.page, page).ok() && !reader->faults->Poison(fault.page, page).ok()) {
      (void)reader->faults->Wake(fault.page, page);
    }
  }
}

LazyCopies::Totals LazyCopies::totals() const {
  std::lock_guard<std::mutex> lock(mu_);
  return totals_;
}

}  // namespace csm::node
