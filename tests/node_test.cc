// Multi-process tests: a real csmd, real separate producer and consumer processes.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "csm/client.h"
#include "csm/object/object_layout.h"
#include "csm/os/memory.h"
#include "harness.h"
#include "workload.h"

// 64 bytes a vector resize leaves unwritten (as the Python module's lines).
struct RawLine {
  RawLine() {}  // NOLINT(modernize-use-equals-default): = default would zero the bytes
  std::array<uint8_t, 64> bytes;
};
CSM_REGISTER_TYPE(RawLine, 1, bytes)

namespace csm {
namespace {

using testing::Attach;
using testing::CommitMap;
using testing::Node;
using testing::Process;
using workload::HeapMap;

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAddressSanitizer = true;
#else
constexpr bool kAddressSanitizer = false;
#endif

std::string Helper() { return testing::BinaryDir() + "/csm_test_helper"; }

uint64_t InfoField(Client& c, const char* field) {
  return nlohmann::json::parse(*c.InfoJson())[field].get<uint64_t>();
}
uint64_t Used(Client& c) { return InfoField(c, "used"); }
uint64_t AwaitingUnpin(Client& c) {
  return nlohmann::json::parse(*c.InfoJson())["objects_awaiting_unpin"].get<uint64_t>();
}



TEST(NodeTest, ConsumerProcessReadsProducersMapInPlace) {
  Node node;
  auto producer = Process::Spawn({Helper(), "produce", "big-map", "120000"}, node.Env());
  std::string produced = producer->WaitForLine("committed", 120000);
  ASSERT_FALSE(produced.empty()) << producer->output();
  ASSERT_EQ(producer->Wait(), 0);  // the object outlives its producer

  auto consumer = Process::Spawn({Helper(), "consume", "big-map", "120000"}, node.Env());
  std::string consumed = consumer->WaitForLine("verified", 120000);
  ASSERT_FALSE(consumed.empty()) << consumer->output();
  EXPECT_EQ(consumer->Wait(), 0);
  // Same address, and the consumer maps the very memfd the producer wrote, read-only
  // and shared: no copy was made. The producer's own mapping of its object is read-only
  // too once committed (sealed).
  EXPECT_EQ(testing::Field(produced, "root"), testing::Field(consumed, "root"));
  EXPECT_EQ(testing::Field(produced, "inode"), testing::Field(consumed, "inode"));
  EXPECT_NE(consumed.find("r--s"), std::string::npos) << consumed;
  EXPECT_NE(produced.find("r--s"), std::string::npos) << produced;
  EXPECT_NE(consumed.find("csm-arena-"), std::string::npos) << consumed;
}

TEST(NodeTest, UserStructsInUnorderedMapAcrossProcesses) {
  Node node;
  auto producer = Process::Spawn({Helper(), "produce-book", "book", "300"}, node.Env());
  ASSERT_EQ(producer->Wait(), 0) << producer->output();
  auto consumer = Process::Spawn({Helper(), "consume-book", "book", "300"}, node.Env());
  EXPECT_FALSE(consumer->WaitForLine("verified").empty()) << consumer->output();
  EXPECT_EQ(consumer->Wait(), 0);
  // The registered struct's id covers its members: a map of another value type is a
  // different type.
  auto c = Attach(node);
  ASSERT_TRUE(c);
  auto wrong = c->Get<csm::unordered_map<csm::string, csm::vector<int64_t>>>("book");
  EXPECT_TRUE(wrong.status().IsTypeMismatch());
  auto right = c->Get<workload::TradeBook>("book");
  ASSERT_TRUE(right.ok());
  EXPECT_EQ(workload::VerifyBook(**right, 300), "");
}

TEST(NodeTest, CompactContainersAreReadInPlaceInAboutTheBytesOfTheData) {
  Node node;
  constexpr int kKeys = 50000;
  auto producer = Process::Spawn({Helper(), "produce-compact", "flat", std::to_string(kKeys)}, node.Env());
  ASSERT_EQ(producer->Wait(), 0) << producer->output();
  auto consumer = Process::Spawn({Helper(), "consume-compact", "flat", std::to_string(kKeys)}, node.Env());
  std::string verified = consumer->WaitForLine("verified");
  ASSERT_FALSE(verified.empty()) << consumer->output();
  EXPECT_EQ(consumer->Wait(), 0);
  // The same entries as a csm::map take a tree node each and 32-byte strings: the
  // compact image is much smaller (measured: about half of it).
  auto c = Attach(node);
  ASSERT_TRUE(c);
  ASSERT_TRUE(CommitMap(*c, "tree", kKeys).ok());
  auto flat = c->Lookup("flat");
  auto tree = c->Lookup("tree");
  ASSERT_TRUE(flat.ok() && tree.ok());
  EXPECT_LT(flat->size * 10, tree->size * 7) << "flat " << flat->size << " tree " << tree->size;
  EXPECT_TRUE(c->Get<HeapMap>("flat").status().IsTypeMismatch()) << "another type than csm::map";
}

// A compact_string past its inline buffer takes exactly its bytes; one that keeps
// growing still grows by Boost's factor (few copies left behind in the object); a
// compact_vector is 16 bytes.
TEST(NodeTest, CompactStringsTakeTheirBytesAndStillGrowAmortized) {
  static_assert(sizeof(csm::compact_vector<csm::compact_string>) == 16);
  Node node;
  auto c = Attach(node);
  ASSERT_TRUE(c);
  auto b = c->NewBuilder();
  ASSERT_TRUE(b.ok());
  auto v = b->New<csm::compact_vector<csm::compact_string>>();
  ASSERT_TRUE(v.ok());
  constexpr int kStrings = 1000;
  const std::string text(25, 's');  // past the 23 inline bytes
  uint64_t before = 0, after = 0;
  ASSERT_TRUE(b->Populate([&] {
    (*v)->reserve(kStrings);
    before = b->bytes_used();
    for (int i = 0; i < kStrings; ++i) (*v)->emplace_back(text.data(), text.size());
    after = b->bytes_used();
  }).ok());
  EXPECT_EQ(after - before, uint64_t{kStrings} * (text.size() + 1)) << "each string: its bytes and a 0";

  csm::compact_string* grown = nullptr;
  ASSERT_TRUE(b->Populate([&] {
    (*v)->emplace_back();
    grown = &(*v)->back();
    before = b->bytes_used();
    for (int i = 0; i < 100000; ++i) grown->push_back('g');
    after = b->bytes_used();
  }).ok());
  EXPECT_EQ(grown->size(), 100000u);
  EXPECT_LT(after - before, uint64_t{400000}) << "appending one byte at a time must not copy the string each time";
  ASSERT_TRUE(b->Commit("compact-strings").ok());
  auto ref = c->Get<csm::compact_vector<csm::compact_string>>("compact-strings");
  ASSERT_TRUE(ref.ok()) << ref.status().ToString();
  EXPECT_EQ(csm::view((*ref)->at(7)), text);
  EXPECT_EQ((*ref)->back().size(), 100000u);
}

TEST(NodeTest, DuplicateMissingWrongTypeAndWait) {
  Node node;
  auto c = Attach(node);
  ASSERT_TRUE(c);
  ASSERT_TRUE(CommitMap(*c, "k", 10).ok());
  Status dup = CommitMap(*c, "k", 10);
  EXPECT_TRUE(dup.IsAlreadyExists()) << dup.ToString();

  auto missing = c->Get<HeapMap>("nope");
  EXPECT_TRUE(missing.status().IsNotFound()) << missing.status().ToString();
  auto waited = c->Get<HeapMap>("nope", std::chrono::milliseconds(200));
  EXPECT_TRUE(waited.status().IsTimeout()) << waited.status().ToString();

  auto wrong = c->Get<csm::vector<int64_t>>("k");
  EXPECT_TRUE(wrong.status().IsTypeMismatch()) << wrong.status().ToString();
  EXPECT_NE(wrong.status().message().find("csm::vector"), std::string::npos);

  // A Get with a timeout returns as soon as another process commits the key.
  auto producer = Process::Spawn({Helper(), "produce", "later", "1000"}, node.Env());
  auto later = c->Get<HeapMap>("later", std::chrono::seconds(30));
  ASSERT_TRUE(later.ok()) << later.status().ToString();
  EXPECT_EQ(workload::Verify(**later, 1000), "");
  EXPECT_EQ(producer->Wait(), 0);

  EXPECT_TRUE(c->Delete("nope").IsNotFound());
  EXPECT_TRUE(c->Delete("k").ok());
  EXPECT_TRUE(c->Get<HeapMap>("k").status().IsNotFound());
  EXPECT_TRUE(CommitMap(*c, "k", 5).ok()) << "a deleted key can be committed again";
}

TEST(NodeTest, MemoryFullIsCapacityExceededAndNodeKeepsServing) {
  Node node({"--capacity", "96M", "--arena-size", "16M"});
  auto c = Attach(node);
  ASSERT_TRUE(c);
  ASSERT_TRUE(CommitMap(*c, "small", 100).ok());
  uint64_t before = Used(*c);
  {
    auto b = c->NewBuilder();
    ASSERT_TRUE(b.ok());
    auto v = b->New<csm::vector<csm::vector<uint8_t>>>();
    ASSERT_TRUE(v.ok());
    Status s = b->Populate([&] {
      for (int i = 0; i < 1000; ++i) (*v)->emplace_back(1 << 20, 1);
    });
    EXPECT_TRUE(s.IsCapacityExceeded()) << s.ToString();
    EXPECT_NE(s.message().find("capacity 96.0 MiB"), std::string::npos) << s.ToString();
    EXPECT_NE(s.message().find("requested"), std::string::npos) << s.ToString();
    EXPECT_TRUE(b->Commit("too-big").IsCapacityExceeded());
  }
  // The abandoned builder's memory comes back, committed data is intact, and new
  // objects can be built.
  EXPECT_TRUE(testing::Eventually([&] { return Used(*c) <= before + (16 << 20); }));
  auto small = c->Get<HeapMap>("small");
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(workload::Verify(**small, 100), "");
  EXPECT_TRUE(small->Verify().ok());
  EXPECT_TRUE(CommitMap(*c, "after", 100).ok());
}

TEST(NodeTest, ADeferredChecksumIsSaidSoByVerify) {
  Node node;
  auto c = Attach(node);
  auto b = c->NewBuilder();
  ASSERT_TRUE(b.ok());
  auto v = b->New<csm::vector<int>>();
  ASSERT_TRUE(v.ok());
  ASSERT_TRUE(b->Populate([&] { (*v)->assign(1000, 7); }).ok());
  b->DeferChecksum();
  ASSERT_TRUE(b->Commit("deferred").ok());
  auto ref = c->Get<csm::vector<int>>("deferred");
  ASSERT_TRUE(ref.ok()) << ref.status().ToString();
  EXPECT_EQ((*ref)->at(999), 7);
  EXPECT_EQ(ref->info().checksum, 0u);
  Status s = ref->Verify();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("without a checksum"), std::string::npos) << s.ToString();
}

// Bulk bytes copied in at Commit (Builder::CopyIn) are there for readers, under a checksum
// that Verify (a reader's own hash of every byte) agrees with; with DeferChecksum too.
TEST(NodeTest, BytesCopiedInAtCommitAreWhatReadersSee) {
  Node node;
  auto c = Attach(node);
  ASSERT_TRUE(c);
  std::vector<uint64_t> source(3 << 20);  // 24 MiB: copied and hashed on several threads
  for (size_t i = 0; i < source.size(); ++i) source[i] = i * 2654435761u;
  for (bool deferred : {false, true}) {
    auto b = c->NewBuilder();
    ASSERT_TRUE(b.ok());
    auto v = b->New<csm::vector<uint64_t>>();
    ASSERT_TRUE(v.ok());
    Status copied;
    ASSERT_TRUE(b->Populate([&] {
      (*v)->resize(source.size());
      copied = b->CopyIn((*v)->data(), source.data(), source.size() * sizeof(uint64_t));
    }).ok());
    ASSERT_TRUE(copied.ok()) << copied.ToString();
    int outside = 0;
    EXPECT_EQ(b->CopyIn(&outside, source.data(), sizeof(outside)).code(), StatusCode::kInvalidArgument);
    if (deferred) b->DeferChecksum();
    const std::string key = deferred ? "copied-deferred" : "copied";
    ASSERT_TRUE(b->Commit(key).ok());
    auto ref = c->Get<csm::vector<uint64_t>>(key);
    ASSERT_TRUE(ref.ok()) << ref.status().ToString();
    ASSERT_EQ((*ref)->size(), source.size());
    EXPECT_EQ(std::memcmp((*ref)->data(), source.data(), source.size() * sizeof(uint64_t)), 0);
    if (!deferred) {
      EXPECT_TRUE(ref->Verify().ok()) << ref->Verify().ToString();
    }
  }
}

// A builder that overwrites its allocation wholly (ExpectOverwrite) may be given memory a
// deleted object left before csmd zeroed it: what it wrote is there, and the rest of the
// arena reads as zeros, never the old object's bytes.
TEST(NodeTest, AnOverwrittenArenaHoldsWhatItsBuilderWroteAndZerosPastIt) {
  Node node;
  auto c = Attach(node);
  ASSERT_TRUE(c);
  constexpr size_t kArena = 32 << 20;  // dedicated: over a quarter of the 64 MiB arena size
  auto build = [&](const std::string& key, size_t lines, uint8_t value, bool overwrite) {
    auto b = c->NewBuilder();
    ASSERT_TRUE(b.ok());
    auto v = b->New<csm::vector<RawLine>>();
    ASSERT_TRUE(v.ok());
    ASSERT_TRUE(b->Populate([&] {
      if (overwrite) b->ExpectOverwrite(lines * sizeof(RawLine));
      (*v)->resize(lines);
      b->ExpectOverwrite(0);
      for (RawLine& l : **v) l.bytes.fill(value);
    }).ok());
    ASSERT_TRUE(b->Commit(key).ok());
  };
  for (int round = 0; round < 3; ++round) {
    build("old", kArena / 64 - 64, 0xAB, false);  // fills most of a 32 MiB arena
    ASSERT_TRUE(c->Delete("old").ok());           // its memory goes spare, dirty
    const size_t lines = (30 << 20) / 64 + 1;     // the next arena of the same size, used in part
    build("new", lines, 0x11, true);
    {
      auto ref = c->Get<csm::vector<RawLine>>("new");
      ASSERT_TRUE(ref.ok()) << ref.status().ToString();
      EXPECT_TRUE(ref->Verify().ok()) << ref->Verify().ToString();
      const auto* bytes = reinterpret_cast<const uint8_t*>((*ref)->data());
      ASSERT_EQ(reinterpret_cast<uintptr_t>(bytes) % (2 << 20), 0u) << "the vector starts its own arena";
      const uint8_t* end = bytes + lines * 64;
      EXPECT_EQ(std::find_if(bytes, end, [](uint8_t x) { return x != 0x11; }), end) << "round " << round;
      // Past it (and past the extent table the commit wrote after it) the arena is zeros.
      const uint8_t* arena_end = bytes + kArena;
      const uint8_t* stale = std::find_if(end + 8192, arena_end, [](uint8_t x) { return x != 0; });
      EXPECT_EQ(stale, arena_end) << "round " << round << ": byte " << (stale - bytes) << " of the arena is old";
    }
    ASSERT_TRUE(c->Delete("new").ok());
  }
}

TEST(NodeTest, ReaderWritingIntoCommittedObjectFaultsOnlyTheReader) {
  Node node;
  auto producer = Process::Spawn({Helper(), "produce", "ro", "5000"}, node.Env());
  ASSERT_EQ(producer->Wait(), 0) << producer->output();
  auto c = Attach(node);
  ASSERT_TRUE(c);
  auto ref = c->Get<HeapMap>("ro");
  ASSERT_TRUE(ref.ok());
  auto* root = const_cast<HeapMap*>(ref->get());
  GTEST_FLAG_SET(death_test_style, "fast");
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // The sanitizer catches the SIGSEGV, reports it and exits (ASan with 1, TSan 66).
  const int sanitizer_exit = kAddressSanitizer ? 1 : 66;
  const auto segv = ::testing::ExitedWithCode(sanitizer_exit);
  const char* report = "SEGV on unknown address[^\n]*\n[^\n]*WRITE memory access";
#else
  const auto segv = ::testing::KilledBySignal(SIGSEGV);
  const char* report = "";
#endif
  EXPECT_EXIT({ (*root)[1].clear(); }, segv, report);
  EXPECT_EXIT({ *reinterpret_cast<volatile char*>(ref->info().root) = 1; }, segv, report);
  // Nor can the reader make its mapping writable: it holds a read-only descriptor.
  uint64_t page = ref->info().root & ~uint64_t{4095};
  EXPECT_NE(::mprotect(reinterpret_cast<void*>(page), 4096, PROT_READ | PROT_WRITE), 0);
  EXPECT_TRUE(ref->Verify().ok());
  EXPECT_EQ(workload::Verify(**ref, 5000), "");
}

// A committed object is read-only in its producer too (sealed): a write into it faults at
// the writing instruction, and readers see the bytes as committed without hashing them.
TEST(NodeTest, ProducerWritingIntoItsCommittedObjectFaults) {
  Node node;
  auto producer = Process::Spawn({Helper(), "write-after-commit", "sealed", "5000"}, node.Env());
  const int status = producer->Wait();
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // The sanitizer catches the SIGSEGV, reports it and exits (ASan with 1, TSan 66).
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == (kAddressSanitizer ? 1 : 66))
      << status << producer->output();
#else
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV) << status << producer->output();
#endif
  EXPECT_NE(producer->output().find("committed"), std::string::npos) << producer->output();
  EXPECT_EQ(producer->output().find("wrote into"), std::string::npos) << producer->output();
  auto c = Attach(node);
  ASSERT_TRUE(c);
  auto ref = c->Get<HeapMap>("sealed");
  ASSERT_TRUE(ref.ok()) << ref.status().ToString();
  EXPECT_EQ(workload::Verify(**ref, 5000), "");
  EXPECT_TRUE(ref->Verify().ok());
}

TEST(NodeTest, ProducerKilledMidBuildIsReclaimedAndOthersIntact) {
  Node node({"--arena-size", "16M"});
  auto c = Attach(node);
  ASSERT_TRUE(c);
  ASSERT_TRUE(CommitMap(*c, "keep", 2000).ok());
  uint64_t before = Used(*c);
  auto builder = Process::Spawn({Helper(), "build-forever", "x", "200"}, node.Env());
  ASSERT_FALSE(builder->WaitForLine("building").empty()) << builder->output();
  EXPECT_GT(Used(*c), before + (150 << 20));
  builder->Kill(SIGKILL);
  builder->Wait();
  EXPECT_TRUE(testing::Eventually([&] { return Used(*c) == before; }))
      << "used " << Used(*c) << " vs " << before;
  auto keep = c->Get<HeapMap>("keep");
  ASSERT_TRUE(keep.ok());
  EXPECT_TRUE(keep->Verify().ok());
  EXPECT_EQ(workload::Verify(**keep, 2000), "");
}

TEST(NodeTest, ConsumerKilledHoldingPinsReleasesThem) {
  Node node;
  auto c = Attach(node);
  ASSERT_TRUE(c);
  ASSERT_TRUE(CommitMap(*c, "pinned", 1000).ok());
  uint64_t with_object = Used(*c);
  auto consumer = Process::Spawn({Helper(), "pin", "pinned"}, node.Env());
  ASSERT_FALSE(consumer->WaitForLine("pinned").empty()) << consumer->output();
  auto stat = nlohmann::json::parse(*c->StatJson("pinned"));
  EXPECT_EQ(stat["pins"].get<int>(), 1);
  ASSERT_TRUE(c->Delete("pinned").ok());
  EXPECT_EQ(AwaitingUnpin(*c), 1u);
  EXPECT_EQ(Used(*c), with_object) << "memory of a pinned object must stay";
  consumer->Kill(SIGKILL);
  consumer->Wait();
  EXPECT_TRUE(testing::Eventually([&] { return AwaitingUnpin(*c) == 0; }));
}

TEST(NodeTest, DeletedMemoryIsReusedOnceTheLastPinIsGone) {
  Node node({"--arena-size", "16M"});
  auto c = Attach(node);
  ASSERT_TRUE(c);
  uint64_t empty = Used(*c);
  auto big = Process::Spawn({Helper(), "big", "a", "64"}, node.Env());
  ASSERT_EQ(big->Wait(), 0) << big->output();
  auto ref = c->Get<csm::vector<uint8_t>>("a");
  ASSERT_TRUE(ref.ok());
  uint64_t header = ref->info().header;
  ASSERT_TRUE(c->Delete("a").ok());
  EXPECT_TRUE(c->Get<csm::vector<uint8_t>>("a").status().IsNotFound());
  EXPECT_EQ((**ref)[4096], 1) << "a Ref keeps a deleted object readable";
  EXPECT_GT(Used(*c), empty + (64 << 20) - 1);
  ref->Reset();
  EXPECT_TRUE(testing::Eventually([&] { return Used(*c) == empty; }));
  // The same addresses serve the next object.
  auto again = Process::Spawn({Helper(), "big", "b", "64"}, node.Env());
  ASSERT_EQ(again->Wait(), 0) << again->output();
  auto b = c->Get<csm::vector<uint8_t>>("b");
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(b->info().header, header);
  EXPECT_EQ((**b)[8192], 2);
}

// A deleted object's memory is kept, its pages in place, for the next arena of the same
// size, which reads as zeros like new memory.
TEST(NodeTest, ADeletedObjectsMemoryServesTheNextArenaOfItsSizeAsZeros) {
  Node node({"--arena-size", "16M", "--spare-memory-ms", "60000"});
  auto c = Attach(node);
  ASSERT_TRUE(c);
  auto big = Process::Spawn({Helper(), "big", "a", "64"}, node.Env());  // its own arena
  ASSERT_EQ(big->Wait(), 0) << big->output();
  ASSERT_TRUE(c->Delete("a").ok());
  ASSERT_TRUE(testing::Eventually([&] { return InfoField(*c, "spare_memory_zeroed_bytes") >= (64u << 20); }));
  EXPECT_EQ(InfoField(*c, "spare_memory_reused"), 0u);

  auto b = c->NewBuilder();
  ASSERT_TRUE(b.ok());
  auto v = b->New<csm::vector<uint8_t>>();
  ASSERT_TRUE(v.ok());
  const uint8_t* data = nullptr;
  uint64_t reused = InfoField(*c, "spare_memory_reused");  // "big"'s small arena may be
  ASSERT_TRUE(b->Populate([&] {
    (*v)->reserve(64 << 20);  // the same request "big" made
    data = (*v)->data();
  }).ok());
  EXPECT_EQ(InfoField(*c, "spare_memory_reused"), reused + 1);
  uint64_t nonzero = 0;
  for (uint64_t i = 0; i < (64u << 20); ++i) nonzero += data[i] != 0;
  EXPECT_EQ(nonzero, 0u) << "the old object's bytes show through";
  ASSERT_TRUE(b->Populate([&] { (*v)->assign(64 << 20, 7); }).ok());
  ASSERT_TRUE(b->Commit("b").ok());
  auto ref = c->Get<csm::vector<uint8_t>>("b");
  ASSERT_TRUE(ref.ok());
  EXPECT_EQ((**ref)[12345], 7);
}

// A field ("ShmemPmdMapped") of this process's /proc/self/smaps entry covering addr, in kB.
uint64_t SmapsField(const void* addr, const std::string& field) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool inside = false;
  const auto at = reinterpret_cast<uintptr_t>(addr);
  while (std::getline(smaps, line)) {
    unsigned long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find(':') > line.find(' ')) {
      inside = at >= lo && at < hi;
    } else if (inside && line.rfind(field + ":", 0) == 0) {
      return std::stoull(line.substr(field.size() + 1));
    }
  }
  return 0;
}

// Builds a 32 MiB vector (an arena of its own) on a node started with --huge-pages
// `flag`; returns the kB of it mapped with 2 MiB pages and checks what info says.
uint64_t HugeKilobytesOfANewArena(const std::string& flag) {
  Node node({"--arena-size", "16M", "--huge-pages", flag});
  auto c = Attach(node);
  if (!c) return 0;
  auto info = nlohmann::json::parse(*c->InfoJson())["huge_pages"];
  const std::string setting = os::SharedHugePages();
  EXPECT_EQ(info["setting"].get<std::string>(), setting);
  EXPECT_EQ(info["asked"].get<bool>(), flag == "on");
  EXPECT_EQ(info["used"].get<bool>(), flag == "on" && os::SharedHugePagesAllowed(setting));

  auto b = c->NewBuilder();
  EXPECT_TRUE(b.ok());
  auto v = b->New<csm::vector<uint8_t>>();
  EXPECT_TRUE(v.ok());
  EXPECT_TRUE(b->Populate([&] { (*v)->assign(32 << 20, 3); }).ok());
  const uint64_t huge_kb = SmapsField((*v)->data(), "ShmemPmdMapped");
  EXPECT_TRUE(b->Commit("v").ok());
  auto ref = c->Get<csm::vector<uint8_t>>("v");
  EXPECT_TRUE(ref.ok());
  if (ref.ok()) {
    EXPECT_EQ((**ref)[(32 << 20) - 1], 3);
  }
  return huge_kb;
}

TEST(NodeTest, ArenasUseTwoMiBPagesWhereTheHostAllowsThem) {
  const bool allowed = os::SharedHugePagesAllowed(os::SharedHugePages());
  const uint64_t on = HugeKilobytesOfANewArena("on");
  if (allowed) {
    // scripts/setup.sh allows them where it may change the host; the arena asked.
    EXPECT_GE(on, 16u << 10) << "a 32 MiB arena mapped with 4 KiB pages";
  } else {
    EXPECT_EQ(on, 0u) << "huge pages reported off by the host, yet used";
  }
  EXPECT_EQ(HugeKilobytesOfANewArena("off"), 0u) << "--huge-pages off, yet 2 MiB pages";
}

TEST(NodeTest, ReleasedArenaGivesBackPagesOfDeletedObjects) {
  Node node({"--arena-size", "32M"});
  {
    auto c = Attach(node);
    ASSERT_TRUE(c);
    ASSERT_TRUE(CommitMap(*c, "a", 10000).ok());
    ASSERT_TRUE(CommitMap(*c, "b", 10000).ok());
  }  // the process detaches: its arena keeps only the pages of a and b
  auto c = Attach(node);
  ASSERT_TRUE(c);
  uint64_t a_size = c->Lookup("a")->size, b_size = c->Lookup("b")->size;
  EXPECT_TRUE(testing::Eventually([&] { return Used(*c) < a_size + b_size + (64 << 10); }))
      << "used " << Used(*c);
  uint64_t both = Used(*c);
  ASSERT_TRUE(c->Delete("a").ok());
  EXPECT_TRUE(testing::Eventually([&] { return Used(*c) <= both - a_size + (16 << 10); }))
      << "used " << Used(*c) << ", before " << both << ", a " << a_size;
  auto b = c->Get<HeapMap>("b");
  ASSERT_TRUE(b.ok());
  EXPECT_TRUE(b->Verify().ok());
  EXPECT_EQ(workload::Verify(**b, 10000), "");
}

// A process that builds small objects holds a 2 MiB arena, not arena_size: many such
// processes build at once in a node whose capacity holds one 64 MiB arena.
TEST(NodeTest, ProcessesBuildingSmallObjectsHoldSmallArenas) {
  Node node({"--capacity", "64M", "--arena-size", "64M"});
  std::vector<std::unique_ptr<Process>> builders;
  for (int i = 0; i < 8; ++i) {
    builders.push_back(Process::Spawn({Helper(), "small-and-stay", "p" + std::to_string(i), "10"}, node.Env()));
  }
  for (auto& b : builders) ASSERT_FALSE(b->WaitForLine("committed").empty()) << b->output();
  auto c = Attach(node);
  ASSERT_TRUE(c);
  EXPECT_EQ(Used(*c), 8u * (2 << 20)) << "eight processes, each holding one 2 MiB arena";
  for (auto& b : builders) b->Kill(SIGKILL);
  // Their arenas keep only the pages of their objects: 10 × 384 bytes, one page each.
  EXPECT_TRUE(testing::Eventually([&] { return Used(*c) == 8u * 4096; })) << "used " << Used(*c);
  auto o = c->Get<workload::SmallObject>("p7/9");
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_TRUE(workload::VerifySmall(**o, 9));
}

// 100k objects of 248 bytes share pages: the node holds at most 1.5× their bytes plus
// headers (the ObjectHeader's 64 bytes), not a page each.
TEST(NodeTest, AHundredThousandSmallObjectsArePacked) {
  constexpr long kObjects = 100000;
  Node node({"--max-objects", "131072"});
  {
    auto c = Attach(node);
    ASSERT_TRUE(c);
    for (long i = 0; i < kObjects; ++i) {
      auto b = c->NewBuilder();
      ASSERT_TRUE(b.ok());
      auto o = b->New<workload::SmallObject>();
      ASSERT_TRUE(o.ok());
      workload::FillSmall(**o, i);
      ASSERT_TRUE(b->Commit("s/" + std::to_string(i)).ok()) << i;
    }
  }  // detached: its arenas keep only the pages its objects are on
  auto c = Attach(node);
  ASSERT_TRUE(c);
  const uint64_t payload = kObjects * (sizeof(workload::SmallObject) + sizeof(object::ObjectHeader));
  EXPECT_TRUE(testing::Eventually([&] { return Used(*c) <= payload * 3 / 2; }))
      << "used " << Used(*c) << " for " << payload << " bytes of objects and headers ("
      << double(Used(*c)) / double(payload) << "×)";
  std::printf("100k objects of 248 B: node holds %.1f MiB, %.2f× their bytes plus headers\n",
              double(Used(*c)) / (1 << 20), double(Used(*c)) / double(payload));
  for (long i : {0L, 1L, 4095L, 50000L, kObjects - 1}) {
    auto o = c->Get<workload::SmallObject>("s/" + std::to_string(i));
    ASSERT_TRUE(o.ok()) << i << ": " << o.status().ToString();
    EXPECT_TRUE(workload::VerifySmall(**o, i)) << i;
    EXPECT_TRUE(o->Verify().ok()) << i;
  }
}

// A small object's pages are sealed once every object on them is committed: a write into
// an earlier object faults in its producer.
TEST(NodeTest, PackedSmallObjectsAreSealedOnceTheirPageIsFull) {
  Node node;
  auto c = Attach(node);
  ASSERT_TRUE(c);
  std::vector<workload::SmallObject*> made;
  for (long i = 0; i < 40; ++i) {  // 40 × 384 bytes: more than three pages
    auto b = c->NewBuilder();
    ASSERT_TRUE(b.ok());
    auto o = b->New<workload::SmallObject>();
    ASSERT_TRUE(o.ok());
    workload::FillSmall(**o, i);
    ASSERT_TRUE(b->Commit("s/" + std::to_string(i)).ok());
    made.push_back(*o);
  }
  EXPECT_EQ(os::MappingAt(reinterpret_cast<uint64_t>(made[0])).find("rw"), std::string::npos)
      << os::MappingAt(reinterpret_cast<uint64_t>(made[0]));
  EXPECT_NE(os::MappingAt(reinterpret_cast<uint64_t>(made[0])).find("r--s"), std::string::npos);
  EXPECT_EQ(reinterpret_cast<uint64_t>(made[1]) - reinterpret_cast<uint64_t>(made[0]), 384u)
      << "header, 248 bytes and the extent table, cache-line aligned";
}

TEST(NodeTest, ObjectsLargerThanFourGiB) {
  Node node({"--capacity", "6G"});
  auto producer = Process::Spawn({Helper(), "big", "huge", "4200"}, node.Env());
  ASSERT_FALSE(producer->WaitForLine("committed", 240000).empty()) << producer->output();
  EXPECT_EQ(producer->Wait(), 0);
  auto consumer = Process::Spawn({Helper(), "check-big", "huge", "4200"}, node.Env());
  std::string line = consumer->WaitForLine("verified", 240000);
  EXPECT_FALSE(line.empty()) << consumer->output();
  EXPECT_EQ(consumer->Wait(), 0);
}

TEST(NodeTest, DaemonNotRunningIsAClearError) {
  Config config = DefaultConfig();
  config.socket_path = "/tmp/csm-test-nonexistent/node.sock";
  auto c = Client::Connect(config);
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(c.status().IsUnavailable()) << c.status().ToString();
  EXPECT_NE(c.status().message().find("csm node"), std::string::npos) << c.status().ToString();
  // The failed attempt left no reservation behind: a later Connect can succeed.
  Node node;
  EXPECT_TRUE(Client::Connect(node.ClientConfig()).ok());
}

TEST(NodeTest, WindowBaseAlreadyTakenIsAClearError) {
  Config config = DefaultConfig();
  config.socket_path = "/tmp/csm-test-nonexistent/node.sock";
  // A window just past the default one (inside the range sanitizers leave to programs).
  config.window.base = config.window.base + config.window.size + (64ULL << 30);
  config.window.size = 64ULL << 30;
  uint64_t taken = config.window.base + (1 << 30);
  void* squatter = ::mmap(reinterpret_cast<void*>(taken), 4096, PROT_READ,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  ASSERT_NE(squatter, MAP_FAILED);
  char expected[64];
  std::snprintf(expected, sizeof(expected), "already taken by the mapping '%llx-",
                static_cast<unsigned long long>(taken));
  auto c = Client::Connect(config);
  ::munmap(squatter, 4096);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(c.status().message().find(expected), std::string::npos) << c.status().ToString();
  EXPECT_NE(c.status().message().find("CSM_HEAP_BASE"), std::string::npos);
}

TEST(NodeTest, ClientWithAnotherWindowIsRefused) {
  Node node;
  Config config = node.ClientConfig();
  config.window.size /= 2;
  auto c = Client::Connect(config);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("window mismatch"), std::string::npos) << c.status().ToString();
}

// A process attaches with the socket and window alone: the node's own settings (arena
// size, limits) come from csmd, whatever the process's Config says about them.
TEST(NodeTest, ClientOptionsNameOnlyWhatAProcessNeeds) {
  Node node({"--arena-size", "4M"});
  ClientOptions options;
  options.socket_path = node.ClientConfig().socket_path;
  options.window = node.ClientConfig().window;
  options.request_timeout = std::chrono::milliseconds(0);
  auto refused = Client::Connect(options);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("request_timeout"), std::string::npos) << refused.status().ToString();
  options.request_timeout = std::chrono::seconds(5);
  auto c = Client::Connect(options);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ((*c)->config().arena_size, 4u << 20) << "the node's arena size";
  ASSERT_TRUE((*c)->Put<csm::vector<int>>("opts", [](auto& v) { v.assign(1000, 7); }).ok());
  auto ref = (*c)->Get<csm::vector<int>>("opts");
  ASSERT_TRUE(ref.ok()) << ref.status().ToString();
  EXPECT_EQ((*ref)->size(), 1000u);
}

TEST(NodeTest, ListPagesThroughEveryObjectInKeyOrder) {
  Node node;
  auto c = Attach(node);
  ASSERT_TRUE(c);
  for (int i = 0; i < 1500; ++i) {
    auto b = c->NewBuilder();
    ASSERT_TRUE(b.ok());
    ASSERT_TRUE(b->New<int32_t>(i).ok());
    char key[32];
    std::snprintf(key, sizeof(key), "obj/%05d", i);
    ASSERT_TRUE(b->Commit(key).ok());
  }
  std::string after;
  int seen = 0, pages = 0;
  for (bool more = true; more; ++pages) {
    auto page = nlohmann::json::parse(*c->ListJson(after, 1000));
    for (const auto& o : page["objects"]) {
      char key[32];
      std::snprintf(key, sizeof(key), "obj/%05d", seen++);
      EXPECT_EQ(o["key"], key);
      EXPECT_EQ(o["type_name"], "i32");
      after = o["key"].get<std::string>();
    }
    more = page["more"].get<bool>();
  }
  EXPECT_EQ(seen, 1500);
  EXPECT_EQ(pages, 2);
  EXPECT_EQ(c->List().size(), 1500u) << "the shared directory agrees";
}

TEST(NodeTest, CliCommands) {
  std::string csm = testing::BinaryDir() + "/csm";
  auto down = testing::Run({csm, "info"}, {"CSM_SOCKET=/tmp/csm-test-nonexistent/node.sock"});
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_NE(down.err.find("start it with `csm node`"), std::string::npos) << down.err;

  Node node;
  auto producer = Process::Spawn({Helper(), "produce", "cli/map", "100"}, node.Env());
  ASSERT_EQ(producer->Wait(), 0);
  auto ls = testing::Run({csm, "ls"}, node.Env());
  EXPECT_EQ(ls.exit_code, 0) << ls.err;
  EXPECT_NE(ls.out.find("cli/map"), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("1 objects"), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("csm::map"), std::string::npos) << "ls shows type names: " << ls.out;
  auto stat = testing::Run({csm, "stat", "cli/map"}, node.Env());
  EXPECT_EQ(stat.exit_code, 0) << stat.err;
  auto j = nlohmann::json::parse(stat.out);
  EXPECT_EQ(j["key"], "cli/map");
  EXPECT_NE(j["type_name"].get<std::string>().find("csm::map"), std::string::npos);
  EXPECT_EQ(j["descriptor_bytes"].get<int>(), 256);
  auto info = testing::Run({csm, "info"}, node.Env());
  EXPECT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("1 live"), std::string::npos) << info.out;
  auto rm = testing::Run({csm, "rm", "cli/map"}, node.Env());
  EXPECT_EQ(rm.exit_code, 0) << rm.err;
  auto rm_again = testing::Run({csm, "rm", "cli/map"}, node.Env());
  EXPECT_EQ(rm_again.exit_code, 1);
  EXPECT_NE(rm_again.err.find("NotFound"), std::string::npos) << rm_again.err;
  auto stat_missing = testing::Run({csm, "stat", "cli/map"}, node.Env());
  EXPECT_EQ(stat_missing.exit_code, 1);
}

}  // namespace
}  // namespace csm
