// userfaultfd for lazy copies; see user_faults.h.
#include "csm/os/user_faults.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <string>

#include "csm/base/hex.h"

// Linux 6.6's poison, for headers older than it (Debian 12 ships 6.1's).
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
struct uffdio_poison {
  struct uffdio_range range;
  __u64 mode;
  __s64 updated;
};
#define UFFDIO_POISON _IOWR(UFFDIO, 0x08, struct uffdio_poison)
#endif

namespace csm::os {

namespace {

constexpr uint64_t kNeeded = UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MINOR_SHMEM;
constexpr uint64_t kPage = 4096;
// A range call that keeps finding the address space changing (a fork, an mremap under
// way) gives up after this many tries.
constexpr int kChangingTries = 10000;

// A userfaultfd with no API handshake yet: the system call, else /dev/userfaultfd, else
// one for faults in user mode only.
Result<std::pair<UniqueFd, bool>> OpenRaw() {
  const int flags = O_CLOEXEC | O_NONBLOCK;
  int fd = static_cast<int>(::syscall(SYS_userfaultfd, flags));
  if (fd >= 0) return std::make_pair(UniqueFd(fd), false);
  const int first = errno;
  if (first == ENOSYS) {
    return Unavailable("this kernel has no userfaultfd (CONFIG_USERFAULTFD): lazy Gets are not possible here; "
                       "use eager ones");
  }
  UniqueFd dev(::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC));
  if (dev.valid()) {
    fd = ::ioctl(dev.get(), USERFAULTFD_IOC_NEW, flags);
    if (fd >= 0) return std::make_pair(UniqueFd(fd), false);
  }
  fd = static_cast<int>(::syscall(SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY));
  if (fd >= 0) return std::make_pair(UniqueFd(fd), true);
  return Unavailable("userfaultfd is refused to this process (" + std::string(strerror(first)) +
                     "): set sysctl vm.unprivileged_userfaultfd=1, or give its user read-write access "
                     "to /dev/userfaultfd, or use eager Gets");
}

// What the kernel offers, asked once on a throwaway fd (the handshake can be made once
// per fd).
Result<uint64_t> KernelFeatures() {
  static const Result<uint64_t> features = []() -> Result<uint64_t> {
    CSM_ASSIGN_OR_RETURN(auto raw, OpenRaw());
    uffdio_api api{};
    api.api = UFFD_API;
    if (::ioctl(raw.first.get(), UFFDIO_API, &api) != 0) return ErrnoError("UFFDIO_API", errno);
    return static_cast<uint64_t>(api.features);
  }();
  return features;
}

Status RangeError(const char* what, uint64_t addr, uint64_t length, int err) {
  const std::string where = std::string(what) + " of [" + Hex(addr) + ", +" + std::to_string(length) + ")";
  // Calls on an address space whose process exited fail ESRCH, and registering ENOMEM.
  if (err == ESRCH || err == ENOMEM) return NotFound(where + ": the process is gone");
  if (err == ENOENT || err == EINVAL) {
    return InvalidArgument(where + ": not a registered, page-aligned range of shared file mappings (" +
                           strerror(err) + ")");
  }
  return ErrnoError(where, err);
}

}  // namespace

Result<UserFaults> UserFaults::Create() {
  CSM_ASSIGN_OR_RETURN(uint64_t offered, KernelFeatures());
  if ((offered & kNeeded) != kNeeded) {
    return Unavailable("this kernel cannot report faults on shared memory (Linux >= 5.13 needed): lazy Gets "
                       "are not possible here; use eager ones");
  }
  CSM_ASSIGN_OR_RETURN(auto raw, OpenRaw());
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = kNeeded | (offered & UFFD_FEATURE_POISON);
  if (::ioctl(raw.first.get(), UFFDIO_API, &api) != 0) return ErrnoError("UFFDIO_API", errno);
  return UserFaults(std::move(raw.first), raw.second);
}

Result<UserFaults> UserFaults::Adopt(UniqueFd fd) {
  char link[64];
  const std::string path = "/proc/self/fd/" + std::to_string(fd.get());
  const ssize_t n = ::readlink(path.c_str(), link, sizeof(link) - 1);
  if (n <= 0 || std::string(link, n) != "anon_inode:[userfaultfd]") {
    return InvalidArgument("the fd sent as a userfaultfd is not one");
  }
  // Its faults are read without waiting, whatever the sender chose.
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) != 0) return ErrnoError("fcntl(userfaultfd)", errno);
  return UserFaults(std::move(fd), false);
}

bool UserFaults::CanPoison() {
  Result<uint64_t> offered = KernelFeatures();
  return offered.ok() && (*offered & UFFD_FEATURE_POISON) != 0;
}

Status UserFaults::Register(uint64_t addr, uint64_t length) {
  uffdio_register r{};
  r.range = {addr, length};
  r.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR;
  if (::ioctl(fd_.get(), UFFDIO_REGISTER, &r) != 0) return RangeError("registering faults", addr, length, errno);
  return Status::OK();
}

Status UserFaults::Unregister(uint64_t addr, uint64_t length) {
  uffdio_range r{addr, length};
  if (::ioctl(fd_.get(), UFFDIO_UNREGISTER, &r) != 0) {
    return RangeError("unregistering faults", addr, length, errno);
  }
  return Status::OK();
}

Status UserFaults::Wake(uint64_t addr, uint64_t length) {
  uffdio_range r{addr, length};
  if (::ioctl(fd_.get(), UFFDIO_WAKE, &r) != 0) return RangeError("waking faults", addr, length, errno);
  return Status::OK();
}

Status UserFaults::Continue(uint64_t addr, uint64_t length) {
  return FillRange("mapping pages", UFFDIO_CONTINUE, addr, length);
}

Status UserFaults::Poison(uint64_t addr, uint64_t length) {
  return FillRange("poisoning pages", UFFDIO_POISON, addr, length);
}

Status UserFaults::FillRange(const char* what, unsigned long request, uint64_t addr, uint64_t length) {
  if (addr % kPage != 0 || length % kPage != 0) return RangeError(what, addr, length, EINVAL);
  uint64_t at = addr;
  const uint64_t end = addr + length;
  int changing = 0;
  bool skipped = false;
  while (at < end) {
    // Both calls' structs are {range, mode, bytes done}.
    int rc;
    int64_t done;
    if (request == UFFDIO_CONTINUE) {
      uffdio_continue c{};
      c.range = {at, end - at};
      rc = ::ioctl(fd_.get(), request, &c);
      done = c.mapped;
    } else {
      uffdio_poison p{};
      p.range = {at, end - at};
      rc = ::ioctl(fd_.get(), request, &p);
      done = p.updated;
    }
    if (rc == 0) break;
    const int err = errno;
    if (done > 0) at += static_cast<uint64_t>(done);
    if (err == EEXIST) {
      at += kPage;  // this page was mapped already: the rest may not be
      skipped = true;
    } else if (err == EAGAIN) {
      if (++changing > kChangingTries) return RangeError(what, addr, length, err);
      ::sched_yield();
    } else {
      return RangeError(what, addr, length, err);
    }
  }
  // A call that stops at a mapped page wakes nothing: the faults waiting in the range
  // are woken here (they retry and find their page).
  return skipped ? Wake(addr, length) : Status::OK();
}

Result<std::optional<UserFaults::Fault>> UserFaults::Next() {
  for (;;) {
    uffd_msg msg;
    const ssize_t n = ::read(fd_.get(), &msg, sizeof(msg));
    if (n < 0) {
      if (errno == EAGAIN) return std::optional<Fault>();
      if (errno == EINTR) continue;
      return ErrnoError("reading faults", errno);
    }
    if (n != sizeof(msg)) return Corruption("a short read from a userfaultfd");
    if (msg.event != UFFD_EVENT_PAGEFAULT) continue;
    const uint64_t flags = msg.arg.pagefault.flags;
    return std::optional<Fault>(Fault{msg.arg.pagefault.address & ~(kPage - 1),
                                      (flags & UFFD_PAGEFAULT_FLAG_WRITE) != 0,
                                      (flags & UFFD_PAGEFAULT_FLAG_MINOR) != 0});
  }
}

}  // namespace csm::os
