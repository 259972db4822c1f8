#include <gtest/gtest.h>

#include "csm/protocol/protocol.h"

namespace csm::protocol {
namespace {

TEST(ProtocolTest, RoundTrip) {
  WireWriter w(MessageType::kCommit);
  w.Put(uint64_t{42}).PutString("key").PutStatus(NotFound("gone"));
  WireReader r(w.bytes());
  MessageType t{};
  ASSERT_TRUE(r.ReadHeader(&t).ok());
  EXPECT_EQ(t, MessageType::kCommit);
  uint64_t v = 0;
  std::string s;
  Status st;
  ASSERT_TRUE(r.Get(&v).ok());
  ASSERT_TRUE(r.GetString(&s, 16).ok());
  ASSERT_TRUE(r.GetStatus(&st).ok());
  EXPECT_EQ(v, 42u);
  EXPECT_EQ(s, "key");
  EXPECT_TRUE(st.IsNotFound());
  EXPECT_EQ(st.message(), "gone");
}

TEST(ProtocolTest, MalformedInputIsCorruption) {
  MessageType t{};
  EXPECT_TRUE(WireReader("abc").ReadHeader(&t).IsCorruption());
  WireWriter w(MessageType::kDelete);
  w.Put(uint32_t{1000});  // claims 1000 bytes follow
  WireReader r(w.bytes());
  std::string s;
  ASSERT_TRUE(r.ReadHeader(&t).ok());
  EXPECT_TRUE(r.GetString(&s, 4096).IsCorruption());
  WireWriter long_string(MessageType::kDelete);
  long_string.PutString("0123456789");
  WireReader limit(long_string.bytes());
  ASSERT_TRUE(limit.ReadHeader(&t).ok());
  EXPECT_TRUE(limit.GetString(&s, 4).IsCorruption());
  std::string wrong_version = WireWriter(MessageType::kInfo).bytes();
  wrong_version[4] = 9;
  Status v = WireReader(wrong_version).ReadHeader(&t);
  EXPECT_TRUE(v.IsCorruption());
  EXPECT_NE(v.message().find("upgrade client and csmd together"), std::string::npos);
  WireWriter bad_code(MessageType::kStatusReply);
  bad_code.Put(int32_t{999}).PutString("x");
  WireReader rc(bad_code.bytes());
  Status out;
  ASSERT_TRUE(rc.ReadHeader(&t).ok());
  EXPECT_TRUE(rc.GetStatus(&out).IsCorruption());
}

}  // namespace
}  // namespace csm::protocol
