// Memory system-call wrappers; see memory.h.
#include "csm/os/memory.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <climits>
#include <cstdio>
#include <fstream>

namespace csm::os {

size_t PageSize() {
  static const size_t size = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return size;
}

Result<UniqueFd> CreateMemfd(const std::string& name, size_t size) {
  UniqueFd fd(::memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd.valid()) return ErrnoError("memfd_create(" + name + ")", errno);
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    return ErrnoError("ftruncate(" + name + ")", errno);
  }
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) != 0) {
    return ErrnoError("fcntl(F_ADD_SEALS)", errno);
  }
  return fd;
}

Result<UniqueFd> ReopenReadOnly(int fd) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  UniqueFd ro(::open(path, O_RDONLY | O_CLOEXEC));
  if (!ro.valid()) return ErrnoError(std::string("open(") + path + ", O_RDONLY)", errno);
  return ro;
}

Status MapFixed(uintptr_t addr, size_t size, int fd, bool writable, uint64_t offset) {
  int prot = PROT_READ | (writable ? PROT_WRITE : 0);
  void* p = ::mmap(reinterpret_cast<void*>(addr), size, prot, MAP_SHARED | MAP_FIXED, fd, static_cast<off_t>(offset));
  if (p == MAP_FAILED) return ErrnoError("mmap(MAP_FIXED) of a heap arena", errno);
  return Status::OK();
}

void AdviseHugePages(uintptr_t addr, size_t size) {
  (void)::madvise(reinterpret_cast<void*>(addr), size, MADV_HUGEPAGE);
}

namespace {
// The bracketed word of a sysfs choice line ("always [advise] never"), or "".
std::string ChosenSetting(const char* path) {
  std::ifstream in(path);
  std::string line;
  if (!std::getline(in, line)) return "";
  auto open = line.find('['), close = line.find(']');
  if (open == std::string::npos || close == std::string::npos || close < open) return "";
  return line.substr(open + 1, close - open - 1);
}
}  // namespace

std::string SharedHugePages() {
  // Kernels with per-size settings for shared memory decide 2 MiB pages there,
  // "inherit" meaning the global setting.
  std::string pmd =
      ChosenSetting("/sys/kernel/mm/transparent_hugepage/hugepages-2048kB/shmem_enabled");
  if (!pmd.empty() && pmd != "inherit") return pmd;
  std::string global = ChosenSetting("/sys/kernel/mm/transparent_hugepage/shmem_enabled");
  return global.empty() ? "unknown" : global;
}

bool SharedHugePagesAllowed(const std::string& setting) {
  return setting != "never" && setting != "deny" && setting != "unknown";
}

Status UnmapToReservation(uintptr_t addr, size_t size) {
  void* p = ::mmap(reinterpret_cast<void*>(addr), size, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  if (p == MAP_FAILED) return ErrnoError("mmap(PROT_NONE) over a released arena", errno);
  return Status::OK();
}

void PrefaultWritable(uintptr_t addr, size_t size) {
  (void)::madvise(reinterpret_cast<void*>(addr), size, MADV_POPULATE_WRITE);
}

Status PunchHole(int fd, uint64_t offset, uint64_t len) {
  if (len == 0) return Status::OK();
  if (::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                  static_cast<off_t>(len)) != 0) {
    return ErrnoError("fallocate(PUNCH_HOLE)", errno);
  }
  return Status::OK();
}

bool FutexWait(const uint32_t* word, uint32_t expected, int64_t timeout_ns) {
  timespec ts{};
  timespec* tsp = nullptr;
  if (timeout_ns >= 0) {
    ts.tv_sec = timeout_ns / 1000000000;
    ts.tv_nsec = timeout_ns % 1000000000;
    tsp = &ts;
  }
  long rc = ::syscall(SYS_futex, word, FUTEX_WAIT, expected, tsp, nullptr, 0);
  return !(rc != 0 && errno == ETIMEDOUT);
}

void FutexWakeAll(const uint32_t* word) {
  ::syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

namespace {
// Calls fn(lo, hi, line) for each /proc/self/maps line until fn returns true.
template <typename Fn>
std::string FindMapping(Fn fn) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    uintptr_t lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%" SCNxPTR "-%" SCNxPTR, &lo, &hi) != 2) continue;
    if (fn(lo, hi)) return line;
  }
  return "";
}
}  // namespace

std::string MappingAt(uintptr_t addr) {
  return FindMapping([&](uintptr_t lo, uintptr_t hi) { return addr >= lo && addr < hi; });
}

std::string FirstMappingIn(uintptr_t addr, size_t size) {
  return FindMapping(
      [&](uintptr_t lo, uintptr_t hi) { return lo < addr + size && hi > addr; });
}

int64_t MonotonicNanos() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

int64_t RealtimeNanos() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

}  // namespace csm::os
