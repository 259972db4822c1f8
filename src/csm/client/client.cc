// The client library: ClientImpl (the process's attachment to csmd), pins and Client;
// the Builder is in builder.cc. See include/csm/client.h and client_impl.h.
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>

#include <nlohmann/json.hpp>

#include "csm/base/hash.h"
#include "csm/base/hex.h"
#include "csm/base/log.h"
#include "csm/base/range.h"
#include "csm/base/tsan.h"
#include "csm/client/client_impl.h"
#include "csm/object/checksum.h"
#include "csm/os/memory.h"

namespace csm {
namespace internal {

namespace {

// One Client per process: two would both try to own the window reservation.
std::atomic<bool> g_client_exists{false};
// That client, for the fork handlers (registered once per process).
std::atomic<ClientImpl*> g_live_client{nullptr};
// The process's attachment, shared by every Client::Connect that asks for the same node.
std::mutex g_connect_mu;
std::weak_ptr<ClientImpl> g_attachment;  // guarded by g_connect_mu
std::once_flag g_atfork_once;

void PrepareFork() {
  if (ClientImpl* c = g_live_client.load()) c->BeforeFork();
}
void ParentAfterFork() {
  if (ClientImpl* c = g_live_client.load()) c->AfterForkInParent();
}
void ChildAfterFork() {
  if (ClientImpl* c = g_live_client.load()) c->AfterForkInChild();
}

// TSan only: the edge from a reader's last access to a reclaimed object to the next
// writer of that memory runs through csmd, which TSan cannot follow.
[[maybe_unused]] char g_tsan_reuse;

ObjectInfo InfoFromSlot(const directory::SlotData& d) {
  ObjectInfo info;
  info.key.assign(d.key, std::min<size_t>(d.key_length, directory::kMaxKeyLength));
  info.object_id = d.object_id;
  info.owner_node = d.owner_node;
  info.type_id = d.type_id;
  info.header = d.header;
  info.root = d.root;
  info.size = d.data_size;
  info.checksum = d.checksum;
  info.commit_time_ns = d.commit_time_ns;
  return info;
}

}  // namespace


// ---- ClientImpl ---------------------------------------------------------------------

Result<std::shared_ptr<ClientImpl>> ClientImpl::Connect(const ClientOptions& options) {
  if (options.request_timeout.count() <= 0 || options.request_timeout > std::chrono::hours(24)) {
    return InvalidArgument("ClientOptions::request_timeout must be between 1 ms and 24 h, not " +
                           std::to_string(options.request_timeout.count()) + " ms");
  }
  Config config = DefaultConfig();  // the node-side fields come from csmd's Hello reply
  config.socket_path = options.socket_path;
  config.window = options.window;
  CSM_RETURN_IF_ERROR(ValidateConfig(config));
  std::lock_guard<std::mutex> lock(g_connect_mu);
  if (std::shared_ptr<ClientImpl> existing = g_attachment.lock()) {
    const Config& have = existing->config();
    if (have.socket_path != config.socket_path || !(have.window == config.window)) {
      return FailedPrecondition("this process is attached to csmd at " + have.socket_path +
                                " already, and a process has one attachment (its window sits at "
                                "a fixed address): connect to that node, or from another process");
    }
    if (existing->state_.load() == State::kLost) {
      return existing->LostError().WithContext(
          "this process's attachment still lives (a Client, Ref or Builder holds it)");
    }
    return existing;
  }
  if (g_client_exists.exchange(true)) {
    return FailedPrecondition("this process's previous attachment to csmd is still being torn "
                              "down on another thread: connect again once it is gone");
  }
  std::shared_ptr<ClientImpl> c(new ClientImpl(config));
  c->request_timeout_ms_ = static_cast<int>(options.request_timeout.count());
  auto window = space::Window::Reserve(config.window);
  if (!window.ok()) {
    g_client_exists = false;
    return window.status();
  }
  c->window_ = std::move(*window);
  auto sock = os::ConnectUnix(config.socket_path);
  if (!sock.ok()) return sock.status();  // ~ClientImpl resets the flag
  c->channel_ = std::make_unique<RequestChannel>(std::move(*sock), "csmd at " + config.socket_path);
  CSM_RETURN_IF_ERROR(c->Hello());
  c->heap_ = std::make_unique<alloc::ProcessHeap>(c.get(), c->config_.arena_size);
  // Map what exists now; the mapper thread follows what comes later.
  const auto& h = c->dir_->header();
  CSM_RETURN_IF_ERROR(c->SyncArenas(h.arena_seq.load(), h.arenas_freed.load()));
  c->mapper_ = std::make_unique<std::thread>([raw = c.get()] { raw->MapperLoop(); });
  std::call_once(g_atfork_once, [] { ::pthread_atfork(PrepareFork, ParentAfterFork, ChildAfterFork); });
  g_live_client.store(c.get());
  g_attachment = c;
  return c;
}

Status ClientImpl::LostError() const {
  return Unavailable("csmd at " + config_.socket_path + " went away (stopped, or restarted "
                     "as a new node): this Client no longer answers from that node's "
                     "directory; destroy it (with its Refs and Builders) and Connect again");
}

Status ClientImpl::Usable() {
  switch (state_.load(std::memory_order_acquire)) {
    case State::kAttached:
      if (dir_->WriterAlive()) [[likely]] return Status::OK();
      state_.store(State::kLost);
      return LostError();
    case State::kLost: return LostError();
    case State::kForked: break;
  }
  std::lock_guard<std::mutex> lock(*reattach_mu_);
  if (state_.load() == State::kForked) {
    Status s = Reattach();
    if (!s.ok()) {
      return s.WithContext("attaching this forked process to csmd as a new client");
    }
    state_.store(State::kAttached, std::memory_order_release);
  }
  return state_.load() == State::kLost ? LostError() : Status::OK();
}

void ClientImpl::AddBuilder(BuilderCore* b) {
  std::lock_guard<std::mutex> lock(builders_mu_);
  builders_.insert(b);
}

void ClientImpl::RemoveBuilder(BuilderCore* b) {
  std::lock_guard<std::mutex> lock(builders_mu_);
  builders_.erase(b);
}

// The prepare handler takes the locks a child needs consistent state under; none of
// them is held across a round trip, so fork() waits for no one for long.
void ClientImpl::BeforeFork() {
  builders_mu_.lock();
  pin_mu_.lock();
  map_mu_.lock();
}

void ClientImpl::AfterForkInParent() {
  map_mu_.unlock();
  pin_mu_.unlock();
  builders_mu_.unlock();
}

// Runs in the child, the only thread. Whatever the parent's other threads held stays
// held forever here: those objects are leaked and replaced, never unlocked or joined.
void ClientImpl::AfterForkInChild() {
  const bool was_attached = state_.load() == State::kAttached;
  // The parent's arenas: still readable (Refs the child inherited), never writable.
  for (auto& [addr, m] : mapped_) {
    if (!m.writable) continue;
    if (::mprotect(reinterpret_cast<void*>(addr), m.size, PROT_READ) != 0) {
      ::_exit(121);  // cannot leave a child able to corrupt the parent's objects
    }
    m.writable = false;
  }
  for (BuilderCore* b : builders_) b->Orphan();
  pins_ours_ = false;  // the pin table is the parent's; Reattach makes the child its own
  (void)heap_.release();     // its arenas are the parent's; it may be locked
  (void)mapper_.release();   // threads do not survive fork
  (void)sync_mu_.release();
  (void)reattach_mu_.release();
  sync_mu_ = std::make_unique<std::mutex>();
  reattach_mu_ = std::make_unique<std::mutex>();
  // The parent's connection stays open in the parent; the child's copy is closed (csmd
  // must see the parent hang up when it exits) and the channel leaked (its locks).
  if (channel_ != nullptr) ::close(channel_->fd());
  (void)channel_.release();
  if (was_attached) state_.store(State::kForked);
  map_mu_.unlock();
  pin_mu_.unlock();
  builders_mu_.unlock();
}

Status ClientImpl::Reattach() {
  CSM_ASSIGN_OR_RETURN(os::UniqueFd sock, os::ConnectUnix(config_.socket_path));
  channel_ = std::make_unique<RequestChannel>(std::move(sock), "csmd at " + config_.socket_path);
  void* old_dir = std::exchange(dir_mem_, nullptr);
  const size_t old_dir_bytes = dir_bytes_;
  directory::PinEntry* parent_pins = std::exchange(pins_, nullptr);
  std::unique_ptr<directory::DirectoryTable> old_table = std::move(dir_);
  Status hello = Hello();
  if (old_dir != nullptr) ::munmap(old_dir, old_dir_bytes);  // this thread was its last reader
  if (parent_pins != nullptr) ::munmap(parent_pins, pin_bytes_);
  CSM_RETURN_IF_ERROR(hello);
  {
    // Pin, in the child's own table, what it inherited pinned; what was deleted meanwhile
    // (or belongs to another csmd) is dropped.
    std::lock_guard<std::mutex> lock(pin_mu_);
    pins_ours_ = true;
    for (auto it = pinned_.begin(); it != pinned_.end();) {
      LocalPin& p = it->second;
      if (free_pins_.empty()) {
        it = pinned_.erase(it);
        continue;
      }
      uint32_t index = free_pins_.back();
      pins_[index].count.store(p.count, std::memory_order_relaxed);
      pins_[index].object_id.store(it->first, std::memory_order_seq_cst);
      directory::SlotData now = p.slot < dir_->capacity() ? dir_->ReadSlot(p.slot) : directory::SlotData{};
      if (now.object_id != it->first || now.state != static_cast<uint16_t>(directory::SlotState::kLive)) {
        pins_[index].object_id.store(0, std::memory_order_release);
        it = pinned_.erase(it);
        continue;
      }
      free_pins_.pop_back();
      p.index = index;
      ++it;
    }
  }
  heap_ = std::make_unique<alloc::ProcessHeap>(this, config_.arena_size);
  const auto& h = dir_->header();
  CSM_RETURN_IF_ERROR(SyncArenas(h.arena_seq.load(), h.arenas_freed.load(), /*full=*/true));
  stopping_ = false;
  mapper_ = std::make_unique<std::thread>([this] { MapperLoop(); });
  return Status::OK();
}

void ClientImpl::MapperLoop() {
  const auto& h = dir_->header();
  while (!stopping_.load() && state_.load() == State::kAttached && dir_->WriterAlive()) {
    uint32_t seen = h.change_counter.load();
    uint64_t newest = h.arena_seq.load(), freed = h.arenas_freed.load();
    if (newest > synced_seq_.load() || freed != synced_freed_.load()) {
      Status s = SyncArenas(newest, freed);
      if (s.IsUnavailable()) return;  // csmd is gone: nothing more will change
      if (!s.ok()) CSM_LOG_WARN("mapping new arenas: %s", s.ToString().c_str());
    }
    os::FutexWait(reinterpret_cast<const uint32_t*>(&h.change_counter), seen, 200'000'000);
  }
}

ClientImpl::~ClientImpl() {
  ClientImpl* self = this;
  g_live_client.compare_exchange_strong(self, nullptr);
  if (mapper_ != nullptr) {
    stopping_ = true;
    os::FutexWakeAll(reinterpret_cast<const uint32_t*>(&dir_->header().change_counter));
    mapper_->join();
  }
  heap_.reset();  // releases this process's arenas while the socket still works
  if (dir_mem_ != nullptr) ::munmap(dir_mem_, dir_bytes_);
  if (pins_ != nullptr) ::munmap(pins_, pin_bytes_);
  window_.reset();
  g_client_exists = false;
}

Status ClientImpl::Hello() {
  std::vector<os::UniqueFd> fds;
  CSM_ASSIGN_OR_RETURN(auto reply, Ask<protocol::HelloReply>(
                                       protocol::Hello{protocol::BuildFingerprint(), config_.window}, &fds));
  const uint32_t slots = reply.slots, pins = reply.pins;
  const uint64_t arena_size = reply.arena_size;
  clustered_ = reply.clustered != 0;
  if (fds.size() != 2 || (slots & (slots - 1)) != 0 || slots < 32 || slots > (1u << 25) || pins == 0 ||
      pins > (1u << 24) || arena_size == 0 || arena_size % (2ULL << 20) != 0) {
    return Corruption("malformed Hello reply from csmd");
  }
  config_.max_objects = slots / 2;
  config_.pins_per_client = pins;
  config_.arena_size = arena_size;  // the node decides
  dir_bytes_ = directory::DirectoryBytes(slots);
  // Populated: Gets then take no page fault on the directory.
  dir_mem_ = ::mmap(nullptr, dir_bytes_, PROT_READ, MAP_SHARED | MAP_POPULATE, fds[0].get(), 0);
  if (dir_mem_ == MAP_FAILED) {
    dir_mem_ = nullptr;
    return ErrnoError("mmap of csmd's directory", errno);
  }
  dir_ = std::make_unique<directory::DirectoryTable>(dir_mem_, slots);
  CSM_RETURN_IF_ERROR(dir_->Validate());
  pin_bytes_ = size_t{pins} * sizeof(directory::PinEntry);
  void* p = ::mmap(nullptr, pin_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fds[1].get(), 0);
  if (p == MAP_FAILED) return ErrnoError("mmap of this process's pin table", errno);
  std::lock_guard<std::mutex> lock(pin_mu_);
  pins_ = static_cast<directory::PinEntry*>(p);
  free_pins_.clear();  // a re-attaching child's table is new: every entry is free
  free_pins_.reserve(pins);
  for (uint32_t i = pins; i > 0; --i) free_pins_.push_back(i - 1);
  return Status::OK();
}

Result<os::Message> ClientImpl::Call(const protocol::WireWriter& request, protocol::MessageType reply,
                                     int timeout_ms) {
  if (timeout_ms < 0) timeout_ms = request_timeout_ms_;
  if (state_.load() == State::kLost) return LostError();
  CSM_ASSIGN_OR_RETURN(os::Message msg, channel_->Call(request, timeout_ms));
  protocol::WireReader in(msg.bytes);
  protocol::MessageType type{};
  CSM_RETURN_IF_ERROR(in.ReadHeader(&type));
  if (type != reply) return Corruption("csmd answered with an unexpected message type");
  return msg;
}

Status ClientImpl::SendOneWay(const protocol::WireWriter& message) {
  if (state_.load() != State::kAttached) return LostError();
  return channel_->Send(message);
}

void ClientImpl::RecordMapping(uint64_t id, uint64_t addr, uint64_t size, bool writable) {
  // A new mapping replaces whatever older arenas were mapped in its range.
  auto it = mapped_.lower_bound(addr);
  if (it != mapped_.begin() && std::prev(it)->first + std::prev(it)->second.size > addr) --it;
  while (it != mapped_.end() && it->first < addr + size) it = mapped_.erase(it);
  mapped_[addr] = Mapped{id, size, writable};
}

Result<alloc::ArenaSource::Grant> ClientImpl::AllocateArena(uint64_t min_size, bool dedicated) {
  std::vector<os::UniqueFd> fds;
  CSM_ASSIGN_OR_RETURN(auto reply, Ask<protocol::ArenaReply>(
                                       protocol::AllocArena{min_size, static_cast<uint8_t>(dedicated)}, &fds));
  Grant g{reply.arena_id, reply.addr, reply.size};
  const bool huge_pages = reply.huge_pages != 0;
  if (fds.size() != 1 || !window_->Contains(g.addr, g.size) || g.size < min_size) {
    return Corruption("csmd granted an arena outside the window or too small");
  }
  CSM_TSAN_ACQUIRE(&g_tsan_reuse);  // the memory may be a reclaimed object's
  {
    std::lock_guard<std::mutex> lock(map_mu_);
    CSM_RETURN_IF_ERROR(os::MapFixed(g.addr, g.size, fds[0].get(), /*writable=*/true));
    RecordMapping(g.arena_id, g.addr, g.size, true);
  }
  // This process faults the arena's pages in, so it is the one to ask for their size.
  if (huge_pages) os::AdviseHugePages(g.addr, g.size);
  // A dedicated arena is one allocation's, about to be written: its pages come in one
  // call rather than a fault per page (often reused pages: see SpareMemory). Only the
  // bytes asked for: the rest of the 2 MiB-rounded arena may stay unbacked.
  if (dedicated) os::PrefaultWritable(g.addr, (min_size + os::PageSize() - 1) / os::PageSize() * os::PageSize());
  return g;
}

void ClientImpl::ReleaseArena(uint64_t arena_id) {
  (void)SendOneWay(protocol::Encode(protocol::ReleaseArena{arena_id}));  // if csmd is gone, so is the arena
}

Status ClientImpl::SyncArenas(uint64_t seq, uint64_t freed, bool full) {
  // sync_mu_ orders syncs (each asks from where the last one ended); map_mu_ is taken
  // only to change the mappings, never across the round trip.
  std::lock_guard<std::mutex> sync_lock(*sync_mu_);
  if (full) synced_seq_.store(0);
  std::set<uint64_t> sent;  // with `full`: the arenas csmd says are live
  bool first = true;
  while (synced_seq_.load() < seq || (first && (full || freed != synced_freed_.load()))) {
    first = false;
    std::vector<os::UniqueFd> fds;
    CSM_ASSIGN_OR_RETURN(auto reply, Ask<protocol::SyncReply>(protocol::SyncArenas{synced_seq_.load()}, &fds));
    if (reply.fresh.size() != fds.size()) return Corruption("SyncReply descriptor count differs");
    const std::vector<protocol::ArenaRef>& gone = reply.destroyed;
    const std::vector<protocol::ArenaRef>& added = reply.fresh;
    const uint64_t upto = reply.upto;
    for (const auto& a : added) {
      if (!window_->Contains(a.addr, a.size)) return Corruption("csmd sent an arena outside the window");
    }
    if (upto < synced_seq_.load() || (upto == synced_seq_.load() && upto < seq)) {
      return Corruption("csmd's arena sequence does not reach the object's arenas");
    }
    {
      std::lock_guard<std::mutex> lock(map_mu_);
      for (const protocol::ArenaRef& d : gone) {
        auto it = mapped_.find(d.addr);
        if (it != mapped_.end() && it->second.id == d.id) {
          // Freed by csmd: nothing here pins it, so drop our reference to its memory.
          CSM_RETURN_IF_ERROR(os::UnmapToReservation(d.addr, it->second.size));
          mapped_.erase(it);
        }
      }
      for (uint32_t i = 0; i < added.size(); ++i) {
        const protocol::ArenaRef& a = added[i];
        sent.insert(a.id);
        auto it = mapped_.find(a.addr);
        if (it != mapped_.end() && it->second.id == a.id) continue;  // mapped already
        CSM_RETURN_IF_ERROR(os::MapFixed(a.addr, a.size, fds[i].get(), /*writable=*/false));
        RecordMapping(a.id, a.addr, a.size, false);
      }
    }
    synced_seq_.store(std::max(upto, synced_seq_.load()));
  }
  if (full) {
    // What the parent had mapped and csmd no longer has (or never gave this client).
    std::lock_guard<std::mutex> lock(map_mu_);
    for (auto it = mapped_.begin(); it != mapped_.end();) {
      if (sent.count(it->second.id) != 0) {
        ++it;
        continue;
      }
      CSM_RETURN_IF_ERROR(os::UnmapToReservation(it->first, it->second.size));
      it = mapped_.erase(it);
    }
  }
  if (freed != 0) synced_freed_.store(freed);
  return Status::OK();
}

Status ClientImpl::Pin(const directory::DirectoryTable::Found& found) {
  const uint64_t id = found.data.object_id;
  std::lock_guard<std::mutex> lock(pin_mu_);
  auto it = pinned_.find(id);
  if (it != pinned_.end()) {
    ++it->second.count;
    return Status::OK();
  }
  if (free_pins_.empty()) {
    return CapacityExceeded("this process already pins " + std::to_string(pinned_.size()) +
                            " objects (pins_per_client): drop some Refs");
  }
  uint32_t index = free_pins_.back();
  directory::PinEntry& e = pins_[index];
  e.count.store(1, std::memory_order_relaxed);
  // seq_cst store, then ReadSlot's seq_cst load; csmd does the mirror image (tombstone
  // store, then pin loads). One of the two sees the other.
  e.object_id.store(id, std::memory_order_seq_cst);
  directory::SlotData now = dir_->ReadSlot(found.index);
  if (now.object_id != id || now.state != static_cast<uint16_t>(directory::SlotState::kLive)) {
    e.object_id.store(0, std::memory_order_release);
    return NotFound("deleted while being pinned");
  }
  free_pins_.pop_back();
  pinned_[id] = LocalPin{index, found.index, 1};
  return Status::OK();
}

void ClientImpl::AddPin(uint64_t object_id) {
  std::lock_guard<std::mutex> lock(pin_mu_);
  auto it = pinned_.find(object_id);
  CSM_CHECK(it != pinned_.end());
  ++it->second.count;
  if (pins_ours_) pins_[it->second.index].count.store(it->second.count, std::memory_order_relaxed);
}

void ClientImpl::Unpin(uint64_t object_id) {
  bool deleted = false;
  {
    std::lock_guard<std::mutex> lock(pin_mu_);
    auto it = pinned_.find(object_id);
    if (it == pinned_.end()) return;
    if (!pins_ours_) {  // a forked child not yet re-attached: the table is the parent's
      if (--it->second.count == 0) pinned_.erase(it);
      return;
    }
    if (--it->second.count > 0) {
      pins_[it->second.index].count.store(it->second.count, std::memory_order_relaxed);
      return;
    }
    CSM_TSAN_RELEASE(&g_tsan_reuse);  // our reads happen before csmd reuses the memory
    pins_[it->second.index].object_id.store(0, std::memory_order_seq_cst);
    free_pins_.push_back(it->second.index);
    directory::SlotData now = dir_->ReadSlot(it->second.slot);
    deleted = now.object_id != object_id ||
              now.state != static_cast<uint16_t>(directory::SlotState::kLive);
    pinned_.erase(it);
  }
  if (deleted) {  // let csmd reuse the memory now rather than at its next sweep
    (void)SendOneWay(protocol::Encode(protocol::Unpinned{object_id}));
  }
}

Result<PinnedObject> ClientImpl::Get(std::string_view key, uint64_t type_id,
                                     std::string (*type_name)(),
                                     std::chrono::milliseconds timeout) {
  CSM_RETURN_IF_ERROR(ValidateKeyToRead(key));
  CSM_RETURN_IF_ERROR(Usable());
  // Up to ~146 years: a deadline that cannot overflow, for callers that say "forever".
  constexpr int64_t kMaxTimeoutMs = int64_t{1} << 42;
  const int64_t timeout_ms = std::clamp<int64_t>(timeout.count(), 0, kMaxTimeoutMs);
  const int64_t deadline = os::MonotonicNanos() + timeout_ms * 1000000;
  const auto* counter =
      reinterpret_cast<const uint32_t*>(&dir_->header().change_counter);
  int resolved = 0;  // times csmd said the key is here now
  Status unreachable;  // the last reason csmd could not look the key up in the cluster
  for (;;) {
    CSM_RETURN_IF_ERROR(Usable());  // csmd gone: nothing more from its directory
    uint32_t seen = dir_->header().change_counter.load(std::memory_order_seq_cst);
    auto found = dir_->Find(key);
    if (found) {
      if (found->data.type_id != type_id) {
        return TypeMismatch("object '" + std::string(key) + "' has type id " +
                            Hex(found->data.type_id) + ", not " + type_name() + " (type id " +
                            Hex(type_id) + "): Get it with the type it was built as");
      }
      Status pinned = Pin(*found);
      if (pinned.IsNotFound()) continue;  // deleted meanwhile: look again
      CSM_RETURN_IF_ERROR(pinned);
      PinnedObject pin(shared_from_this(), InfoFromSlot(found->data));  // unpins on any error below
      CSM_TSAN_ACQUIRE(found->data.header);  // pairs with the producer's release at commit
      if (found->data.arena_seq_max > synced_seq_.load(std::memory_order_acquire)) {
        CSM_RETURN_IF_ERROR(SyncArenas(found->data.arena_seq_max));
      }
      // csmd checked the header and extents at commit; the Get itself touches none of
      // the object's pages (Ref::Verify reads them all).
      const ObjectInfo& info = pin.info();
      if (!window_->Contains(info.header, sizeof(object::ObjectHeader)) ||
          !window_->Contains(info.root, 1)) {
        return Corruption("object '" + std::string(key) + "' lies outside the window");
      }
      return pin;
    }
    const int64_t left_ms = (deadline - os::MonotonicNanos()) / 1000000;
    // Not on this node: csmd brings it from its owner, if any node has it. With a
    // timeout, the caller's deadline bounds the wait for it (once it passed, the answer
    // is below); without one (look, do not wait for a commit) the fetch of what exists is
    // bounded by the transport's stall timeout, not by the object's size.
    if (clustered_ && resolved < 3 && (timeout_ms == 0 || left_ms > 0)) {
      constexpr int64_t kFetchReplyMs = 10 * 60 * 1000;
      Status r = Resolve(key, static_cast<int>(timeout_ms > 0 ? std::min(left_ms, kFetchReplyMs) : kFetchReplyMs));
      if (r.IsTimeout() && timeout_ms > 0 && !unreachable.ok()) {
        return unreachable.WithContext("no object under key '" + std::string(key) + "' here, and for " +
                                       std::to_string(timeout_ms) + " ms the cluster could not be asked");
      }
      if (r.IsTimeout() && timeout_ms > 0) {
        return Timeout("the object under key '" + std::string(key) + "' did not reach this node within " +
                       std::to_string(timeout_ms) + " ms (csmd goes on fetching it: a later Get may find it)");
      }
      if (r.ok()) {
        ++resolved;
        continue;
      }
      // The coordinator or the owner cannot be reached: it may come back before the
      // deadline, so wait and ask again (below); anything else is the answer.
      if (r.IsUnavailable() && state_.load() == State::kAttached) {
        unreachable = r;
      } else if (!r.IsNotFound()) {
        return r;
      } else {
        unreachable = Status::OK();
      }
    }
    int64_t left = deadline - os::MonotonicNanos();
    if (left <= 0) {
      if (!unreachable.ok()) {
        return unreachable.WithContext("no object under key '" + std::string(key) + "' here, and " +
                                       (timeout_ms > 0 ? "for " + std::to_string(timeout_ms) + " ms " : std::string()) +
                                       "the cluster could not be asked");
      }
      if (timeout_ms == 0) {
        return NotFound("no object under key '" + std::string(key) +
                        "' on this node (csm ls lists them; pass a timeout to wait for it)");
      }
      return Timeout("no object under key '" + std::string(key) + "' was committed within " +
                     std::to_string(timeout_ms) + " ms");
    }
    // Sleep until csmd announces a change (or the deadline). Commits on other nodes
    // announce nothing here, so in a cluster look again every 50 ms; alone, every
    // 200 ms at most, to notice a csmd that died.
    os::FutexWait(counter, seen, std::min<int64_t>(left, clustered_ ? 50'000'000 : 200'000'000));
  }
}

void ClientImpl::ResolveMany(const std::vector<std::string>& keys, int timeout_ms) {
  if (!clustered_ || !Usable().ok()) return;
  const int64_t deadline = os::MonotonicNanos() + int64_t{timeout_ms} * 1000000;
  std::vector<uint64_t> out;
  for (const std::string& key : keys) {
    if (!ValidateKeyToRead(key).ok() || dir_->Find(key)) continue;
    auto id = channel_->Start(protocol::Encode(protocol::Resolve{key}));
    if (!id.ok()) break;
    out.push_back(*id);
  }
  for (uint64_t id : out) {
    const int64_t left_ms = std::max<int64_t>(1, (deadline - os::MonotonicNanos()) / 1000000);
    (void)channel_->Await(id, static_cast<int>(std::min<int64_t>(left_ms, INT32_MAX)));
  }
}

Status ClientImpl::Resolve(std::string_view key, int timeout_ms) {
  return Ask<protocol::StatusReply>(protocol::Resolve{std::string(key)}, nullptr, timeout_ms).status();
}

Result<uint64_t> ClientImpl::Commit(uint64_t header, uint64_t type_id, std::string_view key,
                                    const std::string& type_name) {
  CSM_ASSIGN_OR_RETURN(auto reply, Ask<protocol::CommitReply>(
                                       protocol::Commit{header, type_id, std::string(key), type_name}));
  return reply.object_id;
}

Status ClientImpl::Delete(std::string_view key) {
  CSM_RETURN_IF_ERROR(ValidateKeyToRead(key));
  CSM_RETURN_IF_ERROR(Usable());
  return Ask<protocol::StatusReply>(protocol::Delete{std::string(key)}).status();
}

Result<std::string> ClientImpl::Json(protocol::MessageType type, std::string_view key,
                                     uint32_t limit) {
  CSM_RETURN_IF_ERROR(Usable());
  Result<protocol::JsonReply> reply = Unavailable("not asked");
  switch (type) {
    case protocol::MessageType::kStat: reply = Ask<protocol::JsonReply>(protocol::Stat{std::string(key)}); break;
    case protocol::MessageType::kList:
      reply = Ask<protocol::JsonReply>(protocol::List{std::string(key), limit});
      break;
    case protocol::MessageType::kInfo: reply = Ask<protocol::JsonReply>(protocol::Info{}); break;
    case protocol::MessageType::kNodes: reply = Ask<protocol::JsonReply>(protocol::Nodes{}); break;
    default: return InvalidArgument("not a request answered with JSON");
  }
  if (!reply.ok()) return reply.status();
  return std::move(reply->json);
}

Result<ObjectInfo> ClientImpl::Lookup(std::string_view key) const {
  CSM_RETURN_IF_ERROR(ValidateKeyToRead(key));
  // Usable() may re-attach a forked child (it replaces the directory mapping), which is
  // no change a caller of a const method can see.
  CSM_RETURN_IF_ERROR(const_cast<ClientImpl*>(this)->Usable());
  auto found = dir_->Find(key);
  if (!found) return NotFound("no object under key '" + std::string(key) + "' on this node");
  return InfoFromSlot(found->data);
}

std::vector<ObjectInfo> ClientImpl::List() const {
  std::vector<ObjectInfo> out;
  // A gone node's directory means nothing now (and a forked child re-attaches first).
  if (!const_cast<ClientImpl*>(this)->Usable().ok()) return out;
  for (uint32_t i = 0; i < dir_->capacity(); ++i) {
    directory::SlotData d = dir_->ReadSlot(i);
    if (d.state == static_cast<uint16_t>(directory::SlotState::kLive)) {
      out.push_back(InfoFromSlot(d));
    }
  }
  std::sort(out.begin(), out.end(),
            [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
  return out;
}

bool ClientImpl::ExtentMapped(uint64_t addr, uint64_t len) {
  auto it = mapped_.upper_bound(addr);
  if (it == mapped_.begin()) return false;
  --it;
  return RangeWithin(addr, len, it->first, it->second.size);
}

Result<std::vector<Extent>> ClientImpl::Extents(const ObjectInfo& info) {
  const auto* h = reinterpret_cast<const object::ObjectHeader*>(info.header);
  std::lock_guard<std::mutex> lock(map_mu_);
  uint64_t count = h->extent_count;
  if (count == 0 || count > object::kMaxExtents ||
      !ExtentMapped(h->extents, count * sizeof(object::ObjectExtent))) {
    return Corruption("object '" + info.key + "' has a damaged extent table");
  }
  const auto* table = reinterpret_cast<const object::ObjectExtent*>(h->extents);
  std::vector<Extent> out;
  uint64_t total = 0;
  for (uint64_t i = 0; i < count; ++i) {
    object::ObjectExtent e = table[i];
    if (!ExtentMapped(e.addr, e.length)) {
      return Corruption("object '" + info.key + "' lists an extent outside its memory");
    }
    out.push_back({e.addr, e.length});
    total += e.length;
  }
  if (total != info.size) return Corruption("object '" + info.key + "' has extents that do not add up to its size");
  return out;
}

Status ClientImpl::Verify(const ObjectInfo& info) {
  CSM_ASSIGN_OR_RETURN(std::vector<Extent> extents, Extents(info));
  if (extents[0].length < sizeof(object::ObjectHeader)) {
    return Corruption("object '" + info.key + "' lists an extent outside its memory");
  }
  if ((reinterpret_cast<const object::ObjectHeader*>(info.header)->flags & object::kFlagChecksumDeferred) != 0) {
    return FailedPrecondition("object '" + info.key + "' was committed without a checksum (its copies to "
                              "other nodes are checked against the owner's digest instead)");
  }
  if (object::ChecksumOf(extents) != info.checksum) {
    return Corruption("object '" + info.key + "' does not match its committed checksum");
  }
  return Status::OK();
}

// ---- PinnedObject -------------------------------------------------------------------

PinnedObject::PinnedObject(const PinnedObject& o) : client_(o.client_), info_(o.info_) {
  if (client_ != nullptr) client_->AddPin(info_.object_id);
}

PinnedObject& PinnedObject::operator=(const PinnedObject& o) {
  if (this != &o) {
    Reset();
    client_ = o.client_;
    info_ = o.info_;
    if (client_ != nullptr) client_->AddPin(info_.object_id);
  }
  return *this;
}

PinnedObject& PinnedObject::operator=(PinnedObject&& o) noexcept {
  if (this != &o) {
    Reset();
    client_ = std::exchange(o.client_, nullptr);
    info_ = std::move(o.info_);
  }
  return *this;
}

void PinnedObject::Reset() {
  if (client_ != nullptr) std::exchange(client_, nullptr)->Unpin(info_.object_id);
}

Status PinnedObject::Verify() const {
  if (client_ == nullptr) return FailedPrecondition("empty Ref");
  return client_->Verify(info_);
}

Result<std::vector<Extent>> PinnedObject::Extents() const {
  if (client_ == nullptr) return FailedPrecondition("empty Ref");
  return client_->Extents(info_);
}

}  // namespace internal

// ---- Client ---------------------------------------------------------------------------

Result<ClientOptions> ClientOptions::FromEnvironment() {
  CSM_ASSIGN_OR_RETURN(Config config, LoadConfig());
  return From(config);
}

ClientOptions ClientOptions::From(const Config& config) {
  ClientOptions o;
  o.socket_path = config.socket_path;
  o.window = config.window;
  return o;
}

Result<std::unique_ptr<Client>> Client::Connect() {
  CSM_ASSIGN_OR_RETURN(ClientOptions options, ClientOptions::FromEnvironment());
  return Connect(options);
}

Result<std::unique_ptr<Client>> Client::Connect(const Config& config) {
  return Connect(ClientOptions::From(config));
}

Result<std::unique_ptr<Client>> Client::Connect(const ClientOptions& options) {
  CSM_ASSIGN_OR_RETURN(auto impl, internal::ClientImpl::Connect(options));
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

Client::Client(std::shared_ptr<internal::ClientImpl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

Result<Builder> Client::NewBuilder() {
  CSM_RETURN_IF_ERROR(impl_->Usable());
  auto core = std::make_unique<internal::BuilderCore>(impl_);
  CSM_RETURN_IF_ERROR(core->Start());
  return Builder(std::move(core));
}

void Client::FetchMissing(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) {
  constexpr int64_t kFetchReplyMs = 10 * 60 * 1000;  // as for one Get without a timeout
  impl_->ResolveMany(keys, static_cast<int>(timeout.count() > 0 ? std::min<int64_t>(timeout.count(), kFetchReplyMs)
                                                                : kFetchReplyMs));
}

Result<internal::PinnedObject> Client::GetPinned(std::string_view key, uint64_t type_id,
                                                 std::string (*type_name)(),
                                                 std::chrono::milliseconds timeout) {
  return impl_->Get(key, type_id, type_name, timeout);
}

Status Client::Delete(std::string_view key) { return impl_->Delete(key); }
Result<ObjectInfo> Client::Lookup(std::string_view key) const { return impl_->Lookup(key); }
std::vector<ObjectInfo> Client::List() const { return impl_->List(); }
Result<std::string> Client::StatJson(std::string_view key) {
  return impl_->Json(protocol::MessageType::kStat, key);
}
Result<std::string> Client::InfoJson() { return impl_->Json(protocol::MessageType::kInfo, {}); }

Result<NodeStatus> Client::Info() {
  CSM_ASSIGN_OR_RETURN(std::string text, InfoJson());
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  NodeStatus n;
  try {
    n.node_id = j.at("node_id").get<uint32_t>();
    n.capacity = j.at("capacity").get<uint64_t>();
    n.used = j.at("used").get<uint64_t>();
    n.objects = j.at("objects").get<uint64_t>();
    n.objects_awaiting_unpin = j.at("objects_awaiting_unpin").get<uint64_t>();
    n.clients = j.at("clients").size();
    n.fetches = j.at("fetches").get<uint64_t>();
    n.copies_ahead = j.at("copies_ahead").get<uint64_t>();
    n.fetches_in_flight = j.at("fetches_in_flight").get<uint64_t>();
    n.connections_dropped = j.at("connections_dropped").get<uint64_t>();
  } catch (const nlohmann::json::exception& e) {
    return Corruption(std::string("csmd's info is not what this client reads: ") + e.what());
  }
  return n;
}
Result<std::string> Client::NodesJson() { return impl_->Json(protocol::MessageType::kNodes, {}); }
Result<std::string> Client::ListJson(std::string_view after, uint32_t limit) {
  return impl_->Json(protocol::MessageType::kList, after, limit);
}
const Config& Client::config() const { return impl_->config(); }

}  // namespace csm
