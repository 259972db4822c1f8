// LazyCopies: the node's copies of other nodes' objects that readers use while their
// bytes are still arriving (docs/lazy.md): the fetches that bring each copy's blocks, the
// readers' userfaultfds, and the thread that serves their page faults.
//
// A copy begins once its arenas exist here (csmd's own views to write into, at the
// owner's addresses in every reader). Its blocks are asked of the owner, the ones readers
// wait on first and, when prefetching, the rest in order; each is checked against the
// owner's block digest (and block 0's header against the record; an object committed
// without a checksum has no block digests: each request's bytes are checked against the
// owner's digest of what it sent) and only then are its pages mapped into the readers
// (os::UserFaults::Continue), so a reader never sees a byte
// that did not pass. A reader touching a page not there yet waits in its fault until the
// block arrives. When a copy cannot be completed (its owner died, a block failed its
// check twice) every page not shown yet faults with SIGBUS in its readers instead.
//
// Owner: the daemon. Thread-safety: every method may be called from any thread; the
// fetches run on this object's own threads, `done` is called from them. Lifetime: the
// destructor fails copies still under way and joins its threads.
#pragma once

#include <algorithm>
#include <boost/asio/thread_pool.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "csm/base/hash.h"
#include "csm/node/lazy_copy.h"
#include "csm/node/replica_fetch.h"
#include "csm/object/object_layout.h"
#include "csm/os/fd.h"
#include "csm/os/user_faults.h"
#include "csm/status.h"
#include "csm/transport/transport.h"

namespace csm::node {

class LazyCopies {
 public:
  struct Options {
    int fetches_per_copy = 2;                     // requests to the owner under way at once, per copy
    uint64_t request_bytes = uint64_t{4} << 20;   // at most this much per request (whole blocks)
    // A fault asks for its own block; a reader going forward doubles that at each fault
    // (the blocks ahead of it), up to this many bytes: a reader that stops at a column's
    // end has moved at most this much of the next one.
    uint64_t max_readahead_bytes = uint64_t{4} << 20;
    int tries_per_block = 2;                      // a block failing this many times fails its copy
    uint64_t block_size = Checksum::kBlockSize;   // tests use others
  };
  // Where a copy's bytes come from: its owner's peer address and id for it.
  struct Source {
    transport::Transport* transport;
    std::string address;
    uint64_t object_id;
    uint32_t owner_node;
  };
  // A copy ended: complete (OK), or failed (the reason). Called once per copy, on one of
  // this object's threads, unless it was cancelled.
  using Done = std::function<void(uint64_t copy_id, const Status& outcome)>;

  LazyCopies(Options options, Done done);
  ~LazyCopies();
  LazyCopies(const LazyCopies&) = delete;
  LazyCopies& operator=(const LazyCopies&) = delete;

  // Starts the fault-serving thread. Unavailable if this kernel cannot serve faults on
  // shared memory (or poison pages), saying why: the node then fetches eagerly.
  Status Start();
  bool started() const { return fault_thread_.joinable(); }

  // Starts fetching copy `copy_id` of the object with `extents` into `targets`. `header`:
  // what its header must say (the record's; the extent table's place aside).
  void Begin(uint64_t copy_id, std::string key, std::vector<object::ObjectExtent> extents,
             std::vector<ReplicaTarget> targets, object::ObjectHeader header, Source source, bool prefetch);
  // Someone waits for all of it (a Get that asked for the whole object): an on-demand
  // copy fetches the rest in order from now on.
  void PrefetchRest(uint64_t copy_id);
  // Stops fetching it; its readers' hidden pages fault with SIGBUS. No `done` call.
  void Cancel(uint64_t copy_id);
  // The copy is done with (after `done`, once readers no longer depend on faults): its
  // ranges are handed back to the kernel in every reader.
  void Release(uint64_t copy_id);

  // A process reads lazy copies: `faults` is its userfaultfd (received over its socket).
  Status AddReader(uint64_t session_id, os::UniqueFd faults);
  bool HasReader(uint64_t session_id) const;
  void DropReader(uint64_t session_id);
  // Session `session_id` is about to read copy `copy_id`: the page ranges it registers;
  // none if the copy is complete (read it as any copy); its failure if it failed;
  // NotFound if it is not (or no longer) one of these.
  Result<std::vector<AddrRange>> Watch(uint64_t copy_id, uint64_t session_id);
  // The session registered those ranges: what already arrived is mapped into it now.
  void Registered(uint64_t copy_id, uint64_t session_id);
  // A hint: the bytes of `ranges` are needed first, in whichever copies they lie (bytes
  // in none are here already); their blocks are asked for before any other, many in one
  // request. `ready` is called once (on any thread) when all can be read, or with the
  // failure of a copy they lie in.
  void Want(const std::vector<AddrRange>& ranges, std::function<void(Status)> ready);

  struct Totals {
    size_t copies = 0;             // under way
    uint64_t bytes = 0;            // of those copies
    uint64_t verified_bytes = 0;   // of those, arrived and checked
    uint64_t faults = 0;           // served since start
    uint64_t blocks_fetched = 0;
    uint64_t blocks_failed = 0;    // failed a check or did not arrive (fetched again)
    uint64_t copies_failed = 0;
    size_t readers = 0;
  };
  Totals totals() const;

 private:
  struct Reader;
  struct Copy;
  struct Hint {
    std::vector<size_t> blocks;
    std::function<void(Status)> ready;
  };
  // A job for the fetching threads: the next blocks of `copy`, while there are some.
  void RunFetches(std::shared_ptr<Copy> copy);
  // The owner's block digests, checked against the commit checksum: true once the copy
  // has them, false if another job is asking (it starts the others when they are here).
  Result<bool> FetchDigests(const std::shared_ptr<Copy>& copy);
  // Fetches `run` (consecutive blocks) and checks each as it lands.
  void FetchRun(const std::shared_ptr<Copy>& copy, const std::vector<size_t>& run);
  // Block k passed: show its pages to every reader, answer hints it completes.
  void Passed(const std::shared_ptr<Copy>& copy, size_t k);
  // Fails the copy: hidden pages poisoned in every reader, hints answered, `done`.
  void Fail(const std::shared_ptr<Copy>& copy, const Status& why, bool call_done);
  // Starts fetching jobs for `copy` up to its limit (mu_ held).
  void KickLocked(const std::shared_ptr<Copy>& copy);
  // Committed without a checksum: no block digests; each request is checked whole.
  static bool Deferred(const Copy& copy);
  size_t BlocksIn(uint64_t bytes) const { return std::max<size_t>(1, bytes / options_.block_size); }
  void ServeFaults();
  void ServeFault(const std::shared_ptr<Reader>& reader, const os::UserFaults::Fault& fault);
  std::shared_ptr<Copy> CopyAtLocked(uint64_t page) const;
  void Wakeup();

  const Options options_;
  const Done done_;
  mutable std::mutex mu_;
  std::map<uint64_t, std::shared_ptr<Copy>> copies_;       // guarded by mu_, by id
  std::map<uint64_t, std::shared_ptr<Copy>> by_addr_;      // guarded by mu_, by first page
  std::map<uint64_t, std::shared_ptr<Reader>> readers_;    // guarded by mu_, by session
  Totals totals_;                                          // guarded by mu_
  bool stopping_ = false;                                  // guarded by mu_
  os::UniqueFd epoll_;
  os::UniqueFd wake_;  // an eventfd: readers changed, or stop
  std::thread fault_thread_;
  std::unique_ptr<boost::asio::thread_pool> pool_;  // the fetches
};

}  // namespace csm::node
