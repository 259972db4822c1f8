// Small helpers for benchmarks: repeated samples → median, percentiles, spread.
// These machines are noisy: report medians and spread, never a single time.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

namespace csm::bench {

using Clock = std::chrono::steady_clock;

inline double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

struct Summary {
  double p50, p99, min, max;
  size_t n;
};

inline Summary Summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[std::min(v.size() - 1, static_cast<size_t>(q * (v.size() - 1) + 0.5))]; };
  return {at(0.5), at(0.99), v.front(), v.back(), v.size()};
}

// "1.23 us" style.
inline std::string Human(double seconds) {
  char buf[32];
  if (seconds < 1e-6) std::snprintf(buf, sizeof(buf), "%.0f ns", seconds * 1e9);
  else if (seconds < 1e-3) std::snprintf(buf, sizeof(buf), "%.2f us", seconds * 1e6);
  else if (seconds < 1) std::snprintf(buf, sizeof(buf), "%.2f ms", seconds * 1e3);
  else std::snprintf(buf, sizeof(buf), "%.3f s", seconds);
  return buf;
}

}  // namespace csm::bench
