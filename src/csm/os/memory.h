// Thin wrappers over the memory system calls csm uses: memfd with seals, fixed-address
// mappings inside a reservation, hole punching, futexes, and /proc/self/maps lookups.
//
// Contract: every function reports failure as a Status naming the call and the errno;
// none of them keeps state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "csm/os/fd.h"
#include "csm/status.h"

namespace csm::os {

size_t PageSize();

// A sealed-size memfd: F_SEAL_GROW | F_SEAL_SHRINK so no holder can truncate it under a
// reader (which would SIGBUS the reader).
Result<UniqueFd> CreateMemfd(const std::string& name, size_t size);

// A new read-only open file description of the same memfd. A mapping made from it
// cannot be written, and cannot be mprotect'ed writable.
Result<UniqueFd> ReopenReadOnly(int fd);

// Maps [offset, +size) of `fd` at exactly `addr` (which must lie inside this process's
// reservation).
Status MapFixed(uintptr_t addr, size_t size, int fd, bool writable, uint64_t offset = 0);

// Asks the kernel to back [addr, addr+size) of a shared mapping with 2 MiB pages where
// the host allows it (SharedHugePages). Faulting memory in then costs a fraction of what
// 4 KiB pages do, and a reader maps it in a few faults; except on VMs whose host takes
// back freed guest memory, where a fresh huge page costs more (docs/operations.md,
// "Page size"). Only a hint: ignored where the host does not allow it.
void AdviseHugePages(uintptr_t addr, size_t size);

// Whether shared memory (memfds) may use 2 MiB pages on this host: the kernel's
// transparent_hugepage/shmem_enabled setting, as written there ("advise", "always",
// "within_size", "force", "never", "deny"), or "unknown" if the kernel has none.
// Huge pages are used when it is anything but never, deny or unknown.
std::string SharedHugePages();
bool SharedHugePagesAllowed(const std::string& setting);

// Returns [addr, addr+size) to the reservation: PROT_NONE, no backing.
Status UnmapToReservation(uintptr_t addr, size_t size);

// Faults [addr, addr+size) of a writable shared mapping in now, in one call instead of a
// trap per page (MADV_POPULATE_WRITE). Only a hint: ignored where the kernel lacks it or
// memory is short (the pages then fault in when written).
void PrefaultWritable(uintptr_t addr, size_t size);

// Frees the physical pages of [offset, offset+len) of a memfd; reads then see zeros.
Status PunchHole(int fd, uint64_t offset, uint64_t len);

// Blocks while *word == expected, up to timeout_ns (<0: no limit). Works across
// processes on shared mappings. Returns false on timeout.
bool FutexWait(const uint32_t* word, uint32_t expected, int64_t timeout_ns);
void FutexWakeAll(const uint32_t* word);

// The /proc/self/maps line covering addr, or "" if none. Used in error messages
// ("window base already taken by ...") and by tests.
std::string MappingAt(uintptr_t addr);
// The first /proc/self/maps line that overlaps [addr, addr+size), or "".
std::string FirstMappingIn(uintptr_t addr, size_t size);

int64_t MonotonicNanos();
int64_t RealtimeNanos();

}  // namespace csm::os
