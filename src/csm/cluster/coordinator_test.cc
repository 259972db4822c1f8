// The embedded coordinator's record watch and the RecordCache a joined node keeps with it.
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "csm/cluster/coordinator.h"
#include "csm/cluster/record_cache.h"
#include "csm/os/tcp_channel.h"

namespace csm::cluster {
namespace {

using Clock = std::chrono::steady_clock;

constexpr WindowConfig kWindow{0x200000000000, uint64_t{1} << 40, uint64_t{1} << 30};

NodeInfo Node(uint32_t id) {
  NodeInfo n;
  n.node_id = id;
  n.cluster = "test";
  n.peer_address = "10.0.0." + std::to_string(id) + ":7000";
  n.window = kWindow;
  n.fingerprint = 42;
  return n;
}

ObjectRecord Record(const std::string& key, uint32_t owner, uint64_t id) {
  ObjectRecord r;
  r.key = key;
  r.owner_node = owner;
  r.object_id = id;
  r.size = 100;
  r.header = kWindow.base + id * 4096;
  r.root = r.header + 64;
  r.extents = {{r.header, 4096}};
  r.arenas = {{r.header, 4096}};
  return r;
}

// heartbeat_ms 0: no recovery window (a coordinator that just started hands out at once).
Coordinator MakeCoordinator(int dead_after_ms = 60000, int heartbeat_ms = 0) {
  return Coordinator("test", kWindow, 42, "build 42", dead_after_ms, heartbeat_ms);
}

TEST(CoordinatorWatchTest, ReportsEveryChangeInOrderAfterARevision) {
  Coordinator co = MakeCoordinator();
  ASSERT_TRUE(co.Join(Node(1)).ok());
  const uint64_t start = co.Watch(kWatchFromNow, 0).revision;
  ASSERT_TRUE(co.Publish(Record("a", 1, 1)).ok());
  ASSERT_TRUE(co.Publish(Record("b", 1, 2)).ok());
  ASSERT_TRUE(co.Unpublish("a", 1).ok());
  EXPECT_TRUE(co.Publish(Record("b", 1, 3)).IsAlreadyExists()) << "a refused publish is no change";

  RecordChanges c = co.Watch(start, 0);
  EXPECT_FALSE(c.reset);
  ASSERT_EQ(c.changes.size(), 3u);
  EXPECT_EQ(c.changes[0].key, "a");
  ASSERT_TRUE(c.changes[0].record);
  EXPECT_EQ(c.changes[0].record->object_id, 1u);
  EXPECT_EQ(c.changes[0].record->owner_address, "10.0.0.1:7000") << "records are annotated";
  EXPECT_TRUE(c.changes[0].record->owner_alive);
  EXPECT_EQ(c.changes[1].key, "b");
  EXPECT_EQ(c.changes[2].key, "a");
  EXPECT_FALSE(c.changes[2].record) << "an unpublished key is a removal";
  EXPECT_EQ(c.revision, start + 3);
  EXPECT_EQ(c.changes[2].revision, start + 3);

  RecordChanges tail = co.Watch(start + 2, 0);
  ASSERT_EQ(tail.changes.size(), 1u);
  EXPECT_EQ(tail.changes[0].key, "a");
}

TEST(CoordinatorWatchTest, WaitsForTheNextChangeAndWakesAtIt) {
  Coordinator co = MakeCoordinator();
  ASSERT_TRUE(co.Join(Node(1)).ok());
  const uint64_t now = co.Watch(kWatchFromNow, 0).revision;
  auto t0 = Clock::now();
  RecordChanges idle = co.Watch(now, 50);
  EXPECT_TRUE(idle.changes.empty());
  EXPECT_EQ(idle.revision, now);
  EXPECT_GE(Clock::now() - t0, std::chrono::milliseconds(45)) << "it waited for a change";

  std::thread publisher([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ASSERT_TRUE(co.Publish(Record("k", 1, 1)).ok());
  });
  t0 = Clock::now();
  RecordChanges woke = co.Watch(now, 10000);
  publisher.join();
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(5)) << "the publish ended the wait";
  ASSERT_EQ(woke.changes.size(), 1u);
  EXPECT_EQ(woke.changes[0].key, "k");

  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    co.StopWatches();
  });
  t0 = Clock::now();
  RecordChanges stopped = co.Watch(woke.revision, 10000);
  stopper.join();
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(5)) << "StopWatches ended the wait";
  EXPECT_TRUE(stopped.changes.empty());
}

TEST(CoordinatorWatchTest, AWatcherTooFarBehindIsToldToReset) {
  Coordinator co = MakeCoordinator();
  ASSERT_TRUE(co.Join(Node(1)).ok());
  const uint64_t start = co.Watch(kWatchFromNow, 0).revision;
  const size_t n = Coordinator::kWatchHistory + 10;
  for (size_t i = 0; i < n; ++i) ASSERT_TRUE(co.Publish(Record("k" + std::to_string(i), 1, i + 1)).ok());
  RecordChanges behind = co.Watch(start, 0);
  EXPECT_TRUE(behind.reset);
  EXPECT_TRUE(behind.changes.empty());
  EXPECT_TRUE(co.Watch(start + n + 5, 0).reset) << "a revision this coordinator never reached";

  // Kept changes come in batches: a watcher catches up batch by batch.
  uint64_t at = start + 20;
  size_t seen = 0;
  for (int i = 0; i < 100 && at < start + n; ++i) {
    RecordChanges c = co.Watch(at, 0);
    ASSERT_FALSE(c.reset);
    ASSERT_LE(c.changes.size(), Coordinator::kWatchBatch);
    seen += c.changes.size();
    at = c.revision;
  }
  EXPECT_EQ(seen, n - 20);
}

TEST(CoordinatorWatchTest, ARejoiningNodesOldRecordsAreRemoved) {
  Coordinator co = MakeCoordinator(/*dead_after_ms=*/30);
  ASSERT_TRUE(co.Join(Node(2)).ok());
  ASSERT_TRUE(co.Publish(Record("old", 2, 7)).ok());
  const uint64_t before = co.Watch(kWatchFromNow, 0).revision;
  std::this_thread::sleep_for(std::chrono::milliseconds(60));  // node 2 is seen dead
  ASSERT_TRUE(co.Join(Node(2)).ok()) << "a new incarnation";
  EXPECT_TRUE(co.Lookup("old").status().IsNotFound()) << "its memory died with the old one";
  RecordChanges c = co.Watch(before, 0);
  ASSERT_EQ(c.changes.size(), 1u);
  EXPECT_EQ(c.changes[0].key, "old");
  EXPECT_FALSE(c.changes[0].record);
}

// Replicas (cluster/replicas.h): the coordinator names them at Publish, lets the first
// live one take a dead owner's object over with the leases under it, and hands them
// over itself when the dead owner's id joins again.
TEST(CoordinatorReplicaTest, AReplicaTakesADeadOwnersObjectOverWithItsLeases) {
  Coordinator co = MakeCoordinator(/*dead_after_ms=*/200);
  for (uint32_t id : {1u, 2u, 3u}) ASSERT_TRUE(co.Join(Node(id)).ok());
  auto first = co.Lease(2, 16);
  ASSERT_TRUE(first.ok());
  ObjectRecord r = Record("k", 2, 7);
  r.arenas = {{kWindow.base + (*first + 1) * kWindow.segment_size, 8 << 20}};
  r.copies = 2;
  ASSERT_TRUE(co.Publish(r).ok());
  ASSERT_EQ(co.Lookup("k")->replicas, (std::vector<uint32_t>{3})) << "the next node after the owner";
  ClusterDirectory::Held held{"k", 7, 2, true};
  EXPECT_TRUE(co.TakeOver(3, {held}).empty()) << "its owner lives";
  // Node 2 goes silent; 1 and 3 go on.
  const auto until = Clock::now() + std::chrono::milliseconds(300);
  while (Clock::now() < until) {
    ASSERT_TRUE(co.Heartbeat(1).ok());
    ASSERT_TRUE(co.Heartbeat(3).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(co.Stale({held}).empty()) << "node 3's copy keeps it alive";
  EXPECT_TRUE(co.TakeOver(1, {{"k", 7, 2, true}}).empty()) << "not one of its replicas";
  std::vector<ObjectRecord> taken = co.TakeOver(3, {held});
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].owner_node, 3u);
  EXPECT_EQ(taken[0].origin(), 2u);
  EXPECT_EQ(taken[0].replicas, (std::vector<uint32_t>{1})) << "two copies again";
  EXPECT_TRUE(taken[0].owner_alive);
  EXPECT_TRUE(co.TakeOver(3, {held}).empty()) << "once";
  bool node3_holds_the_run = false;
  for (const NodeInfo& n : co.Members()) {
    for (const SegmentLease& l : n.leases) {
      if (l.first == *first) {
        EXPECT_EQ(n.node_id, 3u);
        node3_holds_the_run = true;
      }
    }
  }
  EXPECT_TRUE(node3_holds_the_run);
  // A new incarnation of node 2 leases elsewhere and does not take the key back.
  ASSERT_TRUE(co.Join(Node(2)).ok());
  auto next = co.Lease(2, 16);
  ASSERT_TRUE(next.ok());
  EXPECT_NE(*next, *first);
  EXPECT_EQ(co.Lookup("k")->owner_node, 3u);
}

TEST(CoordinatorReplicaTest, ADeadOwnersIdJoiningAgainHandsItsReplicatedObjectsOver) {
  Coordinator co = MakeCoordinator(/*dead_after_ms=*/100);
  for (uint32_t id : {2u, 3u}) ASSERT_TRUE(co.Join(Node(id)).ok());
  ObjectRecord kept = Record("kept", 2, 7);
  kept.copies = 2;
  ASSERT_TRUE(co.Publish(kept).ok());
  ASSERT_TRUE(co.Publish(Record("lost", 2, 8)).ok());
  const auto until = Clock::now() + std::chrono::milliseconds(200);
  while (Clock::now() < until) {
    ASSERT_TRUE(co.Heartbeat(3).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(co.Join(Node(2)).ok()) << "a new incarnation, before node 3 asked to take anything over";
  EXPECT_EQ(co.Lookup("kept")->owner_node, 3u);
  EXPECT_TRUE(co.Lookup("lost").status().IsNotFound()) << "one copy: gone with its owner";
}

NodeInfo Incarnation(uint32_t id, uint64_t incarnation) {
  NodeInfo n = Node(id);
  n.incarnation = incarnation;
  return n;
}

// A coordinator that just (re)started hands out no segment and no key until the live
// nodes have had their recovery window to re-register what they hold.
TEST(CoordinatorRecoveryTest, LiveNodesReRegisterBeforeAnythingIsHandedOut) {
  Coordinator co = MakeCoordinator(/*dead_after_ms=*/60000, /*heartbeat_ms=*/100);  // a 400 ms window
  EXPECT_TRUE(co.Lookup("held").status().IsUnavailable()) << "it may not be re-registered yet";
  EXPECT_TRUE(co.Heartbeat(2).IsNotFound()) << "node 2 learns it must register again";
  ASSERT_TRUE(co.Rejoin(Incarnation(2, 22), {{0, 16}}).ok());
  std::vector<std::string> conflicts;
  ASSERT_TRUE(co.Reregister(2, {Record("held", 2, 5)}, &conflicts).ok());
  EXPECT_TRUE(conflicts.empty());
  ASSERT_TRUE(co.Join(Incarnation(1, 11)).ok());
  auto first = co.Lease(1, 4);  // waits for the window to end
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(co.RecoveryLeftMs(), 0);
  EXPECT_GE(*first, 16u) << "not a segment node 2 holds";
  EXPECT_TRUE(co.Publish(Record("held", 1, 9)).IsAlreadyExists());
  EXPECT_EQ(co.Lookup("held")->owner_node, 2u);
  EXPECT_TRUE(co.Lookup("never").status().IsNotFound()) << "after the window, missing is missing";
  EXPECT_TRUE(co.Heartbeat(2).ok());
}

TEST(CoordinatorRecoveryTest, ReRegistrationsThatCollideAreRefusedOrReported) {
  Coordinator co = MakeCoordinator();  // no recovery window
  ASSERT_TRUE(co.Join(Incarnation(1, 11)).ok());
  auto first = co.Lease(1, 4);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(co.Rejoin(Incarnation(2, 22), {{*first + 2, 4}}).code(), StatusCode::kFailedPrecondition)
      << "those segments are node 1's now";
  ASSERT_TRUE(co.Rejoin(Incarnation(2, 22), {{*first + 8, 4}}).ok());
  ASSERT_TRUE(co.Publish(Record("k", 1, 1)).ok());
  std::vector<std::string> conflicts;
  ASSERT_TRUE(co.Reregister(2, {Record("k", 2, 3), Record("m", 2, 4)}, &conflicts).ok());
  EXPECT_EQ(conflicts, std::vector<std::string>{"k"});
  EXPECT_EQ(co.Lookup("k")->owner_node, 1u);
  EXPECT_EQ(co.Lookup("m")->owner_node, 2u);
  EXPECT_EQ(co.Reregister(2, {Record("x", 3, 1)}, &conflicts).code(), StatusCode::kPermissionDenied);
  // The same incarnation may register again; another one of a live id may not.
  EXPECT_TRUE(co.Rejoin(Incarnation(2, 22), {{*first + 8, 4}}).ok());
  EXPECT_TRUE(co.Rejoin(Incarnation(2, 23), {}).IsAlreadyExists());
  EXPECT_TRUE(co.Join(Incarnation(2, 0)).IsAlreadyExists());
}

// A node whose csmd restarted with its memory (the same incarnation, still counted
// alive) registers again: what it holds now replaces what it held, leases and records.
TEST(CoordinatorRecoveryTest, ANodeRestartedWithItsMemoryReplacesWhatItHeld) {
  Coordinator co = MakeCoordinator();
  ASSERT_TRUE(co.Join(Incarnation(2, 22)).ok());
  auto kept = co.Lease(2, 4);
  auto lost = co.Lease(2, 4);  // leased, then the csmd died before building in it
  ASSERT_TRUE(kept.ok() && lost.ok());
  ASSERT_TRUE(co.Publish(Record("k", 2, 1)).ok());
  ASSERT_TRUE(co.Publish(Record("replaced", 2, 2)).ok());
  ASSERT_TRUE(co.Rejoin(Incarnation(2, 22), {{*kept, 4}}).ok());
  std::vector<std::string> conflicts;
  ASSERT_TRUE(co.Reregister(2, {Record("k", 2, 1), Record("replaced", 2, 7)}, &conflicts).ok());
  EXPECT_TRUE(conflicts.empty()) << "its own records are not conflicts";
  EXPECT_EQ(co.Lookup("replaced")->object_id, 7u);
  ASSERT_TRUE(co.Join(Incarnation(3, 33)).ok());
  auto next = co.Lease(3, 4);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(*next, *lost) << "the run it no longer holds is free again";
  EXPECT_TRUE(co.Rejoin(Incarnation(2, 99), {{*kept, 4}}).IsAlreadyExists()) << "another incarnation of a live id";
}

TEST(RecordCacheTest, AnswersWhatItHoldsAndDropsTheOldestPastCapacity) {
  RecordCache cache(3);
  for (int i = 0; i < 4; ++i) cache.Put(Record("k" + std::to_string(i), 1, i + 1));
  EXPECT_FALSE(cache.Find("k0")) << "the oldest went first";
  auto k1 = cache.Find("k1");
  ASSERT_TRUE(k1);
  EXPECT_TRUE(k1->cached);
  EXPECT_EQ(k1->object_id, 2u);
  cache.Put(Record("k1", 1, 9));  // replaced: now the newest
  cache.Put(Record("k4", 1, 5));
  EXPECT_FALSE(cache.Find("k2"));
  EXPECT_EQ(cache.Find("k1")->object_id, 9u);
  cache.Erase("k1");
  EXPECT_FALSE(cache.Find("k1"));
  RecordCacheStats s = cache.stats();
  EXPECT_EQ(s.records, 2u);
  EXPECT_EQ(s.hits, 2u);
  EXPECT_EQ(s.misses, 3u);
  cache.Clear();
  EXPECT_EQ(cache.stats().records, 0u);
}

// A lookup's answer is kept only if no pushed change to its key overtook it.
TEST(RecordCacheTest, AnAnswerOvertakenByAPushedChangeIsNotKept) {
  RecordCache cache(2);
  uint64_t mark = cache.Mark();
  cache.Erase("gone");  // the delete's push lands while the lookup is on its way
  cache.KeepAnswer(Record("gone", 1, 1), mark);
  EXPECT_FALSE(cache.Find("gone")) << "a deleted record came back from a late answer";

  mark = cache.Mark();
  cache.Put(Record("new", 1, 2));  // a re-commit pushed after the lookup was sent
  cache.KeepAnswer(Record("new", 1, 1), mark);
  EXPECT_EQ(cache.Find("new")->object_id, 2u) << "the older answer replaced the pushed record";

  mark = cache.Mark();
  cache.Erase("other");  // changes to other keys do not matter
  cache.KeepAnswer(Record("kept", 1, 3), mark);
  EXPECT_EQ(cache.Find("kept")->object_id, 3u);

  mark = cache.Mark();
  cache.Clear();  // the stream broke: nothing known
  cache.KeepAnswer(Record("after-clear", 1, 4), mark);
  EXPECT_FALSE(cache.Find("after-clear"));
  cache.KeepAnswer(Record("after-clear", 1, 4), cache.Mark());
  EXPECT_TRUE(cache.Find("after-clear")) << "a lookup sent after the clear is kept";

  mark = cache.Mark();
  cache.Erase("a");
  cache.Erase("b");
  cache.Erase("c");  // "a"'s erase is forgotten past capacity
  cache.KeepAnswer(Record("a", 1, 5), mark);
  EXPECT_FALSE(cache.Find("a")) << "a forgotten erase must not let an older answer in";
}

// Over TCP: a joined RemoteCoordinator's cache follows the coordinator's changes, and
// forgets everything when the coordinator goes away.
TEST(RemoteCoordinatorTest, ItsCacheFollowsTheCoordinator) {
  Coordinator co = MakeCoordinator();
  auto server = CoordinatorServer::Start("127.0.0.1:0", "secret", 5000, &co);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  ASSERT_TRUE(co.Join(Node(1)).ok());
  ASSERT_TRUE(co.Publish(Record("before", 1, 1)).ok());
  auto remote = std::make_unique<RemoteCoordinator>(
      "127.0.0.1:" + std::to_string((*server)->port()), "secret", 5000, 2);
  ASSERT_TRUE(remote->Join(Node(2)).ok());

  auto wait_for = [&](auto done) {
    for (int i = 0; i < 500 && !done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return done();
  };
  // A record published before the watch began is asked of the coordinator once, then
  // kept (the watch follows it from then on).
  auto before = remote->Lookup("before", Freshness::kCachedOk);
  ASSERT_TRUE(before.ok()) << before.status().ToString();
  EXPECT_FALSE(before->cached);
  EXPECT_TRUE(remote->Lookup("before", Freshness::kCachedOk)->cached);
  ASSERT_TRUE(co.Unpublish("before", 1).ok());
  ASSERT_TRUE(wait_for([&] { return remote->cache_stats().records == 0; })) << "its removal came too";

  ASSERT_TRUE(co.Publish(Record("pushed", 1, 2)).ok());
  ASSERT_TRUE(wait_for([&] { return remote->cache_stats().records == 1; }));
  auto pushed = remote->Lookup("pushed", Freshness::kCachedOk);
  ASSERT_TRUE(pushed.ok());
  EXPECT_TRUE(pushed->cached);
  EXPECT_EQ(pushed->object_id, 2u);
  EXPECT_EQ(pushed->owner_address, "10.0.0.1:7000");
  auto fresh = remote->Lookup("pushed", Freshness::kFresh);
  ASSERT_TRUE(fresh.ok());
  EXPECT_FALSE(fresh->cached);
  EXPECT_EQ(remote->cache_stats().hits, 2u);

  ASSERT_TRUE(co.Unpublish("pushed", 1).ok());
  ASSERT_TRUE(wait_for([&] { return remote->cache_stats().records == 0; }));
  EXPECT_TRUE(remote->Lookup("pushed", Freshness::kCachedOk).status().IsNotFound());

  ASSERT_TRUE(co.Publish(Record("again", 1, 3)).ok());
  ASSERT_TRUE(wait_for([&] { return remote->cache_stats().records == 1; }));
  server->reset();  // the coordinator goes: what was cached may go stale unseen
  ASSERT_TRUE(wait_for([&] { return remote->cache_stats().records == 0; }));

  auto t0 = Clock::now();
  remote.reset();
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(2)) << "stopping does not wait out a long poll";
}

// Requests with fields of the wrong type are answered with Corruption; the connection
// and the coordinator go on serving.
TEST(CoordinatorServerTest, MistypedFieldsAreRefusedAndServingGoesOn) {
  Coordinator co = MakeCoordinator();
  auto server = CoordinatorServer::Start("127.0.0.1:0", "secret", 5000, &co);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  auto fd = os::DialAuthenticated("127.0.0.1:" + std::to_string((*server)->port()), "secret",
                                  kCoordinatorMagic, 5000);
  ASSERT_TRUE(fd.ok()) << fd.status().ToString();
  for (const char* bad : {R"({"op":"watch","node_id":1,"after":0,"wait_ms":"soon"})",
                          R"({"op":"watch","node_id":1,"after":-1})",
                          R"({"op":"list","node_id":1,"limit":"all"})",
                          R"({"op":"list","node_id":1,"after":7})"}) {
    ASSERT_TRUE(os::SendFrame(fd->get(), bad, 5000).ok());
    auto reply = os::ReceiveFrame(fd->get(), 1 << 20, 5000);
    ASSERT_TRUE(reply.ok()) << bad << ": " << reply.status().ToString();
    auto j = nlohmann::json::parse(*reply);
    EXPECT_EQ(j["status"].get<int>(), static_cast<int>(StatusCode::kCorruption)) << bad << " → " << *reply;
  }
  ASSERT_TRUE(os::SendFrame(fd->get(), R"({"op":"watch","node_id":1,"after":0,"wait_ms":0})", 5000).ok());
  auto reply = os::ReceiveFrame(fd->get(), 1 << 20, 5000);
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(nlohmann::json::parse(*reply)["status"].get<int>(), 0) << *reply;
}

TEST(RemoteCoordinatorTest, StopsPromptlyDuringALongPoll) {
  Coordinator co = MakeCoordinator();
  auto server = CoordinatorServer::Start("127.0.0.1:0", "secret", 20000, &co);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  ASSERT_TRUE(co.Join(Node(1)).ok());
  auto remote = std::make_unique<RemoteCoordinator>(
      "127.0.0.1:" + std::to_string((*server)->port()), "secret", 20000, 2);
  ASSERT_TRUE(remote->Join(Node(2)).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // in its long poll now
  auto t0 = Clock::now();
  remote.reset();
  server->reset();
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(2));
}

}  // namespace
}  // namespace csm::cluster
