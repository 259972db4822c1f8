// Test harness for multi-process tests: runs the real csmd and helper processes.
//
// Every wait is bounded: a node that does not come up, a helper that does not print or
// exit in time, fails the test instead of hanging it.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "csm/client.h"
#include "csm/config.h"

namespace csm::testing {

// Directory of the built binaries (csmd, csm, csm_test_helper).
std::string BinaryDir();

// A child process with its stdout on a pipe.
class Process {
 public:
  // Starts argv[0] (a path) with the given environment additions. `with_stderr`: its
  // stderr goes to the same pipe (for short-lived processes: read it, or it may block).
  static std::unique_ptr<Process> Spawn(const std::vector<std::string>& argv,
                                        const std::vector<std::string>& env = {}, bool with_stderr = false);
  ~Process();  // SIGKILLs the process if it still runs

  pid_t pid() const { return pid_; }
  // Reads stdout until a line containing `needle` (returns it) or timeout ("").
  std::string WaitForLine(const std::string& needle, int timeout_ms = 20000);
  // Waits for exit; returns the wait status, or -1 on timeout (then kills it).
  int Wait(int timeout_ms = 60000);
  void Kill(int sig);
  // Everything read from stdout so far (after Wait: everything).
  const std::string& output() const { return out_; }

 private:
  bool ReadSome(int timeout_ms);
  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string out_;
  size_t scanned_ = 0;
  bool exited_ = false;
  int status_ = -1;  // the wait status, once exited_
};

struct CommandResult {
  int exit_code;  // -1 if killed or timed out
  std::string out;
  std::string err;
};
// Runs a command to completion (stdout and stderr captured), bounded by timeout_ms.
CommandResult Run(const std::vector<std::string>& argv, const std::vector<std::string>& env = {},
                  int timeout_ms = 60000);

// Separate network hosts on this machine: a hub namespace holding a bridge, and
// `hosts` namespaces each joined to it by a veth pair (MTU 65535), with addresses
// 10.X.Y.i/24 (host i) and 10.X.Y.254 (hub). Everything is removed on destruction.
// Needs root and iproute2.
class NetworkLab {
 public:
  // Why a lab cannot be made here ("" if it can): it needs root and iproute2. A test
  // that needs one skips with this reason.
  static std::string Unavailable();
  explicit NetworkLab(int hosts);
  ~NetworkLab();
  std::string Namespace(int host) const;  // 0: the hub
  std::string Ip(int host) const;          // 0: the hub

 private:
  std::string prefix_, subnet_;
  int hosts_;
};

// A real csmd on a private socket, stopped (SIGTERM, then SIGKILL) on destruction.
// With `netns`, it runs inside that network namespace (its Unix socket is still a file
// every process here can reach).
class Node {
 public:
  // `keeps_state`: the node keeps its memory and directory in a private --state-dir under
  // /dev/shm (removed on destruction), so a restarted csmd takes its objects back.
  explicit Node(std::vector<std::string> extra_flags = {}, const std::string& netns = "",
                bool keeps_state = false);
  ~Node();
  const std::string& socket() const { return socket_; }
  const std::string& state_dir() const { return state_dir_; }
  // After Kill: removes what the node kept, so the next Start is a new, empty node.
  void Wipe();
  // Environment for helpers and csm commands: CSM_SOCKET=...
  std::vector<std::string> Env() const { return {"CSM_SOCKET=" + socket_}; }
  // The configuration a client in this process uses to attach.
  Config ClientConfig() const;
  Process& process() { return *process_; }
  // Ends csmd with `sig` (SIGKILL: as a crash would) and waits for it to be gone.
  void Kill(int sig);
  // Starts a new csmd with the same flags at the same socket (after Kill).
  void Start();
  void Restart(int sig) {
    Kill(sig);
    Start();
  }

 private:
  std::string dir_, socket_, state_dir_;
  std::vector<std::string> argv_;
  std::unique_ptr<Process> process_;
};

// Changes the byte at window address `addr` in the arena file of `node`'s --state-dir
// that holds it (while no csmd runs: damage a restarted csmd must notice); false if no
// arena file holds it.
bool FlipStateByte(const Node& node, uint64_t addr);

// A real etcd server (Debian's etcd-server) on free loopback ports with a private data
// directory, stopped and removed on destruction.
class Etcd {
 public:
  // On loopback, or inside network namespace `netns` listening on `ip`.
  explicit Etcd(const std::string& netns = "", const std::string& ip = "127.0.0.1");
  ~Etcd();
  const std::string& endpoint() const { return endpoint_; }  // http://127.0.0.1:PORT
  Process& process() { return *process_; }  // e.g. to pause it (SIGSTOP)

 private:
  std::string dir_, endpoint_;
  std::unique_ptr<Process> process_;
};

// A cluster of csmd nodes, one in each namespace of a NetworkLab (host i at Ip(i),
// peers served on port 7400), from a test parameter "<directory>_<transport>": the
// directory is a real etcd in the hub namespace ("etcd_…") or embedded in node 1
// (`embedded_…`, coordinator at Ip(1):7401). Stopped in reverse on destruction.
class LabCluster {
 public:
  // `extra(host)`: more csmd flags for that host's node.
  LabCluster(int hosts, const std::string& param,
             const std::function<std::vector<std::string>(int host)>& extra = {});
  Node& node(int host) { return *nodes_.at(static_cast<size_t>(host - 1)); }
  const std::string& transport() const { return transport_; }
  // Runs `program` with `args` as a client of node `host`, waits (2 min at most) for its
  // line containing `expect` and for it to exit 0 (a test failure otherwise); the line.
  std::string Run(const std::string& program, int host, std::vector<std::string> args,
                  const std::string& expect);

 private:
  NetworkLab lab_;  // first: outlives etcd and the nodes
  std::unique_ptr<Etcd> etcd_;
  std::string transport_;
  std::vector<std::unique_ptr<Node>> nodes_;
};

// The "<directory>_<transport>" parameters of `all` whose transport this build has
// (without UCX, the "_ucx" ones are left out: the ucx transport is not built).
inline std::vector<std::string> BuiltTransports(std::vector<std::string> all) {
#ifndef CSM_HAVE_UCX
  std::erase_if(all, [](const std::string& p) { return p.ends_with("_ucx"); });
#endif
  return all;
}

// This process's Client of `node` (a test failure, and null, if it cannot attach).
std::unique_ptr<Client> Attach(const Node& node);
// Commits the workload's map of `keys` entries (workload.h) under `key` from this process.
Status CommitMap(Client& c, const std::string& key, int32_t keys);

// A TCP port nothing listens on right now.
int FreePort();

// The value of `name=value` in a helper's report line ("" if absent).
std::string Field(const std::string& line, const std::string& name);

// Polls fn() every few ms until it returns true or timeout; returns the last result.
bool Eventually(const std::function<bool()>& fn, int timeout_ms = 10000);

}  // namespace csm::testing
