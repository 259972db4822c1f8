#include <gtest/gtest.h>

#include "csm/status.h"

namespace csm {
namespace {

Result<int> Half(int v) {
  if (v % 2 != 0) return InvalidArgument(std::to_string(v) + " is odd");
  return v / 2;
}

Result<int> Quarter(int v) {
  CSM_ASSIGN_OR_RETURN(int h, Half(v));
  CSM_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

TEST(StatusTest, OkCarriesNoMessage) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.ToString(), "OK");
}

TEST(StatusTest, CodesAndContext) {
  Status s = NotFound("no object under key 'a'").WithContext("get");
  EXPECT_TRUE(s.IsNotFound());
  EXPECT_EQ(s.ToString(), "NotFound: get: no object under key 'a'");
  EXPECT_EQ(ErrnoError("open(x)", ENOENT).ToString(), "IOError: open(x): No such file or directory");
  EXPECT_TRUE(ErrnoError("mmap", ENOMEM).IsCapacityExceeded());
}

TEST(StatusTest, ResultPropagates) {
  EXPECT_EQ(*Quarter(8), 2);
  Result<int> odd = Quarter(6);
  ASSERT_FALSE(odd.ok());
  EXPECT_EQ(odd.status().message(), "3 is odd");
  EXPECT_EQ(odd.ValueOr(-1), -1);
  Result<int> from_ok = Status::OK();  // a programming error, reported not crashed
  EXPECT_EQ(from_ok.status().code(), StatusCode::kInternal);
}

}  // namespace
}  // namespace csm
