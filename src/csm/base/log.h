// Minimal leveled logging to stderr and internal invariant checks.
//
// CSM_DCHECK is for csm's own invariants only; bytes written by another process or node
// are validated and reported as Status::Corruption, never checked with it.
#pragma once

#include <cstdio>
#include <cstdlib>

namespace csm::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// The threshold comes from CSM_LOG_LEVEL (debug|info|warn|error), default info.
Level Threshold();
void Write(Level level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace csm::log

#define CSM_LOG_DEBUG(...) ::csm::log::Write(::csm::log::Level::kDebug, __VA_ARGS__)
#define CSM_LOG_INFO(...) ::csm::log::Write(::csm::log::Level::kInfo, __VA_ARGS__)
#define CSM_LOG_WARN(...) ::csm::log::Write(::csm::log::Level::kWarn, __VA_ARGS__)
#define CSM_LOG_ERROR(...) ::csm::log::Write(::csm::log::Level::kError, __VA_ARGS__)

#define CSM_CHECK(cond)                                                              \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::fprintf(stderr, "csm: check failed at %s:%d: %s\n", __FILE__, __LINE__, \
                   #cond);                                                           \
      std::abort();                                                                  \
    }                                                                                \
  } while (0)

#ifdef NDEBUG
#define CSM_DCHECK(cond) \
  do {                   \
  } while (false && (cond))
#else
#define CSM_DCHECK(cond) CSM_CHECK(cond)
#endif
