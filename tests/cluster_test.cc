// Several real csmd processes forming one cluster, with each directory backend: the
// embedded coordinator (hosted by node 1) and a real etcd server started by the test.
// Membership, disjoint segment leases, refusals at join, death detection, and objects
// built on one node used at the same addresses on the others.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <filesystem>
#include <future>
#include <nlohmann/json.hpp>

#include "csm/client.h"
#include "csm/cluster/coordinator.h"
#include "csm/cluster/etcd_directory.h"
#include "csm/protocol/protocol.h"
#include "csm/object/object_layout.h"
#include "csm/os/memory.h"
#include "csm/os/tcp_channel.h"
#include "csm/transport/fetch_protocol.h"
#include "csm/transport/tcp_transport.h"
#include "csm/transport/transport.h"
#include "cluster_fixture.h"
#include "harness.h"
#include "workload.h"

namespace csm {
namespace {

using nlohmann::json;
using testing::Attach;
using testing::CommitMap;
using testing::Node;
using testing::ClusterTest;
using testing::RunHelper;
using testing::Nodes;
using testing::Member;
using testing::Alive;
using testing::Fetches;
using testing::Listed;
using testing::Helper;
using testing::Csmd;
using testing::CsmCli;


// While the directory (etcd, or the node hosting the coordinator) is paused, a commit,
// a delete and a lookup on node 2 wait for it, and only the processes that asked wait:
// csmd answers its other clients at once. All complete once the directory is back.
TEST_P(ClusterTest, ASlowDirectoryHoldsUpOnlyTheProcessesWaitingForIt) {
  dead_after_ms_ = "20000";  // nobody is declared dead while the directory is paused
  a_ = Start(1);
  RunHelper(*a_, {"big", "early", "1"});  // before node 2 joins: not in its record cache
  b_ = Start(2);
  RunHelper(*b_, {"big", "before", "1"});
  auto reader = Client::Connect(b_->ClientConfig());
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  testing::Process& directory = etcd() ? etcd_->process() : a_->process();
  auto info = [&] { return json::parse(*(*reader)->InfoJson()); };

  // Paused: `request` (a process) waits for the directory, and `field` of node 2's info
  // says so; node 2 answers Info at once.
  auto while_paused = [&](std::vector<std::string> request, const char* field) {
    directory.Kill(SIGSTOP);
    auto waiting = testing::Process::Spawn(request, b_->Env());
    // Until the request is seen waiting (observed in node 2's info, however long the
    // process takes to start and ask), every Info is answered within 2 s.
    bool answered = true;
    uint64_t waiting_requests = 0;
    testing::Eventually([&] {
      auto asked = std::async(std::launch::async, [&] { return (*reader)->InfoJson(); });
      if (asked.wait_for(std::chrono::seconds(2)) != std::future_status::ready) {
        answered = false;
        return true;
      }
      auto j = asked.get();
      if (j.ok()) waiting_requests = json::parse(*j)[field].get<uint64_t>();
      return waiting_requests >= 1;
    }, 60000);
    directory.Kill(SIGCONT);
    EXPECT_TRUE(answered) << "node 2 served nobody while a request waited for the directory";
    EXPECT_EQ(waiting_requests, 1u) << field << ": the request did not wait for the directory";
    EXPECT_EQ(waiting->Wait(30000), 0) << waiting->output();
  };
  while_paused({Helper(), "big", "during", "1"}, "directory_requests_waiting");
  EXPECT_TRUE((*reader)->Lookup("during").ok());
  EXPECT_EQ(RunHelper(*a_, {"check-big", "during", "1"}), 0) << "the record reached the directory";
  while_paused({CsmCli(), "rm", "before"}, "directory_requests_waiting");
  EXPECT_TRUE((*reader)->Lookup("before").status().IsNotFound());
  const uint64_t asked_before = info()["record_cache"]["misses"].get<uint64_t>();
  while_paused({Helper(), "check-big", "early", "1"}, "fetches_in_flight");
  EXPECT_EQ(info()["record_cache"]["misses"].get<uint64_t>(), asked_before + 1)
      << "not a directory lookup";

  // A node's first builder needs segments leased from the cluster; csm nodes asks the
  // directory too. Both wait for it on the directory thread, and the node answers
  // other processes meanwhile (csm info, run as a process: this one attaches to node 2).
  c_ = Start(3);
  directory.Kill(SIGSTOP);
  auto building = testing::Process::Spawn({Helper(), "big", "on-3", "1"}, c_->Env());
  auto nodes = testing::Process::Spawn({CsmCli(), "nodes"}, c_->Env());
  bool answered = true;
  EXPECT_TRUE(testing::Eventually([&] {
    auto r = testing::Run({CsmCli(), "info"}, c_->Env(), 10000);
    if (r.exit_code != 0) answered = false;
    return r.exit_code != 0 || r.out.find("directory 2 requests waiting") != std::string::npos;
  }, 60000));
  directory.Kill(SIGCONT);
  EXPECT_TRUE(answered) << "node 3 served nobody while its lease waited for the directory";
  EXPECT_EQ(building->Wait(30000), 0) << building->output();
  EXPECT_EQ(nodes->Wait(30000), 0) << nodes->output();
}

TEST_P(ClusterTest, NodesLeaseDisjointSegmentsAndBuildInThem) {
  StartThree();
  std::vector<Node*> nodes = {a_.get(), b_.get(), c_.get()};
  for (size_t i = 0; i < nodes.size(); ++i) RunHelper(*nodes[i], {"big", "obj-" + std::to_string(i + 1), "8"});
  json members = Nodes(*b_);
  ASSERT_EQ(members["members"].size(), 3u) << members.dump();
  const uint64_t seg = DefaultConfig().window.segment_size, base = DefaultConfig().window.base;
  std::vector<std::pair<uint64_t, uint64_t>> all;  // [begin, end) of every lease
  for (int id = 1; id <= 3; ++id) {
    json m = Member(members, id);
    ASSERT_FALSE(m.empty()) << members.dump();
    EXPECT_TRUE(m["alive"].get<bool>());
    ASSERT_FALSE(m["leases"].empty()) << "node " << id << " built an object, so it leased";
    auto client = Client::Connect(nodes[id - 1]->ClientConfig());
    ASSERT_TRUE(client.ok());
    uint64_t header = (*client)->Lookup("obj-" + std::to_string(id))->header;
    bool inside = false;
    for (const auto& l : m["leases"]) {
      uint64_t begin = base + l["first_segment"].get<uint64_t>() * seg;
      uint64_t end = begin + l["segments"].get<uint64_t>() * seg;
      inside |= header >= begin && header < end;
      for (const auto& [b0, e0] : all) EXPECT_TRUE(end <= b0 || begin >= e0) << "leases overlap";
      all.push_back({begin, end});
    }
    EXPECT_TRUE(inside) << "node " << id << "'s object lies in its own segments";
  }
}

// Connections to a node's peer port and to the coordinator that never authenticate
// (hundreds of them, as a scanner or a hostile host would open) neither keep other nodes
// from fetching nor from using the directory.
TEST_P(ClusterTest, FloodsOfSilentConnectionsStarveNoPeer) {
  a_ = Start(1);
  b_ = Start(2);
  RunHelper(*a_, {"produce", "flooded", "1000"});
  auto peer = transport::SplitPeerAddress(Member(Nodes(*a_), 1).at("peer_address").get<std::string>());
  ASSERT_TRUE(peer.ok());
  std::vector<std::string> targets = {peer->second};
  if (!etcd()) targets.push_back(coordinator_);
  rlimit files{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &files), 0);
  files.rlim_cur = files.rlim_max;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &files), 0);
  std::vector<os::UniqueFd> silent;
  for (const std::string& target : targets) {
    const int port = std::atoi(target.substr(target.rfind(':') + 1).c_str());
    for (int i = 0; i < 600; ++i) {
      os::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(static_cast<uint16_t>(port));
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
        silent.push_back(std::move(fd));
      }
    }
  }
  EXPECT_GE(silent.size(), 600u);
  RunHelper(*b_, {"consume", "flooded", "1000"});    // fetched from node 1's peer port
  RunHelper(*b_, {"produce", "during-flood", "10"});  // published through the directory
  RunHelper(*a_, {"consume", "during-flood", "10"});
}


// kill -9 of the node that hosts the embedded coordinator, then the same node started
// again with the same flags, while the others go on: they keep serving what they have
// (and say the coordinator is unreachable for what they do not), re-register with the
// new coordinator, and afterwards every node lists every live object once and reads
// the right bytes; a key the restarted node commits again means its new object
// everywhere, never the copy of its old one.

// One thread of a process waits for a remote object whose owner does not answer (paused);
// the process's other threads commit, get, delete and drop pins meanwhile, each answered
// at once: no request waits behind another's round trip.
TEST_P(ClusterTest, AThreadWaitingForARemoteObjectHoldsUpNoOtherThread) {
  StartThree();
  RunHelper(*c_, {"big", "remote-blob", "16"});
  auto client = Client::Connect(b_->ClientConfig());
  ASSERT_TRUE(client.ok());
  c_->process().Kill(SIGSTOP);  // the owner stops answering
  auto waiting = std::async(std::launch::async, [&] {
    return (*client)->Get<csm::vector<uint8_t>>("remote-blob", std::chrono::seconds(60)).status();
  });
  ASSERT_TRUE(testing::Eventually([&] {
    return json::parse(*(*client)->InfoJson())["fetches_in_flight"].get<uint64_t>() >= 1;
  }, 30000)) << "the remote Get is under way";
  for (int i = 0; i < 5; ++i) {
    auto others = std::async(std::launch::async, [&, i]() -> Status {
      const std::string key = "local-" + std::to_string(i);
      CSM_RETURN_IF_ERROR(CommitMap(**client, key, 100));
      CSM_ASSIGN_OR_RETURN(auto ref, (*client)->Get<workload::HeapMap>(key));
      if (workload::Verify(*ref, 100) != "") return Corruption("wrong bytes");
      CSM_RETURN_IF_ERROR((*client)->Delete(key));
      ref.Reset();  // the last pin of a deleted object: a one-way message to csmd
      return Status::OK();
    });
    // Generous for a loaded machine; before requests carried ids this waited for the fetch.
    ASSERT_EQ(others.wait_for(std::chrono::seconds(20)), std::future_status::ready) << "round " << i;
    EXPECT_TRUE(others.get().ok());
  }
  EXPECT_EQ(waiting.wait_for(std::chrono::seconds(0)), std::future_status::timeout) << "still fetching";
  c_->process().Kill(SIGCONT);
  Status fetched = waiting.get();
  EXPECT_TRUE(fetched.ok()) << fetched.ToString();
}

// GetMany asks for every key another node holds at once: csmd fetches them side by
// side (seen while their owner is stopped: all three fetches are under way together).
TEST_P(ClusterTest, GetManyFetchesRemoteKeysInParallel) {
  StartThree();
  const std::vector<std::string> keys = {"many-1", "many-2", "many-3"};
  for (const auto& key : keys) RunHelper(*c_, {"big", key, "1"});  // 1 MiB: not copied ahead
  auto client = Client::Connect(b_->ClientConfig());
  ASSERT_TRUE(client.ok());
  c_->process().Kill(SIGSTOP);
  auto many = std::async(std::launch::async, [&] {
    return (*client)->GetMany<csm::vector<uint8_t>>(keys, std::chrono::seconds(60));
  });
  const bool together = testing::Eventually([&] {
    return (*client)->Info().ValueOrDie().fetches_in_flight == keys.size();
  }, 30000);
  c_->process().Kill(SIGCONT);
  EXPECT_TRUE(together) << "the fetches went one after another";
  auto refs = many.get();
  ASSERT_TRUE(refs.ok()) << refs.status().ToString();
  ASSERT_EQ(refs->size(), keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    EXPECT_EQ((*refs)[i].info().key, keys[i]);
    EXPECT_EQ((*refs)[i]->size(), 1u << 20);
    EXPECT_EQ((*refs)[i]->back(), 0x5a);
  }
}

// The embedded directory only: with etcd no csm node hosts it.
class EmbeddedCoordinatorTest : public ClusterTest {};

TEST_P(EmbeddedCoordinatorTest, RestartingTheCoordinatorsNodeLosesNoLiveNodeOrObject) {
  coordinate_port_ = std::to_string(testing::FreePort());
  StartThree();
  RunHelper(*a_, {"produce", "on-1", "1000"});
  RunHelper(*a_, {"big", "large-on-1", "1"});  // too large to be copied ahead
  RunHelper(*b_, {"produce", "on-2", "2000"});
  RunHelper(*c_, {"produce", "on-3", "3000"});
  RunHelper(*c_, {"consume", "on-1", "1000"});  // node 3 holds a copy of node 1's object
  RunHelper(*b_, {"consume", "on-3", "3000"});

  a_->Kill(SIGKILL);
  RunHelper(*b_, {"consume", "on-2", "2000"});  // its own
  RunHelper(*b_, {"consume", "on-3", "3000"});  // its copy
  {
    auto client = Client::Connect(b_->ClientConfig());
    ASSERT_TRUE(client.ok());
    auto unknown = (*client)->Get<csm::vector<uint8_t>>("large-on-1", std::chrono::seconds(3));
    EXPECT_TRUE(unknown.status().IsUnavailable()) << unknown.status().ToString();
    EXPECT_NE(unknown.status().message().find("coordinator"), std::string::npos) << unknown.status().ToString();
    Status down = CommitMap(**client, "during-down", 10);
    EXPECT_TRUE(down.IsUnavailable()) << down.ToString();
    EXPECT_NE(down.message().find("coordinator"), std::string::npos) << down.ToString();
  }

  a_->Start();
  EXPECT_TRUE(testing::Eventually([&] {
    json m = Nodes(*a_);
    return Alive(m, 1) && Alive(m, 2) && Alive(m, 3);
  }, 30000)) << Nodes(*a_).dump();
  RunHelper(*a_, {"produce", "on-1", "500"});  // its old object died with it: a new one
  RunHelper(*b_, {"produce", "during-down", "10"});
  for (Node* n : {a_.get(), b_.get(), c_.get()}) {
    RunHelper(*n, {"consume", "on-1", "500"});
    RunHelper(*n, {"consume", "on-2", "2000"});
    RunHelper(*n, {"consume", "on-3", "3000"});
    RunHelper(*n, {"consume", "during-down", "10"});
    for (const char* key : {"on-1", "on-2", "on-3", "during-down"}) EXPECT_EQ(Listed(*n, key), 1) << key;
  }
  for (int id = 1; id <= 3; ++id) EXPECT_EQ(Member(Nodes(*c_), id).value("alive", false), true) << id;
}

TEST_P(ClusterTest, JoinRefusalsSayWhy) {
  a_ = Start(1);
  b_ = Start(2);
  auto refused = [&](std::vector<std::string> flags, const std::string& why) {
    std::vector<std::string> argv = {Csmd(), "--socket", "/tmp/csm-test-refused.sock"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    auto r = testing::Run(argv, {}, 20000);
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_NE(r.err.find(why), std::string::npos) << r.err;
  };
  refused(Flags(3, {"--heap-size", "8T"}), "start every node with the same heap_base");
  std::vector<std::string> wrong_secret = {"--node-id", "3", "--cluster-secret", "guess"};
  auto dir = DirectoryFlags(3);
  wrong_secret.insert(wrong_secret.end(), dir.begin(), dir.end());
  refused(wrong_secret, etcd() ? "secret differs" : "refused our cluster secret");
  refused(Flags(2), "node id 2 is taken by a live node");
  std::vector<std::string> no_secret = {"--node-id", "3"};
  no_secret.insert(no_secret.end(), dir.begin(), dir.end());
  refused(no_secret, "needs a shared secret");
  if (!etcd()) refused(Flags(3, {"--cluster", "other"}), "belongs to cluster 'other'");
  refused({"--node-id", "3", "--cluster-secret", "s",
           etcd() ? "--etcd" : "--join", etcd() ? "http://127.0.0.1:1" : "127.0.0.1:1"},
          "unreachable");
  EXPECT_EQ(Nodes(*a_)["members"].size(), 2u) << "no refused node became a member";
}

TEST_P(ClusterTest, DeadNodeIsReportedAndItsIdCanRejoin) {
  StartThree();
  RunHelper(*c_, {"big", "obj", "8"});
  ASSERT_TRUE(Alive(Nodes(*a_), 3));
  c_->process().Kill(SIGKILL);
  EXPECT_TRUE(testing::Eventually([&] { return !Alive(Nodes(*a_), 3); }, 8000));
  EXPECT_TRUE(Alive(Nodes(*a_), 2)) << "the others stay alive";
  c_.reset();
  // A new incarnation of node 3 starts afresh: alive, and none of the dead one's leases.
  auto again = Start(3);
  json m = Member(Nodes(*a_), 3);
  ASSERT_FALSE(m.empty());
  EXPECT_TRUE(m.value("alive", false));
  EXPECT_TRUE(m.at("leases").empty());
}

TEST_P(ClusterTest, MapBuiltOnOneNodeIsReadAtTheSameAddressOnTheOthers) {
  StartThree();
  auto producer = testing::Process::Spawn({Helper(), "produce", "shared/map", "100000"}, a_->Env());
  std::string produced = producer->WaitForLine("committed", 120000);
  ASSERT_EQ(producer->Wait(), 0) << producer->output();
  for (Node* reader : {b_.get(), c_.get()}) {
    auto consumer = testing::Process::Spawn({Helper(), "consume", "shared/map", "100000"}, reader->Env());
    std::string consumed = consumer->WaitForLine("verified", 120000);
    EXPECT_EQ(consumer->Wait(), 0) << consumer->output();
    // Same address on the other node, mapped from that node's own (replica) memory.
    EXPECT_EQ(testing::Field(produced, "root"), testing::Field(consumed, "root"));
    EXPECT_NE(testing::Field(consumed, "root"), "");
    EXPECT_NE(consumed.find("csm-replica-"), std::string::npos) << consumed;
    EXPECT_EQ(Fetches(*reader), 1u);
  }
  // csm ls on any node lists the object with its owner; the owner is node 1.
  auto ls = testing::Run({CsmCli(), "ls"}, c_->Env());
  EXPECT_NE(ls.out.find("shared/map"), std::string::npos) << ls.out;
  // A key is unique across the cluster.
  auto dup = testing::Process::Spawn({Helper(), "produce", "shared/map", "10"}, b_->Env());
  EXPECT_FALSE(dup->WaitForLine("already committed on node 1").empty()) << dup->output();
}

TEST_P(ClusterTest, ConcurrentReadersOnANodeCauseOneFetch) {
  StartThree();
  RunHelper(*a_, {"big", "blob", "64"});
  std::vector<std::unique_ptr<testing::Process>> readers;
  for (int i = 0; i < 4; ++i) {
    readers.push_back(testing::Process::Spawn({Helper(), "check-big", "blob", "64"}, b_->Env()));
  }
  for (auto& r : readers) EXPECT_EQ(r->Wait(), 0) << r->output();
  EXPECT_EQ(Fetches(*b_), 1u) << "one fetch per node however many readers";
  EXPECT_EQ(Fetches(*c_), 0u);
}

TEST_P(ClusterTest, DeadOwnersObjectsAreUnavailableOthersStayReadable) {
  StartThree();  // C is the owner that dies (with the embedded directory A hosts it)
  RunHelper(*c_, {"produce", "on-c", "1000"});
  RunHelper(*a_, {"produce", "on-a", "1000"});
  // B already holds a copy of C's object: it must not outlive C either.
  RunHelper(*b_, {"consume", "on-c", "1000"});
  c_->process().Kill(SIGKILL);
  auto client = Client::Connect(b_->ClientConfig());
  ASSERT_TRUE(client.ok());
  int64_t start = os::MonotonicNanos();
  Status s;
  EXPECT_TRUE(testing::Eventually([&] {
    s = (*client)->Get<workload::HeapMap>("on-c").status();
    return s.IsUnavailable();
  }, 10000)) << s.ToString();
  EXPECT_LT(os::MonotonicNanos() - start, 10'000'000'000) << "bounded by dead-after + heartbeat";
  EXPECT_NE(s.message().find("not alive"), std::string::npos) << s.ToString();
  auto other = (*client)->Get<workload::HeapMap>("on-a");
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  EXPECT_EQ(workload::Verify(**other, 1000), "");
}

TEST_P(ClusterTest, DeletingOnTheOwnerRemovesTheCopies) {
  StartThree();
  RunHelper(*a_, {"produce", "k", "1000"});
  RunHelper(*b_, {"consume", "k", "1000"});
  auto refused = testing::Run({CsmCli(), "rm", "k"}, b_->Env());
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("delete it on that node"), std::string::npos) << refused.err;
  EXPECT_EQ(testing::Run({CsmCli(), "rm", "k"}, a_->Env()).exit_code, 0);
  auto client = Client::Connect(b_->ClientConfig());
  EXPECT_TRUE(testing::Eventually([&] {
    return (*client)->Get<workload::HeapMap>("k").status().IsNotFound();
  }, 5000));
  // The key is free across the cluster again.
  RunHelper(*c_, {"produce", "k", "10"});
}

// A small object published on one node is copied to the others as its record reaches
// them (--copy-ahead-below, 256 KiB by default): their first Get of it is local. A larger
// one is fetched only when asked for.
TEST_P(ClusterTest, SmallObjectsAreCopiedAheadOfTheirFirstGet) {
  a_ = Start(1);
  b_ = Start(2);
  auto client = Client::Connect(b_->ClientConfig());
  ASSERT_TRUE(client.ok());
  auto status = [&] { return (*client)->Info().ValueOrDie(); };
  RunHelper(*a_, {"big", "large", "1"});         // 1 MiB: published first, not copied
  RunHelper(*a_, {"produce", "small", "1000"});  // ~190 KiB
  ASSERT_TRUE(testing::Eventually([&] { return status().fetches == 1; }, 30000))
      << "the small object is copied before anyone asks";
  EXPECT_EQ(status().copies_ahead, 1u) << "the large one, heard before it, was not";
  auto ref = (*client)->Get<workload::HeapMap>("small");
  ASSERT_TRUE(ref.ok()) << ref.status().ToString();
  EXPECT_EQ(workload::Verify(**ref, 1000), "");
  EXPECT_EQ(ref->info().owner_node, 1u);
  auto stat = json::parse(*(*client)->StatJson("small"));
  EXPECT_EQ(stat["owner_node"].get<int>(), 1) << "the copy's owner, not the node holding it";
  EXPECT_EQ(status().fetches, 1u) << "the Get found the copy here";
  EXPECT_EQ(json::parse(*(*client)->InfoJson())["record_cache"]["misses"].get<uint64_t>(), 0u);
  ASSERT_TRUE((*client)->Get<csm::vector<uint8_t>>("large").ok());
  EXPECT_EQ(status().fetches, 2u) << "fetched when asked";
  EXPECT_EQ(status().copies_ahead, 1u);

  // Deleted by its owner: the copy goes as the change is heard, readers' pins aside.
  ref->Reset();
  EXPECT_EQ(testing::Run({CsmCli(), "rm", "small"}, a_->Env()).exit_code, 0);
  EXPECT_TRUE(testing::Eventually([&] {
    return (*client)->Get<workload::HeapMap>("small").status().IsNotFound();
  }, 5000));
}

// Bytes that do not match the checksum taken at commit (here its producer wrote into
// the object afterwards) are refused by the fetching node, which goes on serving.
TEST_P(ClusterTest, FetchedBytesThatDoNotMatchTheCommitChecksumAreRefused) {
  a_ = Start(1);
  b_ = Start(2, {"--copy-ahead-below", "0"});  // a copy made before the damage would be sound
  RunHelper(*a_, {"produce-damaged", "damaged", "1000"});
  RunHelper(*a_, {"produce", "sound", "1000"});
  auto client = Client::Connect(b_->ClientConfig());
  ASSERT_TRUE(client.ok());
  auto damaged = (*client)->Get<workload::HeapMap>("damaged");
  EXPECT_TRUE(damaged.status().IsCorruption()) << damaged.status().ToString();
  EXPECT_NE(damaged.status().message().find("do not match its checksum"), std::string::npos)
      << damaged.status().ToString();
  auto sound = (*client)->Get<workload::HeapMap>("sound");
  ASSERT_TRUE(sound.ok()) << sound.status().ToString();
  EXPECT_EQ(workload::Verify(**sound, 1000), "");
  // Asked again, the damaged object is refused again (no half-made copy was kept).
  EXPECT_TRUE((*client)->Get<workload::HeapMap>("damaged").status().IsCorruption());
}

// A dropped copy's memory is kept (populated) for the next copy of the same size, which
// then shows its own bytes only.
TEST_P(ClusterTest, DroppedCopiesMemoryIsReusedForTheNextCopy) {
  a_ = Start(1);
  b_ = Start(2, {"--spare-memory-ms", "60000"});  // the default 3 s is short for sanitizers
  auto info = [&](const char* field) {
    auto c = Client::Connect(b_->ClientConfig());
    return json::parse(*(*c)->InfoJson())[field].get<uint64_t>();
  };
  RunHelper(*a_, {"produce", "first", "100000"});
  RunHelper(*b_, {"consume", "first", "100000"});
  EXPECT_EQ(info("spare_memory_bytes"), 0u);
  EXPECT_EQ(testing::Run({CsmCli(), "rm", "first"}, a_->Env()).exit_code, 0);
  EXPECT_TRUE(testing::Eventually([&] { return info("spare_memory_bytes") > 0; }, 5000));
  RunHelper(*a_, {"produce", "second", "60000"});
  RunHelper(*b_, {"consume", "second", "60000"});  // checks every entry
  EXPECT_GT(info("spare_memory_reused"), 0u);
}

// A node keeps the records the directory pushes (the coordinator's watch, etcd's watch
// stream): a Get of a remote object asks the directory nothing, and an object deleted
// and committed again under its key is read anew.
TEST_P(ClusterTest, PushedRecordsAnswerRemoteGetsAndFollowReplacements) {
  a_ = Start(1);
  RunHelper(*a_, {"produce", "early", "1000"});  // before node 2 joins: not pushed to it
  b_ = Start(2);
  RunHelper(*a_, {"produce", "k", "1000"});
  RunHelper(*b_, {"consume", "k", "1000"});
  auto client = Client::Connect(b_->ClientConfig());
  ASSERT_TRUE(client.ok());
  auto cache = [&](const char* field) {
    return json::parse(*(*client)->InfoJson())["record_cache"][field].get<uint64_t>();
  };
  EXPECT_EQ(cache("hits"), 1u);
  EXPECT_EQ(cache("misses"), 0u) << "the record was pushed before the Get";
  RunHelper(*b_, {"consume", "early", "1000"});
  EXPECT_EQ(cache("misses"), 1u) << "asked of the directory";
  EXPECT_EQ(cache("records"), 2u) << "and kept from then on";

  EXPECT_EQ(testing::Run({CsmCli(), "rm", "k"}, a_->Env()).exit_code, 0);
  RunHelper(*a_, {"produce", "k", "10"});
  std::string verdict;
  EXPECT_TRUE(testing::Eventually([&] {  // B's old copy goes as the change is pushed
    auto ref = (*client)->Get<workload::HeapMap>("k");
    verdict = ref.ok() ? workload::Verify(**ref, 10) : ref.status().ToString();
    return verdict.empty();
  }, 10000)) << verdict;
  // (Whether the new record was read from the cache or asked of the directory depends on
  // whether the Get came before or after its push: not counted here.)
  EXPECT_EQ(cache("records"), 2u);
}

// A peer that knows the secret is still served only extents of objects committed on the
// node and not deleted, each asked for by the object's id.
TEST_P(ClusterTest, PeersAreServedOnlyTheExtentsOfLiveObjects) {
  a_ = Start(1);
  RunHelper(*a_, {"produce", "k", "1000"});
  ObjectInfo info{};
  {
    auto client = Client::Connect(a_->ClientConfig());
    ASSERT_TRUE(client.ok());
    auto found = (*client)->Lookup("k");
    ASSERT_TRUE(found.ok()) << found.status().ToString();
    info = *found;
  }
  auto peer = transport::SplitPeerAddress(Member(Nodes(*a_), 1).at("peer_address").get<std::string>());
  ASSERT_TRUE(peer.ok());
  auto t = transport::MakeTransport(peer->first, {"test-secret", 5000});
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  std::vector<char> bytes(8192);
  uint64_t base = info.header;  // the sink stands for [header - 4096, header + 4096)
  transport::ExtentSink sink = [&](uint64_t addr, uint64_t len) -> Result<char*> {
    if (addr + 4096 < base || addr + 4096 - base + len > bytes.size()) return InvalidArgument("outside");
    return bytes.data() + (addr + 4096 - base);
  };
  auto fetch = [&](uint64_t id, uint64_t addr) {
    return (*t)->Fetch(peer->second, id, {{addr, sizeof(object::ObjectHeader)}}, sink);
  };
  Status s = fetch(info.object_id, info.header);
  ASSERT_TRUE(s.ok()) << s.ToString();
  object::ObjectHeader h{};
  std::memcpy(&h, bytes.data() + 4096, sizeof(h));
  EXPECT_EQ(h.magic, object::kObjectMagic) << "the object's own header was served";

  s = fetch(info.object_id + 1000, info.header);
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
  EXPECT_NE(s.message().find("has no object"), std::string::npos) << s.ToString();
  s = fetch(info.object_id, info.header - 4096);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("is not part of object"), std::string::npos) << s.ToString();

  EXPECT_EQ(testing::Run({CsmCli(), "rm", "k"}, a_->Env()).exit_code, 0);
  s = fetch(info.object_id, info.header);
  EXPECT_TRUE(s.IsNotFound()) << "a deleted object is not served: " << s.ToString();
}

// An owner whose digest does not match the bytes it sent (a broken or hostile node, for
// an object committed with a deferred checksum) is refused: the fetching node keeps no
// copy and goes on serving. The test process plays that owner: it joins the cluster as
// node 9, publishes a record in its own segment and answers fetches with a wrong digest.
TEST_P(ClusterTest, AnOwnersDigestThatDoesNotMatchItsBytesIsRefused) {
  a_ = Start(1);
  b_ = Start(2);
  RunHelper(*a_, {"produce", "sound", "1000"});
  std::atomic<int> served{0};
  os::TcpServerOptions liar_options;
  liar_options.secret = "test-secret";
  liar_options.service_magic = transport::kTransportMagic;
  auto liar = os::TcpServer::Start("127.0.0.1:0", liar_options, [&](int fd) {
    for (;;) {
      auto request = transport::ReceiveFetchRequest(fd, transport::kTransportMagic, 5000);
      if (!request.ok() || !transport::SendVerdict(fd, Status::OK(), 5000).ok()) return;
      std::string bytes(request->total_bytes, 'x');
      const uint64_t digest = 12345;  // not the XXH3 of those bytes
      if (!os::WriteAll(fd, bytes.data(), bytes.size(), 5000, "bytes").ok() ||
          !os::WriteAll(fd, &digest, sizeof(digest), 5000, "digest").ok()) {
        return;
      }
      ++served;
    }
  });
  ASSERT_TRUE(liar.ok()) << liar.status().ToString();

  json window;
  {
    auto c = Client::Connect(a_->ClientConfig());
    ASSERT_TRUE(c.ok());
    window = json::parse(*(*c)->InfoJson())["window"];
  }
  cluster::NodeInfo self;
  self.node_id = 9;
  self.cluster = "csm";
  self.peer_address = "127.0.0.1:" + std::to_string((*liar)->port());
  self.window = {std::stoull(window["base"].get<std::string>(), nullptr, 16),
                 window["size"].get<uint64_t>(), window["segment_size"].get<uint64_t>()};
  self.fingerprint = protocol::BuildFingerprint();
  self.fingerprint_text = protocol::BuildFingerprintText();
  std::unique_ptr<cluster::ClusterDirectory> dir;
  if (etcd()) {
    auto connected = cluster::EtcdDirectory::Connect({etcd_->endpoint(), "csm", "test-secret"}, 9);
    ASSERT_TRUE(connected.ok()) << connected.status().ToString();
    dir = std::move(*connected);
  } else {
    dir = std::make_unique<cluster::RemoteCoordinator>(coordinator_, "test-secret", 5000, 9);
  }
  ASSERT_TRUE(dir->Join(self).ok());
  auto first = dir->LeaseSegments(1);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  const uint64_t addr = self.window.base + *first * self.window.segment_size;
  cluster::ObjectRecord r;
  r.key = "lie";
  r.owner_node = 9;
  r.object_id = 1;
  r.type_id = 1;
  r.type_name = "x";
  r.header = addr;
  r.root = addr + 64;
  r.size = 4096;
  r.checksum_deferred = true;
  r.extents = {{addr, 4096}};
  r.arenas = {{addr, 8 << 20}};
  ASSERT_TRUE(dir->Publish(r).ok());

  auto client = Client::Connect(b_->ClientConfig());
  ASSERT_TRUE(client.ok());
  auto lie = (*client)->Get<workload::HeapMap>("lie");
  EXPECT_TRUE(lie.status().IsCorruption()) << lie.status().ToString();
  EXPECT_NE(lie.status().message().find("do not match"), std::string::npos) << lie.status().ToString();
  EXPECT_GE(served.load(), 1) << "the bytes were sent";
  auto sound = (*client)->Get<workload::HeapMap>("sound");
  ASSERT_TRUE(sound.ok()) << sound.status().ToString();
  EXPECT_EQ(workload::Verify(**sound, 1000), "");
  EXPECT_EQ(json::parse(*(*client)->InfoJson())["fetches"].get<uint64_t>(), 1u) << "no copy of the lie kept";
}

// A node whose memory is full of copies drops the oldest one no reader pins to make room
// for the next; when every copy is pinned, the Get says so.
TEST_P(ClusterTest, CopiesNoReaderPinsAreEvictedForNewOnes) {
  a_ = Start(1);
  b_ = Start(2, {"--capacity", "48M"});
  for (const char* key : {"m1", "m2", "m3"}) RunHelper(*a_, {"produce", key, "100000"});
  auto info = [&](const char* field) {
    auto c = Client::Connect(b_->ClientConfig());
    return json::parse(*(*c)->InfoJson())[field].get<uint64_t>();
  };
  RunHelper(*b_, {"consume", "m1", "100000"});
  RunHelper(*b_, {"consume", "m2", "100000"});
  EXPECT_EQ(info("replicas_evicted"), 0u);
  RunHelper(*b_, {"consume", "m3", "100000"});  // ~20 MiB each: m1 makes room
  EXPECT_EQ(info("replicas_evicted"), 1u);
  EXPECT_EQ(info("objects"), 2u);
  EXPECT_LE(info("used"), uint64_t{48} << 20);

  // Readers pin both copies held: m1 cannot come back.
  auto pin2 = testing::Process::Spawn({Helper(), "pin", "m2", "0"}, b_->Env());
  auto pin3 = testing::Process::Spawn({Helper(), "pin", "m3", "0"}, b_->Env());
  ASSERT_FALSE(pin2->WaitForLine("pinned").empty()) << pin2->output();
  ASSERT_FALSE(pin3->WaitForLine("pinned").empty()) << pin3->output();
  auto refused = testing::Process::Spawn({Helper(), "consume", "m1", "100000"}, b_->Env());
  EXPECT_NE(refused->Wait(60000), 0);
  EXPECT_NE(refused->output().find("no room for a copy of 'm1'"), std::string::npos) << refused->output();
  EXPECT_NE(refused->output().find("pinned by a reader"), std::string::npos) << refused->output();
  EXPECT_EQ(info("replicas_evicted"), 1u);

  pin2->Kill(SIGKILL);  // its pin goes with it
  pin2->Wait();
  RunHelper(*b_, {"consume", "m1", "100000"});
  EXPECT_EQ(info("replicas_evicted"), 2u) << "m2, no longer pinned, made room";
  pin3->Kill(SIGKILL);
  pin3->Wait();
}

// An object its owner spilled is still served to other nodes: the owner restores it
// for the peer's fetch, and the copy has the object's bytes.
TEST_P(ClusterTest, ASpilledObjectIsServedToAnotherNode) {
  char tmpl[] = "/tmp/csm-spill-cluster-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string spill_dir = std::string(tmpl) + "/spill";
  a_ = Start(1, {"--capacity", "64M", "--spill-dir", spill_dir, "--spare-memory-ms", "0"});
  b_ = Start(2);
  for (const char* key : {"s0", "s1", "s2"}) RunHelper(*a_, {"big", key, "24"});  // 72 MiB in 64
  auto owner = Client::Connect(a_->ClientConfig());
  ASSERT_TRUE(owner.ok());
  auto spilled = [&] { return json::parse(*(*owner)->StatJson("s0"))["spilled"].get<bool>(); };
  ASSERT_TRUE(testing::Eventually(spilled)) << *(*owner)->StatJson("s0");
  const uint64_t restores = json::parse(*(*owner)->InfoJson())["spill"]["restores"].get<uint64_t>();
  RunHelper(*b_, {"check-big", "s0", "24"});  // fetched from node 1, every page checked
  EXPECT_GT(json::parse(*(*owner)->InfoJson())["spill"]["restores"].get<uint64_t>(), restores);
  owner->reset();
  a_.reset();
  std::filesystem::remove_all(tmpl);
}

INSTANTIATE_TEST_SUITE_P(Directories, ClusterTest,
                         ::testing::ValuesIn(testing::BuiltTransports({"embedded_tcp", "etcd_tcp", "embedded_ucx"})),
                         [](const auto& param_info) { return param_info.param; });
INSTANTIATE_TEST_SUITE_P(Embedded, EmbeddedCoordinatorTest, ::testing::ValuesIn(testing::BuiltTransports({"embedded_tcp", "embedded_ucx"})),
                         [](const auto& param_info) { return param_info.param; });

}  // namespace
}  // namespace csm
