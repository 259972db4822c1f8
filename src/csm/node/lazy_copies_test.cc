// Lazy copies with a reader process: it reads the object while its blocks arrive from a
// fake owner, sees every byte right, and gets SIGBUS (never wrong bytes) when the owner
// dies or a block keeps failing its check.
#include "csm/node/lazy_copies.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <random>
#include <string>

#include <gtest/gtest.h>

#include "csm/base/hash.h"
#include "csm/object/checksum.h"
#include "csm/os/memory.h"
#include "csm/os/shared_view.h"
#include "csm/os/unix_socket.h"

namespace csm::node {
namespace {

constexpr uint64_t kSize = 4 << 20;     // the arena
constexpr uint64_t kObject = 3 << 20;   // the object's one extent, at the arena's start
constexpr uint64_t kBlock = 64 << 10;   // small blocks: many of them

// The owner: its memory (the object at `base`), served by address; it can die after a
// number of fetches or flip a byte of one block a number of times.
class FakeOwner : public transport::Transport {
 public:
  // `deferred`: committed without a checksum (as Arrow tables are): it serves no block
  // digests, only its digest of what each fetch sent.
  explicit FakeOwner(uint64_t base, bool deferred = false) : base_(base), deferred_(deferred), bytes_(kObject, '\0') {
    std::mt19937_64 rng(7);
    for (size_t i = sizeof(object::ObjectHeader); i < bytes_.size(); ++i) bytes_[i] = static_cast<char>(rng());
    object::ObjectHeader h{};
    h.magic = object::kObjectMagic;
    h.layout_version = object::kObjectLayoutVersion;
    h.type_id = 42;
    h.data_size = kObject;
    h.root = base + 64;
    if (deferred) {
      h.flags |= object::kFlagChecksumDeferred;
    } else {
      std::vector<uint64_t> digests = *BlockDigests("", 0, {});
      h.checksum = Checksum::OfBlocks(digests.data(), digests.size());
    }
    std::memcpy(bytes_.data(), &h, sizeof(h));
    header_ = h;
  }
  const object::ObjectHeader& header() const { return header_; }
  const std::string& bytes() const { return bytes_; }

  std::atomic<int> fetches_left{1 << 30};  // then it is dead
  std::atomic<int> corrupt_times{0};       // flips a byte of the block at corrupt_at this often
  uint64_t corrupt_at = 0;
  std::atomic<int> fetches{0};

  // Fetches wait until the reader has registered (so that a failure is the reader's to see).
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  Status AwaitOpen() {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, std::chrono::seconds(10), [&] { return open_; })) return Timeout("never opened");
    return Status::OK();
  }

  Status Fetch(const std::string&, uint64_t, const std::vector<object::ObjectExtent>& extents,
               const transport::ExtentSink& sink, uint64_t* digest, const transport::ArrivalObserver* arrived) override {
    CSM_RETURN_IF_ERROR(AwaitOpen());
    ++fetches;
    if (fetches_left.fetch_sub(1) <= 0) return Unavailable("connection refused (the owner is dead)");
    Checksum sent;  // of its own memory, as a transport server digests it: a flipped byte is damage on the way
    for (const auto& e : extents) {
      sent.Update(bytes_.data() + (e.addr - base_), e.length);
      CSM_ASSIGN_OR_RETURN(char* dest, sink(e.addr, e.length));
      std::memcpy(dest, bytes_.data() + (e.addr - base_), e.length);
      if (corrupt_at >= e.addr && corrupt_at < e.addr + e.length && corrupt_times.fetch_sub(1) > 0) {
        dest[corrupt_at - e.addr] ^= 1;
      }
      if (arrived != nullptr) (*arrived)(dest, e.length);
    }
    if (digest != nullptr) *digest = sent.Digest();
    return Status::OK();
  }
  // Digests of kBlock blocks, as the copy under test cuts them.
  Result<std::vector<uint64_t>> BlockDigests(const std::string&, uint64_t,
                                             const std::vector<object::ObjectExtent>&) override {
    if (deferred_) return InvalidArgument("no block digests of an object without a checksum");
    std::vector<uint64_t> out;
    for (uint64_t at = 64; at < kObject; at += kBlock) {
      out.push_back(Hash64(bytes_.data() + at, std::min(kBlock, kObject - at)));
    }
    return out;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
  uint64_t base_;
  bool deferred_;
  std::string bytes_;
  object::ObjectHeader header_{};
};

// A reader process: maps the arena's memfd at `base`, hands its userfaultfd over,
// registers the ranges it is told, then reads the object and compares it with `want`.
// Exit 0: every byte right; 1: a wrong byte; killed by SIGBUS: told the bytes never come.
class ReaderProcess {
 public:
  ReaderProcess(int memfd, uint64_t base, const std::string& want) {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(sv[0]);
      // Dies of SIGBUS as a reader would, also under a sanitizer that would report it.
      ::signal(SIGBUS, [](int) { ::signal(SIGBUS, SIG_DFL); });
      void* p = ::mmap(reinterpret_cast<void*>(base), kSize, PROT_READ, MAP_SHARED | MAP_FIXED, memfd, 0);
      if (p == MAP_FAILED) ::_exit(90);
      auto faults = os::UserFaults::Create();
      if (!faults.ok() || !os::SendMessage(sv[1], "fd", {faults->fd()}).ok()) ::_exit(91);
      auto ranges = os::ReceiveMessage(sv[1], 10000);
      if (!ranges.ok() || ranges->bytes.size() % 16 != 0) ::_exit(92);
      for (size_t i = 0; i < ranges->bytes.size(); i += 16) {
        uint64_t r[2];
        std::memcpy(r, ranges->bytes.data() + i, 16);
        if (!faults->Register(r[0], r[1]).ok()) ::_exit(93);
      }
      if (!os::SendMessage(sv[1], "registered").ok()) ::_exit(94);
      const char* obj = static_cast<const char*>(p);
      // Out of order: the end first, then everything.
      if (obj[kObject - 1] != want[kObject - 1]) ::_exit(1);
      ::_exit(std::memcmp(obj, want.data(), kObject) == 0 ? 0 : 1);
    }
    ::close(sv[1]);
    sock_.Reset(sv[0]);
    auto m = os::ReceiveMessage(sock_.get(), 10000);
    EXPECT_TRUE(m.ok() && m->fds.size() == 1);
    if (m.ok() && m->fds.size() == 1) fd_ = std::move(m->fds[0]);
  }
  ~ReaderProcess() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  os::UniqueFd TakeFd() { return std::move(fd_); }
  void Register(const std::vector<AddrRange>& ranges) {
    std::string bytes(ranges.size() * 16, '\0');
    for (size_t i = 0; i < ranges.size(); ++i) {
      std::memcpy(bytes.data() + i * 16, &ranges[i].addr, 8);
      std::memcpy(bytes.data() + i * 16 + 8, &ranges[i].length, 8);
    }
    ASSERT_TRUE(os::SendMessage(sock_.get(), bytes).ok());
    ASSERT_TRUE(os::ReceiveMessage(sock_.get(), 10000).ok());
  }
  // Its exit; a reader stuck in a fault for 30 s is killed (and fails the test).
  int Wait() {
    int status = 0;
    for (int i = 0; i < 3000 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i) ::usleep(10000);
    if (::waitpid(pid_, &status, WNOHANG) == 0) {
      ADD_FAILURE() << "the reader waited 30 s in a fault";
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
    exited_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  os::UniqueFd sock_;
  os::UniqueFd fd_;
};

class LazyCopiesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto probe = os::UserFaults::Create();
    if (!probe.ok()) GTEST_SKIP() << "no userfaultfd here: " << probe.status().ToString();
    if (!os::UserFaults::CanPoison()) GTEST_SKIP() << "this kernel cannot poison pages (Linux >= 6.6 needed)";
    // Addresses kept free in this process (so nothing of the test's lands there) for the
    // forked reader to map the arena at.
    if (base_ != 0) ::munmap(reinterpret_cast<void*>(base_), kSize);
    void* reserved = ::mmap(nullptr, kSize, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    ASSERT_NE(reserved, MAP_FAILED);
    base_ = reinterpret_cast<uint64_t>(reserved);
    owner_ = std::make_unique<FakeOwner>(base_);
    auto fd = os::CreateMemfd("lazy-copies-test", kSize);
    ASSERT_TRUE(fd.ok());
    memfd_ = std::move(*fd);
    auto view = os::SharedView::Map(memfd_.get(), kSize);
    ASSERT_TRUE(view.ok());
    view_ = *view;
  }

  void TearDown() override {
    if (base_ != 0) ::munmap(reinterpret_cast<void*>(base_), kSize);
  }

  // Runs a lazy copy of the owner's object to one reader; the reader's exit.
  int ReadLazily(bool prefetch, LazyCopies::Options options = {}) {
    options.block_size = kBlock;
    LazyCopies copies(options, [this](uint64_t, const Status& s) {
      std::lock_guard<std::mutex> lock(mu_);
      outcome_ = s;
      ended_ = true;
      cv_.notify_all();
    });
    EXPECT_TRUE(copies.Start().ok());
    ReaderProcess reader(memfd_.get(), base_, owner_->bytes());
    EXPECT_TRUE(copies.AddReader(1, reader.TakeFd()).ok());
    copies.Begin(1, "k", {{base_, kObject}}, {{base_, kSize, view_}}, owner_->header(),
                 {owner_.get(), "owner:1", 9, 2}, prefetch);
    auto ranges = copies.Watch(1, 1);
    EXPECT_TRUE(ranges.ok()) << ranges.status().ToString();
    if (ranges.ok()) reader.Register(*ranges);
    copies.Registered(1, 1);
    owner_->Open();
    const int code = reader.Wait();
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(20), [&] { return ended_ || prefetch == false; });
    totals_ = copies.totals();
    return code;
  }

  uint64_t base_ = 0;
  std::unique_ptr<FakeOwner> owner_;
  os::UniqueFd memfd_;
  std::shared_ptr<os::SharedView> view_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool ended_ = false;
  Status outcome_;
  LazyCopies::Totals totals_;
};

TEST_F(LazyCopiesTest, AReaderSeesEveryByteWhileBlocksArriveInOrder) {
  EXPECT_EQ(ReadLazily(/*prefetch=*/true), 0);
  EXPECT_TRUE(ended_);
  EXPECT_TRUE(outcome_.ok()) << outcome_.ToString();
  EXPECT_EQ(std::memcmp(view_->data(), owner_->bytes().data(), kObject), 0);
}

TEST_F(LazyCopiesTest, WithoutPrefetchOnlyWhatTheReaderTouchesIsFetched) {
  EXPECT_EQ(ReadLazily(/*prefetch=*/false), 0);
  EXPECT_GT(totals_.faults, 0u);
  // It read everything, so everything came, block by block as its faults asked.
  EXPECT_GE(owner_->fetches.load(), static_cast<int>(kObject / kBlock) - 1);
}

TEST_F(LazyCopiesTest, ADeadOwnerMakesThePagesThatNeverCameFaultWithSigbus) {
  owner_->fetches_left = 3;  // of four blocks each: the object is 48
  LazyCopies::Options options;
  options.request_bytes = 4 * kBlock;
  EXPECT_EQ(ReadLazily(/*prefetch=*/true, options), 128 + SIGBUS);
  EXPECT_TRUE(ended_);
  EXPECT_TRUE(outcome_.IsUnavailable()) << outcome_.ToString();
}

TEST_F(LazyCopiesTest, ABlockFailingItsCheckIsFetchedAgainAndTwiceFailsTheCopy) {
  owner_->corrupt_at = base_ + 5 * kBlock + 100;
  owner_->corrupt_times = 1;  // once: fetched again, and right
  EXPECT_EQ(ReadLazily(/*prefetch=*/true), 0);
  EXPECT_TRUE(outcome_.ok()) << outcome_.ToString();
  EXPECT_EQ(totals_.blocks_failed, 1u);

  ended_ = false;
  SetUp();
  owner_->corrupt_at = base_ + 5 * kBlock + 100;
  owner_->corrupt_times = 100;
  EXPECT_EQ(ReadLazily(/*prefetch=*/true), 128 + SIGBUS) << "never the flipped byte";
  EXPECT_TRUE(outcome_.IsCorruption()) << outcome_.ToString();
}

// An object committed without a checksum: each request is checked against the owner's
// digest of what it sent, and nothing is shown before it passed.
TEST_F(LazyCopiesTest, WithoutAChecksumEachRequestIsCheckedAgainstTheOwnersDigest) {
  owner_ = std::make_unique<FakeOwner>(base_, /*deferred=*/true);
  EXPECT_EQ(ReadLazily(/*prefetch=*/true), 0);
  EXPECT_TRUE(outcome_.ok()) << outcome_.ToString();
  EXPECT_EQ(std::memcmp(view_->data(), owner_->bytes().data(), kObject), 0);

  ended_ = false;
  SetUp();
  owner_ = std::make_unique<FakeOwner>(base_, /*deferred=*/true);
  owner_->corrupt_at = base_ + 5 * kBlock + 100;
  owner_->corrupt_times = 1;  // once: fetched again, and right
  EXPECT_EQ(ReadLazily(/*prefetch=*/true), 0);
  EXPECT_TRUE(outcome_.ok()) << outcome_.ToString();
  EXPECT_GE(totals_.blocks_failed, 1u);

  ended_ = false;
  SetUp();
  owner_ = std::make_unique<FakeOwner>(base_, /*deferred=*/true);
  owner_->corrupt_at = base_ + 5 * kBlock + 100;
  owner_->corrupt_times = 100;
  EXPECT_EQ(ReadLazily(/*prefetch=*/true), 128 + SIGBUS) << "never the flipped byte";
  EXPECT_TRUE(outcome_.IsCorruption()) << outcome_.ToString();
}

}  // namespace
}  // namespace csm::node
