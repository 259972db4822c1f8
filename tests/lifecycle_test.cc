// A client's session with its csmd, tested against what used to lose data: fork() after
// Connect, a csmd that dies or is replaced under a running client, keys that broke the
// key rules, and the node's object and memory limits.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cinttypes>
#include <nlohmann/json.hpp>

#include "csm/client.h"
#include "csm/os/memory.h"
#include "harness.h"
#include "workload.h"

namespace csm {
namespace {

using testing::Attach;
using testing::CommitMap;
using testing::Node;
using testing::Process;
using workload::HeapMap;
using Longs = csm::vector<int64_t>;

std::string Helper() { return testing::BinaryDir() + "/csm_test_helper"; }



// Appends values first, first+step, ... (n of them).
Status Append(Builder& b, Longs* v, int64_t first, int64_t step, int n) {
  return b.Populate([&] {
    for (int i = 0; i < n; ++i) v->push_back(first + step * i);
  });
}

std::string CheckLongs(const Longs& v, int64_t first, int64_t step, size_t n) {
  if (v.size() != n) return "size " + std::to_string(v.size()) + ", expected " + std::to_string(n);
  for (size_t i = 0; i < n; ++i) {
    if (v[i] != first + step * static_cast<int64_t>(i)) return "value " + std::to_string(i) + " differs";
  }
  return "";
}

// The permissions ("rw-s", "r--s") of the mapping that holds addr.
std::string Perms(const void* addr) {
  std::string line = os::MappingAt(reinterpret_cast<uint64_t>(addr));
  size_t space = line.find(' ');
  return space == std::string::npos ? line : line.substr(space + 1, 4);
}

// Runs `child` in a forked child of this process and returns its exit code (it reports
// failures as codes: no gtest in the child).
int InChild(const std::function<int()>& child, pid_t* pid_out = nullptr) {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(child());
  if (pid_out != nullptr) {
    *pid_out = pid;
    return 0;
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int WaitChild(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Parent and child both build after fork(): each in its own arenas. The child cannot
// write into the parent's (they are read-only there), the parent's open Builder is
// refused in the child with a reason, and neither object holds the other's values.
TEST(LifecycleTest, AForkedChildBuildsInItsOwnMemoryNeverInItsParents) {
  Node node;
  auto c = Attach(node);
  ASSERT_TRUE(c);
  ASSERT_TRUE(CommitMap(*c, "before-fork", 2000).ok());
  auto before = c->Get<HeapMap>("before-fork");
  ASSERT_TRUE(before.ok());
  // A Builder open across the fork, with memory already carved from an arena.
  auto pb = c->NewBuilder();
  ASSERT_TRUE(pb.ok());
  Longs* pv = *pb->New<Longs>();
  ASSERT_TRUE(Append(*pb, pv, 0, 3, 1000).ok());
  ASSERT_EQ(Perms(pv), "rw-s");

  pid_t child_pid = 0;
  InChild(
      [&]() -> int {
        if (Perms(pv) != "r--s") return 10;  // the parent's arena is not writable here
        // The parent's Builder is refused, not written through.
        Status s = pb->Populate([&] { csm::allocator<int64_t>().allocate(1); });
        if (s.code() != StatusCode::kFailedPrecondition) return 11;
        if (s.message().find("fork") == std::string::npos) return 12;
        if (pb->Commit("never").code() != StatusCode::kFailedPrecondition) return 13;
        // What the parent pinned is still readable, and Gets work (a new session).
        if (workload::Verify(**before, 2000) != "") return 14;
        auto again = c->Get<HeapMap>("before-fork");
        if (!again.ok() || workload::Verify(**again, 2000) != "") return 15;
        // The child builds in arenas of its own.
        auto cb = c->NewBuilder();
        if (!cb.ok()) return 16;
        Longs* cv = *cb->New<Longs>();
        if (!Append(*cb, cv, 1, 7, 200000).ok()) return 17;
        if (Perms(cv) != "rw-s") return 18;
        if (!cb->Commit("child/longs").ok()) return 19;
        if (!CommitMap(*c, "child/map", 3000).ok()) return 20;
        return 0;
      },
      &child_pid);
  // Meanwhile the parent goes on building in the Builder it had, and commits.
  ASSERT_TRUE(Append(*pb, pv, 3000, 3, 199000).ok());
  Status committed = pb->Commit("parent/longs");
  ASSERT_TRUE(committed.ok()) << committed.ToString();
  ASSERT_TRUE(CommitMap(*c, "parent/map", 2500).ok());
  ASSERT_EQ(WaitChild(child_pid), 0) << "the child's check with this code failed";

  auto parent_longs = c->Get<Longs>("parent/longs");
  auto child_longs = c->Get<Longs>("child/longs");
  ASSERT_TRUE(parent_longs.ok() && child_longs.ok());
  EXPECT_EQ(CheckLongs(**parent_longs, 0, 3, 200000), "");
  EXPECT_EQ(CheckLongs(**child_longs, 1, 7, 200000), "");
  EXPECT_TRUE(parent_longs->Verify().ok());
  EXPECT_TRUE(child_longs->Verify().ok());
  auto parent_map = c->Get<HeapMap>("parent/map");
  auto child_map = c->Get<HeapMap>("child/map");
  ASSERT_TRUE(parent_map.ok() && child_map.ok());
  EXPECT_EQ(workload::Verify(**parent_map, 2500), "");
  EXPECT_EQ(workload::Verify(**child_map, 3000), "");
  // The child's pins went with it; the parent's stay.
  auto info = nlohmann::json::parse(*c->InfoJson());
  EXPECT_GE(info["objects"].get<uint64_t>(), 5u);
}

// Several children forked from one parent (a worker pool), each building and reading.
TEST(LifecycleTest, ManyForkedChildrenEachKeepTheirOwnObjects) {
  Node node;
  auto c = Attach(node);
  ASSERT_TRUE(c);
  ASSERT_TRUE(CommitMap(*c, "shared-input", 500).ok());
  constexpr int kChildren = 6;
  std::vector<pid_t> pids(kChildren);
  for (int i = 0; i < kChildren; ++i) {
    InChild(
        [&, i]() -> int {
          auto in = c->Get<HeapMap>("shared-input");
          if (!in.ok() || workload::Verify(**in, 500) != "") return 30;
          auto b = c->NewBuilder();
          if (!b.ok()) return 31;
          Longs* v = *b->New<Longs>();
          if (!Append(*b, v, i * 1000000, i + 1, 50000).ok()) return 32;
          return b->Commit("worker/" + std::to_string(i)).ok() ? 0 : 33;
        },
        &pids[static_cast<size_t>(i)]);
  }
  for (int i = 0; i < kChildren; ++i) EXPECT_EQ(WaitChild(pids[static_cast<size_t>(i)]), 0) << "child " << i;
  for (int i = 0; i < kChildren; ++i) {
    auto v = c->Get<Longs>("worker/" + std::to_string(i));
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(CheckLongs(**v, i * 1000000, i + 1, 50000), "") << "worker " << i;
  }
}

// kill -9 of csmd and a new csmd at the same socket holding another object under the
// same key: the old client answers nothing from the dead node's directory.
TEST(LifecycleTest, AClientWhoseCsmdDiedAnswersNothingFromItsDirectory) {
  Node node;
  auto c = Attach(node);
  ASSERT_TRUE(c);
  ASSERT_TRUE(CommitMap(*c, "k", 100).ok());
  auto held = c->Get<HeapMap>("k");
  ASSERT_TRUE(held.ok());

  node.Restart(SIGKILL);
  auto producer = Process::Spawn({Helper(), "produce", "k", "200"}, node.Env());
  ASSERT_EQ(producer->Wait(), 0) << producer->output();

  auto got = c->Get<HeapMap>("k");
  ASSERT_TRUE(got.status().IsUnavailable()) << got.status().ToString();
  EXPECT_NE(got.status().message().find("went away"), std::string::npos) << got.status().ToString();
  auto waited = c->Get<HeapMap>("other", std::chrono::seconds(30));
  EXPECT_TRUE(waited.status().IsUnavailable()) << waited.status().ToString();
  EXPECT_TRUE(c->Lookup("k").status().IsUnavailable());
  EXPECT_TRUE(c->List().empty());
  EXPECT_TRUE(c->NewBuilder().status().IsUnavailable());
  EXPECT_TRUE(c->Delete("k").IsUnavailable());
  // What it held stays readable where it is (the memory lives while mapped).
  EXPECT_EQ(workload::Verify(**held, 100), "");

  // A new client of the new node sees the new object.
  held->Reset();
  c.reset();
  c = Attach(node);
  ASSERT_TRUE(c);
  auto fresh = c->Get<HeapMap>("k");
  ASSERT_TRUE(fresh.ok()) << fresh.status().ToString();
  EXPECT_EQ(workload::Verify(**fresh, 200), "");
}

// A Get waiting for a key notices that csmd stopped, and says so, before its timeout.
TEST(LifecycleTest, AGetWaitingForAKeyEndsWhenCsmdStops) {
  Node node;
  auto c = Attach(node);
  ASSERT_TRUE(c);
  pid_t csmd = node.process().pid();
  std::thread stopper([&] {
    // Once the Get below is waiting (csmd's clients: this one), stop csmd.
    ::kill(csmd, SIGTERM);
  });
  const int64_t start = os::MonotonicNanos();
  auto got = c->Get<HeapMap>("never", std::chrono::seconds(60));
  stopper.join();
  EXPECT_TRUE(got.status().IsUnavailable()) << got.status().ToString();
  EXPECT_LT(os::MonotonicNanos() - start, int64_t{30} * 1000000000);
}

// Several libraries of one program each Connect: they share the process's attachment. A
// Ref (or a Builder) keeps it alive after every Client handle is gone.
TEST(LifecycleTest, ClientsShareTheAttachmentAndRefsOutliveThem) {
  Node node;
  auto first = Attach(node);
  auto second = Attach(node);
  ASSERT_TRUE(first && second);
  ASSERT_TRUE(CommitMap(*first, "shared", 300).ok());
  auto ref = second->Get<HeapMap>("shared");
  ASSERT_TRUE(ref.ok());
  auto builder = second->NewBuilder();
  ASSERT_TRUE(builder.ok());
  Longs* v = *builder->New<Longs>();
  Config elsewhere = node.ClientConfig();
  elsewhere.socket_path += ".other";
  auto refused = Client::Connect(elsewhere);
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition) << refused.status().ToString();
  first.reset();
  second.reset();
  EXPECT_EQ(workload::Verify(**ref, 300), "");  // still pinned, still mapped
  ASSERT_TRUE(Append(*builder, v, 5, 5, 1000).ok());
  ASSERT_TRUE(builder->Commit("built-after").ok());
  auto info = nlohmann::json::parse(*Attach(node)->InfoJson());  // the same attachment again
  EXPECT_EQ(info["clients"].size(), 1u) << info.dump();
  auto again = Attach(node);
  EXPECT_EQ(CheckLongs(**again->Get<Longs>("built-after"), 5, 5, 1000), "");
  EXPECT_EQ(again->Get<HeapMap>("shared")->info().object_id, ref->info().object_id);
  // One-call Put, GetMany, typed Info.
  ASSERT_TRUE(again->Put<Longs>("put/a", [](Longs& longs) { longs.assign(100, 7); }).ok());
  ASSERT_TRUE(again->Put<HeapMap>("put/b", [](HeapMap& m) { workload::Fill(m, 50); }).ok());
  auto many = again->GetMany<Longs>({"built-after", "put/a"});
  ASSERT_TRUE(many.ok()) << many.status().ToString();
  ASSERT_EQ(many->size(), 2u);
  EXPECT_EQ((*many)[1]->size(), 100u);
  auto wrong = again->GetMany<Longs>({"put/a", "put/b"});
  EXPECT_TRUE(wrong.status().IsTypeMismatch());
  EXPECT_NE(wrong.status().message().find("put/b"), std::string::npos) << wrong.status().ToString();
  auto status = again->Info();
  ASSERT_TRUE(status.ok()) << status.status().ToString();
  EXPECT_EQ(status->objects, 4u);
  EXPECT_EQ(status->clients, 1u);
  EXPECT_GT(status->used, 0u);
  // Result conveniences.
  const Result<ObjectInfo> looked = again->Lookup("shared");
  EXPECT_EQ(looked.value().key, "shared");
  EXPECT_EQ(again->Lookup("shared").ValueOrDie().size, ref->info().size);
}

TEST(LifecycleTest, KeysThatBreakTheRulesAreInvalidArgumentOnEveryCall) {
  Node node;
  auto c = Attach(node);
  ASSERT_TRUE(c);
  const std::string too_long(kMaxKeyLength + 1, 'k');
  const std::string with_nul("a\0b", 3);
  for (const std::string& key : {std::string(), too_long, with_nul, std::string("tab\there"),
                                 std::string("T#0")}) {
    Status s = CommitMap(*c, key, 1);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << "'" << key << "': " << s.ToString();
  }
  for (const std::string& key : {std::string(), too_long, with_nul}) {
    EXPECT_EQ(c->Get<HeapMap>(key).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(c->Get<HeapMap>(key, std::chrono::seconds(5)).status().code(),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(c->Delete(key).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(c->Lookup(key).status().code(), StatusCode::kInvalidArgument);
  }
  // '#' is only reserved for commits: such keys are looked up like any other.
  EXPECT_TRUE(c->Get<HeapMap>("T#0").status().IsNotFound());
  EXPECT_TRUE(CommitMap(*c, std::string(kMaxKeyLength, 'k'), 1).ok());
  EXPECT_TRUE(CommitMap(*c, "utf8/ключ/键", 1).ok());
  // The CLI says the same.
  auto rm = testing::Run({testing::BinaryDir() + "/csm", "rm", ""}, node.Env());
  EXPECT_NE(rm.exit_code, 0);
  EXPECT_NE(rm.err.find("keys are 1 to 168 bytes"), std::string::npos) << rm.err;
}

TEST(LifecycleTest, MaxObjectsLiveObjectsFitAndOneMoreIsCapacityExceeded) {
  Node node({"--max-objects", "64"});
  auto c = Attach(node);
  ASSERT_TRUE(c);
  for (int i = 0; i < 64; ++i) {
    Status s = CommitMap(*c, "o" + std::to_string(i), 1);
    ASSERT_TRUE(s.ok()) << i << ": " << s.ToString();
  }
  Status full = CommitMap(*c, "one-more", 1);
  EXPECT_TRUE(full.IsCapacityExceeded()) << full.ToString();
  EXPECT_NE(full.message().find("max_objects (64)"), std::string::npos) << full.ToString();
  ASSERT_TRUE(c->Delete("o0").ok());
  EXPECT_TRUE(CommitMap(*c, "one-more", 1).ok());
}

TEST(LifecycleTest, ANodeThatCouldStoreNothingDoesNotStart) {
  auto r = testing::Run({testing::BinaryDir() + "/csmd", "--socket", "/tmp/csm-test-capacity0.sock",
                         "--capacity", "0"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("capacity"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace csm
