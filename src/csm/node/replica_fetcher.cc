// ReplicaFetcher; see replica_fetcher.h.
#include "csm/node/replica_fetcher.h"

#include <boost/asio/post.hpp>

namespace csm::node {

ReplicaFetcher::ReplicaFetcher(MakeTransport make_transport, PostToLoop post_to_loop)
    : make_transport_(std::move(make_transport)), post_to_loop_(std::move(post_to_loop)) {}

ReplicaFetcher::~ReplicaFetcher() {
  if (pool_ != nullptr) pool_->join();
}

void ReplicaFetcher::Begin(const std::string& key, std::vector<Waiter> waiters) {
  fetches_[key] = std::move(waiters);
}

bool ReplicaFetcher::Join(const std::string& key, const Waiter& waiter) {
  auto it = fetches_.find(key);
  if (it == fetches_.end()) return false;
  it->second.push_back(waiter);
  return true;
}

std::vector<Waiter> ReplicaFetcher::End(const std::string& key) {
  auto it = fetches_.find(key);
  if (it == fetches_.end()) return {};
  std::vector<Waiter> waiters = std::move(it->second);
  fetches_.erase(it);
  return waiters;
}

Result<transport::Transport*> ReplicaFetcher::TransportFor(transport::TransportKind kind) {
  auto& t = transports_[kind];
  if (t == nullptr) {
    auto made = make_transport_(kind);
    if (!made.ok()) {
      transports_.erase(kind);
      return made.status().WithContext(std::string("starting the ") +
                                       transport::TransportName(kind) + " transport");
    }
    t = std::move(*made);
  }
  return t.get();
}

void ReplicaFetcher::Transfer(const cluster::ObjectRecord& r, std::vector<ReplicaTarget> targets,
                              transport::Transport* t, const std::string& address,
                              std::function<void(Status)> done) {
  // The job writes only into the targets (memfds: the bytes appear at the object's
  // addresses in every process that maps them).
  auto counter = std::make_shared<Counter>();
  counter->bytes = r.size;
  transfers_[r.key] = counter;
  Run(
      [r, targets = std::move(targets), t, address, counter] {
        Status out;
        FetchReplica(r, targets, *t, address, [&](Status s) { out = std::move(s); }, &counter->received);
        return out;
      },
      [this, key = r.key, counter, done = std::move(done)](Status s) {
        auto it = transfers_.find(key);
        if (it != transfers_.end() && it->second == counter) transfers_.erase(it);
        done(std::move(s));
      });
}

std::vector<TransferProgress> ReplicaFetcher::transfers() const {
  std::vector<TransferProgress> out;
  for (const auto& [key, c] : transfers_) out.push_back({key, c->bytes, c->received.load(std::memory_order_relaxed)});
  return out;
}

void ReplicaFetcher::Run(std::function<Status()> job, std::function<void(Status)> done) {
  if (pool_ == nullptr) pool_ = std::make_unique<boost::asio::thread_pool>(kThreads);
  boost::asio::post(*pool_, [this, job = std::move(job), done = std::move(done)] {
    Status s = job();
    post_to_loop_([done, s] { done(s); });
  });
}

}  // namespace csm::node
