// What the non-coherent fabric's protocol costs on this CPU (docs/fabric.md): writing a
// GiB of dirty data back with each instruction the CPU has, invalidating it, and storing
// it with non-temporal stores, each beside a plain memcpy of the same GiB in the same
// run. The paper's anchor: POWER9 dcbf ≈ 53 ms per GiB.
//
//   fabric_bench [--size 1G] [--rounds 7]
#include <sys/mman.h>

#include <CLI/CLI.hpp>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "csm/os/cache_lines.h"
#include "stats.h"

namespace {

using csm::bench::Clock;
using csm::bench::Seconds;
using csm::os::CacheLines;
using csm::os::LineInstruction;

char* Anonymous(size_t n) {
  void* p = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) {
    std::perror("mmap");
    std::exit(1);
  }
  return static_cast<char*>(p);
}

// Median of `rounds` timings of `step`, each after `prepare` (untimed).
double Median(int rounds, const std::function<void()>& prepare, const std::function<void()>& step) {
  std::vector<double> t;
  for (int r = 0; r < rounds; ++r) {
    prepare();
    auto a = Clock::now();
    step();
    t.push_back(Seconds(a, Clock::now()));
  }
  return csm::bench::Summarize(t).p50;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cache write-back and invalidate cost per GiB, beside memcpy"};
  size_t size = size_t{1} << 30;
  int rounds = 7;
  app.add_option("--size", size, "bytes per round")->transform(CLI::AsSizeValue(false));
  app.add_option("--rounds", rounds, "rounds per figure (the median is printed)");
  CLI11_PARSE(app, argc, argv);
  char* src = Anonymous(size);
  char* dst = Anonymous(size);
  std::memset(src, 0x5a, size);
  const double gib = static_cast<double>(size) / (1 << 30);
  auto per_gib = [&](double s) { return s / gib * 1e3; };

  const double copy = Median(rounds, [] {}, [&] { std::memcpy(dst, src, size); });
  std::printf("%-34s %9s %9s\n", "step (1 GiB, median)", "ms/GiB", "× memcpy");
  std::printf("%-34s %9.1f %9.2f\n", "memcpy (the data written)", per_gib(copy), 1.0);
  const double nt = Median(rounds, [] {}, [&] { csm::os::CopyNonTemporal(dst, src, size); });
  std::printf("%-34s %9.1f %9.2f\n", "non-temporal copy (no write-back)", per_gib(nt), nt / copy);
  for (LineInstruction i : {LineInstruction::kClwb, LineInstruction::kClflushopt, LineInstruction::kClflush,
                            LineInstruction::kDcbf, LineInstruction::kDcCivac}) {
    if (!csm::os::Supports(i)) continue;
    auto lines = CacheLines::With(i, CacheLines::HardwareLine());
    if (!lines.ok()) continue;
    // Dirty lines: what a producer leaves behind (only the last-level cache's share is
    // still dirty after a GiB; the rest was evicted on the way, as for any producer).
    const double wb = Median(rounds, [&] { std::memcpy(dst, src, size); }, [&] { lines->WriteBack(dst, size); });
    std::printf("%-34s %9.1f %9.2f\n", (std::string("write-back, ") + csm::os::Name(i)).c_str(), per_gib(wb),
                wb / copy);
    const double inv = Median(rounds, [&] { std::memcpy(dst, src, size); }, [&] { lines->Invalidate(dst, size); });
    std::printf("%-34s %9.1f %9.2f\n",
                (std::string("invalidate, ") + csm::os::Name(lines->invalidate())).c_str(), per_gib(inv),
                inv / copy);
  }
  std::printf("(POWER9 dcbf in the paper: 53 ms/GiB)\n");
  return 0;
}
