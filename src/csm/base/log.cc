// Logging implementation; see log.h.
#include "csm/base/log.h"

#include <unistd.h>

#include <cstdarg>
#include <cstring>
#include <ctime>

namespace csm::log {

Level Threshold() {
  static const Level level = [] {
    const char* env = std::getenv("CSM_LOG_LEVEL");
    if (env == nullptr) return Level::kInfo;
    if (std::strcmp(env, "debug") == 0) return Level::kDebug;
    if (std::strcmp(env, "warn") == 0) return Level::kWarn;
    if (std::strcmp(env, "error") == 0) return Level::kError;
    return Level::kInfo;
  }();
  return level;
}

void Write(Level level, const char* fmt, ...) {
  if (level < Threshold()) return;
  static const char* kNames[] = {"D", "I", "W", "E"};
  char line[1024];
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm parts{};
  gmtime_r(&ts.tv_sec, &parts);
  int n = std::snprintf(line, sizeof(line), "%s %02d:%02d:%02d.%03ld csm[%d] ",
                        kNames[static_cast<int>(level)], parts.tm_hour, parts.tm_min,
                        parts.tm_sec, ts.tv_nsec / 1000000, static_cast<int>(getpid()));
  va_list args;
  va_start(args, fmt);
  n += std::vsnprintf(line + n, sizeof(line) - static_cast<size_t>(n) - 1, fmt, args);
  va_end(args);
  if (n > static_cast<int>(sizeof(line)) - 2) n = static_cast<int>(sizeof(line)) - 2;
  line[n++] = '\n';
  // One write() per line so lines from several processes do not interleave.
  ssize_t ignored = ::write(STDERR_FILENO, line, static_cast<size_t>(n));
  (void)ignored;
}

}  // namespace csm::log
