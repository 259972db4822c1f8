// A progress line on the terminal for the CLI's long work: `csm put` of a large file, a
// `csm get` that waits for a copy from another node. Drawn on standard error only when it
// is a terminal (and CSM_PROGRESS is not 0): scripts and pipes see nothing of it.
//
// No well-kept C++ progress-bar library is packaged in Debian 12 or served by the
// registries this project builds from (indicators is on GitHub only), so this is the
// one line, redrawn in place, that the CLI needs.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace csm::tools {

class ProgressLine {
 public:
  struct Sample {
    uint64_t done;
    uint64_t total;
  };
  // What to draw now, or nothing (yet): asked from the drawing thread every 100 ms.
  using Poll = std::function<std::optional<Sample>()>;

  // Starts drawing `label` with what `poll` says, if standard error is a terminal.
  ProgressLine(std::string label, Poll poll);
  ~ProgressLine();  // Finish()
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  // Stops drawing; draws the line once more from the last sample (asking `poll` if the
  // drawing thread had none; as complete if `complete`) and ends it. Nothing if there is
  // no sample.
  void Finish(bool complete = true);

  static bool Wanted();  // standard error is a terminal and CSM_PROGRESS is not 0
  // The line for a sample after `seconds`: "label  [#####     ]  50%  512.0 MiB / 1.0 GiB  1.2 GiB/s".
  static std::string Format(const std::string& label, Sample s, double seconds);

 private:
  void Run();
  void Draw(Sample s);

  const std::string label_;
  const Poll poll_;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;               // guarded by mu_
  std::optional<Sample> last_;      // the drawing thread's, then Finish's
  std::thread thread_;
};

}  // namespace csm::tools
