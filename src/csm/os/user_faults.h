// UserFaults: a userfaultfd — the page faults one process takes on chosen ranges of its
// shared mappings, handed to whoever reads the fd, and the calls that resolve them.
//
// It is what lets a lazy copy be read before its bytes have all arrived (docs/lazy.md):
// every process on a node that reads such an object creates one for its own address
// space and hands it to csmd over its socket (fds travel with SCM_RIGHTS), and csmd
// registers the object's pages in that process's address space and serves its faults.
// Every call below acts on the address space the fd was created in, whoever makes it.
//
// Two kinds of fault, on a shared mapping of a memfd (shmem):
//   - missing: the file has no page there yet. Resolved by Wake once the page is in the
//     file (the access is retried and becomes a minor fault, or succeeds);
//   - minor: the file has the page, this process has not mapped it. Resolved by
//     Continue, which maps what the file holds without copying it.
// So bytes are written into the file through a mapping that is not registered (csmd's
// own), and a reader sees them only once csmd says so (Continue): never half a page, never
// bytes that were not checked. Poison makes a page fault with SIGBUS in that process
// instead (the bytes will never come: their owner died, or they failed their check).
//
// Needs Linux ≥ 5.13 (minor faults on shmem); Poison needs ≥ 6.6. Creating one needs
// vm.unprivileged_userfaultfd=1, access to /dev/userfaultfd, or CAP_SYS_PTRACE; where all
// are refused it is created for faults in user mode only (a system call that reads a
// page not yet mapped then fails with EFAULT instead of waiting: user_mode_only()).
//
// Thread-safety: every call may be made from any thread; the kernel serializes them.
// Lifetime: closing the fd (destroying this) wakes every waiting fault of the address
// space and lets later ones through unresolved (reads of a missing page see zeros), so
// whoever serves faults keeps it open as long as the process may touch those ranges.
#pragma once

#include <cstdint>
#include <optional>

#include "csm/os/fd.h"
#include "csm/status.h"

namespace csm::os {

class UserFaults {
 public:
  // One fault, as read from the fd: the page (aligned down) and what the access was.
  struct Fault {
    uint64_t page;
    bool write;
    bool minor;  // the file has the page; else it is missing
  };

  // For this process's address space. Unavailable, saying what to change, where the
  // kernel refuses userfaultfd or lacks minor faults on shmem.
  static Result<UserFaults> Create();
  // An fd another process created (Create) and sent here; its features are checked.
  static Result<UserFaults> Adopt(UniqueFd fd);
  // Whether this kernel can Poison (≥ 6.6); where not, a fault that will never be
  // resolved is left to the fd's closing.
  static bool CanPoison();

  UserFaults(UserFaults&&) = default;
  UserFaults& operator=(UserFaults&&) = default;

  int fd() const { return fd_.get(); }
  bool user_mode_only() const { return user_mode_only_; }

  // From now on missing and minor faults on [addr, +length) (page-aligned, inside one or
  // more shared memfd mappings of the address space) are reported here. NotFound if the
  // address space is gone (its process exited), InvalidArgument if no such mapping.
  Status Register(uint64_t addr, uint64_t length);
  // Faults there are the kernel's again. Pages already mapped stay mapped.
  Status Unregister(uint64_t addr, uint64_t length);
  // Maps the file's pages over [addr, +length) (page-aligned) and wakes the faults
  // waiting there. Pages already mapped are skipped. Every page must be in the file.
  Status Continue(uint64_t addr, uint64_t length);
  // Wakes the faults waiting on [addr, +length) without mapping anything: they retry.
  Status Wake(uint64_t addr, uint64_t length);
  // Accesses of [addr, +length) fault with SIGBUS from now on (until unmapped or
  // unregistered); waiting faults are woken to take it. Pages already mapped are skipped.
  Status Poison(uint64_t addr, uint64_t length);

  // The next fault reported, if any (never waits: poll fd() for POLLIN). Events other
  // than page faults are skipped. NotFound once the address space is gone.
  Result<std::optional<Fault>> Next();

 private:
  UserFaults(UniqueFd fd, bool user_mode_only) : fd_(std::move(fd)), user_mode_only_(user_mode_only) {}
  // Runs a range ioctl over [addr, +length), skipping pages that are already mapped
  // (EEXIST) and retrying while the address space is changing (EAGAIN).
  Status FillRange(const char* what, unsigned long request, uint64_t addr, uint64_t length);

  UniqueFd fd_;
  bool user_mode_only_ = false;
};

}  // namespace csm::os
