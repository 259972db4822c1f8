// ThreadSanitizer annotations for synchronization it cannot see.
//
// csm publishes objects through shared memory that csmd and clients map at different
// virtual addresses (the directory, pin tables). TSan keys happens-before on addresses,
// so it misses those edges and would report the object's bytes as racing. These
// annotations state the edge explicitly; they compile to nothing outside TSan builds.
#pragma once

#if defined(__SANITIZE_THREAD__)
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#define CSM_TSAN_ACQUIRE(addr) __tsan_acquire(reinterpret_cast<void*>(addr))
#define CSM_TSAN_RELEASE(addr) __tsan_release(reinterpret_cast<void*>(addr))
#else
#define CSM_TSAN_ACQUIRE(addr) ((void)(addr))
#define CSM_TSAN_RELEASE(addr) ((void)(addr))
#endif
