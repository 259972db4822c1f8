// ReplicaFetcher: the fetches of other nodes' objects in flight on this node — one per
// key, however many readers wait for it — with the threads the transfers run on and the
// transports they use.
//
// The daemon decides what to fetch and where its bytes go (replica arenas at the owner's
// addresses) and enters the copy once it is sound; the fetcher keeps who waits for each
// key from the first ask to the end (a record lookup first, if need be, then the
// transfer), runs transfers off the event loop (FetchReplica), and posts each outcome
// back to the loop.
//
// Owner: the event loop; every call is made there. Transfers run on the fetcher's pool
// and touch only their targets. Unit-tested with a fake transport (replica_fetcher_test.cc).
#pragma once

#include <boost/asio/thread_pool.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "csm/node/replica_fetch.h"

namespace csm::node {

// A request answered later (a Resolve waiting for a fetch): who asked, and which request.
struct Waiter {
  uint64_t client_id;
  uint64_t request_id;
  uint32_t fetch = 0;  // how it asked the object be brought (protocol::Resolve::fetch)
  bool operator==(const Waiter&) const = default;
};

class ReplicaFetcher {
 public:
  using MakeTransport =
      std::function<Result<std::unique_ptr<transport::Transport>>(transport::TransportKind)>;
  using PostToLoop = std::function<void(std::function<void()>)>;
  // Fetches run on this many threads, made on the first transfer: starting a thread costs
  // ~100 µs on these VMs, as much as a tiny object's whole transfer. More transfers than
  // threads wait their turn (each is bounded by the transport's timeouts).
  static constexpr int kThreads = 8;

  ReplicaFetcher(MakeTransport make_transport, PostToLoop post_to_loop);
  ~ReplicaFetcher();  // waits for transfers under way (bounded by their timeouts)
  ReplicaFetcher(const ReplicaFetcher&) = delete;
  ReplicaFetcher& operator=(const ReplicaFetcher&) = delete;

  bool InFlight(const std::string& key) const { return fetches_.count(key) != 0; }
  // `key` is being fetched from now on; readers who ask meanwhile Join.
  void Begin(const std::string& key, std::vector<Waiter> waiters);
  // Adds a reader to the fetch of `key` in flight; false if none is.
  bool Join(const std::string& key, const Waiter& waiter);
  // The fetch of `key` ended (or its lookup did): who waited for it, to be answered.
  std::vector<Waiter> End(const std::string& key);

  // The transport for a peer address's scheme, made on first use and kept.
  Result<transport::Transport*> TransportFor(transport::TransportKind kind);
  // Copies r's extents from its owner at `address` over `t` into `targets`, on the pool;
  // then `done` runs on the loop with the outcome (FetchReplica's).
  void Transfer(const cluster::ObjectRecord& r, std::vector<ReplicaTarget> targets,
                transport::Transport* t, const std::string& address,
                std::function<void(Status)> done);

  // Runs `job` on the pool (another way to bring a copy here: reading it in place on a
  // shared-memory fabric); then `done` on the loop with its outcome.
  void Run(std::function<Status()> job, std::function<void(Status)> done);

  size_t in_flight() const { return fetches_.size(); }

  // The transfers under way, for `csm info` (and the progress `csm get` shows).
  std::vector<TransferProgress> transfers() const;

 private:
  MakeTransport make_transport_;
  PostToLoop post_to_loop_;
  std::map<std::string, std::vector<Waiter>> fetches_;  // in flight, by key
  struct Counter {
    uint64_t bytes;
    std::atomic<uint64_t> received{0};  // the transfer's thread adds, the loop reads
  };
  std::map<std::string, std::shared_ptr<Counter>> transfers_;  // under way, by key
  // Never removed while transfers may use them.
  std::map<transport::TransportKind, std::unique_ptr<transport::Transport>> transports_;
  std::unique_ptr<boost::asio::thread_pool> pool_;  // made on the first transfer
};

}  // namespace csm::node
