// ClientImpl, the process's attachment to csmd: connecting (one per process), Hello,
// fork, attaching again after csmd restarts, requests, arenas and their mappings. Pins,
// Get and Client are in client.cc, the Builder in builder.cc. See client_impl.h.
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>

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

}  // namespace

[[maybe_unused]] char g_tsan_reuse;


// ---- ClientImpl ---------------------------------------------------------------------

Result<std::shared_ptr<ClientImpl>> ClientImpl::Connect(const ClientOptions& options) {
  if (options.request_timeout.count() <= 0 || options.request_timeout > std::chrono::hours(24)) {
    return InvalidArgument("ClientOptions::request_timeout must be between 1 ms and 24 h, not " +
                           std::to_string(options.request_timeout.count()) + " ms");
  }
  Config config = DefaultConfig();  // the node-side fields come from csmd's Hello reply
  config.socket_path = options.socket_path;
  config.window = options.window;
  config.home_node = options.home_node;
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
  c->channel_ = std::make_shared<RequestChannel>(std::move(*sock), "csmd at " + config.socket_path);
  CSM_RETURN_IF_ERROR(c->Hello());
  c->heap_ = std::make_unique<alloc::ProcessHeap>(c.get(), c->config_.arena_size, os::PageSize());
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
      if (dir_->WriterTid() == attached_writer_.load(std::memory_order_relaxed)) [[likely]] return Status::OK();
      return AwaitRestart(request_timeout_ms_);
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

Status ClientImpl::AwaitRestart(int timeout_ms) {
  const int64_t deadline = os::MonotonicNanos() + int64_t{timeout_ms} * 1'000'000;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(*reattach_mu_);
      if (state_.load() == State::kLost) return LostError();
      const uint32_t writer = dir_->WriterTid();
      if (writer != 0 && writer == attached_writer_.load()) return Status::OK();  // another thread did
      if (!keeps_state_) {
        state_.store(State::kLost);
        return LostError();
      }
      // A new csmd serves the node's directory; or none does yet, and a csmd that
      // answers at the socket is another node's (its Hello says so) or not ready.
      {
        Status s = AttachAgain();
        if (s.ok()) return s;
        if (s.code() == StatusCode::kFailedPrecondition) {  // not this node any more
          CSM_LOG_WARN("%s", s.ToString().c_str());
          state_.store(State::kLost);
          return LostError();
        }
        CSM_LOG_DEBUG("attaching to the restarted csmd: %s", s.ToString().c_str());
      }
    }
    if (os::MonotonicNanos() >= deadline || stopping_.load()) {
      return Unavailable("csmd at " + config_.socket_path + " ended and no new csmd has taken its node back "
                         "within " + std::to_string(timeout_ms) + " ms: start it again with the same "
                         "--state-dir (this process attaches to it by itself), or retry later");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// The node's objects, pins and arenas outlived csmd (--state-dir); this process's
// mappings of them stay as they are. Called with reattach_mu_ held.
Status ClientImpl::AttachAgain() {
  CSM_ASSIGN_OR_RETURN(os::UniqueFd sock, os::ConnectUnix(config_.socket_path));
  {
    std::lock_guard<std::mutex> lock(*channel_mu_);
    channel_ = std::make_shared<RequestChannel>(std::move(sock), "csmd at " + config_.socket_path);
  }
  CSM_RETURN_IF_ERROR(Hello(/*again=*/true));
  {
    std::lock_guard<std::mutex> lock(*lazy_mu_);
    faults_sent_ = false;  // the new csmd has not seen this process's userfaultfd
  }
  // The arenas this process builds in: claimed back, or forgotten (their builders'
  // commits then fail; the memory is no longer this process's).
  const std::vector<uint64_t> mine = heap_->ArenaIds();
  CSM_ASSIGN_OR_RETURN(auto claim, Ask<protocol::ClaimReply>(protocol::ClaimArenas{mine}));
  std::vector<uint64_t> lost;
  for (uint64_t id : mine) {
    if (std::find(claim.claimed.begin(), claim.claimed.end(), id) == claim.claimed.end()) lost.push_back(id);
  }
  if (!lost.empty()) {
    CSM_LOG_WARN("%zu arenas this process was building in did not survive csmd's restart: objects "
                 "being built there cannot be committed; build them again",
                 lost.size());
    heap_->Forget(lost);
  }
  const auto& h = dir_->header();
  CSM_RETURN_IF_ERROR(SyncArenas(h.arena_seq.load(), h.arenas_freed.load(), /*full=*/true));
  CSM_LOG_INFO("attached again to the restarted csmd at %s (%zu objects pinned, %zu arenas claimed back)",
               config_.socket_path.c_str(), pinned_.size(), claim.claimed.size());
  return Status::OK();
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
  // The parent's userfaultfd serves the parent's address space: the child makes its own
  // at its first lazy Get. (A lazy copy the parent was reading when it forked is not
  // registered in the child: a child reads it once Get again says it arrived.)
  (void)lazy_mu_.release();
  lazy_mu_ = std::make_unique<std::mutex>();
  faults_.reset();
  faults_sent_ = false;
  // The parent's connection stays open in the parent; the child's copy is closed (csmd
  // must see the parent hang up when it exits) and the channel leaked (its locks).
  if (channel_ != nullptr) ::close(channel_->fd());
  (void)new std::shared_ptr<RequestChannel>(std::move(channel_));  // leaked: its locks
  (void)channel_mu_.release();
  channel_mu_ = std::make_unique<std::mutex>();
  if (was_attached) state_.store(State::kForked);
  map_mu_.unlock();
  pin_mu_.unlock();
  builders_mu_.unlock();
}

Status ClientImpl::Reattach() {
  CSM_ASSIGN_OR_RETURN(os::UniqueFd sock, os::ConnectUnix(config_.socket_path));
  channel_ = std::make_shared<RequestChannel>(std::move(sock), "csmd at " + config_.socket_path);
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
      if (now.object_id != it->first || now.state != static_cast<uint8_t>(directory::SlotState::kLive)) {
        pins_[index].object_id.store(0, std::memory_order_release);
        it = pinned_.erase(it);
        continue;
      }
      free_pins_.pop_back();
      p.index = index;
      ++it;
    }
  }
  heap_ = std::make_unique<alloc::ProcessHeap>(this, config_.arena_size, os::PageSize());
  const auto& h = dir_->header();
  CSM_RETURN_IF_ERROR(SyncArenas(h.arena_seq.load(), h.arenas_freed.load(), /*full=*/true));
  stopping_ = false;
  mapper_ = std::make_unique<std::thread>([this] { MapperLoop(); });
  return Status::OK();
}

void ClientImpl::MapperLoop() {
  const auto& h = dir_->header();
  while (!stopping_.load() && state_.load() == State::kAttached) {
    if (dir_->WriterTid() != attached_writer_.load()) {
      // csmd ended. On a node that keeps its state, attach to the next one as soon as it
      // serves, so that this process's pins count there before anyone else's Delete.
      if (!keeps_state_) return;
      (void)AwaitRestart(200);
      continue;
    }
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

Status ClientImpl::Hello(bool again) {
  std::vector<os::UniqueFd> fds;
  CSM_ASSIGN_OR_RETURN(auto reply, Ask<protocol::HelloReply>(
                                       protocol::Hello{protocol::BuildFingerprint(), config_.window}, &fds));
  const uint32_t slots = reply.slots, pins = reply.pins;
  const uint64_t arena_size = reply.arena_size;
  struct stat dir_stat{};
  if (fds.size() != 2 || (slots & (slots - 1)) != 0 || slots < 32 || slots > (1u << 25) || pins == 0 ||
      pins > (1u << 24) || arena_size == 0 || arena_size % (2ULL << 20) != 0 ||
      ::fstat(fds[0].get(), &dir_stat) != 0) {
    return Corruption("malformed Hello reply from csmd");
  }
  if (again) {
    if (dir_stat.st_dev != dir_dev_ || dir_stat.st_ino != dir_ino_ || slots != dir_->capacity()) {
      return FailedPrecondition("csmd at " + config_.socket_path + " was restarted as another node (a new "
                                "directory): this process's objects are not there");
    }
    return MovePins(std::move(fds[1]), pins, reply);
  }
  clustered_ = reply.clustered != 0;
  keeps_state_ = reply.keeps_state != 0;
  dir_dev_ = dir_stat.st_dev;
  dir_ino_ = dir_stat.st_ino;
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
  pin_bytes_ = directory::PinTableBytes(pins);
  void* p = ::mmap(nullptr, pin_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fds[1].get(), 0);
  if (p == MAP_FAILED) return ErrnoError("mmap of this process's pin table", errno);
  std::lock_guard<std::mutex> lock(pin_mu_);
  pins_ = static_cast<directory::PinEntry*>(p);
  free_pins_.clear();  // a re-attaching child's table is new: every entry is free
  free_pins_.reserve(pins);
  for (uint32_t i = pins; i > 0; --i) free_pins_.push_back(i - 1);
  attached_writer_.store(dir_->WriterTid());
  return Status::OK();
}

// Attached again to a restarted csmd: every pin this process holds is written into the
// new pin table at the index it had, before the new csmd can reclaim anything (it waits
// a grace period for the deleted objects of its predecessor).
Status ClientImpl::MovePins(os::UniqueFd table, uint32_t pins, const protocol::HelloReply& reply) {
  const size_t bytes = directory::PinTableBytes(pins);
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, table.get(), 0);
  if (p == MAP_FAILED) return ErrnoError("mmap of this process's pin table", errno);
  auto* fresh = static_cast<directory::PinEntry*>(p);
  std::lock_guard<std::mutex> lock(pin_mu_);
  std::vector<bool> used(pins, false);
  for (auto it = pinned_.begin(); it != pinned_.end();) {
    const LocalPin& pin = it->second;
    if (pin.index >= pins) {  // the new csmd gives fewer pin entries: this one is lost
      it = pinned_.erase(it);
      continue;
    }
    fresh[pin.index].count.store(pin.count, std::memory_order_relaxed);
    fresh[pin.index].object_id.store(it->first, std::memory_order_seq_cst);
    used[pin.index] = true;
    ++it;
  }
  if (pins_ != nullptr) ::munmap(pins_, pin_bytes_);
  pins_ = fresh;
  pin_bytes_ = bytes;
  free_pins_.clear();
  for (uint32_t i = pins; i > 0; --i) {
    if (!used[i - 1]) free_pins_.push_back(i - 1);
  }
  config_.pins_per_client = pins;
  config_.arena_size = reply.arena_size;
  attached_writer_.store(dir_->WriterTid());
  return Status::OK();
}

Result<os::Message> ClientImpl::Call(const protocol::WireWriter& request, protocol::MessageType reply,
                                     int timeout_ms, const std::vector<int>& send_fds) {
  if (timeout_ms < 0) timeout_ms = request_timeout_ms_;
  if (state_.load() == State::kLost) return LostError();
  CSM_ASSIGN_OR_RETURN(os::Message msg, channel()->Call(request, timeout_ms, send_fds));
  protocol::WireReader in(msg.bytes);
  protocol::MessageType type{};
  CSM_RETURN_IF_ERROR(in.ReadHeader(&type));
  if (type != reply) return Corruption("csmd answered with an unexpected message type");
  return msg;
}

Status ClientImpl::SendOneWay(const protocol::WireWriter& message) {
  if (state_.load() != State::kAttached) return LostError();
  return channel()->Send(message);
}

void ClientImpl::RecordMapping(uint64_t id, uint64_t addr, uint64_t size, bool writable) {
  // A new mapping replaces whatever older arenas were mapped in its range.
  auto it = mapped_.lower_bound(addr);
  if (it != mapped_.begin() && std::prev(it)->first + std::prev(it)->second.size > addr) --it;
  while (it != mapped_.end() && it->first < addr + size) it = mapped_.erase(it);
  mapped_[addr] = Mapped{id, size, writable};
}

Result<alloc::ArenaSource::Grant> ClientImpl::AllocateArena(uint64_t min_size, alloc::ArenaUse use) {
  std::vector<os::UniqueFd> fds;
  const bool dedicated = use != alloc::ArenaUse::kShared;
  CSM_ASSIGN_OR_RETURN(auto reply, Ask<protocol::ArenaReply>(
                                       protocol::AllocArena{min_size, static_cast<uint8_t>(use), config_.home_node}, &fds));
  Grant g{reply.arena_id, reply.addr, reply.size};
  const bool huge_pages = reply.huge_pages != 0;
  if (fds.size() != 1 || !window_->Contains(g.addr, g.size) || g.size < min_size) {
    return Corruption("csmd granted an arena outside the window or too small");
  }
  CSM_TSAN_ACQUIRE(&g_tsan_reuse);  // the memory may be a reclaimed object's
  {
    std::lock_guard<std::mutex> lock(map_mu_);
    CSM_RETURN_IF_ERROR(os::MapFixed(g.addr, g.size, fds[0].get(), /*writable=*/true, reply.offset));
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
        CSM_RETURN_IF_ERROR(os::MapFixed(a.addr, a.size, fds[i].get(), /*writable=*/false, a.offset));
        RecordMapping(a.id, a.addr, a.size, false);
      }
    }
    synced_seq_.store(std::max(upto, synced_seq_.load()));
  }
  if (full) {
    // What the parent had mapped and csmd no longer has (or never gave this client). A
    // process attached again to a restarted csmd keeps its own arenas: claimed back, or
    // written by Builders that will fail to commit (and replaced when csmd gives the
    // addresses to another arena).
    std::lock_guard<std::mutex> lock(map_mu_);
    for (auto it = mapped_.begin(); it != mapped_.end();) {
      if (sent.count(it->second.id) != 0 || it->second.writable) {
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

}  // namespace internal
}  // namespace csm
