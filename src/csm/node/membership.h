// Membership: this node's standing in the cluster once it has joined. A thread tells the
// directory every heartbeat interval that the node is alive, notices when the directory
// has forgotten the node (its coordinator restarted: the node must register again), and
// asks which of the copies held here are stale (deleted or replaced by their owner, or
// their owner and its replicas dead), for the daemon to drop, and takes over the objects
// of dead owners this node holds replicas of.
//
// It owns the list of copies held (the daemon replaces it as copies come and go) and
// knows nothing else of the daemon: what to do is handed back through Hooks, which are
// called on the heartbeat thread and must only hand work on (csmd posts it to its loop).
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "csm/cluster/cluster_directory.h"

namespace csm::node {

class Membership {
 public:
  using Held = cluster::ClusterDirectory::Held;
  struct Hooks {
    // The directory does not know this node: register again. Not called again until
    // Rejoined() says that attempt ended.
    std::function<void()> rejoin;
    // These copies (by key) must go.
    std::function<void(std::vector<std::string> keys)> drop_stale;
    // This node took these objects over (their owner died; it held replicas of them).
    std::function<void(std::vector<cluster::ObjectRecord> records)> taken_over;
    // Once WatchMembers was called: the live members' ids, whenever they changed.
    std::function<void(std::vector<uint32_t> live)> live_changed;
  };
  // `directory` outlives this object.
  Membership(cluster::ClusterDirectory* directory, int heartbeat_ms, Hooks hooks);
  ~Membership() { Stop(); }
  Membership(const Membership&) = delete;
  Membership& operator=(const Membership&) = delete;

  // Starts the heartbeat thread (once joined).
  void Start();
  // Ends it, without waiting for more than the heartbeat in progress.
  void Stop();

  // The copies this node holds now.
  void SetHeld(std::vector<Held> held);
  std::vector<Held> held() const;
  // Asks the directory which of `held` are stale and hands them to drop_stale, then has
  // it hand this node the objects of dead owners it holds replicas of (taken_over); on
  // the caller's thread (also done after every successful heartbeat).
  void CheckStale(const std::vector<Held>& held);
  // The re-registration that rejoin started has ended (whether it worked or not).
  void Rejoined();
  // From now on each heartbeat also asks who is alive, and hands changes to live_changed
  // (this node owns replicated objects: their replicas are chosen again as nodes come
  // and go).
  void WatchMembers();

 private:
  void Loop();
  cluster::ClusterDirectory* const directory_;
  const int heartbeat_ms_;
  const Hooks hooks_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;     // guarded by mu_
  bool rejoining_ = false;    // guarded by mu_
  std::vector<Held> held_;    // guarded by mu_
  bool watch_members_ = false;          // guarded by mu_
  std::vector<uint32_t> live_;          // the heartbeat thread's: live members last seen
  // The heartbeat thread's: asks who is alive and calls live_changed on a change.
  void CheckMembers();
  std::thread thread_;
};

}  // namespace csm::node
