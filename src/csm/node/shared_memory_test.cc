#include "csm/node/shared_memory.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "csm/base/hash.h"
#include "csm/object/object_layout.h"
#include "csm/os/memory.h"

namespace csm::node {
namespace {

constexpr uint64_t kArenaAddr = 0x200000000000, kArenaSize = 2u << 20;

std::string PathFor(const std::string& name) {
  return "/dev/shm/csm-shared-memory-test-" + std::to_string(::getpid()) + "-" + name;
}

std::unique_ptr<SharedMemory> OpenAt(const std::string& name, const std::string& coherence,
                                     const std::string& fault = "") {
  SharedMemoryOptions o;
  o.path = PathFor(name);
  o.coherence = coherence;
  o.fault = fault;
  auto m = SharedMemory::Open(o, 16u << 20);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return m.ok() ? std::move(*m) : nullptr;
}

// An object of `fill` bytes at the arena's start, written into `arena` (a writer's
// memory), and its record.
cluster::ObjectRecord WriteObject(char* arena, uint64_t fabric_offset, char fill, const cluster::FabricMemory& memory) {
  const uint64_t size = 64 << 10;
  std::memset(arena + sizeof(object::ObjectHeader), fill, size - sizeof(object::ObjectHeader));
  Checksum sum;
  sum.Update(arena + sizeof(object::ObjectHeader), size - sizeof(object::ObjectHeader));
  object::ObjectHeader h{};
  h.magic = object::kObjectMagic;
  h.type_id = 42;
  h.data_size = size;
  h.root = kArenaAddr + sizeof(h);
  h.checksum = sum.Digest();
  std::memcpy(arena, &h, sizeof(h));
  cluster::ObjectRecord r;
  r.key = std::string("k-") + fill;
  r.owner_node = 1;
  r.type_id = 42;
  r.header = kArenaAddr;
  r.root = h.root;
  r.size = size;
  r.checksum = h.checksum;
  r.extents = {{kArenaAddr, size}};
  r.arenas = {{kArenaAddr, kArenaSize}};
  r.memory = memory;
  r.arena_offsets = {fabric_offset};
  return r;
}

TEST(SharedMemoryTest, RangesAreHandedOutFirstFitAndMergeWhenFreed) {
  auto m = OpenAt("ranges", "coherent");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->memory().coherence, "coherent");
  auto a = m->Allocate(1), b = m->Allocate(3u << 20), c = m->Allocate(2u << 20);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(*a, 0u);
  EXPECT_EQ(*b, 2u << 20) << "rounded up to 2 MiB";
  EXPECT_EQ(*c, 6u << 20);
  EXPECT_TRUE(m->Allocate(10u << 20).status().IsCapacityExceeded());
  m->Free(*a, 1);
  m->Free(*b, 3u << 20);
  auto merged = m->Allocate(6u << 20);
  ASSERT_TRUE(merged.ok()) << "the freed neighbours were merged";
  EXPECT_EQ(*merged, 0u);
  EXPECT_EQ(m->allocated(), 8u << 20);
}

TEST(SharedMemoryTest, OneFileServesOneNode) {
  auto m = OpenAt("owned", "coherent");
  ASSERT_TRUE(m);
  SharedMemoryOptions o;
  o.path = PathFor("owned");
  auto second = SharedMemory::Open(o, 16u << 20);
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition) << second.status().ToString();
  m.reset();
  EXPECT_NE(::access(PathFor("owned").c_str(), F_OK), 0) << "the node's file goes with it";
}

// The stale-cache model in one process: a writer's private arena reaches its device
// only by WriteBack; the reader sees the device through a snapshot refreshed only by
// ReadInPlace's invalidate step.
class StaleModelTest : public ::testing::TestWithParam<std::string> {};

TEST_P(StaleModelTest, ReadsSeeTheWritersBytesOnlyThroughTheProtocol) {
  const std::string fault = GetParam();
  auto writer = OpenAt("writer-" + fault, "stale-model", fault == "skip-write-back" ? fault : "");
  auto reader = OpenAt("reader-" + fault, "stale-model", fault == "skip-invalidate" ? fault : "");
  ASSERT_TRUE(writer && reader);
  auto offset = writer->Allocate(kArenaSize);
  ASSERT_TRUE(offset.ok());
  // The writer's arena: a private memfd (its cache).
  auto arena_fd = os::CreateMemfd("arena", kArenaSize);
  ASSERT_TRUE(arena_fd.ok());
  auto arena = os::SharedView::Map(arena_fd->get(), kArenaSize);
  ASSERT_TRUE(arena.ok());
  const SharedMemory::Place place{arena_fd->get(), 0, kArenaAddr, *offset};

  auto peer = reader->OpenPeer(writer->memory().path);
  ASSERT_TRUE(peer.ok()) << peer.status().ToString();
  auto publish_and_read = [&](char fill) {
    cluster::ObjectRecord r = WriteObject((*arena)->data(), *offset, fill, writer->memory());
    EXPECT_TRUE(writer->WriteBack(place, kArenaAddr, r.size).ok());
    auto range = reader->MapPeer(r.memory.path, peer->get(), *offset, kArenaSize);
    EXPECT_TRUE(range.ok()) << range.status().ToString();
    if (!range.ok()) return range.status();
    return reader->ReadInPlace(r, {{kArenaAddr, kArenaSize, *offset, range->view, peer->get()}});
  };
  // The first object lands where the reader never looked; the second in the same memory.
  Status first = publish_and_read('a');
  Status second = publish_and_read('b');
  const auto stats = reader->stats();
  if (fault.empty()) {
    EXPECT_TRUE(first.ok()) << first.ToString();
    EXPECT_TRUE(second.ok()) << second.ToString();
    EXPECT_EQ(stats.read_failures, 0u);
    EXPECT_GE(writer->stats().written_back_bytes, 2u * (64 << 10));
  } else if (fault == "skip-write-back") {
    EXPECT_TRUE(first.IsCorruption()) << first.ToString();
    EXPECT_TRUE(second.IsCorruption()) << second.ToString();
  } else {
    EXPECT_TRUE(first.ok()) << first.ToString();
    EXPECT_TRUE(second.IsCorruption()) << "stale lines of the first object: " << second.ToString();
    EXPECT_EQ(stats.read_retries, SharedMemory::kReadAttempts - 1u);
    EXPECT_EQ(stats.read_failures, 1u);
  }
}

INSTANTIATE_TEST_SUITE_P(Faults, StaleModelTest, ::testing::Values("", "skip-write-back", "skip-invalidate"),
                         [](const auto& p) {
                           std::string name = p.param.empty() ? "protocol" : p.param;
                           std::erase(name, '-');
                           return name;
                         });

// Two nodes on a flush fabric: an object written straight into the writer's device (its
// arena is the device's range itself) and the reader's mapping of that range.
class FlushFabricTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    writer_ = OpenAt(name + "-writer", "flush");
    reader_ = OpenAt(name + "-reader", "flush");
    ASSERT_TRUE(writer_ && reader_);
    auto offset = writer_->Allocate(kArenaSize);
    ASSERT_TRUE(offset.ok());
    offset_ = *offset;
    auto arena = os::SharedView::Map(writer_->device_fd(), kArenaSize, offset_);
    ASSERT_TRUE(arena.ok());
    arena_ = *arena;
    record_ = WriteObject(arena_->data(), offset_, 'f', writer_->memory());
    auto peer = reader_->OpenPeer(record_.memory.path);
    ASSERT_TRUE(peer.ok());
    peer_ = std::move(*peer);
    auto range = reader_->MapPeer(record_.memory.path, peer_.get(), offset_, kArenaSize);
    ASSERT_TRUE(range.ok());
    view_ = range->view;
  }
  Status Read() { return reader_->ReadInPlace(record_, {{kArenaAddr, kArenaSize, offset_, view_, peer_.get()}}); }

  std::unique_ptr<SharedMemory> writer_, reader_;
  uint64_t offset_ = 0;
  std::shared_ptr<os::SharedView> arena_, view_;
  cluster::ObjectRecord record_;
  os::UniqueFd peer_;
};

TEST_F(FlushFabricTest, WritesBackAndInvalidatesWithoutChangingBytes) {
  ASSERT_TRUE(writer_->WriteBack({writer_->device_fd(), offset_, kArenaAddr, offset_}, kArenaAddr, record_.size).ok());
  EXPECT_TRUE(Read().ok());
  // Bytes that differ from the record are reported after the retries, not taken.
  record_.checksum ^= 1;
  Status wrong = Read();
  EXPECT_TRUE(wrong.IsCorruption()) << wrong.ToString();
  EXPECT_EQ(reader_->stats().read_failures, 1u);
}

TEST_F(FlushFabricTest, MemoryThatWentAwayIsAnErrorNotAFault) {
  // Someone cuts the writer's file short under the mapping: touching it would be SIGBUS.
  ASSERT_EQ(::ftruncate(writer_->device_fd(), 0), 0);
  Status s = Read();
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
}

}  // namespace
}  // namespace csm::node
