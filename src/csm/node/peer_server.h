// PeerServer: what this node lets other nodes read, and the transport server that reads
// it for them.
//
// A peer asks for a range of one of this node's objects by the object's id (from its
// directory record). It is served only if the object is committed here and not deleted,
// and the range lies inside one of its extents and inside one of this node's own arenas.
// The daemon's event loop adds and removes arenas and objects as they come and go; the
// transport's threads look ranges up (Range) at the same time.
//
// An arena removed while a peer is being sent bytes from it stays open for that send
// (SourceRange::keep_alive); RemoveArena says so, and the daemon then does not reuse its
// memory, whose bytes the peer is still reading.
//
// Thread-safety: internally locked; every method may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "csm/object/object_layout.h"
#include "csm/os/fd.h"
#include "csm/status.h"
#include "csm/transport/transport.h"

namespace csm::node {

class PeerServer {
 public:
  explicit PeerServer(uint32_t node_id) : node_id_(node_id) {}
  ~PeerServer() { server_.reset(); }  // its threads call Range: stopped first
  PeerServer(const PeerServer&) = delete;
  PeerServer& operator=(const PeerServer&) = delete;

  // Starts answering peers at `address` ("host:port"; port 0 picks one). Until then,
  // and without it, nothing is recorded: a node that serves no peers keeps no copies of
  // its arenas' descriptors.
  Status Start(transport::TransportKind kind, const std::string& address, transport::PeerOptions options);
  // Records without a transport server (for tests of the table alone).
  void ServeWithoutTransport() { serving_ = true; }
  bool serving() const { return serving_; }
  // Object bytes handed to the transport for peers so far.
  // Object bytes the transport sent to peers.
  uint64_t bytes_served() const { return server_ ? server_->bytes_served() : 0; }
  uint16_t port() const { return server_ ? server_->port() : 0; }

  // An arena of this node at [addr, +size); `fd` is duplicated.
  void AddArena(uint64_t addr, uint64_t size, int fd, uint64_t fd_offset = 0);
  // True if a peer is being sent bytes from it right now.
  bool RemoveArena(uint64_t addr);
  // True if a peer is being sent bytes from the arena at `arena_addr` right now.
  bool Sending(uint64_t arena_addr);
  void AddObject(uint64_t object_id, std::vector<object::ObjectExtent> extents);
  // Peers that ask from now on are told it is gone.
  void RemoveObject(uint64_t object_id);
  // Its bytes went to the spill directory: a peer that asks for them waits for the
  // restorer to bring them back (AddObject again), up to the restorer's own deadline.
  void MarkSpilled(uint64_t object_id);
  using Restorer = std::function<Status(uint64_t object_id)>;
  void SetRestorer(Restorer restorer) { restorer_ = std::move(restorer); }  // before Start

  // Where [addr, +len) of object `object_id` lies: NotFound if the object is not (or no
  // longer) served, InvalidArgument if the range is outside its extents, NotFound if no
  // arena of this node holds it.
  Result<transport::SourceRange> Range(uint64_t object_id, uint64_t addr, uint64_t len);

 private:
  struct Served {
    std::shared_ptr<os::UniqueFd> fd;
    uint64_t size;
    uint64_t fd_offset;  // where the arena starts in fd
  };
  const uint32_t node_id_;
  bool serving_ = false;  // set before any thread but the owner's calls in
  std::mutex mu_;
  std::map<uint64_t, Served> arenas_;  // by address; guarded by mu_
  std::unordered_map<uint64_t, std::vector<object::ObjectExtent>> objects_;  // by id; guarded
  std::unordered_map<uint64_t, std::vector<object::ObjectExtent>> spilled_;  // by id; guarded
  Restorer restorer_;  // set before any transport thread runs
  std::unique_ptr<transport::TransportServer> server_;  // last: stopped first
};

}  // namespace csm::node
