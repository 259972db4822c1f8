// One process serves another's faults on a shared memfd mapping through the fd that
// process handed it, as csmd serves its readers' faults on a lazy copy.
#include "csm/os/user_faults.h"

#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <string>

#include <gtest/gtest.h>

#include "csm/os/memory.h"
#include "csm/os/shared_view.h"
#include "csm/os/unix_socket.h"

namespace csm::os {
namespace {

constexpr uint64_t kSize = 8 << 20;
constexpr uint64_t kBlock = 1 << 20;
constexpr uint64_t kPage = 4096;

// A child process that maps `memfd` read-only, registers all of it with its own
// UserFaults, sends that fd and the mapping's address here, waits for "go" and then runs
// `read` on the mapping; its exit code is what `read` returns.
class Reader {
 public:
  Reader(int memfd, const std::function<int(const char*)>& read) {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(sv[0]);
      void* p = ::mmap(nullptr, kSize, PROT_READ, MAP_SHARED, memfd, 0);
      if (p == MAP_FAILED) ::_exit(90);
      auto faults = UserFaults::Create();
      if (!faults.ok() || !faults->Register(reinterpret_cast<uint64_t>(p), kSize).ok()) ::_exit(91);
      const std::string addr = std::to_string(reinterpret_cast<uint64_t>(p));
      if (!SendMessage(sv[1], addr, {faults->fd()}).ok()) ::_exit(92);
      if (!ReceiveMessage(sv[1], 10000).ok()) ::_exit(93);  // "go"
      ::_exit(read(static_cast<const char*>(p)));
    }
    ::close(sv[1]);
    sock_.Reset(sv[0]);
    auto m = ReceiveMessage(sock_.get(), 10000);
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    if (!m.ok() || m->fds.size() != 1) return;
    addr_ = std::stoull(m->bytes);
    auto adopted = UserFaults::Adopt(std::move(m->fds[0]));
    EXPECT_TRUE(adopted.ok()) << adopted.status().ToString();
    if (adopted.ok()) faults_.emplace(std::move(*adopted));
  }
  ~Reader() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  bool ok() const { return faults_.has_value(); }
  UserFaults& faults() { return *faults_; }
  uint64_t addr() const { return addr_; }
  void Go() { ASSERT_TRUE(SendMessage(sock_.get(), "go").ok()); }
  // The next fault, waiting for it up to 10 s.
  std::optional<UserFaults::Fault> NextFault() {
    pollfd p{faults_->fd(), POLLIN, 0};
    if (::poll(&p, 1, 10000) != 1) return std::nullopt;
    auto f = faults_->Next();
    return f.ok() ? *f : std::nullopt;
  }
  // The child's exit code, or 128 + the signal that ended it.
  int Wait() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    exited_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  UniqueFd sock_;
  uint64_t addr_ = 0;
  std::optional<UserFaults> faults_;
};

// Sums one byte of every page: what a reader of the lazy copy does.
int SumEveryPage(const char* p) {
  uint64_t sum = 0;
  for (uint64_t off = 0; off < kSize; off += kPage) sum += static_cast<unsigned char>(p[off + 7]);
  return sum == (kSize / kPage) * 7 ? 0 : 1;
}

class UserFaultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto probe = UserFaults::Create();
    if (!probe.ok()) GTEST_SKIP() << "no userfaultfd here: " << probe.status().ToString();
    auto fd = CreateMemfd("csm-user-faults-test", kSize);
    ASSERT_TRUE(fd.ok()) << fd.status().ToString();
    memfd_ = std::move(*fd);
    auto view = SharedView::Map(memfd_.get(), kSize);  // the writer's own, not registered
    ASSERT_TRUE(view.ok()) << view.status().ToString();
    view_ = std::move(*view);
  }
  UniqueFd memfd_;
  std::shared_ptr<SharedView> view_;
};

TEST_F(UserFaultsTest, AnotherProcessServesTheFaultsAsBlocksArrive) {
  Reader reader(memfd_.get(), SumEveryPage);
  ASSERT_TRUE(reader.ok());
  reader.Go();
  // The reader is stopped at its first page: nothing is in the file yet.
  auto first = reader.NextFault();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->page, reader.addr());
  EXPECT_FALSE(first->minor) << "the file has no page there";
  // Blocks arrive in order (written through the writer's own mapping) and are shown to
  // the reader as each is complete; faults on pages that arrived are mapped, the others
  // wait for their block.
  int faults = 1;
  for (uint64_t block = 0; block < kSize; block += kBlock) {
    std::memset(view_->data() + block, 7, kBlock);
    ASSERT_TRUE(reader.faults().Continue(reader.addr() + block, kBlock).ok());
    for (;;) {
      auto f = reader.faults().Next();
      ASSERT_TRUE(f.ok()) << f.status().ToString();
      if (!f->has_value()) break;
      ++faults;
      const uint64_t off = (*f)->page - reader.addr();
      ASSERT_LT(off, kSize);
      if (off < block + kBlock) {
        ASSERT_TRUE(reader.faults().Continue((*f)->page, kPage).ok());
      }
    }
  }
  EXPECT_EQ(reader.Wait(), 0) << "the reader saw every page's bytes";
  EXPECT_GE(faults, 1);
}

TEST_F(UserFaultsTest, ContinueSkipsPagesAlreadyMappedAndRefusesPagesNotInTheFile) {
  Reader reader(memfd_.get(), SumEveryPage);
  ASSERT_TRUE(reader.ok());
  std::memset(view_->data(), 7, kSize);
  ASSERT_TRUE(reader.faults().Continue(reader.addr() + kBlock, kBlock).ok());
  EXPECT_TRUE(reader.faults().Continue(reader.addr(), kSize).ok()) << "overlaps what is mapped";
  reader.Go();
  EXPECT_EQ(reader.Wait(), 0) << "everything was mapped before it read: no fault to serve";
  EXPECT_FALSE(reader.faults().Continue(reader.addr() + 1, kPage).ok()) << "unaligned";
}

TEST_F(UserFaultsTest, APageThatWillNeverComeFaultsWithSigbus) {
  if (!UserFaults::CanPoison()) GTEST_SKIP() << "this kernel cannot poison pages (Linux >= 6.6 needed)";
  Reader reader(memfd_.get(), [](const char* p) {
    ::signal(SIGBUS, [](int) { ::_exit(42); });
    return static_cast<int>(static_cast<unsigned char>(*const_cast<volatile const char*>(p + kBlock)));
  });
  ASSERT_TRUE(reader.ok());
  reader.Go();
  auto f = reader.NextFault();
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->page, reader.addr() + kBlock);
  ASSERT_TRUE(reader.faults().Poison(f->page, kBlock).ok());
  EXPECT_EQ(reader.Wait(), 42) << "SIGBUS, not the zeros of a page that never came";
}

TEST_F(UserFaultsTest, UnregisteredRangesFaultAsUsualAndAGoneProcessIsNotFound) {
  Reader reader(memfd_.get(), [](const char* p) { return p[kBlock] == 0 ? 0 : 1; });
  ASSERT_TRUE(reader.ok());
  ASSERT_TRUE(reader.faults().Unregister(reader.addr(), kSize).ok());
  reader.Go();
  EXPECT_EQ(reader.Wait(), 0) << "a hole reads as zeros once nobody serves its faults";
  Status gone = reader.faults().Register(reader.addr(), kSize);
  EXPECT_TRUE(gone.IsNotFound()) << gone.ToString();
}

TEST(UserFaultsAdoptTest, AnFdThatIsNotAUserfaultfdIsRefused) {
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  ::close(p[1]);
  auto adopted = UserFaults::Adopt(UniqueFd(p[0]));
  EXPECT_TRUE(adopted.status().code() == StatusCode::kInvalidArgument) << adopted.status().ToString();
}

}  // namespace
}  // namespace csm::os
