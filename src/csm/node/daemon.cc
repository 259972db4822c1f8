// csmd's event loop and local bookkeeping; see daemon.h, daemon_impl.h and
// docs/protocol.md.
#include "csm/alloc/process_heap.h"
#include "csm/base/range.h"
#include "csm/os/memory.h"
#include "csm/node/daemon_impl.h"

namespace csm::node {

Status Daemon::Impl::Init() {
  CSM_RETURN_IF_ERROR(ValidateConfig(config_));
  arenas_.StartIdsAt(incarnation_);  // above every id an earlier csmd of the node gave
  if (!options_.shared_memory.path.empty()) {
    CSM_ASSIGN_OR_RETURN(shm_, SharedMemory::Open(options_.shared_memory, config_.capacity));
    loans_ = LoanBook(shm_->lend_limit());
  }
  if (!options_.spill_dir.empty()) {
    if (options_.spill_low_percent < 1 || options_.spill_low_percent > options_.spill_high_percent ||
        options_.spill_high_percent > 100) {
      return InvalidArgument("spill watermarks must be 1 <= low <= high <= 100 (percent of capacity), not " +
                             std::to_string(options_.spill_low_percent) + " and " +
                             std::to_string(options_.spill_high_percent));
    }
    CSM_ASSIGN_OR_RETURN(spill_, SpillStore::Open(options_.spill_dir, options_.huge_pages));
  }
  stop_fd_.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop_fd_.valid()) return ErrnoError("eventfd", errno);
  const uint32_t slots = directory::DirectorySlots(config_.max_objects);
  uint64_t dir_bytes = directory::DirectoryBytes(slots);
  bool recovering = false;
  if (options_.cluster.copies > 1 && shm_ != nullptr) {
    return InvalidArgument(kNoFabricReplicas);
  }
  if (!options_.state_dir.empty()) {
    if (shm_ != nullptr) {
      return InvalidArgument("--state-dir cannot keep a node's objects on a shared-memory fabric "
                             "yet (its arenas lie in the fabric device): leave out one of the two");
    }
    if (!options_.spill_dir.empty()) {
      return InvalidArgument("--spill-dir and --state-dir cannot be used together yet (a restarted csmd would "
                             "not take spilled objects back): leave out one of the two");
    }
    CSM_ASSIGN_OR_RETURN(state_, NodeState::Open(options_.state_dir, options_.fresh));
    CSM_ASSIGN_OR_RETURN(dir_fd_, state_->OpenDirectory(dir_bytes, &recovering));
  } else {
    CSM_ASSIGN_OR_RETURN(dir_fd_, os::CreateMemfd("csm-directory", dir_bytes));
  }
  // Allocate the pages now so clients can map them populated: no page fault on a Get.
  if (::fallocate(dir_fd_.get(), 0, 0, static_cast<off_t>(dir_bytes)) != 0) {
    return ErrnoError("fallocate of the directory (" + FormatSize(dir_bytes) + ")", errno);
  }
  CSM_ASSIGN_OR_RETURN(dir_map_, MapShared(dir_fd_.get(), dir_bytes));
  dir_ = std::make_unique<directory::DirectoryTable>(dir_map_.addr, slots);
  if (recovering) {
    CSM_RETURN_IF_ERROR(Recover());
  } else {
    dir_->Init(node_id_);
  }
  // After Recover: a restarted node joins with the objects and leases it took back.
  if (options_.cluster.enabled()) CSM_RETURN_IF_ERROR(JoinCluster());
  if (options_.cluster.enabled() && shm_ == nullptr) StartLazyCopies();
  CSM_RETURN_IF_ERROR(dir_->InitLiveness());
  CSM_ASSIGN_OR_RETURN(os::UniqueFd listen_fd, os::ListenUnix(config_.socket_path));
  sessions_.Listen(std::move(listen_fd));
  CSM_LOG_INFO("csmd node %u listening at %s; window [%s, +%s), capacity %s",
               node_id_, config_.socket_path.c_str(), Hex(config_.window.base).c_str(),
               FormatSize(config_.window.size).c_str(), FormatSize(config_.capacity).c_str());
  const std::string huge = os::SharedHugePages();
  if (options_.huge_pages && !os::SharedHugePagesAllowed(huge)) {
    CSM_LOG_WARN("shared memory here uses 4 KiB pages (transparent_hugepage/"
                 "shmem_enabled: %s): builders' arenas fault in and map many times "
                 "slower than with 2 MiB pages; as root, `echo advise > "
                 "/sys/kernel/mm/transparent_hugepage/shmem_enabled` lets csm ask for "
                 "them (docs/operations.md)",
                 huge.c_str());
  }
  return Status::OK();
}

Status Daemon::Impl::Run() {
  // Held while this thread serves: clients see csmd gone the moment it is (however it
  // ends), before they answer a Get from this directory.
  CSM_RETURN_IF_ERROR(dir_->HoldLiveness());
  struct Unhold {
    directory::DirectoryTable* dir;
    ~Unhold() { dir->ReleaseLiveness(); }
  } unhold{dir_.get()};
  // Stop writes stop_fd_ (from a signal handler too); the loop watches a duplicate.
  const int stop_copy = ::fcntl(stop_fd_.get(), F_DUPFD_CLOEXEC, 0);
  if (stop_copy < 0) return ErrnoError("dup of the stop eventfd", errno);
  stop_watch_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, stop_copy);
  stop_watch_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                          [this](const boost::system::error_code& ec) {
                            if (!ec) io_.stop();
                          });
  io_.run();
  CSM_LOG_INFO("csmd stopping: %zu objects, %zu clients", objects_.live(), sessions_.size());
  ::unlink(config_.socket_path.c_str());
  return Status::OK();
}

namespace {

// Decodes a message of type M from `in`, then hands it to `handle` (→ Status).
template <typename M, typename Handle>
Status Decoded(WireReader& in, Handle&& handle) {
  M m;
  CSM_RETURN_IF_ERROR(protocol::Decode(in, &m));
  return handle(m);
}

}  // namespace

Status Daemon::Impl::Dispatch(Session& c, MessageType type, WireReader& in) {
  switch (type) {
    case MessageType::kHello: return HandleHello(c, in);
    case MessageType::kAllocArena: return HandleAllocArena(c, in);
    case MessageType::kReleaseArena:
      return Decoded<protocol::ReleaseArena>(in, [&](const protocol::ReleaseArena& m) {
        if (c.arenas.erase(m.arena_id) == 1) ReleaseArena(m.arena_id);
        return Status::OK();
      });
    case MessageType::kSyncArenas: return HandleSync(c, in);
    case MessageType::kClaimArenas: return HandleClaimArenas(c, in);
    case MessageType::kCommit: return HandleCommit(c, in);
    case MessageType::kDelete: return HandleDelete(c, in);
    case MessageType::kStat: return HandleStat(c, in);
    case MessageType::kInfo: return Decoded<protocol::Info>(in, [&](const protocol::Info&) { return HandleInfo(c); });
    case MessageType::kList: return HandleList(c, in);
    case MessageType::kNodes: return Decoded<protocol::Nodes>(in, [&](const protocol::Nodes&) { return HandleNodes(c); });
    case MessageType::kResolve: return HandleResolve(c, in);
    case MessageType::kLazyWatch: return HandleLazyWatch(c, in);
    case MessageType::kLazyWant: return HandleLazyWant(c, in);
    case MessageType::kLazyRegistered:
      return Decoded<protocol::LazyRegistered>(in, [&](const protocol::LazyRegistered& m) {
        if (lazy_ != nullptr) lazy_->Registered(m.object_id, c.id);
        return Status::OK();
      });
    case MessageType::kUnpinned:
      return Decoded<protocol::Unpinned>(in, [&](const protocol::Unpinned&) {
        ArmSweep(std::chrono::milliseconds(0));  // the sweep finds which object it was
        return Status::OK();
      });
    case MessageType::kArrowValidated:
      // A reader on this node validated it: recorded for the node's later readers.
      return Decoded<protocol::ArrowValidated>(in, [&](const protocol::ArrowValidated& m) {
        if (Object* o = objects_.LiveById(m.object_id)) dir_->AddFlags(o->slot, directory::kSlotArrowValidated);
        return Status::OK();
      });
    default: return Corruption("unknown message type " + std::to_string(int(type)));
  }
}

Status Daemon::Impl::HandleHello(Session& c, WireReader& in) {
  protocol::Hello hello;
  CSM_RETURN_IF_ERROR(protocol::Decode(in, &hello));
  const WindowConfig& w = hello.window;
  Status refuse;
  if (hello.fingerprint != protocol::BuildFingerprint()) {
    refuse = FailedPrecondition(
        "this program was built differently from csmd (" + protocol::BuildFingerprintText() +
        "): objects are shared in place only between binaries built with the same "
        "compiler, standard library and csm version; rebuild it against this csm");
  } else if (!(w == config_.window)) {
    refuse = FailedPrecondition(
        "window mismatch: this process uses base " + Hex(w.base) + " size " +
        FormatSize(w.size) + " segment " + FormatSize(w.segment_size) + ", csmd uses base " +
        Hex(config_.window.base) + " size " + FormatSize(config_.window.size) + " segment " +
        FormatSize(config_.window.segment_size) + ": use the same CSM_CONFIG / CSM_HEAP_* "
        "settings as the node");
  }
  if (refuse.ok() && sessions_.attached() >= config_.max_clients) {
    refuse = CapacityExceeded("csmd at " + config_.socket_path + " serves max_clients (" +
                              std::to_string(config_.max_clients) + ") processes already: end "
                              "some, or start the node with a larger --max-clients");
    CSM_LOG_WARN("refused pid %d: %s", c.cred.pid, refuse.message().c_str());
  }
  if (!refuse.ok()) {
    (void)Sessions::SendStatus(c, MessageType::kHelloReply, refuse);
    return refuse;
  }
  uint64_t pin_bytes = directory::PinTableBytes(config_.pins_per_client);
  CSM_ASSIGN_OR_RETURN(c.pin_fd, os::CreateMemfd("csm-pins", pin_bytes));
  CSM_ASSIGN_OR_RETURN(c.pin_map, MapShared(c.pin_fd.get(), pin_bytes));
  CSM_ASSIGN_OR_RETURN(auto dir_ro, os::ReopenReadOnly(dir_fd_.get()));
  WireWriter out = protocol::Encode(protocol::HelloReply{
      Status::OK(), c.id, node_id_, dir_->capacity(), config_.pins_per_client, config_.arena_size,
      static_cast<uint8_t>(cluster_ != nullptr), static_cast<uint8_t>(state_ != nullptr)});
  c.pin_count = config_.pins_per_client;
  sessions_.Attached(c);
  CSM_LOG_DEBUG("client %llu attached: pid %d", (unsigned long long)c.id, c.cred.pid);
  return Sessions::Reply(c, out, {dir_ro.get(), c.pin_fd.get()});
}

Status Daemon::Impl::HandleAllocArena(Session& c, WireReader& in) {
  protocol::AllocArena m;
  CSM_RETURN_IF_ERROR(protocol::Decode(in, &m));
  const uint64_t min_size = m.min_size;
  const uint8_t dedicated = m.dedicated;
  constexpr uint64_t kAlign = alloc::AddressAllocator::kArenaAlignment;
  // A dedicated arena fits its one object; a shared one is what the process asks for
  // (its arenas grow from 2 MiB: alloc/process_heap.h), at most arena_size.
  const uint64_t rounded = (std::max<uint64_t>(min_size, 1) + kAlign - 1) / kAlign * kAlign;
  uint64_t size = dedicated ? rounded : std::min(rounded, config_.arena_size);
  if (min_size > config_.window.size || size < min_size) {
    return Sessions::SendStatus(c, MessageType::kArenaReply,
                      InvalidArgument("arena of " + std::to_string(min_size) + " bytes requested"));
  }
  if (m.home_node != 0 && m.home_node != node_id_) return BorrowArena(c, size, dedicated != 0, m.home_node);
  const uint64_t overwritten =
      dedicated == static_cast<uint8_t>(alloc::ArenaUse::kDedicatedOverwritten) ? min_size : 0;
  if (cluster_ == nullptr || addresses_.Fits(size)) return GrantArena(c, size, dedicated != 0, overwritten);
  // The node needs more segments: leased from the cluster on the directory thread, so
  // the loop goes on serving everyone else; then the arena is granted from them.
  const uint64_t wanted = addresses_.SegmentsFor(size);
  auto run = std::make_shared<Result<alloc::AddressAllocator::Run>>(Unavailable("not asked"));
  AwaitDirectory(
      c, [this, wanted, run] {
        *run = LeaseFromCluster(wanted);
        return run->status();
      },
      [this, run, size, dedicated, overwritten](Session* waiting, const Status&) {
        if (run->ok()) addresses_.AddRun(**run);  // the node holds it now, asked or not
        if (waiting == nullptr) return;
        Status s = run->ok() ? GrantArena(*waiting, size, dedicated != 0, overwritten)
                             : Sessions::SendStatus(*waiting, MessageType::kArenaReply,
                                          run->status().WithContext("leasing segments from the cluster"));
        if (!s.ok()) sessions_.Drop(waiting->id);
      });
  return Status::OK();
}

Status Daemon::Impl::GrantArena(Session& c, uint64_t size, bool dedicated, uint64_t overwritten) {
  auto fail = [&](Status s) { return Sessions::SendStatus(c, MessageType::kArenaReply, s); };
  if (used_ + size > config_.capacity) {
    RoomWaiter w{c.id, c.request_id, size, dedicated, overwritten,
                 std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.spill_wait_ms)};
    if (WaitForRoom(w)) return Status::OK();  // answered once spilling made room
    return fail(CapacityExceeded(
        "node memory is full: capacity " + FormatSize(config_.capacity) + ", in use " +
        FormatSize(used_) + " (" + std::to_string(objects_.live()) + " objects, " +
        std::to_string(arenas_.size()) + " arenas), requested " + FormatSize(size) +
        ": delete objects (csm rm), start the node with a larger --capacity, or let it spill (--spill-dir)"));
  }
  auto addr = addresses_.Allocate(size);
  if (!addr.ok()) return fail(addr.status());
  // On a fabric the arena also takes a range of the node's shared memory: it is that
  // range itself, or (the stale-cache model) where its bytes are written back to.
  Result<uint64_t> fabric_offset = shm_ ? shm_->Allocate(size) : Result<uint64_t>(Arena::kNoFabric);
  if (!fabric_offset.ok()) {
    addresses_.Free(*addr, size);
    return fail(fabric_offset.status());
  }
  const bool device = shm_ && shm_->direct();
  // Memory a deleted object left is reused once zeroed (on an idle core); an arena its
  // client overwrites takes it at once, the bytes past what it writes cleared here.
  SpareMemory::Memory spare = device        ? SpareMemory::Memory{}
                              : overwritten ? spare_.TakeAny(size)
                                            : spare_.TakeZeroed(size);
  if (spare.valid() && overwritten != 0) {
    // Whole pages past the allocation only: punching the page it ends in would make the
    // client fault that page in fresh. What is left of that page (under 4 KiB) is in no
    // object's data; at commit the pages no object touches are punched as always.
    const uint64_t page = os::PageSize();
    const uint64_t from = std::min(size, (overwritten + page - 1) / page * page);
    if (Status s = os::PunchHole(spare.fd.get(), from, size - from); !s.ok()) spare = SpareMemory::Memory{};
  }
  // A node keeping its state in files builds only in its named files: a spare becomes
  // the arena's file, one with no name (it could not be renamed) is not taken.
  const uint64_t id = arenas_.NextId();
  if (state_ != nullptr && spare.valid() && (spare.path.empty() || !state_->AdoptSpare(std::move(spare.path), *addr, id).ok())) {
    spare = SpareMemory::Memory{};
  }
  Result<os::UniqueFd> fd = device          ? os::UniqueFd(::fcntl(shm_->device_fd(), F_DUPFD_CLOEXEC, 0))
                            : spare.valid() ? std::move(spare.fd)
                            : state_        ? state_->CreateArena(*addr, id, size)
                                            : os::CreateMemfd("csm-arena-" + Hex(*addr), size);
  if (fd.ok() && !fd->valid()) fd = ErrnoError("dup of the shared-memory device", errno);
  if (!fd.ok()) {
    addresses_.Free(*addr, size);
    if (shm_) shm_->Free(*fabric_offset, size);
    return fail(fd.status());
  }
  Arena& a = arenas_.Add(*addr, size, std::move(*fd), id);
  a.view = std::move(spare.view);  // kept for when the memory goes spare again
  a.fabric_offset = *fabric_offset;
  if (device) a.fd_offset = *fabric_offset;
  a.owner = c.id;
  a.named = state_ != nullptr;
  a.dedicated = dedicated;
  a.charged = size;
  dir_->header().arena_seq.store(a.seq);
  used_ += size;
  c.arenas.insert(id);
  c.mapped.insert(id);
  peers_.AddArena(a.addr, a.size, a.fd.get(), a.fd_offset);
  WireWriter out = protocol::Encode(protocol::ArenaReply{Status::OK(), a.id, a.seq, a.addr, a.size, a.fd_offset,
                                                         static_cast<uint8_t>(options_.huge_pages && !device)});
  Status replied = Sessions::Reply(c, out, {a.fd.get()});
  MaybeSpill(0);  // past the high watermark now: older objects go to the spill directory
  return replied;
}

Status Daemon::Impl::HandleSync(Session& c, WireReader& in) {
  protocol::SyncArenas m;
  CSM_RETURN_IF_ERROR(protocol::Decode(in, &m));
  protocol::SyncReply reply;
  for (const auto& d : c.destroyed) reply.destroyed.push_back({d.id, d.addr, d.size});
  c.destroyed.clear();
  std::vector<os::UniqueFd> ro;
  std::vector<int> fds;
  reply.upto = dir_->header().arena_seq.load();
  Status failed;
  arenas_.ForEachAfter(m.synced, [&](const Arena& a) {
    if (c.mapped.count(a.id)) return true;  // it has this one already
    if (reply.fresh.size() == os::kMaxFdsPerMessage) {
      reply.upto = a.seq - 1;  // the client asks again from here
      return false;
    }
    if (a.replica_of != 0 && !a.mapped && lazy_ != nullptr) {
      // A copy of another node's memory, which a lazy Get's reader registers for its
      // faults (docs/lazy.md): the kernel wants a mapping that could be made writable
      // for that, so its memfd itself (still mapped read-only: a stray write faults).
      fds.push_back(a.fd.get());
    } else {
      auto fd = os::ReopenReadOnly(a.fd.get());
      if (!fd.ok()) {
        failed = fd.status();
        return false;
      }
      fds.push_back(fd->get());
      ro.push_back(std::move(*fd));
    }
    reply.fresh.push_back({a.id, a.addr, a.size, a.fd_offset});
    c.mapped.insert(a.id);
    return true;
  });
  CSM_RETURN_IF_ERROR(failed);
  WireWriter out = protocol::Encode(reply);
  return Sessions::Reply(c, out, fds);
}


// Reads [addr, addr+len) of the heap; the range must lie in one arena of client c (of
// the node's own, if c is null).
Status Daemon::Impl::ReadHeap(uint64_t addr, void* out, uint64_t len, const Session* c,
                              std::vector<uint64_t>* arena_ids) {
  Arena* a = arenas_.At(addr);
  const bool allowed = a != nullptr && (c != nullptr ? a->owner == c->id : a->replica_of == 0 && !a->mapped);
  if (!allowed || !RangeWithin(addr, len, a->addr, a->size)) {
    if (c != nullptr && GivenUp(addr)) {
      // An earlier csmd's arena this process did not claim back in time.
      return FailedPrecondition("range [" + Hex(addr) + ", +" + std::to_string(len) +
                                ") lies in an arena this process was building in before csmd restarted, and it "
                                "did not attach again within --reattach-grace-ms (" +
                                std::to_string(options_.reattach_grace_ms) +
                                " ms) to claim it back: build the object again");
    }
    return Corruption("range [" + Hex(addr) + ", +" + std::to_string(len) + ") is not inside an arena " +
                      (c != nullptr ? "this process may write" : "of this node's"));
  }
  if (arena_ids && std::find(arena_ids->begin(), arena_ids->end(), a->id) == arena_ids->end()) {
    arena_ids->push_back(a->id);
  }
  if (out == nullptr) return Status::OK();
  ssize_t n = ::pread(a->fd.get(), out, len, static_cast<off_t>(a->fd_offset + addr - a->addr));
  if (n != static_cast<ssize_t>(len)) return ErrnoError("pread of an arena", errno);
  return Status::OK();
}

void Daemon::Impl::AwaitDirectory(Session& c, std::function<Status()> call,
                                  std::function<void(Session*, const Status&)> then) {
  sessions_.Hold(c);
  ++directory_waits_;
  boost::asio::post(DirectoryThread(), [this, id = c.id, request = c.request_id, call = std::move(call),
                                        then = std::move(then)] {
    Status s = call();
    Post([this, id, request, s, then] {
      --directory_waits_;
      then(sessions_.Resume(id, request), s);  // it answers that request
    });
  });
}

boost::asio::thread_pool& Daemon::Impl::DirectoryThread() {
  if (directory_thread_ == nullptr) {
    directory_thread_ = std::make_unique<boost::asio::thread_pool>(1);
  }
  return *directory_thread_;
}

void Daemon::Impl::UnpublishLater(const std::string& key) {
  boost::asio::post(DirectoryThread(), [this, key] {
    Status s = cluster_->Unpublish(key, node_id_);
    if (!s.ok() && !s.IsNotFound()) {
      CSM_LOG_WARN("could not take '%s' back from the directory: %s", key.c_str(),
                   s.ToString().c_str());
    }
  });
}

Status Daemon::Impl::HandleStat(Session& c, WireReader& in) {
  protocol::Stat m;
  CSM_RETURN_IF_ERROR(protocol::Decode(in, &m));
  const std::string& key = m.key;
  const Object* found = objects_.Live(key);
  if (Status valid = ValidateKeyToRead(key); !valid.ok() || found == nullptr) {
    return Sessions::SendStatus(c, MessageType::kJsonReply,
                      !valid.ok() ? valid : NotFound("no object under key '" + key + "' (csm ls lists them)"));
  }
  return Sessions::ReplyJson(c, StatJson(*found, node_id_, PinCount(found->id)).dump());
}

Status Daemon::Impl::HandleList(Session& c, WireReader& in) {
  protocol::List m;
  CSM_RETURN_IF_ERROR(protocol::Decode(in, &m));
  const std::string after = m.after;
  const uint32_t limit = std::clamp<uint32_t>(m.limit, 1, 1000);  // a page stays far below 1 MiB
  if (cluster_ != nullptr) {
    // Across the cluster: every published object with its owner; pins are this node's.
    // Asked on the directory thread: the loop goes on serving everyone else.
    struct Page {
      Result<std::vector<cluster::ObjectRecord>> records = Unavailable("not asked");
      bool more = false;
    };
    auto page = std::make_shared<Page>();
    AwaitDirectory(
        c,
        [this, page, after, limit] {
          page->records = cluster_->List(after, limit, &page->more);
          return page->records.status();
        },
        [this, page](Session* waiting, const Status&) {
          if (waiting == nullptr) return;
          nlohmann::json j = {{"objects", nlohmann::json::array()}, {"more", page->more}};
          if (page->records.ok()) {
            for (const auto& r : *page->records) {
              const Object* local = objects_.Live(r.key);
              j["objects"].push_back(ListEntry(r, local != nullptr, local == nullptr ? 0 : PinCount(local->id)));
            }
          }
          Result<std::string> json = page->records.ok() ? Result<std::string>(j.dump()) : page->records.status();
          if (!Sessions::ReplyJson(*waiting, json).ok()) sessions_.Drop(waiting->id);
        });
    return Status::OK();
  }
  std::vector<const Object*> after_key;
  objects_.ForEachLive([&](const Object& o) {
    if (o.key > after) after_key.push_back(&o);
  });
  size_t n = std::min<size_t>(limit, after_key.size());
  std::partial_sort(after_key.begin(), after_key.begin() + static_cast<long>(n), after_key.end(),
                    [](const Object* a, const Object* b) { return a->key < b->key; });
  nlohmann::json page = {{"objects", nlohmann::json::array()}, {"more", after_key.size() > n}};
  for (size_t i = 0; i < n; ++i) {
    page["objects"].push_back(ListEntry(*after_key[i], node_id_, PinCount(after_key[i]->id)));
  }
  return Sessions::ReplyJson(c, page.dump());
}

Status Daemon::Impl::HandleInfo(Session& c) {
  NodeFacts n;
  n.node_id = node_id_;
  n.socket = config_.socket_path;
  n.window = config_.window;
  n.segments_leased = LeasedSegments();
  n.capacity = config_.capacity;
  n.used = used_;
  n.connections_dropped = sessions_.dropped_before_hello();
  n.objects = objects_.live();
  n.objects_awaiting_unpin = objects_.waiting().size();
  n.max_objects = config_.max_objects;
  n.arenas = arenas_.size();
  n.fetches = fetches_done_;
  n.copies_ahead = copies_ahead_;
  n.replicas_evicted = replicas_evicted_;
  n.replica_bytes_evicted = replica_bytes_evicted_;
  n.replica_fetches = replica_fetches_;
  n.taken_over = taken_over_;
  n.default_copies = options_.cluster.copies;
  n.lazy_enabled = lazy_ != nullptr;
  n.default_fetch = options_.cluster.fetch;
  n.lazy_started = lazy_started_;
  if (lazy_ != nullptr) n.lazy = lazy_->totals();
  objects_.ForEachLive([&](const Object& o) {
    if (!o.is_copy() || !o.replica) return;
    ++n.replicas_held;
    n.replica_bytes += o.header.data_size;
  });
  n.fetches_in_flight = fetcher_.in_flight();
  n.transfers = fetcher_.transfers();
  n.peer_bytes_served = peers_.bytes_served();
  if (shm_ != nullptr) {
    const SharedMemory::Stats s = shm_->stats();
    n.fabric = FabricFacts{shm_->memory(), shm_->size(),    shm_->allocated(), s.written_back_bytes,
                           reads_in_place_, s.read_retries, s.read_failures};
    n.fabric->lent_bytes = loans_.lent();
    n.fabric->loans = loans_.count();
    n.fabric->lend_limit = loans_.limit();
    arenas_.ForEachAfter(0, [&](const Arena& a) {
      if (a.lent_by != 0) n.fabric->borrowed_bytes += a.size;
      return true;
    });
  }
  n.directory_requests_waiting = directory_waits_;
  n.spare = spare_.stats();
  if (spill_ != nullptr) {
    uint64_t spilled = 0;
    objects_.ForEachLive([&](const Object& o) { spilled += o.spill == Object::Spill::kSpilled ? 1 : 0; });
    n.spill = {spill_->dir(), spilled, spilled_bytes_, spilling_bytes_, spills_, restores_, spill_losses_,
               spill_->bytes_written(), spill_->bytes_read(), waiting_for_room_.size(),
               options_.spill_high_percent, options_.spill_low_percent};
  }
  n.huge_pages_setting = os::SharedHugePages();  // the host's setting, read now
  n.huge_pages_asked = options_.huge_pages;
  n.huge_pages_used = options_.huge_pages && os::SharedHugePagesAllowed(n.huge_pages_setting);
  if (cluster_ != nullptr) n.record_cache = cluster_->cache_stats();
  sessions_.ForEach([&](const Session& s) {
    n.clients.push_back({s.cred.pid, s.arenas.size(), s.PinsOf(0)});
  });
  return Sessions::ReplyJson(c, InfoJson(n).dump());
}

Daemon::Daemon(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Daemon::~Daemon() = default;

Result<std::unique_ptr<Daemon>> Daemon::Create(const Config& config, const NodeOptions& options) {
  auto impl = std::make_unique<Impl>(config, options);
  CSM_RETURN_IF_ERROR(impl->Init());
  return std::unique_ptr<Daemon>(new Daemon(std::move(impl)));
}

Status Daemon::Run() { return impl_->Run(); }
void Daemon::Stop() { impl_->Stop(); }
const Config& Daemon::config() const { return impl_->config(); }
uint16_t Daemon::coordinator_port() const { return impl_->coordinator_port(); }

}  // namespace csm::node
