// SpillStore on its own: pieces of memfds out to a file and back into other memory, and
// every kind of damaged file an error for that file only.
#include "csm/node/spill_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <future>
#include <vector>

#include "csm/os/memory.h"

namespace csm::node {
namespace {

constexpr uint64_t kMiB = 1 << 20;

class SpillStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/csm-spill-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto store = SpillStore::Open(dir_ + "/spill");
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // A memfd of `size` bytes holding a pattern that depends on `seed`.
  std::shared_ptr<os::UniqueFd> Memory(uint64_t size, uint8_t seed) {
    auto fd = os::CreateMemfd("spill-test", size);
    EXPECT_TRUE(fd.ok());
    std::vector<uint8_t> bytes(size);
    for (uint64_t i = 0; i < size; ++i) bytes[i] = static_cast<uint8_t>(i * 131 + seed);
    EXPECT_EQ(::pwrite(fd->get(), bytes.data(), size, 0), static_cast<ssize_t>(size));
    return std::make_shared<os::UniqueFd>(std::move(*fd));
  }
  static std::vector<uint8_t> Read(int fd, uint64_t offset, uint64_t len) {
    std::vector<uint8_t> out(len);
    EXPECT_EQ(::pread(fd, out.data(), len, static_cast<off_t>(offset)), static_cast<ssize_t>(len));
    return out;
  }
  // Pieces at odd offsets and lengths (not page-aligned), in two memfds.
  std::vector<SpillStore::Piece> Pieces(const std::shared_ptr<os::UniqueFd>& a,
                                        const std::shared_ptr<os::UniqueFd>& b) {
    return {{a, 100, 3 * kMiB + 17}, {b, 4096 * 3 + 5, 12345}, {a, 4 * kMiB, kMiB}};
  }
  Status Damage(const std::string& path, off_t at, bool truncate = false) {
    int fd = ::open(path.c_str(), O_RDWR);
    if (fd < 0) return ErrnoError("open", errno);
    if (truncate) {
      (void)::ftruncate(fd, at);
    } else {
      char c = 0;
      (void)::pread(fd, &c, 1, at);
      c = static_cast<char>(c ^ 0x5a);
      (void)::pwrite(fd, &c, 1, at);
    }
    ::close(fd);
    return Status::OK();
  }

  std::string dir_;
  std::unique_ptr<SpillStore> store_;
};

TEST_F(SpillStoreTest, PiecesComeBackWhereTheyWereAndNothingElseIsWritten) {
  auto a = Memory(6 * kMiB, 1), b = Memory(kMiB, 2);
  const auto before_a = Read(a->get(), 0, 6 * kMiB), before_b = Read(b->get(), 0, kMiB);
  const auto pieces = Pieces(a, b);
  ASSERT_TRUE(store_->WriteFile(7, 1, pieces).ok());
  // The memory is punched (as csmd does), then restored.
  for (const auto& p : pieces) ASSERT_TRUE(os::PunchHole(p.fd->get(), p.offset, p.len).ok());
  ASSERT_TRUE(store_->ReadFile(7, 1, pieces).ok());
  EXPECT_EQ(Read(a->get(), 0, 6 * kMiB), before_a);
  EXPECT_EQ(Read(b->get(), 0, kMiB), before_b);
  EXPECT_EQ(store_->bytes_read(), 3 * kMiB + 17 + 12345 + kMiB);
}

TEST_F(SpillStoreTest, JobsRunOnTheStoresThreadsAndSayWhenDone) {
  auto a = Memory(6 * kMiB, 3), b = Memory(kMiB, 4);
  std::promise<Status> wrote, read;
  store_->Write(9, 2, Pieces(a, b), [&](Status s) { wrote.set_value(s); });
  ASSERT_TRUE(wrote.get_future().get().ok());
  EXPECT_TRUE(std::filesystem::exists(store_->Name(9, 2)));
  store_->Read(9, 2, Pieces(a, b), [&](Status s) { read.set_value(s); });
  ASSERT_TRUE(read.get_future().get().ok());
  store_->Remove(9, 2);
  // Removed on the writer thread, in order: gone once a write queued after it is done.
  std::promise<Status> next;
  store_->Write(10, 1, Pieces(a, b), [&](Status s) { next.set_value(s); });
  ASSERT_TRUE(next.get_future().get().ok());
  EXPECT_FALSE(std::filesystem::exists(store_->Name(9, 2)));
  EXPECT_TRUE(std::filesystem::exists(store_->Name(10, 1)));
}

TEST_F(SpillStoreTest, ADamagedFileIsCorruptionForItsObjectOnly) {
  auto a = Memory(6 * kMiB, 5), b = Memory(kMiB, 6);
  const auto pieces = Pieces(a, b);
  for (uint64_t id : {1, 2, 3, 4, 5}) ASSERT_TRUE(store_->WriteFile(id, 1, pieces).ok());
  ASSERT_TRUE(Damage(store_->Name(1, 1), 48 + 24 + 2 * kMiB).ok());          // a byte of the data
  ASSERT_TRUE(Damage(store_->Name(2, 1), 20).ok());                          // the header
  ASSERT_TRUE(Damage(store_->Name(3, 1), 48 + 24 + kMiB, /*truncate=*/true).ok());  // cut short
  std::filesystem::remove(store_->Name(4, 1));                               // gone
  for (uint64_t id : {1, 2, 3, 4}) {
    Status s = store_->ReadFile(id, 1, pieces);
    EXPECT_EQ(s.code(), StatusCode::kCorruption) << id << ": " << s.ToString();
    EXPECT_NE(s.message().find("delete the object and put it again"), std::string::npos) << s.ToString();
  }
  // Another object's file, or other pieces, are not taken for this one's.
  std::filesystem::copy_file(store_->Name(5, 1), store_->Name(6, 1));
  EXPECT_EQ(store_->ReadFile(6, 1, pieces).code(), StatusCode::kCorruption);
  std::vector<SpillStore::Piece> other = pieces;
  other[1].len += 1;
  EXPECT_EQ(store_->ReadFile(5, 1, other).code(), StatusCode::kCorruption);
  // The intact one still reads back.
  EXPECT_TRUE(store_->ReadFile(5, 1, pieces).ok());
}

// 64 MiB and more are read back on two threads, half of the 1 MiB blocks each.
TEST_F(SpillStoreTest, ALargeObjectReadOnTwoThreadsComesBackWholeOrNotAtAll) {
  auto a = Memory(72 * kMiB, 9), b = Memory(kMiB, 10);
  const std::vector<SpillStore::Piece> pieces = {{a, 100, 70 * kMiB + 3}, {b, 5, 1000}, {a, 70 * kMiB + 200, 777}};
  const auto before_a = Read(a->get(), 0, 72 * kMiB), before_b = Read(b->get(), 0, kMiB);
  ASSERT_TRUE(store_->WriteFile(21, 1, pieces).ok());
  for (const auto& p : pieces) ASSERT_TRUE(os::PunchHole(p.fd->get(), p.offset, p.len).ok());
  ASSERT_TRUE(store_->ReadFile(21, 1, pieces).ok());
  EXPECT_EQ(Read(a->get(), 0, 72 * kMiB), before_a);
  EXPECT_EQ(Read(b->get(), 0, kMiB), before_b);
  // A byte in the second thread's half is found too.
  ASSERT_TRUE(Damage(store_->Name(21, 1), 48 + 24 + 60 * kMiB).ok());
  EXPECT_EQ(store_->ReadFile(21, 1, pieces).code(), StatusCode::kCorruption);
}

TEST_F(SpillStoreTest, OpeningTheDirectoryAgainRemovesAnEarlierCsmdsFiles) {
  auto a = Memory(6 * kMiB, 7), b = Memory(kMiB, 8);
  ASSERT_TRUE(store_->WriteFile(11, 1, Pieces(a, b)).ok());
  auto again = SpillStore::Open(dir_ + "/spill");
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(std::filesystem::exists(store_->Name(11, 1)));
  EXPECT_EQ(SpillStore::Open("/proc/csm-no-such-dir").status().code(), StatusCode::kIOError);
  // And a store that ends removes its files (its csmd's objects end with it).
  ASSERT_TRUE((*again)->WriteFile(12, 1, Pieces(a, b)).ok());
  const std::string name = (*again)->Name(12, 1);
  again->reset();
  EXPECT_FALSE(std::filesystem::exists(name));
}

}  // namespace
}  // namespace csm::node
