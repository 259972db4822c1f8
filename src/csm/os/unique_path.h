// UniquePath: owns a file's name and removes it once (unless released).
#pragma once

#include <unistd.h>

#include <string>
#include <utility>

namespace csm::os {

class UniquePath {
 public:
  UniquePath() = default;
  explicit UniquePath(std::string path) : path_(std::move(path)) {}
  ~UniquePath() { Reset(); }
  UniquePath(UniquePath&& o) noexcept : path_(std::exchange(o.path_, std::string())) {}
  UniquePath& operator=(UniquePath&& o) noexcept {
    if (this != &o) {
      Reset();
      path_ = std::exchange(o.path_, std::string());
    }
    return *this;
  }
  UniquePath(const UniquePath&) = delete;
  UniquePath& operator=(const UniquePath&) = delete;

  const std::string& get() const { return path_; }
  bool empty() const { return path_.empty(); }
  std::string Release() { return std::exchange(path_, std::string()); }
  void Reset() {
    if (!path_.empty()) ::unlink(path_.c_str());
    path_.clear();
  }

 private:
  std::string path_;
};

}  // namespace csm::os
