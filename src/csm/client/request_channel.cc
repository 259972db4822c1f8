// RequestChannel; see request_channel.h.
#include "csm/client/request_channel.h"

#include <algorithm>
#include <chrono>

#include "csm/os/memory.h"

namespace csm::internal {

RequestChannel::RequestChannel(os::UniqueFd sock, std::string describe)
    : sock_(std::move(sock)), describe_(std::move(describe)) {}

Status RequestChannel::Lost(const Status& why) const {
  return Unavailable("lost the connection to " + describe_ + " (" + why.message() +
                     "): is the node still running? (csm info)");
}

Status RequestChannel::Send(const protocol::WireWriter& message) {
  std::lock_guard<std::mutex> lock(send_mu_);
  return os::SendMessage(sock_.get(), message.bytes());
}

Result<os::Message> RequestChannel::Call(protocol::WireWriter request, int timeout_ms, const std::vector<int>& fds) {
  CSM_ASSIGN_OR_RETURN(uint64_t id, Start(std::move(request), fds));
  return Await(id, timeout_ms);
}

Result<uint64_t> RequestChannel::Start(protocol::WireWriter request, const std::vector<int>& fds) {
  const uint64_t id = next_id_.fetch_add(1);
  request.SetRequestId(id);
  std::lock_guard<std::mutex> lock(send_mu_);
  Status sent = os::SendMessage(sock_.get(), request.bytes(), fds);
  if (!sent.ok()) return Lost(sent);
  return id;
}

Result<os::Message> RequestChannel::Await(uint64_t id, int timeout_ms) {
  const int64_t deadline = os::MonotonicNanos() + int64_t{timeout_ms} * 1000000;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (auto it = arrived_.find(id); it != arrived_.end()) {
      os::Message reply = std::move(it->second);
      arrived_.erase(it);
      return reply;
    }
    if (!broken_.ok()) return Lost(broken_);
    const int64_t left = deadline - os::MonotonicNanos();
    if (left <= 0) {
      abandoned_.insert(id);
      return Timeout(describe_ + " did not answer within " + std::to_string(timeout_ms) + " ms");
    }
    if (reading_) {  // another thread reads: it hands our reply over
      arrived_cv_.wait_for(lock, std::chrono::nanoseconds(left));
      continue;
    }
    reading_ = true;
    lock.unlock();
    auto msg = os::ReceiveMessage(sock_.get(), static_cast<int>(std::max<int64_t>(1, left / 1000000)));
    lock.lock();
    reading_ = false;
    arrived_cv_.notify_all();  // someone else may read now, or find its reply
    if (!msg.ok()) {
      if (msg.status().IsTimeout()) continue;  // our deadline: checked above
      broken_ = msg.status();
      return Lost(broken_);
    }
    protocol::WireReader in(msg->bytes);
    protocol::MessageType type{};
    if (Status header = in.ReadHeader(&type); !header.ok()) {
      broken_ = header;  // not csmd speaking our protocol: nothing after it can be trusted
      return Lost(broken_);
    }
    const uint64_t for_id = in.request_id();
    if (for_id == id) return *std::move(msg);
    if (abandoned_.erase(for_id) == 0) {
      arrived_.emplace(for_id, *std::move(msg));
      handed_over_.fetch_add(1);
    }
  }
}

}  // namespace csm::internal
