// Builder and BuilderCore: one object under construction, and the bump allocation
// behind csm::allocator; see include/csm/client.h and client_impl.h.
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "csm/base/hash.h"
#include "csm/base/log.h"
#include "csm/object/checksum.h"
#include "csm/os/memory.h"
#include "csm/base/tsan.h"
#include "csm/client/client_impl.h"

namespace csm {
namespace internal {

constinit thread_local BumpRegion* t_region = nullptr;
constinit thread_local BuilderCore* t_builder = nullptr;

namespace {

class NoBuilderError : public std::bad_alloc {
 public:
  const char* what() const noexcept override {
    return "csm::allocator used on a thread with no current csm::Builder "
           "(use Builder::Populate or Builder::MakeCurrent)";
  }
};

constexpr uint64_t kMaxChunk = 16ULL << 20;

}  // namespace

void* AllocateSlow(size_t bytes, size_t align) {
  BuilderCore* b = t_builder;
  if (b == nullptr) throw NoBuilderError();
  return b->Refill(bytes, align);
}

// ---- BuilderCore --------------------------------------------------------------------

Status BuilderCore::Start() {
  CSM_ASSIGN_OR_RETURN(auto chunk, client_->heap().Carve(sizeof(object::ObjectHeader), next_chunk_));
  chunks_.push_back(chunk);
  region = BumpRegion{chunk.addr + sizeof(object::ObjectHeader), chunk.addr + chunk.size};
  next_chunk_ = std::min(kMaxChunk, next_chunk_ * 2);
  return Status::OK();
}

void BuilderCore::CloseChunk() {
  const alloc::Chunk& c = chunks_.back();
  if (region.cur > c.addr) extents_.push_back({c.addr, region.cur - c.addr});
}

void* BuilderCore::Refill(size_t bytes, size_t align) {
  if (!status_.ok()) throw std::bad_alloc();
  if (finalized_ || committed_) {
    status_ = FailedPrecondition("allocation in a Builder that is already committed");
    throw std::bad_alloc();
  }
  const bool overwritten = overwrite_bytes != 0 && overwrite_bytes == bytes;
  overwrite_bytes = 0;
  auto chunk = client_->heap().Carve(bytes + align, std::max<uint64_t>(next_chunk_, bytes + align), overwritten);
  if (!chunk.ok()) {
    status_ = chunk.status().WithContext("building an object of " + FormatSize(bytes_used()) +
                                         ", allocating " + FormatSize(bytes) + " more");
    throw std::bad_alloc();
  }
  CloseChunk();
  chunks_.push_back(*chunk);
  next_chunk_ = std::min(kMaxChunk, next_chunk_ * 2);
  region = BumpRegion{chunk->addr, chunk->addr + chunk->size};
  uintptr_t p = (region.cur + align - 1) & ~(uintptr_t{align} - 1);
  region.cur = p + bytes;
  return reinterpret_cast<void*>(p);
}

bool BuilderCore::Contains(uint64_t addr, uint64_t len) const {
  auto within = [&](uint64_t base, uint64_t size) {
    return addr >= base && len <= size && addr - base <= size - len;
  };
  for (const auto& e : extents_) {
    if (within(e.addr, e.length)) return true;
  }
  return !chunks_.empty() && !finalized_ && within(chunks_.back().addr, region.cur - chunks_.back().addr);
}

uint64_t BuilderCore::bytes_used() const {
  uint64_t n = 0;
  for (const auto& e : extents_) n += e.length;
  if (!chunks_.empty() && !finalized_) n += region.cur - chunks_.back().addr;
  return n;
}

Status BuilderCore::SetRoot(void* root, uint64_t type_id, std::string type_name) {
  if (root_ != 0) return FailedPrecondition("this Builder already has a root (New once per object)");
  root_ = reinterpret_cast<uint64_t>(root);
  type_id_ = type_id;
  type_name_ = std::move(type_name);
  return Status::OK();
}

Status BuilderCore::Finalize() {
  // The extent table goes into the object itself; room for one more extent in case
  // allocating it opens a new chunk.
  size_t table_bytes = (extents_.size() + 2) * sizeof(object::ObjectExtent);
  BumpRegion* saved_region = t_region;
  BuilderCore* saved_builder = t_builder;
  t_region = &region;
  t_builder = this;
  void* table = nullptr;
  try {
    table = Allocate(table_bytes, alignof(object::ObjectExtent));
  } catch (const std::bad_alloc&) {
  }
  t_region = saved_region;
  t_builder = saved_builder;
  if (table == nullptr) return status_.ok() ? CapacityExceeded("no room for the extent table") : status_;
  CloseChunk();
  if (extents_.size() > object::kMaxExtents) {
    return CapacityExceeded("object has more than " + std::to_string(object::kMaxExtents) + " extents");
  }
  std::memcpy(table, extents_.data(), extents_.size() * sizeof(object::ObjectExtent));
  auto* h = reinterpret_cast<object::ObjectHeader*>(chunks_.front().addr);
  std::memset(h, 0, sizeof(*h));
  h->magic = object::kObjectMagic;
  h->layout_version = object::kObjectLayoutVersion;
  h->type_id = type_id_;
  h->root = root_;
  h->extents = reinterpret_cast<uint64_t>(table);
  h->extent_count = static_cast<uint32_t>(extents_.size());
  for (const auto& e : extents_) h->data_size += e.length;
  if (defer_checksum) {
    h->flags = object::kFlagChecksumDeferred;
    object::CopyAll(std::move(copies));
  } else {
    h->checksum = object::ChecksumOf(extents_, std::move(copies));  // makes the copies too
  }
  copies.clear();
  region = BumpRegion{0, 0};
  finalized_ = true;
  return Status::OK();
}

Status BuilderCore::Commit(std::string_view key) {
  CSM_RETURN_IF_ERROR(status_);
  if (committed_) return FailedPrecondition("this Builder is already committed");
  if (root_ == 0) return FailedPrecondition("call New<T>() before Commit");
  if (scopes.load() != 0) {
    return FailedPrecondition("Commit called while the Builder is current (inside Populate "
                              "or a MakeCurrent scope)");
  }
  if (!finalized_) CSM_RETURN_IF_ERROR(Finalize());
  uint64_t header = chunks_.front().addr;
  if (arrow_validated) reinterpret_cast<object::ObjectHeader*>(header)->flags |= object::kFlagArrowValidated;
  CSM_TSAN_RELEASE(header);  // the object's bytes happen before any reader's Get
  CSM_ASSIGN_OR_RETURN(committed_id_, client_->Commit(header, type_id_, key, type_name_, copies_wanted));
  committed_ = true;
  ReleaseChunks();
  return Status::OK();
}

// Every chunk goes back to the heap with how much of it the object used (its extent
// starting there; the current chunk up to the bump pointer if never finalized). The
// heap says which pages no chunk is written on any more, and those become read-only in
// this process: other processes map arenas read-only already, so a write into a
// committed object now faults at the writing instruction instead of changing what
// readers see. Objects smaller than a page share pages (ProcessHeap): such an object's
// last page is sealed once every object on it is committed or abandoned. Adjacent sealed pages merge into one mapping,
// so an arena of many objects does not multiply the process's mappings.
void BuilderCore::ReleaseChunks() {
  const bool small = bytes_used() < uint64_t{os::PageSize()};
  for (size_t i = 0; i < chunks_.size(); ++i) {
    const alloc::Chunk& c = chunks_[i];
    uint64_t used_end = c.addr;
    for (const auto& e : extents_) {
      if (e.addr == c.addr) used_end = e.addr + e.length;
    }
    if (i + 1 == chunks_.size() && !finalized_ && region.cur > c.addr) used_end = region.cur;
    for (const alloc::PageRange& r : client_->heap().Done(c, used_end, small)) Seal(r.addr, r.size);
  }
  chunks_.clear();
}

void BuilderCore::Seal(uint64_t addr, uint64_t size) {
  if (::mprotect(reinterpret_cast<void*>(addr), size, PROT_READ) == 0) return;
  // The object is committed all the same; only this process could still write it.
  static std::atomic<bool> warned{false};
  if (!warned.exchange(true)) {
    CSM_LOG_WARN("could not make a committed object read-only in its producer (%s): "
                 "raise vm.max_map_count if the process has very many mappings",
                 std::strerror(errno));
  }
}

BuilderCore::~BuilderCore() {
  ReleaseChunks();
  client_->RemoveBuilder(this);
}

void BuilderCore::Orphan() {
  chunks_.clear();
  extents_.clear();
  region = BumpRegion{0, 0};
  if (!committed_) {
    status_ = FailedPrecondition("this Builder was started before fork() by the parent process, "
                                 "whose memory it builds in: start a new Builder in the child");
  }
}

}  // namespace internal

// ---- public classes -----------------------------------------------------------------

Builder::Builder(std::unique_ptr<internal::BuilderCore> core) : core_(std::move(core)) {}
Builder::Builder(Builder&&) noexcept = default;
Builder& Builder::operator=(Builder&&) noexcept = default;
Builder::~Builder() = default;

Builder::Scope::Scope(internal::BuilderCore* core) : core_(core), previous_(internal::t_builder) {
  ++core_->scopes;
  internal::t_builder = core_;
  internal::t_region = &core_->region;
}

Builder::Scope::~Scope() {
  --core_->scopes;
  internal::t_builder = previous_;
  internal::t_region = previous_ ? &previous_->region : nullptr;
}

Status Builder::AllocationFailure() const {
  if (!core_->status().ok()) return core_->status();
  return CapacityExceeded("allocation failed while building the object");
}

Status Builder::SetRoot(void* root, uint64_t type_id, std::string type_name) {
  return core_->SetRoot(root, type_id, std::move(type_name));
}

Status Builder::Commit(std::string_view key) {
  CSM_RETURN_IF_ERROR(ValidateKey(key));
  return core_->Commit(key);
}

namespace internal {
Status CommitTablePart(Builder& builder, std::string_view table_key, uint64_t part) {
  CSM_RETURN_IF_ERROR(ValidateKey(table_key));
  return builder.core_->Commit(std::string(table_key) + kPartSeparator + std::to_string(part));
}
void MarkArrowValidated(Builder& builder) { builder.core_->arrow_validated = true; }
}  // namespace internal
void Builder::DeferChecksum() { core_->defer_checksum = true; }
void Builder::SetCopies(uint32_t copies) { core_->copies_wanted = copies; }
void Builder::ExpectOverwrite(size_t bytes) { core_->overwrite_bytes = bytes; }
Status Builder::CopyIn(void* dst, const void* src, size_t n) {
  if (n == 0) return Status::OK();
  if (!core_->Contains(reinterpret_cast<uint64_t>(dst), n)) {
    return InvalidArgument("CopyIn: the destination is not memory this Builder handed out "
                           "(allocate it inside Populate first)");
  }
  core_->copies.push_back({reinterpret_cast<uint64_t>(dst), src, n});
  return Status::OK();
}
uint64_t Builder::bytes_used() const { return core_->bytes_used(); }
bool Builder::Contains(const void* p, size_t n) const {
  return core_->Contains(reinterpret_cast<uint64_t>(p), n);
}

}  // namespace csm
