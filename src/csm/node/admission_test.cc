// Admission's policy, without sockets: who is dropped to make room, and when waiting
// connections run out of time.
#include "csm/node/admission.h"

#include <gtest/gtest.h>

namespace csm::node {
namespace {

constexpr int64_t kMs = 1000000;

TEST(AdmissionTest, TheOldestWaitingConnectionMakesRoomForANewOne) {
  Admission a({/*hello_timeout_ms=*/2000, /*max_pending=*/3, /*max_per_process=*/8});
  EXPECT_FALSE(a.Admit(1, 100, 0));
  EXPECT_FALSE(a.Admit(2, 200, 0));
  EXPECT_FALSE(a.Admit(3, 300, 0));
  EXPECT_EQ(a.Admit(4, 400, 0), 1u) << "the oldest overall";
  a.Settled(2);  // said Hello
  EXPECT_FALSE(a.Admit(5, 500, 0)) << "room again";
  EXPECT_EQ(a.waiting(), 3u);
  EXPECT_EQ(a.dropped(), 1u);
}

TEST(AdmissionTest, OneProcessCannotTakeEveryPlace) {
  Admission a({2000, /*max_pending=*/64, /*max_per_process=*/2});
  EXPECT_FALSE(a.Admit(1, 7, 0));
  EXPECT_FALSE(a.Admit(2, 8, 0));
  EXPECT_FALSE(a.Admit(3, 7, 0));
  EXPECT_EQ(a.Admit(4, 7, 0), 1u) << "process 7's oldest, not process 8's";
  EXPECT_EQ(a.Admit(5, 7, 0), 3u);
  EXPECT_FALSE(a.Admit(6, 9, 0));
}

TEST(AdmissionTest, ConnectionsThatDoNotSayHelloInTimeExpire) {
  Admission a({/*hello_timeout_ms=*/100, 64, 8});
  a.Admit(1, 1, 0);
  a.Admit(2, 1, 50 * kMs);
  int next = 0;
  EXPECT_TRUE(a.Expire(10 * kMs, &next).empty());
  EXPECT_EQ(next, 91);
  EXPECT_EQ(a.Expire(100 * kMs, &next), std::vector<uint64_t>{1});
  EXPECT_EQ(next, 51);
  a.Settled(2);
  EXPECT_TRUE(a.Expire(1000 * kMs, &next).empty());
  EXPECT_EQ(next, -1) << "nobody waits";
  a.Admit(3, 1, 0);
  EXPECT_EQ(a.Oldest(), 3u);
  EXPECT_FALSE(a.Oldest());
  EXPECT_EQ(a.dropped(), 2u);
}

}  // namespace
}  // namespace csm::node
