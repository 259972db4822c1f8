// See progress.h.
#include "progress.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "csm/config.h"

namespace csm::tools {

bool ProgressLine::Wanted() {
  const char* env = std::getenv("CSM_PROGRESS");
  if (env != nullptr && std::string(env) == "0") return false;
  return ::isatty(STDERR_FILENO) == 1;
}

std::string ProgressLine::Format(const std::string& label, Sample s, double seconds) {
  constexpr int kWidth = 24;
  const double fraction = s.total == 0 ? 1.0 : std::min(1.0, static_cast<double>(s.done) / static_cast<double>(s.total));
  const int filled = static_cast<int>(fraction * kWidth);
  std::string bar = "[" + std::string(filled, '#') + std::string(kWidth - filled, ' ') + "]";
  char line[256];
  std::snprintf(line, sizeof(line), "%s  %s %3d%%  %s / %s", label.c_str(), bar.c_str(),
                static_cast<int>(fraction * 100), FormatSize(s.done).c_str(), FormatSize(s.total).c_str());
  std::string out = line;
  if (seconds > 0.05) out += "  " + FormatSize(static_cast<uint64_t>(static_cast<double>(s.done) / seconds)) + "/s";
  return out;
}

ProgressLine::ProgressLine(std::string label, Poll poll) : label_(std::move(label)), poll_(std::move(poll)) {
  if (Wanted()) thread_ = std::thread([this] { Run(); });
}

ProgressLine::~ProgressLine() { Finish(); }

void ProgressLine::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    lock.unlock();
    std::optional<Sample> s = poll_();
    lock.lock();
    if (s) {
      last_ = s;
      Draw(*s);
    }
    cv_.wait_for(lock, std::chrono::milliseconds(100), [this] { return stop_; });
  }
}

void ProgressLine::Draw(Sample s) {
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  // \r and clear to the end of the line: the line is redrawn in place.
  std::fprintf(stderr, "\r%s\033[K", Format(label_, s, seconds).c_str());
  std::fflush(stderr);
}

void ProgressLine::Finish(bool complete) {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  if (!last_) last_ = poll_();  // work too quick for the drawing thread's first look
  if (!last_) return;
  if (complete) last_->done = last_->total;
  Draw(*last_);
  std::fputc('\n', stderr);
}

}  // namespace csm::tools
