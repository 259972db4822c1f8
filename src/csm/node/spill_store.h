// SpillStore: objects' bytes written out to files in the spill directory, and read back
// into the same memory (docs/operations.md, "Spilling").
//
// An object's bytes lie in arenas (memfds) at fixed offsets; spilling writes them to
// one file and csmd then punches the pages out; restoring writes them back into the
// same memfds at the same offsets, so every process sees them at the same addresses as
// before (nothing to fix up). The file carries the object's id, its pieces' lengths and
// a checksum of the bytes (csm::Checksum); a file that is missing, short, of another
// object, or whose bytes do not match is an error for that object only.
//
// Writes and reads run on two threads of the store's own (a restore does not wait for
// spills queued before it); `done` is called on that thread. A large object is read
// back on two threads (its checksum is over 1 MiB blocks, hashed apart).
// Thread-safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <boost/asio/thread_pool.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "csm/os/fd.h"
#include "csm/status.h"

namespace csm::node {

class SpillStore {
 public:
  // One contiguous piece of an object: `len` bytes at `offset` of a memfd.
  struct Piece {
    std::shared_ptr<os::UniqueFd> fd;
    uint64_t offset = 0;
    uint64_t len = 0;
  };
  using Done = std::function<void(Status)>;

  // Files go in `dir`, made if missing; files an earlier csmd left there are removed.
  // `huge_pages`: memory restored is asked for in 2 MiB pages (as the node's arenas).
  static Result<std::unique_ptr<SpillStore>> Open(const std::string& dir, bool huge_pages = false);
  ~SpillStore();  // waits for the jobs under way, then removes every spill file
  SpillStore(const SpillStore&) = delete;
  SpillStore& operator=(const SpillStore&) = delete;

  // Writes `pieces` to a new file for object `object_id`; `done` gets the file's name
  // (via Name) once it is written whole, or the error (and no file is left).
  void Write(uint64_t object_id, uint64_t generation, std::vector<Piece> pieces, Done done);
  // Reads the file back into `pieces` (the same lengths as written), checking it as it
  // goes; on an error the pieces' bytes are undefined (csmd punches them out again).
  void Read(uint64_t object_id, uint64_t generation, std::vector<Piece> pieces, Done done);
  // Removes the file (soon: on the writer thread, after the writes queued before).
  void Remove(uint64_t object_id, uint64_t generation);

  std::string Name(uint64_t object_id, uint64_t generation) const;
  const std::string& dir() const { return dir_; }
  uint64_t bytes_written() const { return bytes_written_.load(std::memory_order_relaxed); }
  uint64_t bytes_read() const { return bytes_read_.load(std::memory_order_relaxed); }

  // The work itself, on the calling thread (the jobs above call these; tests too).
  Status WriteFile(uint64_t object_id, uint64_t generation, const std::vector<Piece>& pieces);
  Status ReadFile(uint64_t object_id, uint64_t generation, const std::vector<Piece>& pieces);

 private:
  SpillStore(std::string dir, bool huge_pages) : dir_(std::move(dir)), huge_pages_(huge_pages) {}

  const std::string dir_;
  const bool huge_pages_;
  std::atomic<uint64_t> bytes_written_{0}, bytes_read_{0};
  boost::asio::thread_pool writer_{1};
  boost::asio::thread_pool reader_{1};
};

}  // namespace csm::node
