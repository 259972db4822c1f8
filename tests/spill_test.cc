// Spilling with a real csmd (--spill-dir): a working set three times the node's memory,
// pinned objects that stay, a damaged spill file, an object too large to ever fit.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "csm/client.h"
#include "harness.h"

namespace csm {
namespace {

using testing::Attach;
using testing::Node;

constexpr uint64_t kMiB = 1 << 20;
constexpr size_t kWords = 16 * kMiB / sizeof(uint64_t);  // 16 MiB objects

uint64_t Word(int object, size_t i) { return (static_cast<uint64_t>(object) << 40) ^ (i * 2654435761u); }

// A node of 96 MiB that spills into a private directory.
class SpillTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/csm-spill-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    node_ = std::make_unique<Node>(std::vector<std::string>{"--capacity", "96M", "--spill-dir", dir_ + "/spill",
                                                            "--spare-memory-ms", "0"});
    client_ = Attach(*node_);
    ASSERT_TRUE(client_);
  }
  void TearDown() override {
    client_.reset();
    node_.reset();
    std::filesystem::remove_all(dir_);
  }

  Status Put(int object) {
    CSM_ASSIGN_OR_RETURN(auto b, client_->NewBuilder());
    CSM_ASSIGN_OR_RETURN(auto* v, b.New<csm::vector<uint64_t>>());
    std::vector<uint64_t> words(kWords);
    for (size_t i = 0; i < kWords; ++i) words[i] = Word(object, i);
    Status copied;
    CSM_RETURN_IF_ERROR(b.Populate([&] {
      v->resize(kWords);
      copied = b.CopyIn(v->data(), words.data(), kWords * sizeof(uint64_t));
    }));
    CSM_RETURN_IF_ERROR(copied);
    return b.Commit("obj" + std::to_string(object));
  }
  // Reads the object back whole: its commit checksum and its words.
  static Status Check(Client& c, int object) {
    CSM_ASSIGN_OR_RETURN(auto ref, c.Get<csm::vector<uint64_t>>("obj" + std::to_string(object)));
    CSM_RETURN_IF_ERROR(ref.Verify());
    if (ref->size() != kWords) return Corruption("object " + std::to_string(object) + " has the wrong size");
    for (size_t i = 0; i < kWords; i += 4096 / sizeof(uint64_t)) {
      if ((*ref)[i] != Word(object, i)) return Corruption("object " + std::to_string(object) + " word " + std::to_string(i));
    }
    return Status::OK();
  }
  nlohmann::json Info() {
    auto j = client_->InfoJson();
    EXPECT_TRUE(j.ok());
    return nlohmann::json::parse(j.ok() ? *j : "{}");
  }
  nlohmann::json Stat(int object) {
    auto j = client_->StatJson("obj" + std::to_string(object));
    EXPECT_TRUE(j.ok()) << j.status().ToString();
    return nlohmann::json::parse(j.ok() ? *j : "{}");
  }

  std::string dir_;
  std::unique_ptr<Node> node_;
  std::unique_ptr<Client> client_;
};

// 18 objects of 16 MiB in 96 MiB: each put waits for spilling rather than failing, and
// another process reads every object back with its checksum.
TEST_F(SpillTest, ThreeTimesCapacityIsCommittedAndReadBackByAnotherProcess) {
  constexpr int kObjects = 18;
  for (int i = 0; i < kObjects; ++i) {
    Status put = Put(i);
    ASSERT_TRUE(put.ok()) << i << ": " << put.ToString();
  }
  nlohmann::json info = Info();
  ASSERT_TRUE(info.contains("spill"));
  EXPECT_GT(info["spill"]["spills"].get<uint64_t>(), 0u);
  EXPECT_LE(info["used"].get<uint64_t>(), 96 * kMiB);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // a reader of its own: attaches anew on its first call
    int bad = 0;
    for (int round = 0; round < 2; ++round) {
      for (int i = 0; i < kObjects; ++i) {
        Status s = Check(*client_, i);
        if (!s.ok()) {
          std::fprintf(stderr, "object %d: %s\n", i, s.ToString().c_str());
          ++bad;
        }
      }
    }
    std::_Exit(bad == 0 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the reader found objects wrong";
  info = Info();
  EXPECT_GT(info["spill"]["restores"].get<uint64_t>(), 0u);
  EXPECT_EQ(info["spill"]["lost"].get<uint64_t>(), 0u);
  EXPECT_LE(info["used"].get<uint64_t>(), 96 * kMiB) << "restores wait for room as builders do";
}

TEST_F(SpillTest, PinnedObjectsAreNeverSpilled) {
  ASSERT_TRUE(Put(0).ok());
  auto pinned = client_->Get<csm::vector<uint64_t>>("obj0");
  ASSERT_TRUE(pinned.ok());
  for (int i = 1; i < 12; ++i) {
    ASSERT_TRUE(Put(i).ok()) << i;
    EXPECT_FALSE(Stat(0)["spilled"].get<bool>()) << "after object " << i;
  }
  EXPECT_GT(Info()["spill"]["spills"].get<uint64_t>(), 0u);
  for (size_t i = 0; i < kWords; i += 512) ASSERT_EQ((**pinned)[i], Word(0, i)) << i;
  EXPECT_TRUE(pinned->Verify().ok());
}

TEST_F(SpillTest, ADamagedSpillFileIsAnErrorForItsObjectOnly) {
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(Put(i).ok()) << i;
  // The first objects went first (least recently used); wait until two are spilled.
  ASSERT_TRUE(testing::Eventually([&] { return Stat(0)["spilled"].get<bool>() && Stat(1)["spilled"].get<bool>(); }));
  const uint64_t id = Stat(0)["object_id"].get<uint64_t>();
  std::string file;
  for (const auto& e : std::filesystem::directory_iterator(dir_ + "/spill")) {
    if (e.path().filename().string().starts_with(std::to_string(id) + "-")) file = e.path();
  }
  ASSERT_FALSE(file.empty());
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4 * kMiB);
    f.put('\x42');
  }
  auto damaged = client_->Get<csm::vector<uint64_t>>("obj0");
  ASSERT_FALSE(damaged.ok());
  EXPECT_EQ(damaged.status().code(), StatusCode::kCorruption) << damaged.status().ToString();
  EXPECT_NE(damaged.status().message().find("obj0"), std::string::npos) << damaged.status().ToString();
  // Said again to the next reader, without reading the file again.
  EXPECT_EQ(client_->Get<csm::vector<uint64_t>>("obj0").status().code(), StatusCode::kCorruption);
  EXPECT_TRUE(Stat(0).contains("spill_lost"));
  EXPECT_EQ(Info()["spill"]["lost"].get<uint64_t>(), 1u);
  // Every other object is whole, and the damaged one can be deleted and put again.
  for (int i = 1; i < 10; ++i) EXPECT_TRUE(Check(*client_, i).ok()) << i;
  ASSERT_TRUE(client_->Delete("obj0").ok());
  ASSERT_TRUE(Put(0).ok());
  EXPECT_TRUE(Check(*client_, 0).ok());
}

// Readers' Gets count: what was read recently stays in memory, what was not goes first.
TEST_F(SpillTest, TheLeastRecentlyUsedAreSpilledFirst) {
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(Put(i).ok()) << i;
  // obj0 is read (and let go) after obj1..3 were committed: obj1 is now the least
  // recently used.
  ASSERT_TRUE(client_->Get<csm::vector<uint64_t>>("obj0").ok());
  int next = 4;
  while (Info()["spill"]["spills"].get<uint64_t>() == 0) {
    ASSERT_LT(next, 12) << "nothing was spilled";
    ASSERT_TRUE(Put(next++).ok());
  }
  EXPECT_TRUE(Stat(1)["spilled"].get<bool>());
  EXPECT_FALSE(Stat(0)["spilled"].get<bool>()) << "obj0 was read after obj1 was committed";
  EXPECT_FALSE(Stat(next - 1)["spilled"].get<bool>());
  // What an operator sees: csm ls marks the spilled ones, csm info counts them.
  auto ls = testing::Run({testing::BinaryDir() + "/csm", "ls"}, node_->Env());
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  bool obj1_on_disk = false, obj0_on_disk = false;
  std::istringstream lines(ls.out);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("obj1 ")) obj1_on_disk = line.find(" yes ") != std::string::npos;
    if (line.starts_with("obj0 ")) obj0_on_disk = line.find(" yes ") != std::string::npos;
  }
  EXPECT_TRUE(obj1_on_disk) << ls.out;
  EXPECT_FALSE(obj0_on_disk) << ls.out;
  auto info = testing::Run({testing::BinaryDir() + "/csm", "info"}, node_->Env());
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("spill     "), std::string::npos) << info.out;
  EXPECT_NE(info.out.find(dir_ + "/spill"), std::string::npos) << info.out;
}

// An object larger than spilling can ever make room for is refused when it is built,
// at once, saying so; the node goes on.
TEST_F(SpillTest, AnObjectLargerThanSpillingCanMakeRoomForIsRefusedAtOnce) {
  ASSERT_TRUE(Put(0).ok());
  auto b = client_->NewBuilder();
  ASSERT_TRUE(b.ok());
  auto v = b->New<csm::vector<uint64_t>>();
  ASSERT_TRUE(v.ok());
  Status s = b->Populate([&] { (*v)->resize(100 * kMiB / sizeof(uint64_t)); });
  EXPECT_EQ(s.code(), StatusCode::kCapacityExceeded) << s.ToString();
  EXPECT_NE(s.message().find("capacity"), std::string::npos) << s.ToString();
  EXPECT_TRUE(Check(*client_, 0).ok());
}

}  // namespace
}  // namespace csm
