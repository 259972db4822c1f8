// The csm client library: attach to the local csmd, build objects in the global heap,
// commit them under a key, and use any committed object in place.
//
//   auto client = csm::Client::Connect();            // first thing in main()
//   auto b = (*client)->NewBuilder();
//   auto* m = *b->New<csm::map<int, csm::string>>();
//   CSM_RETURN_IF_ERROR(b->Populate([&] { (*m)[1] = "one"; }));
//   CSM_RETURN_IF_ERROR(b->Commit("numbers"));
//   ...                                              // any process on the node:
//   auto ref = (*client)->Get<csm::map<int, csm::string>>("numbers");
//   (*ref)->at(1);                                   // same address, no copy
//
// Lifecycle: Builder reserves → populate → Commit(key) publishes the descriptor →
// Get<T>(key) returns a Ref<T> that pins the object → the last Ref dropped allows csmd
// to reuse the memory after Delete(key). A committed object belongs to the node: it
// outlives the process that built it.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "csm/allocator.h"
#include "csm/config.h"
#include "csm/containers.h"
#include "csm/key.h"
#include "csm/status.h"
#include "csm/type_id.h"

namespace csm {

class Client;

// The csm version this library is ("0.1.0"). Objects are shared in place only between
// programs built against the same one (and the same compiler and standard library).
const char* Version();

// What the node's directory says about one committed object: its local descriptor.
struct ObjectInfo {
  std::string key;
  uint64_t object_id;
  uint32_t owner_node;
  uint64_t type_id;
  uint64_t header;     // address of the object's header
  uint64_t root;       // address of the root value
  uint64_t size;       // bytes of all its extents
  uint64_t checksum;   // the block checksum of its extents (0 if committed with DeferChecksum)
  int64_t commit_time_ns;
  // A reader on this node ran Arrow's full validation on it (an Arrow table's descriptor
  // object; docs/arrow.md): later readers here check only its structure.
  bool arrow_validated = false;
  // A lazy copy of another node's object whose bytes were still arriving when it was
  // looked up (docs/lazy.md): reading it may wait for them; Client::Prefetch says what
  // to bring first.
  bool arriving = false;
};

// Bytes a reader needs (Client::Prefetch).
struct ByteRange {
  const void* addr;
  size_t length;
};

// How a Get brings an object that another node holds to this one (docs/lazy.md).
enum class Fetch : uint32_t {
  kNodeDefault = 0,  // as the node's csmd --fetch says (whole, unless told otherwise)
  kWhole = 1,        // every byte is here, checked, before Get returns
  kLazy = 2,         // Get returns once the copy's memory exists here; each page arrives
                     // (checked) when first read, and the rest follows in order
  kOnDemand = 3,     // lazily, and only the pages read (or asked for: Client::Prefetch)
};

// A Get's options. With a timeout, Get waits for the key to be committed.
struct GetOptions {
  std::chrono::milliseconds timeout{0};
  Fetch fetch = Fetch::kNodeDefault;
};

// The node as csmd sees it (csm info); Client::InfoJson() has the same and more.
struct NodeStatus {
  uint32_t node_id = 0;
  uint64_t capacity = 0;              // bytes the node may hand out
  uint64_t used = 0;                  // bytes handed out (arenas and copies)
  uint64_t objects = 0;               // live objects, copies from other nodes included
  uint64_t objects_awaiting_unpin = 0;  // deleted, still pinned by a reader
  uint64_t clients = 0;               // attached processes
  uint64_t fetches = 0;               // objects brought from other nodes so far
  uint64_t copies_ahead = 0;          // fetches started as the object was published
  uint64_t fetches_in_flight = 0;
  uint64_t connections_dropped = 0;   // connections that never said Hello in time
  struct Transfer {
    std::string key;
    uint64_t bytes = 0;     // the object's size
    uint64_t received = 0;  // bytes arrived so far
  };
  std::vector<Transfer> transfers;    // copies of other nodes' objects arriving now
};

// A range of the global heap: one piece of an object's memory.
struct Extent {
  uint64_t addr;
  uint64_t length;
};

class Builder;
namespace internal {
class BuilderCore;
class ClientImpl;
// Commits a part of an appended table as "<table_key>#<part>" (csm/key.h reserves '#'
// for these); the Arrow layer's AppendTable is its one caller.
Status CommitTablePart(Builder& builder, std::string_view table_key, uint64_t part);
// The object `builder` will commit passed Arrow's full validation (its producer validated
// what it copies in): call before Commit. The node marks it at commit, on this node and
// on every node that fetches a copy (ObjectInfo::arrow_validated). The Arrow layer's.
void MarkArrowValidated(Builder& builder);

// One pin on one object in this process; the base of Ref<T>.
class PinnedObject {
 public:
  PinnedObject() = default;
  PinnedObject(std::shared_ptr<ClientImpl> client, ObjectInfo info)
      : client_(std::move(client)), info_(std::move(info)) {}
  PinnedObject(const PinnedObject& o);
  PinnedObject& operator=(const PinnedObject& o);
  PinnedObject(PinnedObject&& o) noexcept : client_(std::move(o.client_)), info_(std::move(o.info_)) {}
  PinnedObject& operator=(PinnedObject&& o) noexcept;
  ~PinnedObject() { Reset(); }
  void Reset();
  bool valid() const { return client_ != nullptr; }
  const ObjectInfo& info() const { return info_; }
  // Recomputes the checksum of the object's bytes and compares it with the one
  // committed: Corruption if they differ.
  Status Verify() const;
  // The object's extents, checked to be mapped and to add up to its size (Corruption
  // otherwise). Everything the object's pointers may point to lies inside them.
  Result<std::vector<Extent>> Extents() const;
  // For the Arrow layer: the object passed Arrow's full validation here; the node
  // records it for its later readers (ObjectInfo::arrow_validated). One-way, no wait.
  void ReportArrowValidated() const;

 private:
  std::shared_ptr<ClientImpl> client_;  // keeps the process's attachment alive
  ObjectInfo info_;
};
}  // namespace internal

template <typename T>
class Ref;
namespace internal {
// The Arrow layer's: `ref`'s object passed Arrow's full validation (see PinnedObject).
template <typename T>
void ReportArrowValidated(const Ref<T>& ref) {
  ref.pin_.ReportArrowValidated();
}
}  // namespace internal

// Ref keeps one committed object alive and readable in this process.
//
// Thread-safety: a Ref is used by one thread at a time; distinct Refs (copies included)
// are independent. Lifetime: the object's bytes stay mapped at the same address until
// the last Ref on this node is dropped, even if the object is deleted meanwhile. A Ref
// keeps the process's attachment to csmd alive: it may outlive its Client.
template <typename T>
class Ref {
 public:
  Ref() = default;
  const T& operator*() const { return *get(); }
  const T* operator->() const { return get(); }
  const T* get() const { return reinterpret_cast<const T*>(pin_.info().root); }
  explicit operator bool() const { return pin_.valid(); }
  const ObjectInfo& info() const { return pin_.info(); }
  Status Verify() const { return pin_.Verify(); }
  Result<std::vector<Extent>> Extents() const { return pin_.Extents(); }
  void Reset() { pin_.Reset(); }

 private:
  friend class Client;
  template <typename U>
  friend void internal::ReportArrowValidated(const Ref<U>& ref);
  explicit Ref(internal::PinnedObject pin) : pin_(std::move(pin)) {}
  internal::PinnedObject pin_;
};

// Builder: one object under construction in the global heap.
//
// Memory comes from arenas only this process may write; csm::allocator allocates from
// the Builder that is *current* on the calling thread (Populate or MakeCurrent), with a
// bump pointer and no lock. A Builder is used by one thread at a time; several Builders
// on several threads build in parallel. Dropping an uncommitted Builder abandons its
// memory.
class Builder {
 public:
  Builder(Builder&&) noexcept;
  Builder& operator=(Builder&&) noexcept;
  ~Builder();

  // Constructs the object's root (exactly once per Builder).
  template <typename T, typename... Args>
  Result<T*> New(Args&&... args);

  // Runs fn() with this Builder current on this thread. Allocation failures inside
  // (node memory full: CapacityExceeded with sizes) come back as the Status.
  template <typename Fn>
  Status Populate(Fn&& fn);

  // Makes this Builder current on this thread until the Scope ends (nesting restores
  // the previous one). Inside a Scope an allocation failure throws std::bad_alloc.
  class Scope {
   public:
    explicit Scope(internal::BuilderCore* core);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    internal::BuilderCore* core_;
    internal::BuilderCore* previous_;
  };
  [[nodiscard]] Scope MakeCurrent() { return Scope(core_.get()); }

  // Publishes the object under `key` on this node (InvalidArgument if the key breaks a
  // rule of csm/key.h). On AlreadyExists the Builder stays
  // usable (commit under another key, or drop it). Commit computes a checksum of every
  // byte (XXH3 of 1 MiB blocks, on up to 4 threads; docs/heap_layout.md) that copies to
  // other nodes are verified against.
  Status Commit(std::string_view key);
  // Commits without that checksum: Commit then costs the same for any size. Copies to
  // other nodes are still verified end to end, against a digest the owner computes
  // while serving them; Ref::Verify() says FailedPrecondition. Call before Commit.
  void DeferChecksum();
  // Asks for `copies` copies of the object on as many nodes of the cluster, this one's
  // included (1: none on other nodes; 0, the default: the node's --replicas). The other
  // nodes are chosen by the cluster directory and fetch their copy as the object is
  // published, after Commit returns; if this node dies, the first of them takes the
  // object over at the same addresses (docs/cluster.md, "Replicas"). Call before Commit.
  void SetCopies(uint32_t copies);
  // Copies `n` bytes from `src` to `dst` (memory this Builder handed out) at Commit, on
  // several threads for large copies, each 1 MiB block hashed for the checksum right after
  // it is copied: for bulk bytes one pass over memory instead of the copy's and the
  // checksum's. `src` must stay valid and unchanged until Commit returns, and the bytes
  // are not at `dst` before it. InvalidArgument if [dst, dst + n) is not this Builder's.
  Status CopyIn(void* dst, const void* src, size_t n);
  // The next allocation of exactly `bytes` bytes (a large vector's storage, say) will be
  // written wholly before Commit (by CopyIn or the caller): if it gets an arena of its
  // own, that may be memory a deleted object left, reused before csmd has zeroed it
  // (fresh memory costs ~60 ms per GiB to clear here, seconds per GiB when the VM's host
  // faults it in); only the arena's bytes past the allocation are cleared. Arm it right
  // before the allocation and disarm it (0) after: any allocation that takes new memory
  // consumes it.
  void ExpectOverwrite(size_t bytes);
  // Bytes taken so far (header and extent table included).
  uint64_t bytes_used() const;
  // Whether [p, p+n) lies in memory this Builder has handed out (it will be part of the
  // object when committed).
  bool Contains(const void* p, size_t n) const;

 private:
  friend class Client;
  friend Status internal::CommitTablePart(Builder&, std::string_view, uint64_t);
  friend void internal::MarkArrowValidated(Builder&);
  explicit Builder(std::unique_ptr<internal::BuilderCore> core);
  Status AllocationFailure() const;
  Status SetRoot(void* root, uint64_t type_id, std::string type_name);
  std::unique_ptr<internal::BuilderCore> core_;
};

// What a process needs to attach to its node: where csmd listens and the window every
// process of the cluster maps. The rest of Config (capacity, arena size, limits) is the
// node's: csmd tells the client at attach.
struct ClientOptions {
  std::string socket_path;  // csmd's Unix socket
  WindowConfig window;
  // Bound on each request to csmd (a commit, a delete, an arena); a remote Get is bounded
  // by its own timeout instead.
  std::chrono::milliseconds request_timeout{30000};
  // The node whose memory this process builds in (Config::home_node, CSM_HOME_NODE): 0
  // for its own; another node of the same shared-memory fabric lends it memory.
  uint32_t home_node = 0;

  // LoadConfig()'s socket and window (CSM_CONFIG, CSM_SOCKET, CSM_HEAP_* ...).
  static Result<ClientOptions> FromEnvironment();
  static ClientOptions From(const Config& config);
};

// Client: a handle on this process's attachment to the node's csmd.
//
// The first Connect() reserves the global heap window at its fixed address, so call it
// before the program starts threads. A process has one attachment (one window): every
// later Connect() with the same socket and window returns another handle on it, so
// several libraries in one program can each hold a Client; another socket or window is
// FailedPrecondition. Thread-safety: every method may be called from any thread.
// Lifetime: the attachment lasts while any Client, Ref or Builder (or an Arrow buffer
// holding a Ref) needs it.
class Client {
 public:
  // Uses ClientOptions::FromEnvironment().
  static Result<std::unique_ptr<Client>> Connect();
  static Result<std::unique_ptr<Client>> Connect(const ClientOptions& options);
  // The socket and window of a node's Config (a program that also starts csmd).
  static Result<std::unique_ptr<Client>> Connect(const Config& config);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  Result<Builder> NewBuilder();

  // The object under `key`, pinned. With a timeout, waits for the key to be committed
  // (Timeout if it is not by then); without, NotFound. TypeMismatch if it is not a T.
  // The fast path (key committed, its memory already mapped here) makes no call to csmd.
  template <typename T>
  Result<Ref<T>> Get(std::string_view key,
                     std::chrono::milliseconds timeout = std::chrono::milliseconds(0));
  // The same, saying how an object held by another node comes here (options.fetch). A
  // lazy Get's object is read as any other; a page not arrived yet stops the reading
  // thread until it has (or, if it never will — its owner died, its bytes failed their
  // check twice — raises SIGBUS in it). docs/lazy.md.
  template <typename T>
  Result<Ref<T>> Get(std::string_view key, const GetOptions& options);

  // A hint for a lazily got object: [addr, +length) is needed next, so its pages come
  // before any other; returns once they can be read (at once if they are here).
  Status Prefetch(std::string_view key, const void* addr, size_t length);
  // The same for many ranges, of any objects got lazily here, at once: their blocks come
  // in as few requests as they fit (an Arrow reader asks for one column's buffers this
  // way: csm::Prefetch in csm/arrow.h). Ranges of objects that are here whole return at
  // once; Unavailable if a copy they lie in failed.
  Status Prefetch(const std::vector<ByteRange>& ranges);

  // Builds a T in place and commits it under `key` in one call: fn(T&) fills it (its
  // containers allocate inside the object). NewBuilder + New<T> + Populate + Commit.
  template <typename T, typename Fn>
  Status Put(std::string_view key, Fn&& fn);

  // Get of several keys with one deadline for all: every Ref in order, or the first
  // error (naming its key). Keys held by other nodes are fetched all at once.
  template <typename T>
  Result<std::vector<Ref<T>>> GetMany(const std::vector<std::string>& keys,
                                      std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

  // Removes the key. The memory is reused once no process pins the object.
  Status Delete(std::string_view key);

  // The descriptor of a committed object, without pinning it.
  Result<ObjectInfo> Lookup(std::string_view key) const;
  // Every committed object of this node (read from the shared directory).
  std::vector<ObjectInfo> List() const;
  // csmd's view, as JSON: one object (csm stat) and the node (csm info).
  Result<std::string> StatJson(std::string_view key);
  Result<std::string> InfoJson();
  // csm info as a struct.
  Result<NodeStatus> Info();
  // One page of csmd's object list in key order, keys after `after` (csm ls):
  // {"objects": [{key, type_name, type_id, size, owner_node, pins, producer_pid,
  // commit_time_ns}...], "more": bool}. At most `limit` (≤ 1000) objects.
  Result<std::string> ListJson(std::string_view after = {}, uint32_t limit = 1000);
  // The cluster's members as csmd sees them (csm nodes): {"node_id", "cluster",
  // "members": [{node_id, peer_address, alive, last_seen_ms_ago, leases: [...]}]}.
  Result<std::string> NodesJson();

  const Config& config() const;

 private:
  explicit Client(std::shared_ptr<internal::ClientImpl> impl);
  // Has csmd bring those of `keys` held by other nodes, in parallel (GetMany).
  void FetchMissing(const std::vector<std::string>& keys, std::chrono::milliseconds timeout);
  // type_name is called only to word an error.
  Result<internal::PinnedObject> GetPinned(std::string_view key, uint64_t type_id,
                                           std::string (*type_name)(),
                                           std::chrono::milliseconds timeout, Fetch fetch = Fetch::kNodeDefault);
  std::shared_ptr<internal::ClientImpl> impl_;
};

// ---- templates ----------------------------------------------------------------------

template <typename T, typename... Args>
Result<T*> Builder::New(Args&&... args) {
  static_assert(!std::is_polymorphic_v<T>,
                "types with virtual functions cannot live in the csm global heap");
  const uint64_t type_id = TypeId<T>();
  Scope scope(core_.get());
  void* p = nullptr;
  try {
    p = internal::Allocate(sizeof(T), alignof(T));
    new (p) T(std::forward<Args>(args)...);
  } catch (const std::bad_alloc&) {
    return AllocationFailure();
  }
  CSM_RETURN_IF_ERROR(SetRoot(p, type_id, TypeName<T>()));
  return static_cast<T*>(p);
}

template <typename Fn>
Status Builder::Populate(Fn&& fn) {
  Scope scope(core_.get());
  try {
    fn();
  } catch (const std::bad_alloc&) {
    return AllocationFailure();
  }
  return Status::OK();
}

template <typename T>
Result<Ref<T>> Client::Get(std::string_view key, std::chrono::milliseconds timeout) {
  CSM_ASSIGN_OR_RETURN(auto pin, GetPinned(key, TypeId<T>(), &TypeName<T>, timeout));
  return Ref<T>(std::move(pin));
}

template <typename T>
Result<Ref<T>> Client::Get(std::string_view key, const GetOptions& options) {
  CSM_ASSIGN_OR_RETURN(auto pin, GetPinned(key, TypeId<T>(), &TypeName<T>, options.timeout, options.fetch));
  return Ref<T>(std::move(pin));
}

template <typename T, typename Fn>
Status Client::Put(std::string_view key, Fn&& fn) {
  CSM_ASSIGN_OR_RETURN(Builder builder, NewBuilder());
  CSM_ASSIGN_OR_RETURN(T * root, builder.New<T>());
  CSM_RETURN_IF_ERROR(builder.Populate([&] { fn(*root); }));
  return builder.Commit(key);
}

template <typename T>
Result<std::vector<Ref<T>>> Client::GetMany(const std::vector<std::string>& keys,
                                            std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  FetchMissing(keys, timeout);
  std::vector<Ref<T>> refs;
  refs.reserve(keys.size());
  for (const std::string& key : keys) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (timeout.count() > 0 && left.count() <= 0) left = std::chrono::milliseconds(1);
    auto ref = Get<T>(key, timeout.count() > 0 ? left : std::chrono::milliseconds(0));
    if (!ref.ok()) return ref.status().WithContext("key '" + key + "'");
    refs.push_back(*std::move(ref));
  }
  return refs;
}

}  // namespace csm
