// Daemon::Impl: csmd's state and the declarations shared by its source files.
//   daemon.cc          the loop, requests, arenas, introspection
//   daemon_commit.cc   commits (checking an object, entering it) and deletes
//   daemon_recovery.cc taking back what an earlier csmd left in the state directory
//   daemon_reclaim.cc  pins, sweeping, reclaiming objects and arenas, processes gone
//   daemon_cluster.cc  joining the cluster, segment leases, rejoining, the member list
//   daemon_fetch.cc    remote gets: replica arenas, fetches, copying ahead, eviction
//   daemon_spill.cc    spilling objects to the spill directory and restoring them
// The components they use own their state and have their own tests: Sessions,
// ArenaTable, ObjectTable, ReplicaFetcher, PeerServer, Membership, Admission,
// SpareMemory, Introspection (docs/daemon.md).
// Everything here is owned and touched by the event-loop thread (the one running io_)
// only, unless a member says otherwise. Connections are Sessions' (sessions.h).
#pragma once

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

#include "csm/alloc/address_allocator.h"
#include "csm/base/hash.h"
#include "csm/base/hex.h"
#include "csm/base/log.h"
#include "csm/cluster/coordinator.h"
#include "csm/directory/directory_table.h"
#include "csm/cluster/etcd_directory.h"
#include "csm/key.h"
#include "csm/node/admission.h"
#include "csm/node/arena_table.h"
#include "csm/node/introspection.h"
#include "csm/node/membership.h"
#include "csm/node/node_state.h"
#include "csm/node/object.h"
#include "csm/node/object_table.h"
#include "csm/node/peer_server.h"
#include "csm/node/replica_fetcher.h"
#include "csm/node/sessions.h"
#include "csm/node/shared_memory.h"
#include "csm/node/lazy_copies.h"
#include "csm/node/loan_book.h"
#include "csm/node/loan_service.h"
#include "csm/node/daemon.h"
#include "csm/protocol/messages.h"
#include "csm/protocol/protocol.h"
#include "csm/node/spare_memory.h"
#include "csm/node/spill_store.h"
#include "csm/object/object_layout.h"
#include "csm/os/memory.h"
#include "csm/os/unix_socket.h"
#include "csm/space/segment_table.h"
#include "csm/transport/transport.h"

namespace csm::node {

using protocol::MessageType;
using protocol::WireReader;
using protocol::WireWriter;
namespace internal {

using directory::PinEntry;
using object::ObjectExtent;
using object::ObjectHeader;

constexpr int kSweepIntervalMs = 100;


}  // namespace internal
using namespace internal;  // NOLINT: the structs above are this folder's vocabulary

// Why a node on a shared-memory fabric keeps no replicas (docs/cluster.md, "Replicas").
inline constexpr const char* kNoFabricReplicas =
    "replicas are not kept on a shared-memory fabric yet (its nodes map the owner's memory in place "
    "instead of holding copies): commit with one copy, or run the nodes without --shared-memory";

class Daemon::Impl {
 public:
  Impl(const Config& config, const NodeOptions& options)
      : peers_(options.node_id),
        config_(config),
        options_(options),
        node_id_(options.node_id),
        segments_(config.window),
        addresses_([this](uint64_t count) { return LeaseSegments(count); },
                   config.window.segment_size),
        spare_(options.spare_memory_ms > 0 ? config.capacity / 8 : 0,
               std::chrono::milliseconds(options.spare_memory_ms)) {}
  ~Impl() {
    if (membership_ != nullptr) membership_->Stop();
    if (directory_thread_ != nullptr) directory_thread_->join();  // so are its requests
  }

  Status Init();
  Status Run();
  void Stop() {
    uint64_t one = 1;
    ssize_t ignored = ::write(stop_fd_.get(), &one, sizeof(one));
    (void)ignored;
  }
  const Config& config() const { return config_; }
  uint16_t coordinator_port() const {
    return coordinator_server_ ? coordinator_server_->port() : 0;
  }

 private:
  // The event loop: csmd's one thread that owns everything below; other threads post to
  // it. Declared first, so it outlives the sessions and timers that use it.
  boost::asio::io_context io_{1};

  // Requests: one of c's, its header read (Sessions::Hooks::handle).
  Status Dispatch(Session& c, MessageType type, WireReader& in);
  Status HandleHello(Session& c, WireReader& in);
  Status HandleAllocArena(Session& c, WireReader& in);
  Status HandleSync(Session& c, WireReader& in);
  Status HandleCommit(Session& c, WireReader& in);
  Status HandleDelete(Session& c, WireReader& in);
  Status HandleStat(Session& c, WireReader& in);
  Status HandleInfo(Session& c);
  Status HandleList(Session& c, WireReader& in);

  // Bookkeeping.
  // A commit: checked here (PrepareCommit), then, in a cluster, published to the
  // directory on the directory thread, then entered here (FinishCommit).
  Result<Object> PrepareCommit(Session& c, uint64_t header_addr, uint64_t type_id,
                               std::string key, std::string type_name);
  cluster::ObjectRecord RecordOf(const Object& o) const;
  uint64_t ArenaSeqMax(const Object& o) const;  // the newest of its arenas' sequence numbers
  Result<uint64_t> FinishCommit(Object o);
  Status ReplyCommit(Session& c, const Result<uint64_t>& id);
  void DeleteLocally(const std::string& key);
  // Takes the object under `key` off its key here and in the node's directory; it is
  // reclaimed once no process pins it (Sweep). Null if none is live under it.
  Object* Unlist(const std::string& key);
  // CapacityExceeded once max_objects keys are live (own objects and copies).
  Status CheckObjectRoom() const;
  // Runs `call` (a cluster directory request, up to its timeout) on the directory
  // thread, so the event loop goes on serving every other client; then `then` on the
  // loop, with c, or nullptr if its process went away meanwhile. Nothing more is read
  // from c until then. One thread: requests reach the directory in the order made.
  void AwaitDirectory(Session& c, std::function<Status()> call,
                      std::function<void(Session*, const Status&)> then);
  void UnpublishLater(const std::string& key);  // on the directory thread; logs failure
  boost::asio::thread_pool& DirectoryThread();  // made on first use
  std::unique_ptr<boost::asio::thread_pool> directory_thread_;
  uint64_t directory_waits_ = 0;      // AwaitDirectory requests not answered yet
  std::set<std::string> committing_;  // keys whose commit waits for the directory
  std::set<std::string> deleting_;    // keys whose delete does
  Status ReadHeap(uint64_t addr, void* out, uint64_t len, const Session* c,
                  std::vector<uint64_t>* arena_ids);
  Status ReadObject(uint64_t header_addr, const Session* c, Object* o);

  // Restarting (daemon_recovery.cc): the objects an earlier csmd left in the state
  // directory, checked and taken back (docs/operations.md, "Restarting csmd").
  Status Recover();
  Result<Object> RecoverObject(uint32_t slot, const directory::SlotData& d);
  Status ClaimAddresses(uint64_t addr, uint64_t size);
  // A cluster node's: the segments and incarnation its earlier csmd held
  // (NodeState::ClusterStanding), before any arena is claimed.
  Status ClaimStanding();
  // Saves the cluster standing (any thread: the file is written whole and renamed).
  void SaveStanding();
  bool recovered_ = false;  // Recover() took back an earlier csmd's state
  Status HandleClaimArenas(Session& c, WireReader& in);
  // Once the peer server runs: serves the arenas and objects taken back to other nodes.
  void ServeTakenBack();
  void EndReattachGrace();
  std::unique_ptr<NodeState> state_;  // null: memfds, nothing outlives this csmd
  // Until then a restarted csmd keeps what processes of its predecessor may claim back:
  // the arenas they were building in, and deleted objects they may still pin
  // (options_.reattach_grace_ms).
  std::chrono::steady_clock::time_point reattach_grace_until_{};
  // Where the arenas no process claimed back lay (start → end): a late builder's commit
  // there is told why it fails.
  std::map<uint64_t, uint64_t> given_up_;
  bool GivenUp(uint64_t addr) const {
    auto it = given_up_.upper_bound(addr);
    return it != given_up_.begin() && addr < std::prev(it)->second;
  }
  boost::asio::steady_timer grace_timer_{io_};
  void ReleaseArena(uint64_t arena_id);
  void MaybeDestroyArena(Arena& a);
  // Bumps the directory's change counter and wakes every process sleeping on it.
  void AnnounceChange();
  void PunchUncommitted(Arena& a);
  bool IsPinned(uint64_t object_id) const;
  void Sweep();
  void Reclaim(Object& o);
  // c's process went away (Sessions::Hooks::dropped): its arenas are released, and what
  // only its pins held is reclaimed.
  void OnSessionGone(Session& c);
  uint64_t PinCount(uint64_t object_id) const;

  // ---- spilling (daemon_spill.cc; null spill_: no --spill-dir) ----
  // Spills the least recently used objects that can be until memory in use (counting
  // spills under way as done) plus `wanted` is under the low watermark, if it passed
  // the high one.
  void MaybeSpill(uint64_t wanted);
  // Objects processes got since the last call (their access rings) or pin now: used now.
  void NoteAccesses();
  bool Spillable(const Object& o) const;      // own, unpinned arenas released, not spilled
  uint64_t SpillablePages(const Object& o) const;  // bytes of whole pages spilling frees
  std::vector<SpillStore::Piece> PiecesOf(const Object& o);  // its extents in its arenas' memfds
  bool StartSpill(Object& o);  // false if a process pins it
  void FinishSpill(uint64_t id, uint64_t generation, uint64_t pages, const Status& s);
  // Brings a spilled object's bytes back (a reader's Resolve, a peer's fetch): `done`
  // once they are in memory (at once if they are), or the error.
  using RestoreDone = std::function<void(const Status&)>;
  void Restore(Object& o, RestoreDone done);
  Status RestoreForPeer(uint64_t id);  // PeerServer's restorer: any thread, waits (bounded)
  void StartRestore(Object& o);  // room is there: the spill file is read back
  void FinishRestore(uint64_t id, uint64_t generation, const Status& s);
  void AnswerRestore(uint64_t id, const Status& s);  // to everyone waiting for its restore
  void ForgetSpill(Object& o);  // reclaimed: its spill file goes
  void PunchSpilled(Object& o);    // its whole pages out, uncharged
  void UnpunchSpilled(Object& o);  // and charged again, for a restore
  // A builder's arena, or a restore, that does not fit in capacity: it waits while
  // spilling makes room, in order, up to a deadline.
  struct RoomWaiter {
    uint64_t client_id, request_id, size;  // an arena for a process's request
    bool dedicated;
    uint64_t overwritten;
    std::chrono::steady_clock::time_point deadline;
    uint64_t restore_id = 0;  // non-zero: the restore of this object, not an arena
  };
  // True if `w` waits (answered later); false if spilling cannot make room for it.
  bool WaitForRoom(RoomWaiter w);
  void RetryWaitingArenas();
  void ArmRoomTimer();
  std::unique_ptr<SpillStore> spill_;
  uint64_t spilling_bytes_ = 0;  // pages that spills under way will free
  uint64_t spilled_bytes_ = 0;   // pages of objects spilled now
  uint64_t spills_ = 0, restores_ = 0, spill_losses_ = 0;
  std::map<uint64_t, std::vector<RestoreDone>> restore_waiters_;  // by object id
  std::deque<RoomWaiter> waiting_for_room_;
  boost::asio::steady_timer room_timer_{io_};

  // ---- tasks from other threads (fetch workers, heartbeat) ----
  // Every hand-off between csmd's threads is boost::asio::post to an executor: the
  // directory thread and the fetch pool are asio thread pools, the loop is io_.
  void Post(std::function<void()> task) { boost::asio::post(io_, std::move(task)); }  // any thread

  // ---- serving peers: our own committed objects, read by the transport's threads ----
  PeerServer peers_;

  // ---- remote gets ----
  Status HandleResolve(Session& c, WireReader& in);
  // Looks `key` up in the cluster and starts fetching it for `waiters` (client ids), or
  // tells them why not. A fetch from a cached record that fails is retried once kFresh.
  // A lookup the node cannot answer itself runs on the directory thread.
  void StartFetch(const std::string& key, std::vector<Waiter> waiters,
                  cluster::Freshness freshness);
  void FetchRecord(const std::string& key, std::vector<Waiter> waiters,
                   const Result<cluster::ObjectRecord>& record);
  Status TryStartFetch(const std::string& key, std::vector<Waiter>& waiters,
                       const Result<cluster::ObjectRecord>& record);
  void Answer(const std::vector<Waiter>& waiters, const Status& status);
  Status CheckRecord(const cluster::ObjectRecord& r) const;
  // For each of r's arenas: the one here at its place that `fits` (i: its index in
  // r.arenas), or one `make` adds (its id) — counted as being written into (fetching)
  // until FinishFetch. A replica of an older arena of the owner's in the way is dropped
  // if nothing uses it; else Unavailable. On failure nothing is left taken.
  Result<std::vector<uint64_t>> PrepareArenasFor(const cluster::ObjectRecord& r,
                                                 const std::function<bool(const Arena&, size_t)>& fits,
                                                 const std::function<Result<uint64_t>(size_t)>& make);
  Result<std::vector<uint64_t>> PrepareReplicaArenas(const cluster::ObjectRecord& r);
  // A spare memfd of the span's size, cleared outside r's extents; invalid if none.
  SpareMemory::Memory TakeSpareReplica(const cluster::ObjectRecord& r, const object::ObjectExtent& span);
  void FinishFetch(const std::string& key, Status status, const cluster::ObjectRecord& r,
                   const std::vector<uint64_t>& arena_ids);
  void DropStaleReplicas(const std::vector<std::string>& keys);

  // ---- lazy copies (daemon_lazy.cc, docs/lazy.md) ----
  // Starts them if the kernel can serve faults on shared memory; else Gets fetch whole.
  void StartLazyCopies();
  // The fetch mode a request's `fetch` stands for (0: the node's --fetch).
  uint32_t FetchModeOf(uint32_t asked) const;
  // Makes the copy's arenas and object now (its slot marked kSlotLazy), answers the
  // lazy waiters, and starts its blocks coming; the others wait for the whole copy.
  Status StartLazyFetch(const std::string& key, std::vector<Waiter>& waiters, const cluster::ObjectRecord& r,
                        transport::Transport* t, const std::string& address);
  void OnLazyDone(uint64_t id, const Status& outcome);
  Status HandleLazyWatch(Session& c, WireReader& in);
  Status HandleLazyWant(Session& c, WireReader& in);

  // A change to another node's record, pushed by the directory (its record listener).
  struct RecordHeard {
    std::string key;
    bool published;  // false: removed
    uint32_t owner_node;
    uint64_t object_id, size;
    uint32_t copies;
    std::vector<uint32_t> replicas;
  };
  // A copy of another object than the one now published goes at once; an object this
  // node is named a replica of is fetched (FetchAsReplica), a small one copied ahead
  // (CopyAhead); a record naming this node the owner of an object it holds a copy of
  // means the directory handed it over (TakeOverCopies). daemon_replicas.cc.
  void OnRecordHeard(const RecordHeard& heard);
  // Fetches `key`, which this node holds a replica of, now (it may evict copies).
  void FetchAsReplica(const std::string& key);
  // This node owns these objects now: their owner died and it held replicas of them.
  // Each copy becomes this node's own (served to peers, deleted here), at the same
  // addresses; one it no longer holds is unpublished (lost).
  void TakeOverCopies(const std::vector<cluster::ObjectRecord>& records);
  // The live members changed: each object of this node's that keeps replicas gets them
  // chosen again (live ones kept; a dead one replaced; more named if nodes joined), and
  // the directory is told (SetReplicas) where that changes them.
  void ChooseReplicasAgain(const std::vector<uint32_t>& live);
  // This node owns an object with replicas: the heartbeat watches who is alive.
  void WatchReplicated(const Object& o);
  // Fetches `key` before anyone asks, if its record is at hand, it is no larger than
  // ClusterOptions::copy_ahead_below and it fits in free room (it never evicts).
  void CopyAhead(const std::string& key);
  // Drops copies no process pins, least recently used first, until `bytes` more fit in the
  // node's capacity (or none is left to drop); for a copy that would not fit.
  void EvictReplicasFor(uint64_t bytes, const std::string& wanted);
  // EvictReplicasFor(size); CapacityExceeded if a copy of `size` bytes still would not fit.
  Status MakeRoomFor(const std::string& key, uint64_t size);
  void RefreshReplicaList();
  // ---- a shared-memory fabric (shared_memory.h) ----
  // Maps the owner's arenas of r from its fabric memory (the stale-cache model: private
  // snapshots of them) and checks r's bytes there on the fetch pool, as a fetch would.
  Status StartReadInPlace(const std::string& key, std::vector<Waiter>& waiters, const cluster::ObjectRecord& r);
  Result<std::vector<uint64_t>> PrepareMappedArenas(const cluster::ObjectRecord& r, const std::vector<int>& device_fds);
  // Where an arena of this node lies, for SharedMemory::WriteBack.
  SharedMemory::Place PlaceOf(const Arena& a) const {
    return {a.fd.get(), a.fd_offset, a.addr, a.fabric_offset, a.lent_device ? a.lent_device->get() : -1,
            a.lent_by != 0 && a.view ? a.view->data() : nullptr};
  }
  // ---- lending memory to other nodes of the fabric, and borrowing theirs ----
  // Lender: a loan of `r.size` bytes, made on the loop (called on a LoanServer thread).
  Result<LoanGrant> Lend(const BorrowRequest& r);
  Status TakeBackLoan(uint32_t borrower, uint64_t addr);  // a loan given back (any thread)
  // Borrower: c's arena of `size` bytes in node `lender`'s memory.
  Status BorrowArena(Session& c, uint64_t size, bool dedicated, uint32_t lender);
  // Every few heartbeats while loans are out: loans of dead borrowers come back, and
  // this node's objects in the memory of a dead lender go.
  void ArmLoanCheck();
  void CheckLoans(const std::vector<cluster::NodeInfo>& members);
  LoanBook loans_{0};                        // what this node lent (its limit set at Init)
  std::unique_ptr<LoanServer> loan_server_;  // null unless the node lends
  std::unique_ptr<LoanClient> loan_client_;  // made with the cluster; used on the directory thread
  // Lenders as the member list last said (directory thread only): asked again when a
  // loan from one fails.
  std::map<uint32_t, cluster::NodeInfo> lenders_;
  boost::asio::steady_timer loan_timer_{io_};
  bool loan_check_armed_ = false;
  std::unique_ptr<SharedMemory> shm_;  // null: the node is on no fabric
  uint64_t reads_in_place_ = 0;        // Gets of other nodes' objects answered by mapping them
  // Fetches in flight (who waits for each key), their threads and transports.
  ReplicaFetcher fetcher_{
      [this](transport::TransportKind kind) {
        return transport::MakeTransport(kind, {options_.cluster.secret, options_.cluster.timeout_ms});
      },
      [this](std::function<void()> task) { Post(std::move(task)); }};
  // After fetcher_: destroyed first, its fetches use fetcher_'s transports.
  std::unique_ptr<LazyCopies> lazy_;                       // null: lazy Gets are off here
  std::map<uint64_t, std::vector<Waiter>> lazy_waiters_;   // by copy id: who waits for all of it
  uint64_t lazy_started_ = 0;
  uint64_t fetches_done_ = 0;
  uint64_t replicas_evicted_ = 0;
  uint64_t replica_bytes_evicted_ = 0;
  uint64_t copies_ahead_ = 0;  // fetches started by CopyAhead
  uint64_t replica_fetches_ = 0;  // fetches started by FetchAsReplica
  uint64_t taken_over_ = 0;       // objects taken over from dead owners

  // Cluster membership (cluster mode only).
  Status JoinCluster();
  // On the loop: registers this node, its leases and objects again with a directory
  // that forgot it (a restarted coordinator), on the directory thread.
  void StartRejoin();
  // Joining after Recover: registers this node again as the incarnation its memory
  // belongs to, with the leases and objects taken back (daemon_cluster.cc).
  Status ResumeInCluster();
  cluster::NodeInfo self_;             // as joined
  // Segments for the address allocator: from the node's own table on a lone node, from
  // the cluster (LeaseFromCluster, any thread: HandleAllocArena calls it on the
  // directory thread) in a cluster.
  Result<alloc::AddressAllocator::Run> LeaseSegments(uint64_t count);
  Result<alloc::AddressAllocator::Run> LeaseFromCluster(uint64_t count);
  // The arena of `size` bytes for c, from segments the node holds (or CapacityExceeded).
  // `overwritten`: a dedicated arena whose first `overwritten` bytes the client writes
  // wholly (ArenaUse::kDedicatedOverwritten): it may take a spare not zeroed yet.
  Status GrantArena(Session& c, uint64_t size, bool dedicated, uint64_t overwritten = 0);
  // csm nodes: the members (from the directory thread in a cluster).
  Status HandleNodes(Session& c);
  Status ReplyNodes(Session& c, const Result<std::vector<cluster::NodeInfo>>& members);

  Config config_;
  NodeOptions options_;
  uint32_t node_id_;
  std::vector<cluster::SegmentLease> Leases() const {
    std::lock_guard<std::mutex> lock(leases_mu_);
    return leases_;
  }
  uint64_t LeasedSegments() const {
    std::lock_guard<std::mutex> lock(leases_mu_);
    return leased_segments_;
  }
  mutable std::mutex leases_mu_;  // leases are added on the directory thread, read on the loop
  std::vector<cluster::SegmentLease> leases_;  // what this node holds; guarded
  uint64_t leased_segments_ = 0;                 // guarded
  std::unique_ptr<cluster::Coordinator> coordinator_;  // if this node hosts it
  std::unique_ptr<cluster::CoordinatorServer> coordinator_server_;
  std::unique_ptr<cluster::ClusterDirectory> cluster_;  // null on a lone node
  // Heartbeats, re-registration when the directory forgot us, stale copies (after Join).
  std::unique_ptr<Membership> membership_;
  space::SegmentTable segments_;
  alloc::AddressAllocator addresses_;
  os::UniqueFd stop_fd_;  // written by Stop (async-signal-safe); io_ stops when it is
  std::unique_ptr<boost::asio::posix::stream_descriptor> stop_watch_;
  os::UniqueFd dir_fd_;
  Mapping dir_map_;
  std::unique_ptr<directory::DirectoryTable> dir_;

  // The processes attached (and connections that have not said Hello yet).
  Sessions sessions_{io_, Admission::Limits{},
                     {[this](Session& c, MessageType type, WireReader& in) { return Dispatch(c, type, in); },
                      [this](Session& c) { OnSessionGone(c); }}};
  ArenaTable arenas_;
  // Deleted objects still pinned are swept every kSweepIntervalMs until none is left, and
  // soon after a process says it unpinned one.
  void ArmSweep(std::chrono::milliseconds after);
  boost::asio::steady_timer sweep_timer_{io_};
  bool sweep_armed_ = false;
  uint64_t used_ = 0;
  // Object ids are never reused, not even by the node's next incarnation (peers keep
  // copies by id): they start at the time this csmd started, in nanoseconds.
  const uint64_t incarnation_ = static_cast<uint64_t>(os::RealtimeNanos());
  // Object ids start at incarnation_ (above).
  ObjectTable objects_{incarnation_};
  // The incarnation the cluster knows this node's memory by (NodeInfo::incarnation):
  // this csmd's, or the earlier csmd's whose objects it took back (--state-dir).
  uint64_t memory_incarnation_ = incarnation_;
  // Memfds of destroyed arenas (local and replicas), pages still populated: the next
  // arena of the same size reuses one instead of faulting fresh shared memory in
  // (docs/heap_layout.md). At most capacity/8 bytes, on top of capacity, each kept for
  // options.spare_memory_ms. Declared last: its thread stops before the rest goes.
  SpareMemory spare_;
};

}  // namespace csm::node
