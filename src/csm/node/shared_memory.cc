// This node's memory on a shared-memory fabric and reading peers' in place; see
// shared_memory.h and docs/fabric.md.
#include "csm/node/shared_memory.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

#include "csm/base/hash.h"
#include "csm/base/hex.h"
#include "csm/base/log.h"
#include "csm/base/range.h"
#include "csm/object/object_layout.h"
#include "csm/os/memory.h"

namespace csm::node {
namespace {

std::string BootId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id;
}

// Copies [from_offset, +len) of `from` to [to_offset, +len) of `to`, in 1 MiB pieces.
Status CopyBetweenFiles(int from, uint64_t from_offset, int to, uint64_t to_offset, uint64_t len) {
  std::vector<char> buffer(std::min<uint64_t>(len, 1u << 20));
  for (uint64_t done = 0; done < len;) {
    const uint64_t n = std::min<uint64_t>(buffer.size(), len - done);
    if (::pread(from, buffer.data(), n, static_cast<off_t>(from_offset + done)) != static_cast<ssize_t>(n)) {
      return ErrnoError("reading shared memory (pread)", errno);
    }
    if (::pwrite(to, buffer.data(), n, static_cast<off_t>(to_offset + done)) != static_cast<ssize_t>(n)) {
      return ErrnoError("writing shared memory (pwrite)", errno);
    }
    done += n;
  }
  return Status::OK();
}

// Reads [offset, +len) of `fd` into `out`.
Status ReadFully(int fd, char* out, uint64_t len, uint64_t offset) {
  for (uint64_t done = 0; done < len;) {
    ssize_t n = ::pread(fd, out + done, len - done, static_cast<off_t>(offset + done));
    if (n <= 0) return n == 0 ? IOError("the peer's shared memory ends early") : ErrnoError("pread", errno);
    done += static_cast<uint64_t>(n);
  }
  return Status::OK();
}

// The arena of `arenas` holding [addr, +len), or null.
const SharedMemory::PeerArena* Holding(const std::vector<SharedMemory::PeerArena>& arenas, uint64_t addr,
                                       uint64_t len) {
  for (const auto& a : arenas) {
    if (a.view != nullptr && RangeWithin(addr, len, a.addr, a.size)) return &a;
  }
  return nullptr;
}

}  // namespace

const char* SharedMemory::Name(Coherence c) {
  switch (c) {
    case Coherence::kCoherent: return "coherent";
    case Coherence::kFlush: return "flush";
    case Coherence::kStaleModel: return "stale-model";
  }
  return "?";
}

Result<std::unique_ptr<SharedMemory>> SharedMemory::Open(const Options& o, uint64_t capacity) {
  std::unique_ptr<SharedMemory> m(new SharedMemory());
  const bool own_machine = o.domain.empty();
  m->memory_.domain = own_machine ? "machine:" + BootId() : o.domain;
  m->memory_.path = o.path;
  if (o.coherence == "coherent" || (o.coherence == "auto" && own_machine)) {
    m->coherence_ = Coherence::kCoherent;
  } else if (o.coherence == "flush" || o.coherence == "auto") {
    m->coherence_ = Coherence::kFlush;
  } else if (o.coherence == "stale-model") {
    m->coherence_ = Coherence::kStaleModel;
  } else {
    return InvalidArgument("--coherence is one of coherent, flush, stale-model or auto, not '" + o.coherence + "'");
  }
  m->memory_.coherence = Name(m->coherence_);
  const uint32_t line = o.cache_line != 0 ? o.cache_line : os::CacheLines::HardwareLine();
  if (m->coherence_ == Coherence::kFlush) {
    CSM_ASSIGN_OR_RETURN(os::CacheLines lines, os::CacheLines::Best(line));
    m->lines_ = std::make_unique<os::CacheLines>(lines);
  } else if (line == 0 || (line & (line - 1)) != 0) {
    return InvalidArgument("cache line size " + std::to_string(line) + " is not a power of two");
  }
  m->memory_.cache_line = line;
  if (o.fault == "skip-write-back") {
    m->fault_ = Fault::kSkipWriteBack;
  } else if (o.fault == "skip-invalidate") {
    m->fault_ = Fault::kSkipInvalidate;
  } else if (!o.fault.empty()) {
    return InvalidArgument("unknown fabric fault '" + o.fault + "' (skip-write-back, skip-invalidate)");
  }
  if (o.offset % kGranule != 0) {
    return InvalidArgument("--shared-memory-offset must be a multiple of 2 MiB (DAX devices map in 2 MiB units)");
  }
  m->offset_ = o.offset;
  m->size_ = (o.size != 0 ? o.size : capacity) / kGranule * kGranule;
  if (m->size_ == 0) return InvalidArgument("the node's shared memory must be at least 2 MiB");

  struct stat st{};
  const bool device = ::stat(o.path.c_str(), &st) == 0 && S_ISCHR(st.st_mode);
  if (device) {
    m->fd_.Reset(::open(o.path.c_str(), O_RDWR | O_CLOEXEC));
    if (!m->fd_.valid()) return ErrnoError("opening the shared-memory device " + o.path, errno);
    m->punch_holes_ = false;
  } else {
    // A fresh file for this incarnation: processes that still map the last one (its
    // readers on other nodes) keep its memory until they let go, and never see ours.
    os::UniqueFd old(::open(o.path.c_str(), O_RDWR | O_CLOEXEC));
    if (old.valid() && ::flock(old.get(), LOCK_EX | LOCK_NB) != 0) {
      return FailedPrecondition("another csmd uses " + o.path + " as its shared memory: give each node its own "
                                "--shared-memory path");
    }
    if (old.valid() && ::unlink(o.path.c_str()) != 0) return ErrnoError("replacing " + o.path, errno);
    m->fd_.Reset(::open(o.path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!m->fd_.valid()) return ErrnoError("creating the shared-memory file " + o.path, errno);
    if (::ftruncate(m->fd_.get(), static_cast<off_t>(m->offset_ + m->size_)) != 0) {
      return ErrnoError("sizing the shared-memory file " + o.path, errno);
    }
  }
  if (::flock(m->fd_.get(), LOCK_EX | LOCK_NB) != 0) {
    return FailedPrecondition("another csmd uses " + o.path + " as its shared memory");
  }
  if (m->coherence_ == Coherence::kFlush) {
    CSM_ASSIGN_OR_RETURN(m->view_, os::SharedView::Map(m->fd_.get(), m->size_, m->offset_));
  }
  m->free_[m->offset_] = m->size_;
  m->lend_limit_ = o.lend_limit != 0 ? std::min(o.lend_limit, m->size_) : m->size_ / 2;
  CSM_LOG_INFO("shared memory: %s of %s from offset %s, domain '%s', %s%s", FormatSize(m->size_).c_str(),
               o.path.c_str(), Hex(m->offset_).c_str(), m->memory_.domain.c_str(), m->memory_.coherence.c_str(),
               m->lines_ ? (" (" + m->lines_->Describe() + ")").c_str() : "");
  return m;
}

SharedMemory::~SharedMemory() {
  // A file made for this incarnation goes with it (readers still mapping it keep its
  // memory until they let go); a device stays.
  if (punch_holes_ && fd_.valid()) {
    struct stat by_path{}, ours{};
    if (::stat(memory_.path.c_str(), &by_path) == 0 && ::fstat(fd_.get(), &ours) == 0 &&
        by_path.st_ino == ours.st_ino) {
      ::unlink(memory_.path.c_str());
    }
  }
}

Result<uint64_t> SharedMemory::Allocate(uint64_t size) {
  size = (size + kGranule - 1) / kGranule * kGranule;
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    if (it->second < size) continue;
    const uint64_t offset = it->first, left = it->second - size;
    free_.erase(it);
    if (left != 0) free_[offset + size] = left;
    allocated_ += size;
    return offset;
  }
  return CapacityExceeded("the node's shared memory (" + FormatSize(size_) + " of " + memory_.path + ", " +
                          FormatSize(allocated_) + " in arenas) has no free range of " + FormatSize(size) +
                          ": delete objects or give the node more with --shared-memory-size");
}

void SharedMemory::Free(uint64_t offset, uint64_t size) {
  size = (size + kGranule - 1) / kGranule * kGranule;
  allocated_ -= size;
  if (punch_holes_) (void)os::PunchHole(fd_.get(), offset, size);
  auto [it, inserted] = free_.emplace(offset, size);
  (void)inserted;
  if (auto next = std::next(it); next != free_.end() && it->first + it->second == next->first) {
    it->second += next->second;
    free_.erase(next);
  }
  if (it != free_.begin()) {
    auto prev = std::prev(it);
    if (prev->first + prev->second == it->first) {
      prev->second += it->second;
      free_.erase(it);
    }
  }
}

Status SharedMemory::WriteBack(const Place& place, uint64_t addr, uint64_t len) {
  if (fault_ == Fault::kSkipWriteBack || coherence_ == Coherence::kCoherent || len == 0) return Status::OK();
  const uint64_t rel = addr - place.arena_addr;
  if (coherence_ == Coherence::kFlush) {
    if (place.mapped != nullptr) {  // lent memory: csmd's mapping of the arena in it
      lines_->WriteBack(place.mapped + rel, len);
    } else {
      const uint64_t at = place.fabric_offset - offset_ + rel;
      if (!RangeWithin(at, len, 0, view_->size())) return Internal("write-back outside the node's shared memory");
      lines_->WriteBack(view_->data() + at, len);
    }
  } else {  // the stale-cache model: the private copy's lines reach the device now
    const uint64_t line = memory_.cache_line;
    const uint64_t first = rel / line * line, last = (rel + len + line - 1) / line * line;
    CSM_RETURN_IF_ERROR(CopyBetweenFiles(place.fd, place.fd_offset + first,
                                         place.device_fd >= 0 ? place.device_fd : fd_.get(),
                                         place.fabric_offset + first, last - first));
  }
  written_back_.fetch_add(len);
  return Status::OK();
}

Result<os::UniqueFd> SharedMemory::OpenPeer(const std::string& path) {
  std::lock_guard<std::mutex> lock(peers_mu_);
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) {
    return ErrnoError("the peer's shared memory " + path + " (is this node on its fabric?)", errno);
  }
  Peer& p = peers_[path];
  if (!p.fd.valid() || p.inode != st.st_ino) {
    p.fd.Reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!p.fd.valid()) return ErrnoError("opening the peer's shared memory " + path, errno);
    p.inode = st.st_ino;
    p.snapshot.Reset(-1);  // a restarted peer's memory: nothing of it is cached yet
    p.loaded.clear();
  }
  os::UniqueFd dup(::fcntl(p.fd.get(), F_DUPFD_CLOEXEC, 0));
  if (!dup.valid()) return ErrnoError("dup of a peer's shared-memory descriptor", errno);
  return dup;
}

Result<os::UniqueFd> SharedMemory::OpenLent(const std::string& path) {
  os::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd.valid()) return ErrnoError("opening the memory a peer lent (" + path + ")", errno);
  return fd;
}

Result<SharedMemory::PeerRange> SharedMemory::MapPeer(const std::string& path, int peer_fd, uint64_t offset,
                                                      uint64_t size) {
  PeerRange out;
  if (direct()) {
    out.fd.Reset(::fcntl(peer_fd, F_DUPFD_CLOEXEC, 0));
    if (!out.fd.valid()) return ErrnoError("dup of a peer's shared-memory descriptor", errno);
    // On a non-coherent fabric every line is invalidated and hashed at first use: the
    // page tables are built at once rather than a fault per page.
    CSM_ASSIGN_OR_RETURN(out.view, os::SharedView::Map(peer_fd, size, offset, /*writable=*/false,
                                                       /*populate=*/coherence_ == Coherence::kFlush));
    return out;
  }
  std::lock_guard<std::mutex> lock(peers_mu_);
  Peer& p = peers_[path];
  if (!p.snapshot.valid()) {
    p.snapshot.Reset(::memfd_create("csm-snapshot", MFD_CLOEXEC));
    if (!p.snapshot.valid()) return ErrnoError("memfd_create of a peer's snapshot", errno);
    p.snapshot_size = 0;
  }
  if (offset + size > p.snapshot_size) {
    if (::ftruncate(p.snapshot.get(), static_cast<off_t>(offset + size)) != 0) {
      return ErrnoError("growing the snapshot of a peer's memory", errno);
    }
    p.snapshot_size = offset + size;
  }
  CSM_ASSIGN_OR_RETURN(out.view, os::SharedView::Map(p.snapshot.get(), size, offset));
  // What this node's caches hold from the first time it maps a range: loaded now, and
  // from then on refreshed only by the invalidate step.
  for (uint64_t g = offset / kGranule * kGranule; g < offset + size; g += kGranule) {
    if (!p.loaded.insert(g).second) continue;
    const uint64_t from = std::max(g, offset), to = std::min(g + kGranule, offset + size);
    CSM_RETURN_IF_ERROR(ReadFully(peer_fd, out.view->data() + (from - offset), to - from, from));
  }
  out.fd.Reset(::fcntl(p.snapshot.get(), F_DUPFD_CLOEXEC, 0));
  if (!out.fd.valid()) return ErrnoError("dup of a snapshot's descriptor", errno);
  return out;
}

Status SharedMemory::Invalidate(const cluster::ObjectRecord& r, const std::vector<PeerArena>& arenas) {
  if (fault_ == Fault::kSkipInvalidate || coherence_ == Coherence::kCoherent) return Status::OK();
  for (const auto& e : r.extents) {
    const PeerArena* a = Holding(arenas, e.addr, e.length);
    if (a == nullptr) return Corruption("an extent of '" + r.key + "' lies in no arena mapped for it");
    const uint64_t rel = e.addr - a->addr;
    if (coherence_ == Coherence::kFlush) {
      lines_->Invalidate(a->view->data() + rel, e.length);
    } else {  // the stale-cache model: the snapshot's lines are fetched again
      const uint64_t line = memory_.cache_line;
      const uint64_t first = rel / line * line, last = std::min(a->size, (rel + e.length + line - 1) / line * line);
      CSM_RETURN_IF_ERROR(ReadFully(a->device_fd, a->view->data() + first, last - first, a->device_offset + first));
    }
  }
  return Status::OK();
}

Status SharedMemory::Check(const cluster::ObjectRecord& r, const std::vector<PeerArena>& arenas) const {
  const PeerArena* first = Holding(arenas, r.header, sizeof(object::ObjectHeader));
  if (first == nullptr) return Corruption("the header of '" + r.key + "' lies in no arena mapped for it");
  object::ObjectHeader h;
  std::memcpy(&h, first->view->data() + (r.header - first->addr), sizeof(h));
  if (h.magic != object::kObjectMagic || h.type_id != r.type_id || h.data_size != r.size || h.root != r.root ||
      h.checksum != r.checksum) {
    return Corruption("its header differs from the record");
  }
  // On a coherent fabric the header is enough: the bytes are the owner's own. Otherwise
  // every byte may be a stale line: the checksum tells.
  if (coherence_ == Coherence::kCoherent || r.checksum_deferred) return Status::OK();
  Checksum sum;
  for (size_t i = 0; i < r.extents.size(); ++i) {
    const auto& e = r.extents[i];
    const PeerArena* a = Holding(arenas, e.addr, e.length);
    const uint64_t skip = i == 0 ? sizeof(object::ObjectHeader) : 0;
    if (a == nullptr) return Corruption("an extent lies in no arena mapped for it");
    if (e.length > skip) sum.Update(a->view->data() + (e.addr - a->addr) + skip, e.length - skip);
  }
  if (sum.Digest() != r.checksum) return Corruption("its bytes do not match its checksum");
  return Status::OK();
}

Status SharedMemory::ReadInPlace(const cluster::ObjectRecord& r, const std::vector<PeerArena>& arenas) {
  reads_.fetch_add(1);
  // csmd touches the memory only where it still is: a file cut short under a mapping
  // would fault (SIGBUS) on access. Nodes never shrink their files (a restarted node
  // makes a new one), so this only catches someone else's hand.
  for (const PeerArena& a : arenas) {
    struct stat st{};
    if (::fstat(a.device_fd, &st) != 0) return ErrnoError("fstat of a peer's shared memory", errno);
    if (S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) < a.device_offset + a.size) {
      return Unavailable("the shared memory holding '" + r.key + "' (" + r.ArenaPath(0) +
                         ") went away: its file is shorter than its arenas");
    }
  }
  Status last;
  for (int attempt = 0; attempt < kReadAttempts; ++attempt) {
    if (attempt > 0) read_retries_.fetch_add(1);
    CSM_RETURN_IF_ERROR(Invalidate(r, arenas));
    last = Check(r, arenas);
    if (last.ok()) return last;
    CSM_LOG_DEBUG("reading '%s' in node %u's memory, attempt %d: %s", r.key.c_str(), r.owner_node, attempt + 1,
                  last.message().c_str());
  }
  read_failures_.fetch_add(1);
  return Corruption("'" + r.key + "' of node " + std::to_string(r.owner_node) + " in shared memory (" + r.ArenaPath(0) +
                    ") still differs from its record after " + std::to_string(kReadAttempts) +
                    " invalidations (" + last.message() + "): the fabric's caches are not coherent and the "
                    "writer's lines were not written back (do both nodes have the same --coherence?), or the "
                    "memory was changed after commit");
}

}  // namespace csm::node
