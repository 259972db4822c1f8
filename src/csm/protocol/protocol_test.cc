#include <gtest/gtest.h>

#include "csm/protocol/messages.h"
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

// ---- the typed messages (messages.h): one list of fields, walked both ways ----

namespace csm::protocol {
namespace {

template <typename M>
M RoundTrip(const M& m, uint64_t request_id = 0) {
  WireWriter w = Encode(m, request_id);
  WireReader r(w.bytes());
  MessageType t{};
  EXPECT_TRUE(r.ReadHeader(&t).ok());
  EXPECT_EQ(t, M::kType);
  EXPECT_EQ(r.request_id(), request_id);
  M out;
  Status s = Decode(r, &out);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

TEST(MessagesTest, EveryRequestComesBackAsSent) {
  WindowConfig window{0x200000000000, uint64_t{1} << 44, uint64_t{1} << 30};
  Hello h = RoundTrip(Hello{0xfeed, window}, 9);
  EXPECT_EQ(h.fingerprint, 0xfeedu);
  EXPECT_TRUE(h.window == window);
  AllocArena a = RoundTrip(AllocArena{1 << 20, 1, 7});
  EXPECT_EQ(a.min_size, 1u << 20);
  EXPECT_EQ(a.dedicated, 1);
  EXPECT_EQ(a.home_node, 7u);
  EXPECT_EQ(RoundTrip(ReleaseArena{5}).arena_id, 5u);
  EXPECT_EQ(RoundTrip(SyncArenas{17}).synced, 17u);
  Commit c = RoundTrip(Commit{0x200000001000, 0xabc, 3, "k/1", "Map"});
  EXPECT_EQ(c.header, 0x200000001000u);
  EXPECT_EQ(c.type_id, 0xabcu);
  EXPECT_EQ(c.copies, 3u);
  EXPECT_EQ(c.key, "k/1");
  EXPECT_EQ(c.type_name, "Map");
  EXPECT_EQ(RoundTrip(Delete{"gone"}).key, "gone");
  EXPECT_EQ(RoundTrip(Stat{"s"}).key, "s");
  EXPECT_EQ(RoundTrip(Resolve{"remote"}).key, "remote");
  List l = RoundTrip(List{"after", 100});
  EXPECT_EQ(l.after, "after");
  EXPECT_EQ(l.limit, 100u);
  RoundTrip(Info{});
  RoundTrip(Nodes{});
  EXPECT_EQ(RoundTrip(Unpinned{33}).object_id, 33u);
}

TEST(MessagesTest, EveryReplyComesBackAsSent) {
  HelloReply h = RoundTrip(HelloReply{Status::OK(), 1, 2, 1024, 4096, 64 << 20, 1});
  EXPECT_EQ(h.client_id, 1u);
  EXPECT_EQ(h.node_id, 2u);
  EXPECT_EQ(h.slots, 1024u);
  EXPECT_EQ(h.pins, 4096u);
  EXPECT_EQ(h.arena_size, 64u << 20);
  EXPECT_EQ(h.clustered, 1);
  ArenaReply a = RoundTrip(ArenaReply{Status::OK(), 3, 4, 0x200000000000, 2 << 20, 6 << 20, 1});
  EXPECT_EQ(a.arena_id, 3u);
  EXPECT_EQ(a.seq, 4u);
  EXPECT_EQ(a.addr, 0x200000000000u);
  EXPECT_EQ(a.offset, 6u << 20);
  EXPECT_EQ(a.huge_pages, 1);
  SyncReply s = RoundTrip(
      SyncReply{Status::OK(), {{1, 0x1000, 4096, 0}}, 12, {{2, 0x2000, 8192, 0}, {3, 0x4000, 4096, 2 << 20}}});
  ASSERT_EQ(s.destroyed.size(), 1u);
  EXPECT_EQ(s.destroyed[0].addr, 0x1000u);
  EXPECT_EQ(s.upto, 12u);
  ASSERT_EQ(s.fresh.size(), 2u);
  EXPECT_EQ(s.fresh[1].id, 3u);
  EXPECT_EQ(s.fresh[1].offset, 2u << 20);
  EXPECT_EQ(RoundTrip(CommitReply{Status::OK(), 77}).object_id, 77u);
  EXPECT_TRUE(RoundTrip(StatusReply{Status::OK()}).status.ok());
  EXPECT_EQ(RoundTrip(JsonReply{Status::OK(), "{\"a\":1}"}).json, "{\"a\":1}");
}

TEST(MessagesTest, AFailedReplyCarriesOnlyWhy) {
  CommitReply c = RoundTrip(CommitReply{AlreadyExists("'k' is taken"), 77});
  EXPECT_TRUE(c.status.IsAlreadyExists());
  EXPECT_EQ(c.status.message(), "'k' is taken");
  EXPECT_EQ(c.object_id, 0u) << "nothing after a failure";
  // FailureReply is the same bytes as a typed reply that failed.
  EXPECT_EQ(FailureReply(MessageType::kArenaReply, NotFound("x"), 4).bytes(),
            Encode(ArenaReply{NotFound("x")}, 4).bytes());
  JsonReply j = RoundTrip(JsonReply{Unavailable("the coordinator is away"), "ignored"});
  EXPECT_TRUE(j.status.IsUnavailable());
  EXPECT_EQ(j.json, "");
}

// Decodes `bytes` (header included) as M.
template <typename M>
Status DecodeBytes(const std::string& bytes) {
  WireReader r(bytes);
  MessageType t{};
  CSM_RETURN_IF_ERROR(r.ReadHeader(&t));
  M m;
  return Decode(r, &m);
}

TEST(MessagesTest, MalformedMessagesAreCorruption) {
  std::string commit = Encode(Commit{1, 2, 0, "key", "type"}).bytes();
  for (size_t cut = sizeof(MessageHeader); cut < commit.size(); ++cut) {
    EXPECT_TRUE(DecodeBytes<Commit>(commit.substr(0, cut)).IsCorruption()) << "cut at " << cut;
  }
  Status extra = DecodeBytes<Commit>(commit + "x");
  EXPECT_TRUE(extra.IsCorruption());
  EXPECT_NE(extra.message().find("past the end"), std::string::npos);
  // A list longer than the message could hold.
  WireWriter sync(MessageType::kSyncReply);
  sync.PutStatus(Status::OK()).Put(uint32_t{1000000});
  Status list = DecodeBytes<SyncReply>(sync.bytes());
  EXPECT_TRUE(list.IsCorruption()) << list.ToString();
  // A key longer than any key.
  WireWriter del(MessageType::kDelete);
  del.PutString(std::string(kMaxKeyField + 1, 'k'));
  EXPECT_TRUE(DecodeBytes<Delete>(del.bytes()).IsCorruption());
}

}  // namespace
}  // namespace csm::protocol
