// What peers may read of this node; see peer_server.h.
#include "csm/node/peer_server.h"

#include <fcntl.h>

#include <algorithm>

#include "csm/base/hex.h"
#include "csm/base/range.h"

namespace csm::node {

Status PeerServer::Start(transport::TransportKind kind, const std::string& address,
                         transport::PeerOptions options) {
  serving_ = true;
  CSM_ASSIGN_OR_RETURN(server_, transport::StartTransportServer(
                                    kind, address, std::move(options),
                                    [this](uint64_t object_id, uint64_t addr, uint64_t len) {
                                      return Range(object_id, addr, len);
                                    }));
  return Status::OK();
}

void PeerServer::AddArena(uint64_t addr, uint64_t size, int fd, uint64_t fd_offset) {
  if (!serving_) return;
  int dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) return;  // out of descriptors: peers are told no arena holds it
  std::lock_guard<std::mutex> lock(mu_);
  arenas_[addr] = Served{std::make_shared<os::UniqueFd>(dup), size, fd_offset};
}

bool PeerServer::RemoveArena(uint64_t addr) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = arenas_.find(addr);
  if (it == arenas_.end()) return false;
  // A transport thread that looked it up before now holds a reference; none can after.
  bool in_flight = it->second.fd.use_count() > 1;
  arenas_.erase(it);
  return in_flight;
}

bool PeerServer::Sending(uint64_t arena_addr) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = arenas_.find(arena_addr);
  return it != arenas_.end() && it->second.fd.use_count() > 1;
}

void PeerServer::AddObject(uint64_t object_id, std::vector<object::ObjectExtent> extents) {
  if (!serving_) return;
  std::lock_guard<std::mutex> lock(mu_);
  spilled_.erase(object_id);
  objects_[object_id] = std::move(extents);
}

void PeerServer::RemoveObject(uint64_t object_id) {
  std::lock_guard<std::mutex> lock(mu_);
  objects_.erase(object_id);
  spilled_.erase(object_id);
}

void PeerServer::MarkSpilled(uint64_t object_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = objects_.find(object_id);
  if (it == objects_.end()) return;
  spilled_[object_id] = std::move(it->second);
  objects_.erase(it);
}

Result<transport::SourceRange> PeerServer::Range(uint64_t object_id, uint64_t addr, uint64_t len) {
  std::unique_lock<std::mutex> lock(mu_);
  if (spilled_.count(object_id) != 0 && restorer_) {
    // Brought back into memory first (on csmd's loop), without holding the lock.
    lock.unlock();
    CSM_RETURN_IF_ERROR(restorer_(object_id).WithContext("restoring object " + std::to_string(object_id) +
                                                         " on node " + std::to_string(node_id_) + " for a peer"));
    lock.lock();
  }
  auto object = objects_.find(object_id);
  if (object == objects_.end()) {
    return NotFound("node " + std::to_string(node_id_) + " has no object " + std::to_string(object_id) +
                    " (deleted since it was looked up?): look the key up again");
  }
  const bool inside = std::any_of(object->second.begin(), object->second.end(),
                                  [&](const object::ObjectExtent& e) { return RangeWithin(addr, len, e.addr, e.length); });
  if (!inside) {
    return InvalidArgument("[" + Hex(addr) + ", +" + std::to_string(len) + ") is not part of object " +
                           std::to_string(object_id) + " on node " + std::to_string(node_id_) +
                           ": a peer is served only the extents of committed objects");
  }
  auto it = arenas_.upper_bound(addr);
  if (it != arenas_.begin()) {
    --it;
    if (RangeWithin(addr, len, it->first, it->second.size)) {
      return transport::SourceRange{it->second.fd->get(), it->second.fd_offset + (addr - it->first), it->second.fd};
    }
  }
  return NotFound("node " + std::to_string(node_id_) + " holds no arena with [" + Hex(addr) + ", +" +
                  std::to_string(len) + "): a peer is served only from this node's own segments");
}

}  // namespace csm::node
