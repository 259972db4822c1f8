// Test harness implementation; see harness.h.
#include <dirent.h>
#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <thread>

#include "csm/os/memory.h"
#include "workload.h"

namespace csm::testing {

std::string BinaryDir() { return CSM_TEST_BINARY_DIR; }

namespace {
std::vector<char*> CStrings(const std::vector<std::string>& v) {
  std::vector<char*> out;
  for (const auto& s : v) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

// The environment of this process with `additions` ("NAME=value") set over it.
std::vector<std::string> EnvironmentWith(const std::vector<std::string>& additions) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
  for (const auto& add : additions) {
    const std::string name = add.substr(0, add.find('=') + 1);
    auto same = std::find_if(env.begin(), env.end(), [&](const std::string& e) { return e.rfind(name, 0) == 0; });
    if (same != env.end()) *same = add;
    else env.push_back(add);
  }
  return env;
}

// posix_spawn, not fork + exec: the test process has threads (a fork would copy their
// locks), and the child must not run code between the two.
pid_t SpawnWithPipes(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                     int* out_fd, int* err_fd, bool err_to_out = false) {
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0) return -1;
  if (pipe2(err, O_CLOEXEC) != 0) {
    close(out[0]);
    close(out[1]);
    return -1;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  if (err_fd != nullptr) posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);
  if (err_to_out) posix_spawn_file_actions_adddup2(&actions, out[1], STDERR_FILENO);
  auto args = CStrings(argv);
  std::vector<std::string> environment = EnvironmentWith(env);
  auto envp = CStrings(environment);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  close(err[1]);
  if (rc != 0) {
    std::fprintf(stderr, "spawn %s: %s\n", args[0], std::strerror(rc));
    close(out[0]);
    close(err[0]);
    return -1;
  }
  *out_fd = out[0];
  if (err_fd != nullptr) *err_fd = err[0];
  else close(err[0]);
  return pid;
}
}  // namespace

std::unique_ptr<Process> Process::Spawn(const std::vector<std::string>& argv,
                                        const std::vector<std::string>& env, bool with_stderr) {
  auto p = std::unique_ptr<Process>(new Process());
  p->pid_ = SpawnWithPipes(argv, env, &p->out_fd_, nullptr, with_stderr);
  if (p->pid_ < 0) throw std::runtime_error("cannot start " + argv[0]);
  return p;
}

Process::~Process() {
  if (!exited_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (out_fd_ >= 0) close(out_fd_);
}

bool Process::ReadSome(int timeout_ms) {
  pollfd p{out_fd_, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) <= 0) return false;
  char buf[4096];
  ssize_t n = ::read(out_fd_, buf, sizeof(buf));
  if (n <= 0) return false;
  out_.append(buf, static_cast<size_t>(n));
  return true;
}

std::string Process::WaitForLine(const std::string& needle, int timeout_ms) {
  int64_t deadline = os::MonotonicNanos() + int64_t{timeout_ms} * 1000000;
  for (;;) {
    size_t at = out_.find(needle, scanned_);
    if (at != std::string::npos) {
      size_t begin = out_.rfind('\n', at);
      begin = begin == std::string::npos ? 0 : begin + 1;
      size_t end = out_.find('\n', at);
      if (end != std::string::npos) {
        scanned_ = end + 1;
        return out_.substr(begin, end - begin);
      }
    }
    int64_t left = (deadline - os::MonotonicNanos()) / 1000000;
    if (left <= 0) return "";
    if (!ReadSome(static_cast<int>(std::min<int64_t>(left, 100)))) {
      int status;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        status_ = status;
        while (ReadSome(0)) {
        }
        return out_.find(needle, scanned_) != std::string::npos ? WaitForLine(needle, 0) : "";
      }
    }
  }
}

int Process::Wait(int timeout_ms) {
  if (exited_) return status_;  // reaped already: its pid may belong to another process now
  int64_t deadline = os::MonotonicNanos() + int64_t{timeout_ms} * 1000000;
  for (;;) {
    while (ReadSome(0)) {
    }
    int status;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      exited_ = true;
      status_ = status;
      while (ReadSome(0)) {
      }
      return status;
    }
    if (os::MonotonicNanos() > deadline) {
      Kill(SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      exited_ = true;
      status_ = -1;
      return -1;
    }
    ReadSome(20);
  }
}

void Process::Kill(int sig) {
  if (!exited_ && pid_ > 0) ::kill(pid_, sig);
}

CommandResult Run(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                  int timeout_ms) {
  int out_fd = -1, err_fd = -1;
  pid_t pid = SpawnWithPipes(argv, env, &out_fd, &err_fd);
  CommandResult r{-1, "", ""};
  if (pid <= 0) {  // never waitpid(-1): it could reap a node's csmd
    r.err = "cannot start " + argv.at(0);
    return r;
  }
  int64_t deadline = os::MonotonicNanos() + int64_t{timeout_ms} * 1000000;
  bool open_out = true, open_err = true;
  while ((open_out || open_err) && os::MonotonicNanos() < deadline) {
    pollfd p[2] = {{open_out ? out_fd : -1, POLLIN, 0}, {open_err ? err_fd : -1, POLLIN, 0}};
    if (::poll(p, 2, 100) <= 0) continue;
    char buf[4096];
    for (int i = 0; i < 2; ++i) {
      if (!(p[i].revents & (POLLIN | POLLHUP))) continue;
      ssize_t n = ::read(p[i].fd, buf, sizeof(buf));
      if (n <= 0) (i == 0 ? open_out : open_err) = false;
      else (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
    }
  }
  close(out_fd);
  close(err_fd);
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (os::MonotonicNanos() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return r;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

namespace {
void Sh(const std::string& cmd) {
  if (std::system((cmd + " 2>&1").c_str()) != 0) throw std::runtime_error("failed: " + cmd);
}
}  // namespace

std::string NetworkLab::Unavailable() {
  if (::geteuid() != 0) return "network namespaces need root (run the tests as root)";
  if (::access("/usr/sbin/ip", X_OK) != 0 && ::access("/sbin/ip", X_OK) != 0) {
    return "network namespaces need iproute2 (scripts/setup.sh installs it)";
  }
  return "";
}

NetworkLab::NetworkLab(int hosts) : hosts_(hosts) {
  static std::atomic<int> labs{0};
  int n = labs++;
  prefix_ = "csm" + std::to_string(::getpid() % 100000) + "x" + std::to_string(n);
  subnet_ = "10." + std::to_string(100 + ::getpid() % 100) + "." + std::to_string(1 + (::getpid() / 100 + n) % 250);
  std::string hub = Namespace(0);
  Sh("ip netns add " + hub);
  Sh("ip -n " + hub + " link set lo up");
  Sh("ip -n " + hub + " link add br0 type bridge");
  Sh("ip -n " + hub + " addr add " + Ip(0) + "/24 dev br0");
  Sh("ip -n " + hub + " link set br0 up");
  for (int i = 1; i <= hosts; ++i) {
    std::string ns = Namespace(i), a = prefix_ + "a" + std::to_string(i), b = prefix_ + "b" + std::to_string(i);
    Sh("ip netns add " + ns);
    Sh("ip -n " + ns + " link set lo up");
    Sh("ip link add " + a + " mtu 65535 type veth peer name " + b + " mtu 65535");
    Sh("ip link set " + a + " netns " + ns);
    Sh("ip link set " + b + " netns " + hub);
    Sh("ip -n " + ns + " addr add " + Ip(i) + "/24 dev " + a);
    Sh("ip -n " + ns + " link set " + a + " up");
    Sh("ip -n " + hub + " link set " + b + " master br0");
    Sh("ip -n " + hub + " link set " + b + " up");
  }
}

NetworkLab::~NetworkLab() {
  for (int i = 0; i <= hosts_; ++i) {
    std::string cmd = "ip netns del " + Namespace(i) + " 2>/dev/null";
    if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "could not remove %s\n", Namespace(i).c_str());
  }
}

std::string NetworkLab::Namespace(int host) const {
  return prefix_ + (host == 0 ? std::string("hub") : "h" + std::to_string(host));
}
std::string NetworkLab::Ip(int host) const { return subnet_ + "." + std::to_string(host == 0 ? 254 : host); }

Node::Node(std::vector<std::string> extra_flags, const std::string& netns, bool keeps_state) {
  char tmpl[] = "/tmp/csm-test-XXXXXX";
  dir_ = mkdtemp(tmpl);
  socket_ = dir_ + "/node.sock";
  std::vector<std::string> argv = {BinaryDir() + "/csmd", "--socket", socket_};
  if (keeps_state) {
    char state[] = "/dev/shm/csm-test-state-XXXXXX";
    state_dir_ = mkdtemp(state);
    argv.insert(argv.end(), {"--state-dir", state_dir_});
  }
  // `ip netns exec` enters the namespace and execs csmd: same pid, so signals reach it.
  if (!netns.empty()) argv.insert(argv.begin(), {"/usr/sbin/ip", "netns", "exec", netns});
  argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
  argv_ = std::move(argv);
  Start();
}

void Node::Start() {  // a new csmd replaces the socket file an old one left
  process_ = Process::Spawn(argv_);
  if (process_->WaitForLine("csmd ready", 20000).empty()) {
    throw std::runtime_error("csmd did not start: " + process_->output());
  }
}

void Node::Kill(int sig) {
  process_->Kill(sig);
  if (process_->Wait(20000) == -1) throw std::runtime_error("csmd did not end on a signal");
}

Node::~Node() {
  process_->Kill(SIGTERM);
  if (process_->Wait(10000) == -1) std::fprintf(stderr, "csmd did not stop on SIGTERM\n");
  ::unlink(socket_.c_str());
  ::rmdir(dir_.c_str());
  Wipe();
  if (!state_dir_.empty()) ::rmdir(state_dir_.c_str());
}

void Node::Wipe() {
  if (state_dir_.empty()) return;
  DIR* d = ::opendir(state_dir_.c_str());
  if (d == nullptr) return;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") ::unlink((state_dir_ + "/" + name).c_str());
  }
  ::closedir(d);
}

Config Node::ClientConfig() const {
  Config c = DefaultConfig();
  c.socket_path = socket_;
  return c;
}

std::unique_ptr<Client> Attach(const Node& node) {
  auto c = Client::Connect(node.ClientConfig());
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(*c) : nullptr;
}

Status CommitMap(Client& c, const std::string& key, int32_t keys) {
  CSM_ASSIGN_OR_RETURN(auto b, c.NewBuilder());
  CSM_ASSIGN_OR_RETURN(auto* m, b.New<workload::HeapMap>());
  CSM_RETURN_IF_ERROR(b.Populate([&] { workload::Fill(*m, keys); }));
  return b.Commit(key);
}

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

Etcd::Etcd(const std::string& netns, const std::string& ip) {
  char tmpl[] = "/tmp/csm-etcd-XXXXXX";
  dir_ = mkdtemp(tmpl);
  std::string client = "http://" + ip + ":" + std::to_string(FreePort());
  std::string peer = "http://" + ip + ":" + std::to_string(FreePort());
  endpoint_ = client;
  std::string cmd = "exec etcd --data-dir " + dir_ + "/data --listen-client-urls " + client +
                    " --advertise-client-urls " + client + " --listen-peer-urls " + peer +
                    " --initial-advertise-peer-urls " + peer + " --initial-cluster default=" +
                    peer + " 2>&1";
  if (!netns.empty()) cmd = "exec ip netns exec " + netns + " sh -c '" + cmd + "'";
  process_ = Process::Spawn({"/bin/sh", "-c", cmd});
  if (process_->WaitForLine("ready to serve client requests", 30000).empty()) {
    throw std::runtime_error("etcd did not start: " + process_->output());
  }
}

Etcd::~Etcd() {
  process_->Kill(SIGTERM);
  process_->Wait(10000);
  std::system(("rm -rf " + dir_).c_str());
}

LabCluster::LabCluster(int hosts, const std::string& param,
                       const std::function<std::vector<std::string>(int host)>& extra)
    : lab_(hosts), transport_(param.substr(param.find('_') + 1)) {
  if (param.starts_with("etcd")) etcd_ = std::make_unique<Etcd>(lab_.Namespace(0), lab_.Ip(0));
  const std::string coordinator = lab_.Ip(1) + ":7401";
  for (int host = 1; host <= hosts; ++host) {
    std::vector<std::string> f = {"--node-id", std::to_string(host), "--cluster-secret", "lab-secret",
                                  "--dead-after-ms", "1000", "--peer-address", lab_.Ip(host) + ":7400",
                                  "--transport", transport_, "--arena-size", "8M"};
    if (etcd_) {
      f.insert(f.end(), {"--etcd", etcd_->endpoint()});
    } else {
      f.insert(f.end(), {host == 1 ? "--coordinate" : "--join", coordinator});
    }
    if (extra) {
      std::vector<std::string> more = extra(host);
      f.insert(f.end(), more.begin(), more.end());
    }
    nodes_.push_back(std::make_unique<Node>(f, lab_.Namespace(host)));
  }
}

std::string LabCluster::Run(const std::string& program, int host, std::vector<std::string> args,
                            const std::string& expect) {
  args.insert(args.begin(), program);
  auto p = Process::Spawn(args, node(host).Env());
  std::string line = p->WaitForLine(expect, 120000);
  EXPECT_EQ(p->Wait(), 0) << p->output();
  return line;
}

bool FlipStateByte(const Node& node, uint64_t at) {
  DIR* d = ::opendir(node.state_dir().c_str());
  if (d == nullptr) return false;
  bool flipped = false;
  while (dirent* e = ::readdir(d)) {
    uint64_t addr = 0, id = 0;
    if (std::sscanf(e->d_name, "csm-arena-%" SCNx64 "-%" SCNx64, &addr, &id) != 2) continue;
    const std::string path = node.state_dir() + "/" + e->d_name;
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) continue;
    const off_t size = ::lseek(fd, 0, SEEK_END);
    char byte = 0;
    if (at >= addr && at < addr + static_cast<uint64_t>(size) &&
        ::pread(fd, &byte, 1, static_cast<off_t>(at - addr)) == 1) {
      byte = static_cast<char>(byte ^ 0x5a);
      flipped = ::pwrite(fd, &byte, 1, static_cast<off_t>(at - addr)) == 1;
    }
    ::close(fd);
  }
  ::closedir(d);
  return flipped;
}

std::string Field(const std::string& line, const std::string& name) {
  size_t at = line.find(name + "=");
  if (at == std::string::npos) return "";
  at += name.size() + 1;
  return line.substr(at, line.find(' ', at) - at);
}

bool Eventually(const std::function<bool()>& fn, int timeout_ms) {
  int64_t deadline = os::MonotonicNanos() + int64_t{timeout_ms} * 1000000;
  for (;;) {
    if (fn()) return true;
    if (os::MonotonicNanos() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace csm::testing
