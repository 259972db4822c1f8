// ClientImpl and BuilderCore: the machinery behind include/csm/client.h.
//
// ClientImpl owns this process's window reservation, its socket to csmd, its read-only
// view of the directory, its pin table and the map of arenas mapped here. Requests go
// through the RequestChannel (any number of threads at once, none waiting behind
// another's round trip); arena syncs are ordered by sync_mu_; the map of mappings is
// guarded by map_mu_ (never held across a round trip); pins by pin_mu_. The Get fast path takes
// only pin_mu_ (uncontended in the common case) and no system call.
//
// Three events end a session with csmd, and each is noticed before a Get answers from
// the directory (Usable: one load of the directory's liveness word):
//   - csmd goes away (stopped or killed) on a node that keeps no state: the client
//     answers every call with Unavailable from then on;
//   - csmd goes away on a node that keeps its state in files (--state-dir): a new csmd
//     takes the same directory back, and the client attaches to it again (AttachAgain:
//     new socket, its pins written into a new pin table, its arenas claimed back);
//     Refs and Builders carry on, and calls wait for the new csmd (request timeout);
//   - fork(): the child inherits the parent's mappings, pin table and socket, none of
//     them its own. A pthread_atfork child handler detaches it (writable arenas become
//     read-only, Builders are orphaned, the socket is closed, pins stop being written)
//     and its first call re-attaches it to csmd as a new client (Reattach).
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "csm/alloc/process_heap.h"
#include "csm/client.h"
#include "csm/client/request_channel.h"
#include "csm/os/user_faults.h"
#include "csm/directory/directory_table.h"
#include "csm/protocol/messages.h"
#include "csm/protocol/protocol.h"
#include "csm/object/checksum.h"
#include "csm/object/object_layout.h"
#include "csm/os/fd.h"
#include "csm/os/unix_socket.h"
#include "csm/space/window.h"

namespace csm::internal {

class BuilderCore;

// TSan only: the edge from a reader's last access to a reclaimed object to the next
// writer of that memory runs through csmd, which TSan cannot follow (attachment.cc).
extern char g_tsan_reuse;

class ClientImpl : public alloc::ArenaSource, public std::enable_shared_from_this<ClientImpl> {
 public:
  // The process's attachment: a new one, or the one it has if its socket and window are
  // `config`'s (FailedPrecondition if they are not).
  static Result<std::shared_ptr<ClientImpl>> Connect(const ClientOptions& options);
  ~ClientImpl() override;

  // OK when calls may reach csmd and the directory may be read: re-attaches a forked
  // child first; Unavailable once csmd went away.
  Status Usable();
  // Builders register so that a forked child can orphan the parent's.
  void AddBuilder(BuilderCore* b);
  void RemoveBuilder(BuilderCore* b);

  // pthread_atfork handlers (for the process's one client).
  void BeforeFork();
  void AfterForkInParent();
  void AfterForkInChild();

  const Config& config() const { return config_; }
  alloc::ProcessHeap& heap() { return *heap_; }

  // ArenaSource.
  Result<Grant> AllocateArena(uint64_t min_size, alloc::ArenaUse use) override;
  void ReleaseArena(uint64_t arena_id) override;

  // Asks csmd to bring each of `keys` that this node's directory lacks, all at once
  // (csmd fetches them in parallel), waiting up to timeout_ms for all the answers. What
  // failed is left for the Get that follows to report.
  void ResolveMany(const std::vector<std::string>& keys, int timeout_ms);
  Result<PinnedObject> Get(std::string_view key, uint64_t type_id,
                           std::string (*type_name)(), std::chrono::milliseconds timeout, uint32_t fetch = 0);
  // Client::Prefetch: waits for [addr, +length) of a lazy copy under `key`.
  Status Prefetch(std::string_view key, uint64_t addr, uint64_t length);
  Status Prefetch(const std::vector<ByteRange>& ranges);
  Result<uint64_t> Commit(uint64_t header, uint64_t type_id, std::string_view key,
                          const std::string& type_name, uint32_t copies);
  Status Delete(std::string_view key);
  Result<ObjectInfo> Lookup(std::string_view key) const;
  std::vector<ObjectInfo> List() const;
  // A JSON request: Stat (key), Info, List (key = after, limit).
  Result<std::string> Json(protocol::MessageType type, std::string_view key, uint32_t limit = 0);

  void AddPin(uint64_t object_id);
  void Unpin(uint64_t object_id);
  Status Verify(const ObjectInfo& info);
  Result<std::vector<Extent>> Extents(const ObjectInfo& info);
  // Tells csmd the object passed Arrow's full validation (one-way).
  void ReportArrowValidated(uint64_t object_id);

 private:
  ClientImpl(const Config& config) : config_(config) {}
  // `again`: the process attaches to a restarted csmd of the same node (the directory is
  // the one it maps already; its pins move to the new pin table).
  Status Hello(bool again = false);
  // A forked child's new session: a new socket, Hello, its own pin table (re-pinning
  // what it inherited pinned), its own heap, every live arena mapped read-only.
  Status Reattach();
  // csmd's serving thread is not the one this process attached to: waits up to
  // timeout_ms for a new csmd of the node (one that keeps its state) and attaches to it
  // again; Lost if the node keeps no state or the new csmd is another node.
  Status AwaitRestart(int timeout_ms);
  Status AttachAgain();
  Status MovePins(os::UniqueFd table, uint32_t pins, const protocol::HelloReply& reply);
  Status LostError() const;
  std::shared_ptr<RequestChannel> channel() const {
    std::lock_guard<std::mutex> lock(*channel_mu_);
    return channel_;
  }
  // Keeps every live arena of the node mapped here ahead of Gets: syncs whenever csmd
  // announces a change (commit or arena freed). Runs until the Client goes.
  void MapperLoop();
  // Sends a request and waits (request timeout) for its reply of type `reply`.
  Result<os::Message> Call(const protocol::WireWriter& request, protocol::MessageType reply,
                           int timeout_ms = -1,  // -1: the request timeout
                           const std::vector<int>& send_fds = {});
  // Sends `request` and waits for its reply, of type R (protocol/messages.h); csmd's
  // answer is the error if it is not OK. The descriptors that came with it go to `fds`.
  template <typename R, typename Q>
  Result<R> Ask(const Q& request, std::vector<os::UniqueFd>* fds = nullptr, int timeout_ms = -1,
                const std::vector<int>& send_fds = {}) {
    CSM_ASSIGN_OR_RETURN(os::Message msg, Call(protocol::Encode(request), R::kType, timeout_ms, send_fds));
    protocol::WireReader in(msg.bytes);
    protocol::MessageType type{};
    CSM_RETURN_IF_ERROR(in.ReadHeader(&type));
    R reply;
    CSM_RETURN_IF_ERROR(protocol::Decode(in, &reply));
    CSM_RETURN_IF_ERROR(reply.status);
    if (fds != nullptr) *fds = std::move(msg.fds);
    return reply;
  }
  // Asks csmd to bring `key` into this node's directory (from its owner node if need
  // be). OK once a local lookup will find it.
  Status Resolve(std::string_view key, int timeout_ms, uint32_t fetch = 0);
  // A lazy copy (slot `d`, kSlotLazy) is about to be read here: hands this process's
  // userfaultfd to csmd (once), registers the copy's pages with it. An error: read it
  // whole instead.
  Status AttachLazy(const directory::SlotData& d, std::string_view key);
  // This process's userfaultfd, made at its first lazy Get; whether csmd has it.
  std::unique_ptr<std::mutex> lazy_mu_ = std::make_unique<std::mutex>();
  std::unique_ptr<os::UserFaults> faults_;  // guarded by *lazy_mu_
  bool faults_sent_ = false;                // guarded by *lazy_mu_
  Status SendOneWay(const protocol::WireWriter& message);
  // Maps every arena up to at least `seq` and unmaps freed ones; `freed` is the
  // directory's arenas_freed count the caller saw (0: do not care). `full`: from the
  // first arena on, and unmap whatever csmd did not send (a re-attached child's view).
  Status SyncArenas(uint64_t seq, uint64_t freed = 0, bool full = false);
  void RecordMapping(uint64_t id, uint64_t addr, uint64_t size, bool writable);
  // Pins the object in `found`; NotFound if it was deleted meanwhile.
  Status Pin(const directory::DirectoryTable::Found& found);
  bool ExtentMapped(uint64_t addr, uint64_t len);

  enum class State { kAttached, kForked, kLost };

  Config config_;
  std::unique_ptr<space::Window> window_;
  std::shared_ptr<RequestChannel> channel_;  // replaced when attaching again: channel()
  std::unique_ptr<std::mutex> channel_mu_ = std::make_unique<std::mutex>();
  int request_timeout_ms_ = 30000;
  bool clustered_ = false;  // the node is part of a cluster: misses may be elsewhere
  bool keeps_state_ = false;  // a new csmd takes the node back when this one ends
  std::atomic<uint32_t> attached_writer_{0};  // the serving csmd thread attached to
  uint64_t dir_dev_ = 0, dir_ino_ = 0;        // the directory's file
  std::atomic<State> state_{State::kAttached};
  // Mutexes another thread may hold across a round trip: a forked child cannot unlock
  // them, so it leaks them and makes new ones.
  std::unique_ptr<std::mutex> sync_mu_ = std::make_unique<std::mutex>();
  std::unique_ptr<std::mutex> reattach_mu_ = std::make_unique<std::mutex>();

  std::mutex builders_mu_;
  std::set<BuilderCore*> builders_;

  void* dir_mem_ = nullptr;
  size_t dir_bytes_ = 0;
  std::unique_ptr<directory::DirectoryTable> dir_;

  // Records a Get of the object in directory slot `slot` in the access ring after the
  // pin table (csmd spills the least recently used first). Under pin_mu_.
  void NoteAccess(uint32_t slot);
  directory::PinEntry* pins_ = nullptr;
  size_t pin_bytes_ = 0;
  bool pins_ours_ = true;  // false in a forked child until Reattach: the table is the parent's
  std::mutex pin_mu_;
  struct LocalPin {
    uint32_t index;
    uint32_t slot;
    uint64_t count;
  };
  std::unordered_map<uint64_t, LocalPin> pinned_;  // object id → pin
  std::vector<uint32_t> free_pins_;

  std::mutex map_mu_;
  struct Mapped {
    uint64_t id;
    uint64_t size;
    bool writable;
  };
  std::map<uint64_t, Mapped> mapped_;  // addr → arena mapped there
  std::atomic<uint64_t> synced_seq_{0};
  std::atomic<uint64_t> synced_freed_{0};  // arenas_freed as of the last sync

  std::unique_ptr<alloc::ProcessHeap> heap_;
  std::atomic<bool> stopping_{false};
  std::unique_ptr<std::thread> mapper_;
};

// The state behind a Builder.
class BuilderCore {
 public:
  explicit BuilderCore(std::shared_ptr<ClientImpl> client) : client_(std::move(client)) {
    client_->AddBuilder(this);
  }
  ~BuilderCore();  // abandons the chunks if not committed

  // In a forked child: the memory is the parent's. Forget it; every later allocation
  // and the commit fail with FailedPrecondition.
  void Orphan();

  Status Start();  // carves the first chunk and reserves the header
  // Refills the bump region and allocates; throws std::bad_alloc (status() says why).
  void* Refill(size_t bytes, size_t align);
  Status SetRoot(void* root, uint64_t type_id, std::string type_name);
  Status Commit(std::string_view key);
  // After Commit: the object's id on this node, and the client it was committed through.
  uint64_t committed_id() const { return committed_id_; }
  ClientImpl& client() const { return *client_; }
  const Status& status() const { return status_; }
  uint64_t bytes_used() const;
  bool Contains(uint64_t addr, uint64_t len) const;

  BumpRegion region{0, 0};
  std::atomic<int> scopes{0};  // Scopes currently making it current
  bool defer_checksum = false;   // Builder::DeferChecksum
  uint32_t copies_wanted = 0;    // Builder::SetCopies
  std::vector<object::PendingCopy> copies;  // Builder::CopyIn, made at Finalize
  uint64_t overwrite_bytes = 0;  // Builder::ExpectOverwrite: the next Refill of this many bytes
  bool arrow_validated = false;  // internal::MarkArrowValidated

 private:
  Status Finalize();
  void CloseChunk();
  // Gives the chunks back to the heap and seals the pages it says are done
  // (docs/heap_layout.md, "Sealed after commit").
  void ReleaseChunks();
  void Seal(uint64_t addr, uint64_t size);

  std::shared_ptr<ClientImpl> client_;
  std::vector<alloc::Chunk> chunks_;           // all chunks, the current one last
  std::vector<object::ObjectExtent> extents_;  // closed chunks' used parts
  uint64_t next_chunk_ = 4096;
  uint64_t root_ = 0, type_id_ = 0;
  std::string type_name_;
  bool finalized_ = false, committed_ = false;
  uint64_t committed_id_ = 0;
  Status status_;
};

}  // namespace csm::internal
