#include "csm/node/spill_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <cstring>
#include <filesystem>
#include <thread>

#include "csm/base/hash.h"
#include "csm/os/memory.h"
#include "csm/os/shared_view.h"

namespace csm::node {
namespace {

constexpr char kMagic[8] = {'c', 's', 'm', 's', 'p', 'i', 'l', 'l'};
constexpr uint32_t kVersion = 1;
constexpr size_t kChunk = 1 << 20;
constexpr uint32_t kMaxPieces = 1 << 20;
constexpr uint64_t kParallelBlocks = 64;  // objects of 64 MiB and more: two threads

// The file: this header, then `pieces` u64 lengths, then the pieces' bytes in order.
struct FileHeader {
  char magic[8];
  uint32_t version;
  uint32_t pieces;
  uint64_t object_id;
  uint64_t data_bytes;
  uint64_t data_checksum;    // csm::Checksum of the bytes
  uint64_t header_checksum;  // XXH3-64 of this header (this field 0) and the lengths
};
static_assert(sizeof(FileHeader) == 48);

uint64_t HeaderChecksum(FileHeader h, const std::vector<uint64_t>& lengths) {
  h.header_checksum = 0;
  Xxh3Stream s;
  s.Update(&h, sizeof(h));
  s.Update(lengths.data(), lengths.size() * sizeof(uint64_t));
  return s.Digest();
}

Status ReadFully(int fd, void* out, size_t len, uint64_t at, const std::string& path) {
  auto* p = static_cast<char*>(out);
  while (len > 0) {
    ssize_t n = ::pread(fd, p, len, static_cast<off_t>(at));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("reading spill file " + path, errno);
    if (n == 0) return Corruption("spill file " + path + " is shorter than it says");
    p += n;
    len -= static_cast<size_t>(n);
    at += static_cast<uint64_t>(n);
  }
  return Status::OK();
}

Status WriteFully(int fd, const void* in, size_t len, uint64_t at, const std::string& what) {
  const auto* p = static_cast<const char*>(in);
  while (len > 0) {
    ssize_t n = ::pwrite(fd, p, len, static_cast<off_t>(at));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ErrnoError("writing " + what, n < 0 ? errno : ENOSPC);
    p += n;
    len -= static_cast<size_t>(n);
    at += static_cast<uint64_t>(n);
  }
  return Status::OK();
}

// A piece mapped in csmd (from the page it starts in): the bytes are read from and
// written to the memory itself, one copy between it and the file's page cache.
struct MappedPiece {
  std::shared_ptr<os::SharedView> view;
  char* data = nullptr;
};
Result<MappedPiece> MapPiece(const SpillStore::Piece& p, bool writable) {
  const uint64_t page = os::PageSize();
  const uint64_t from = p.offset / page * page;
  const uint64_t to = (p.offset + p.len + page - 1) / page * page;
  CSM_ASSIGN_OR_RETURN(auto view, os::SharedView::Map(p.fd->get(), to - from, from, writable, !writable));
  char* data = view->data() + (p.offset - from);
  return MappedPiece{std::move(view), data};
}

// The pieces' bytes as one stream cut into 1 MiB blocks (the blocks csm::Checksum
// hashes apart): `part(mem, n, at)` runs over every part of blocks [first, last) in
// order (`at`: where it lies in the stream), then the block's XXH3-64 goes into
// digests[block], taken from `mem` right after, in cache.
template <typename Part>
Status OverBlocks(const std::vector<SpillStore::Piece>& pieces, const std::vector<MappedPiece>& mapped,
                  uint64_t total, uint64_t first, uint64_t last, std::vector<uint64_t>& digests, Part&& part) {
  size_t piece = 0;
  uint64_t piece_start = 0;  // where pieces[piece] starts in the stream
  Xxh3Stream block;
  for (uint64_t b = first; b < last; ++b) {
    uint64_t at = b * kChunk;
    const uint64_t end = std::min(total, at + kChunk);
    block.Reset();
    while (at < end) {
      while (at >= piece_start + pieces[piece].len) piece_start += pieces[piece++].len;
      const uint64_t in_piece = at - piece_start;
      const uint64_t n = std::min(end - at, pieces[piece].len - in_piece);
      char* mem = mapped[piece].data + in_piece;
      CSM_RETURN_IF_ERROR(part(mem, n, at));
      block.Update(mem, n);
      at += n;
    }
    digests[b] = block.Digest();
  }
  return Status::OK();
}

// Runs `blocks(first, last)` over [0, count): on this thread, or for `count` of 64 and
// more, half of them on a second thread.
template <typename Blocks>
Status InHalves(uint64_t count, Blocks&& blocks) {
  if (count < kParallelBlocks) return blocks(0, count);
  const uint64_t half = count / 2;
  Status second;
  std::thread helper([&] { second = blocks(half, count); });
  Status first = blocks(0, half);
  helper.join();
  CSM_RETURN_IF_ERROR(first);
  return second;
}

}  // namespace

Result<std::unique_ptr<SpillStore>> SpillStore::Open(const std::string& dir, bool huge_pages) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return IOError("cannot make the spill directory " + dir + ": " + ec.message());
  // Spill files hold only what this csmd's memory held: an earlier csmd's are stale.
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".spill") std::filesystem::remove(entry.path(), ec);
  }
  if (::access(dir.c_str(), W_OK) != 0) {
    return ErrnoError("spill directory " + dir + " is not writable", errno);
  }
  return std::unique_ptr<SpillStore>(new SpillStore(dir, huge_pages));
}

SpillStore::~SpillStore() {
  writer_.join();
  reader_.join();
  // The objects end with this csmd (no --state-dir): so do their files.
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    if (entry.path().extension() == ".spill") std::filesystem::remove(entry.path(), ec);
  }
}

std::string SpillStore::Name(uint64_t object_id, uint64_t generation) const {
  return dir_ + "/" + std::to_string(object_id) + "-" + std::to_string(generation) + ".spill";
}

void SpillStore::Write(uint64_t object_id, uint64_t generation, std::vector<Piece> pieces, Done done) {
  boost::asio::post(writer_, [this, object_id, generation, pieces = std::move(pieces), done = std::move(done)] {
    done(WriteFile(object_id, generation, pieces));
  });
}

void SpillStore::Read(uint64_t object_id, uint64_t generation, std::vector<Piece> pieces, Done done) {
  boost::asio::post(reader_, [this, object_id, generation, pieces = std::move(pieces), done = std::move(done)] {
    done(ReadFile(object_id, generation, pieces));
  });
}

void SpillStore::Remove(uint64_t object_id, uint64_t generation) {
  // On the writer thread: unlinking a large file drops its cached pages (tens of ms per
  // GiB), which a reader waiting for a restore should not wait for.
  boost::asio::post(writer_, [path = Name(object_id, generation)] { ::unlink(path.c_str()); });
}

Status SpillStore::WriteFile(uint64_t object_id, uint64_t generation, const std::vector<Piece>& pieces) {
  const std::string path = Name(object_id, generation);
  os::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd.valid()) return ErrnoError("creating spill file " + path, errno);
  FileHeader h{};
  std::memcpy(h.magic, kMagic, sizeof(kMagic));
  h.version = kVersion;
  h.pieces = static_cast<uint32_t>(pieces.size());
  h.object_id = object_id;
  std::vector<uint64_t> lengths;
  for (const Piece& p : pieces) {
    lengths.push_back(p.len);
    h.data_bytes += p.len;
  }
  const uint64_t data_at = sizeof(h) + lengths.size() * sizeof(uint64_t);
  std::vector<MappedPiece> mapped;
  Status s;
  for (const Piece& p : pieces) {
    auto m = MapPiece(p, /*writable=*/false);
    if (!m.ok()) {
      s = m.status();
      break;
    }
    mapped.push_back(std::move(*m));
  }
  // Written and hashed a block at a time, the second half on a second thread (which
  // takes its hashing; the file system takes writes to one file one at a time).
  std::vector<uint64_t> digests((h.data_bytes + kChunk - 1) / kChunk);
  if (s.ok()) {
    s = InHalves(digests.size(), [&](uint64_t first, uint64_t last) {
      return OverBlocks(pieces, mapped, h.data_bytes, first, last, digests, [&](char* mem, uint64_t n, uint64_t at) {
        return WriteFully(fd.get(), mem, n, data_at + at, "spill file " + path);
      });
    });
  }
  if (s.ok()) {
    h.data_checksum = Checksum::OfBlocks(digests.data(), digests.size());
    h.header_checksum = HeaderChecksum(h, lengths);
    s = WriteFully(fd.get(), &h, sizeof(h), 0, "spill file " + path);
  }
  if (s.ok()) s = WriteFully(fd.get(), lengths.data(), lengths.size() * sizeof(uint64_t), sizeof(h), "spill file " + path);
  if (!s.ok()) {
    ::unlink(path.c_str());
    return s.WithContext("spilling object " + std::to_string(object_id) + " (is the spill directory's disk full?)");
  }
  bytes_written_.fetch_add(h.data_bytes, std::memory_order_relaxed);
  return Status::OK();
}

Status SpillStore::ReadFile(uint64_t object_id, uint64_t generation, const std::vector<Piece>& pieces) {
  const std::string path = Name(object_id, generation);
  auto damaged = [&](const std::string& why) {
    return Corruption("spill file " + path + " is damaged (" + why +
                      "): the object's bytes are lost; delete the object and put it again");
  };
  os::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return damaged("it is missing");
    return ErrnoError("opening spill file " + path, errno);
  }
  struct stat st{};
  if (::fstat(fd.get(), &st) != 0) return ErrnoError("stat of spill file " + path, errno);
  FileHeader h{};
  if (static_cast<uint64_t>(st.st_size) < sizeof(h)) return damaged("shorter than its header");
  CSM_RETURN_IF_ERROR(ReadFully(fd.get(), &h, sizeof(h), 0, path));
  if (std::memcmp(h.magic, kMagic, sizeof(kMagic)) != 0 || h.version != kVersion) return damaged("not a spill file");
  if (h.pieces != pieces.size() || h.pieces > kMaxPieces) return damaged("another object's pieces");
  std::vector<uint64_t> lengths(h.pieces);
  const uint64_t data_at = sizeof(h) + lengths.size() * sizeof(uint64_t);
  if (static_cast<uint64_t>(st.st_size) < data_at) return damaged("shorter than its header");
  CSM_RETURN_IF_ERROR(ReadFully(fd.get(), lengths.data(), lengths.size() * sizeof(uint64_t), sizeof(h), path));
  if (HeaderChecksum(h, lengths) != h.header_checksum) return damaged("its header's checksum does not match");
  if (h.object_id != object_id) return damaged("it holds object " + std::to_string(h.object_id));
  uint64_t total = 0;
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (lengths[i] != pieces[i].len) return damaged("another object's pieces");
    total += lengths[i];
  }
  if (total != h.data_bytes || static_cast<uint64_t>(st.st_size) != data_at + total) {
    return damaged("its length is " + std::to_string(st.st_size) + " bytes, not " + std::to_string(data_at + total));
  }
  // Written into place as read and checked at the end: until csmd says so, no reader
  // can pin the object, so nobody reads these bytes before the check.
  std::vector<MappedPiece> mapped;
  for (const Piece& p : pieces) {
    CSM_ASSIGN_OR_RETURN(MappedPiece m, MapPiece(p, /*writable=*/true));
    // The pages come back as 2 MiB pages where the node's arenas use them (a fraction of
    // the cost, docs/operations.md "Page size").
    if (huge_pages_) os::AdviseHugePages(reinterpret_cast<uintptr_t>(m.view->data()), m.view->size());
    mapped.push_back(std::move(m));
  }
  // Read and hashed a block at a time, the second half on a second thread.
  std::vector<uint64_t> digests((total + kChunk - 1) / kChunk);
  CSM_RETURN_IF_ERROR(InHalves(digests.size(), [&](uint64_t first, uint64_t last) {
    return OverBlocks(pieces, mapped, total, first, last, digests, [&](char* mem, uint64_t n, uint64_t at) {
      os::PrefaultWritable(reinterpret_cast<uintptr_t>(mem), n);  // one call, not a fault per page
      return ReadFully(fd.get(), mem, n, data_at + at, path);
    });
  }));
  if (Checksum::OfBlocks(digests.data(), digests.size()) != h.data_checksum) {
    return damaged("its bytes' checksum does not match");
  }
  bytes_read_.fetch_add(total, std::memory_order_relaxed);
  return Status::OK();
}

}  // namespace csm::node
