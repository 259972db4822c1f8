// The client library: pins, Get (local and remote), commit and delete requests,
// introspection, PinnedObject and Client. The attachment to csmd (connecting, fork,
// arenas) is in attachment.cc, the Builder in builder.cc. See include/csm/client.h and
// client_impl.h.
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
  info.arrow_validated = (d.flags & directory::kSlotArrowValidated) != 0;
  info.arriving = (d.flags & directory::kSlotLazy) != 0;
  return info;
}

}  // namespace

Status ClientImpl::Pin(const directory::DirectoryTable::Found& found) {
  const uint64_t id = found.data.object_id;
  std::lock_guard<std::mutex> lock(pin_mu_);
  auto it = pinned_.find(id);
  if (it != pinned_.end()) {
    ++it->second.count;
    NoteAccess(found.index);
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
  if (now.object_id != id || now.state != static_cast<uint8_t>(directory::SlotState::kLive)) {
    e.object_id.store(0, std::memory_order_release);
    return NotFound("deleted while being pinned");
  }
  if ((now.flags & directory::kSlotSpilled) != 0) {  // csmd is spilling it: ask for it back
    e.object_id.store(0, std::memory_order_release);
    return NotFound("spilled while being pinned");
  }
  free_pins_.pop_back();
  pinned_[id] = LocalPin{index, found.index, 1};
  NoteAccess(found.index);
  return Status::OK();
}

void ClientImpl::NoteAccess(uint32_t slot) {
  if (!pins_ours_) return;  // a forked child not yet re-attached: the ring is the parent's
  directory::AccessRing* ring = directory::AccessRingOf(pins_, config_.pins_per_client);
  const uint64_t at = ring->head.load(std::memory_order_relaxed);  // one writer: pin_mu_ is held
  ring->slots[at % directory::kAccessRing].store(slot, std::memory_order_relaxed);
  ring->head.store(at + 1, std::memory_order_release);
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
              now.state != static_cast<uint8_t>(directory::SlotState::kLive);
    pinned_.erase(it);
  }
  if (deleted) {  // let csmd reuse the memory now rather than at its next sweep
    (void)SendOneWay(protocol::Encode(protocol::Unpinned{object_id}));
  }
}

Result<PinnedObject> ClientImpl::Get(std::string_view key, uint64_t type_id,
                                     std::string (*type_name)(),
                                     std::chrono::milliseconds timeout, uint32_t fetch) {
  CSM_RETURN_IF_ERROR(ValidateKeyToRead(key));
  CSM_RETURN_IF_ERROR(Usable());
  // Up to ~146 years: a deadline that cannot overflow, for callers that say "forever".
  constexpr int64_t kMaxTimeoutMs = int64_t{1} << 42;
  const int64_t timeout_ms = std::clamp<int64_t>(timeout.count(), 0, kMaxTimeoutMs);
  const int64_t deadline = os::MonotonicNanos() + timeout_ms * 1000000;
  const auto* counter =
      reinterpret_cast<const uint32_t*>(&dir_->header().change_counter);
  int resolved = 0;  // times csmd said the key is here now
  int restores = 0;  // times csmd brought it back from its spill directory
  constexpr int kMaxRestores = 16;
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
      if ((found->data.flags & directory::kSlotSpilled) != 0) {
        // In csmd's spill directory: it brings the bytes back to the same addresses.
        constexpr int64_t kRestoreReplyMs = 10 * 60 * 1000;
        const int64_t left_ms = (deadline - os::MonotonicNanos()) / 1000000;
        const int wait_ms = static_cast<int>(timeout_ms > 0 ? std::clamp<int64_t>(left_ms, 1, kRestoreReplyMs) : kRestoreReplyMs);
        Status restored = Resolve(key, wait_ms);
        if (restored.IsTimeout()) {
          return Timeout("object '" + std::string(key) + "' was not restored from the node's spill directory within " +
                         std::to_string(wait_ms) + " ms (csmd goes on restoring it: a later Get may find it)");
        }
        if (!restored.ok() && !restored.IsNotFound()) return restored;
        if (++restores > kMaxRestores) {
          return CapacityExceeded("object '" + std::string(key) + "' was spilled again each of " +
                                  std::to_string(kMaxRestores) + " times it was restored, before it could be "
                                  "pinned: the node's memory is too small for what its readers use at once");
        }
        continue;  // restored (or deleted meanwhile): look again
      }
      Status pinned = Pin(*found);
      if (pinned.IsNotFound()) continue;  // deleted or spilled meanwhile: look again
      CSM_RETURN_IF_ERROR(pinned);
      PinnedObject pin(shared_from_this(), InfoFromSlot(found->data));  // unpins on any error below
      CSM_TSAN_ACQUIRE(found->data.header);  // pairs with the producer's release at commit
      if (found->data.arena_seq_max > synced_seq_.load(std::memory_order_acquire)) {
        CSM_RETURN_IF_ERROR(SyncArenas(found->data.arena_seq_max));
      }
      if ((found->data.flags & directory::kSlotLazy) != 0) {
        // A lazy copy still arriving: its pages are registered for csmd to serve their
        // faults, or (a Get that wants it whole, or a process that cannot) it waits.
        Status lazy = fetch == static_cast<uint32_t>(Fetch::kWhole)
                          ? Unavailable("asked whole")
                          : AttachLazy(found->data, key);
        if (!lazy.ok()) {
          CSM_LOG_DEBUG("reading '%s' whole: %s", std::string(key).c_str(), lazy.ToString().c_str());
          pin.Reset();
          constexpr int64_t kWholeReplyMs = 10 * 60 * 1000;
          const int64_t left_ms = (deadline - os::MonotonicNanos()) / 1000000;
          const int wait_ms = static_cast<int>(timeout_ms > 0 ? std::clamp<int64_t>(left_ms, 1, kWholeReplyMs) : kWholeReplyMs);
          Status whole = Resolve(key, wait_ms, static_cast<uint32_t>(Fetch::kWhole));
          if (!whole.ok() && !whole.IsNotFound()) return whole;
          continue;  // arrived (or gone): look again
        }
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
      Status r = Resolve(key, static_cast<int>(timeout_ms > 0 ? std::min(left_ms, kFetchReplyMs) : kFetchReplyMs), fetch);
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
        // As below: a failed fetch moved the counter; ask again at the next change, or
        // in 50 ms, not at once (a dead owner's fetches fail at once until it is seen dead).
        seen = dir_->header().change_counter.load(std::memory_order_seq_cst);
      } else if (!r.IsNotFound()) {
        return r;
      } else {
        unreachable = Status::OK();
        // A failed fetch moves the counter too (its copy's memory came and went): wait
        // for the next change after this answer, not to ask again at once.
        seen = dir_->header().change_counter.load(std::memory_order_seq_cst);
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
  const std::shared_ptr<RequestChannel> ch = channel();
  for (const std::string& key : keys) {
    if (!ValidateKeyToRead(key).ok() || dir_->Find(key)) continue;
    auto id = ch->Start(protocol::Encode(protocol::Resolve{key}));
    if (!id.ok()) break;
    out.push_back(*id);
  }
  for (uint64_t id : out) {
    const int64_t left_ms = std::max<int64_t>(1, (deadline - os::MonotonicNanos()) / 1000000);
    (void)ch->Await(id, static_cast<int>(std::min<int64_t>(left_ms, INT32_MAX)));
  }
}

Status ClientImpl::Resolve(std::string_view key, int timeout_ms, uint32_t fetch) {
  return Ask<protocol::StatusReply>(protocol::Resolve{std::string(key), fetch}, nullptr, timeout_ms).status();
}

Status ClientImpl::AttachLazy(const directory::SlotData& d, std::string_view key) {
  std::lock_guard<std::mutex> lock(*lazy_mu_);
  if (faults_ == nullptr) {
    CSM_ASSIGN_OR_RETURN(os::UserFaults faults, os::UserFaults::Create());
    faults_ = std::make_unique<os::UserFaults>(std::move(faults));
    faults_sent_ = false;
  }
  std::vector<int> send;
  if (!faults_sent_) send.push_back(faults_->fd());
  auto reply = Ask<protocol::RangesReply>(protocol::LazyWatch{d.object_id}, nullptr, -1, send);
  // csmd has it once it answered anything but these.
  if (reply.ok() || !(reply.status().IsUnavailable() || reply.status().code() == StatusCode::kFailedPrecondition)) {
    faults_sent_ = true;
  }
  if (!reply.ok()) return reply.status();  // gone or failed: the Get asks for it whole
  if (reply->ranges.empty()) return Status::OK();  // whole already: read as any object
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (size_t i = 0; i + 1 < reply->ranges.size(); i += 2) ranges.emplace_back(reply->ranges[i], reply->ranges[i + 1]);
  auto unregister = [&](size_t count) {
    for (size_t i = 0; i < count; ++i) (void)faults_->Unregister(ranges[i].first, ranges[i].second);
  };
  for (size_t i = 0; i < ranges.size(); ++i) {
    const auto [addr, length] = ranges[i];
    if (!window_->Contains(addr, length)) {
      unregister(i);
      return Corruption("csmd named pages outside the window for a lazy copy");
    }
    // Pages this process mapped before (a neighbour object's) must fault again, so that
    // none of this object's bytes is read before csmd says it arrived.
    (void)::madvise(reinterpret_cast<void*>(addr), length, MADV_DONTNEED);
    if (Status s = faults_->Register(addr, length); !s.ok()) {
      unregister(i);
      return s;
    }
  }
  (void)SendOneWay(protocol::Encode(protocol::LazyRegistered{d.object_id}));
  // The copy may have completed meanwhile, its ranges handed back before these were
  // registered: then they are undone here (csmd clears the flag before it hands back).
  // Gone meanwhile (it failed, or was dropped): not to be read; its pages stay
  // registered, so that a stray read faults with SIGBUS rather than see zeros.
  auto again = dir_->Find(key);
  if (!again || again->data.object_id != d.object_id) {
    return NotFound("the lazy copy of '" + std::string(key) + "' was dropped before it arrived");
  }
  if ((again->data.flags & directory::kSlotLazy) == 0) unregister(ranges.size());
  return Status::OK();
}

Status ClientImpl::Prefetch(std::string_view key, uint64_t addr, uint64_t length) {
  CSM_RETURN_IF_ERROR(Usable());
  auto found = dir_->Find(key);
  if (!found) return NotFound("no object under key '" + std::string(key) + "' on this node: Get it first");
  if ((found->data.flags & directory::kSlotLazy) == 0) return Status::OK();  // all here
  return Prefetch({ByteRange{reinterpret_cast<const void*>(addr), static_cast<size_t>(length)}});
}

Status ClientImpl::Prefetch(const std::vector<ByteRange>& ranges) {
  if (ranges.empty()) return Status::OK();
  CSM_RETURN_IF_ERROR(Usable());
  constexpr int kWantReplyMs = 10 * 60 * 1000;  // the bytes come at the link's speed
  for (size_t at = 0; at < ranges.size(); at += protocol::kMaxWantedRanges) {  // as many as a message takes
    const size_t end = std::min<size_t>(ranges.size(), at + protocol::kMaxWantedRanges);
    protocol::LazyWant want;
    want.ranges.reserve(2 * (end - at));
    for (size_t i = at; i < end; ++i) {
      want.ranges.push_back(reinterpret_cast<uint64_t>(ranges[i].addr));
      want.ranges.push_back(ranges[i].length);
    }
    CSM_RETURN_IF_ERROR(Ask<protocol::StatusReply>(std::move(want), nullptr, kWantReplyMs).status());
  }
  return Status::OK();
}

Result<uint64_t> ClientImpl::Commit(uint64_t header, uint64_t type_id, std::string_view key,
                                    const std::string& type_name, uint32_t copies) {
  // A csmd that restarted since the object was built is attached to again first (its
  // commit then fails only if the arena was not claimed back, saying so).
  CSM_RETURN_IF_ERROR(Usable());
  CSM_ASSIGN_OR_RETURN(auto reply, Ask<protocol::CommitReply>(
                                       protocol::Commit{header, type_id, copies, std::string(key), type_name}));
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
    if (d.state == static_cast<uint8_t>(directory::SlotState::kLive)) {
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

void ClientImpl::ReportArrowValidated(uint64_t object_id) {
  (void)SendOneWay(protocol::Encode(protocol::ArrowValidated{object_id}));  // a hint: lost is harmless
}

void PinnedObject::ReportArrowValidated() const {
  if (client_ == nullptr || info_.arrow_validated) return;
  client_->ReportArrowValidated(info_.object_id);
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
  o.home_node = config.home_node;
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
                                                 std::chrono::milliseconds timeout, Fetch fetch) {
  return impl_->Get(key, type_id, type_name, timeout, static_cast<uint32_t>(fetch));
}

Status Client::Prefetch(std::string_view key, const void* addr, size_t length) {
  return impl_->Prefetch(key, reinterpret_cast<uint64_t>(addr), length);
}
Status Client::Prefetch(const std::vector<ByteRange>& ranges) { return impl_->Prefetch(ranges);
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
    for (const auto& t : j.at("transfers")) {
      n.transfers.push_back({t.at("key").get<std::string>(), t.at("bytes").get<uint64_t>(),
                             t.at("received").get<uint64_t>()});
    }
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
