// NodeState; see node_state.h.
#include "csm/node/node_state.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "csm/base/hex.h"
#include "csm/base/log.h"
#include "csm/config.h"
#include "csm/os/memory.h"

namespace csm::node {
namespace {

constexpr const char kArenaPrefix[] = "csm-arena-";
constexpr const char kSparePrefix[] = "spare-";

Status MakeDirs(const std::string& dir) {
  for (size_t at = 1; at <= dir.size(); ++at) {
    if (at != dir.size() && dir[at] != '/') continue;
    const std::string part = dir.substr(0, at);
    if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) return ErrnoError("mkdir " + part, errno);
  }
  return Status::OK();
}

// Every entry of `dir` but the lock: fn(name).
template <typename Fn>
Status ForEachEntry(const std::string& dir, Fn&& fn) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return ErrnoError("opendir " + dir, errno);
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != ".." && name != "lock") names.push_back(std::move(name));
  }
  ::closedir(d);
  for (const std::string& name : names) fn(name);
  return Status::OK();
}

}  // namespace

Result<std::unique_ptr<NodeState>> NodeState::Open(const std::string& dir, bool fresh) {
  if (dir.empty() || dir[0] != '/') {
    return InvalidArgument("--state-dir must be an absolute path, not '" + dir + "'");
  }
  CSM_RETURN_IF_ERROR(MakeDirs(dir));
  std::unique_ptr<NodeState> s(new NodeState(dir));
  s->lock_.Reset(::open((dir + "/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!s->lock_.valid()) return ErrnoError("open " + dir + "/lock", errno);
  if (::flock(s->lock_.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return FailedPrecondition("another csmd keeps its node's state in " + dir +
                                ": stop it first, or give this node another --state-dir");
    }
    return ErrnoError("flock " + dir + "/lock", errno);
  }
  struct statfs fs{};
  if (::statfs(dir.c_str(), &fs) == 0 && fs.f_type != TMPFS_MAGIC && fs.f_type != HUGETLBFS_MAGIC) {
    CSM_LOG_WARN("--state-dir %s is not on a memory file system (tmpfs): arenas there are "
                 "written back to disk; use a directory under /dev/shm",
                 dir.c_str());
  }
  if (fresh) {
    CSM_RETURN_IF_ERROR(ForEachEntry(dir, [&](const std::string& name) { ::unlink((dir + "/" + name).c_str()); }));
  }
  const bool whole = s->LoadTypes();
  s->types_.Reset(::open((dir + "/types").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!s->types_.valid()) return ErrnoError("open " + dir + "/types", errno);
  // A line an earlier csmd was cut short in: ended, so the next one starts afresh.
  if (!whole && ::write(s->types_.get(), "\n", 1) != 1) return ErrnoError("writing " + dir + "/types", errno);
  return s;
}

Result<os::UniqueFd> NodeState::OpenDirectory(uint64_t bytes, bool* existed) {
  const std::string path = dir_ + "/directory";
  os::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  *existed = fd.valid();
  if (fd.valid()) {
    struct stat st{};
    if (::fstat(fd.get(), &st) != 0) return ErrnoError("fstat " + path, errno);
    if (static_cast<uint64_t>(st.st_size) != bytes) {
      return FailedPrecondition(
          "the node state in " + dir_ + " was made with another max_objects (its directory is " +
          FormatSize(static_cast<uint64_t>(st.st_size)) + ", this csmd's " + FormatSize(bytes) +
          "): start with the same --max-objects, or with --fresh to discard its objects");
    }
    return fd;
  }
  if (errno != ENOENT) return ErrnoError("open " + path, errno);
  fd.Reset(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) return ErrnoError("create " + path, errno);
  if (::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0) return ErrnoError("ftruncate " + path, errno);
  return fd;
}

std::string NodeState::ArenaPath(uint64_t addr, uint64_t id) const {
  char name[80];
  std::snprintf(name, sizeof(name), "/%s%012" PRIx64 "-%" PRIx64, kArenaPrefix, addr, id);
  return dir_ + name;
}

Result<os::UniqueFd> NodeState::CreateArena(uint64_t addr, uint64_t id, uint64_t size) {
  const std::string path = ArenaPath(addr, id);
  os::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) return ErrnoError("create " + path, errno);
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    const int err = errno;
    ::unlink(path.c_str());
    return ErrnoError("ftruncate " + path, err);
  }
  return fd;
}

Status NodeState::AdoptSpare(os::UniquePath spare, uint64_t addr, uint64_t id) {
  const std::string path = ArenaPath(addr, id);
  if (::rename(spare.get().c_str(), path.c_str()) != 0) return ErrnoError("rename " + spare.get(), errno);
  (void)spare.Release();
  return Status::OK();
}

Result<os::UniquePath> NodeState::RetireArena(uint64_t addr, uint64_t id) {
  const std::string from = ArenaPath(addr, id);
  const std::string to = dir_ + "/" + kSparePrefix + std::to_string(next_spare_++);
  if (::rename(from.c_str(), to.c_str()) != 0) return ErrnoError("rename " + from, errno);
  return os::UniquePath(to);
}

void NodeState::RemoveArena(uint64_t addr, uint64_t id) { ::unlink(ArenaPath(addr, id).c_str()); }

Result<std::vector<NodeState::ArenaFile>> NodeState::TakeArenas() {
  std::vector<ArenaFile> found;
  Status failed;
  CSM_RETURN_IF_ERROR(ForEachEntry(dir_, [&](const std::string& name) {
    const std::string path = dir_ + "/" + name;
    if (name == "directory" || name == "types" || name == "cluster") return;
    uint64_t addr = 0, id = 0;
    char rest = 0;
    if (name.rfind(kArenaPrefix, 0) != 0 ||
        std::sscanf(name.c_str() + sizeof(kArenaPrefix) - 1, "%" SCNx64 "-%" SCNx64 "%c", &addr, &id, &rest) != 2 ||
        id == 0) {
      ::unlink(path.c_str());  // a spare or a stray: nothing committed lives there
      return;
    }
    os::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    struct stat st{};
    if (!fd.valid() || ::fstat(fd.get(), &st) != 0) {
      if (failed.ok()) failed = ErrnoError("open " + path, errno);
      return;
    }
    found.push_back({addr, id, static_cast<uint64_t>(st.st_size), std::move(fd)});
  }));
  CSM_RETURN_IF_ERROR(failed);
  std::sort(found.begin(), found.end(), [](const ArenaFile& a, const ArenaFile& b) { return a.addr < b.addr; });
  return found;
}

bool NodeState::LoadTypes() {
  std::ifstream in(dir_ + "/types");
  std::stringstream text;
  text << in.rdbuf();
  const std::string all = text.str();
  std::istringstream lines(all);
  std::string line;
  while (std::getline(lines, line)) {
    const size_t space = line.find(' ');
    uint64_t id = 0;
    if (space == std::string::npos || std::sscanf(line.c_str(), "%" SCNx64, &id) != 1) continue;
    type_names_[id] = line.substr(space + 1);
  }
  return all.empty() || all.back() == '\n';
}

Status NodeState::RememberType(uint64_t type_id, const std::string& name) {
  auto [it, added] = type_names_.emplace(type_id, name);
  if (!added) return Status::OK();
  char id[24];
  std::snprintf(id, sizeof(id), "%" PRIx64 " ", type_id);
  std::string line = id + name;
  for (char& c : line) c = c == '\n' ? ' ' : c;
  line += '\n';
  // One write of a short line to an O_APPEND file: whole, or cut short by a crash (then
  // its objects are recovered with a truncated name, or none).
  if (::write(types_.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    return ErrnoError("writing " + dir_ + "/types", errno);
  }
  return Status::OK();
}

std::string NodeState::TypeName(uint64_t type_id) const {
  auto it = type_names_.find(type_id);
  return it == type_names_.end() ? std::string() : it->second;
}

Status NodeState::SaveStanding(const ClusterStanding& standing) const {
  nlohmann::json leases = nlohmann::json::array();
  for (const cluster::SegmentLease& l : standing.leases) leases.push_back({l.first, l.count});
  const std::string text =
      nlohmann::json{{"cluster", standing.cluster}, {"incarnation", standing.incarnation}, {"leases", leases}}.dump() + "\n";
  const std::string path = dir_ + "/cluster", staged = path + ".new";
  os::UniqueFd fd(::open(staged.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd.valid()) return ErrnoError("create " + staged, errno);
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    return ErrnoError("writing " + staged, errno);
  }
  if (::rename(staged.c_str(), path.c_str()) != 0) return ErrnoError("rename " + staged, errno);
  return Status::OK();
}

Result<std::optional<NodeState::ClusterStanding>> NodeState::LoadStanding() const {
  std::ifstream in(dir_ + "/cluster");
  if (!in) return std::optional<ClusterStanding>();
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  ClusterStanding standing;
  try {
    standing.cluster = j.at("cluster").get<std::string>();
    standing.incarnation = j.at("incarnation").get<uint64_t>();
    for (const auto& l : j.at("leases")) standing.leases.push_back({l.at(0).get<uint64_t>(), l.at(1).get<uint64_t>()});
  } catch (const nlohmann::json::exception& e) {
    return Corruption(dir_ + "/cluster is damaged (" + e.what() + "): start with --fresh to discard the node's objects");
  }
  return std::optional<ClusterStanding>(std::move(standing));
}

}  // namespace csm::node
