// An object's descriptor in its forms: directory slot, cluster record, a copy made from
// another node's record. What one form says, the others say too.
#include "csm/node/object.h"

#include <gtest/gtest.h>

namespace csm::node {
namespace {

Object Committed() {
  Object o;
  o.id = 41;
  o.key = "trades/2026-12-02";
  o.type_id = 0xabc;
  o.type_name = "Trades";
  o.header.magic = object::kObjectMagic;
  o.header.layout_version = object::kObjectLayoutVersion;
  o.header.type_id = 0xabc;
  o.header.data_size = 8192;
  o.header.root = 0x200000000040;
  o.header.checksum = 0x1234;
  o.header_addr = 0x200000000000;
  o.extents = {{0x200000000000, 4096}, {0x200000200000, 4096}};
  o.arena_ids = {3, 4};
  o.commit_time_ns = 99;
  return o;
}

TEST(ObjectTest, AnOwnObjectsSlotNamesThisNode) {
  directory::SlotData d = SlotOf(Committed(), /*self=*/5, /*arena_seq_max=*/17);
  EXPECT_EQ(d.object_id, 41u);
  EXPECT_EQ(d.owner_node, 5u);
  EXPECT_EQ(d.arena_seq_max, 17u);
  EXPECT_EQ(d.header, 0x200000000000u);
  EXPECT_EQ(d.root, 0x200000000040u);
  EXPECT_EQ(d.data_size, 8192u);
  EXPECT_EQ(d.checksum, 0x1234u);
  EXPECT_EQ(std::string(d.key, d.key_length), "trades/2026-12-02");
  EXPECT_EQ(d.state, static_cast<uint8_t>(directory::SlotState::kLive));
  EXPECT_EQ(d.flags, 0u) << "not validated: readers run Arrow's full validation";
}

TEST(ObjectTest, AProducersArrowValidationMarksItsSlotItsRecordAndEveryCopy) {
  Object own = Committed();
  own.header.flags = object::kFlagArrowValidated;
  EXPECT_EQ(SlotOf(own, 5, 1).flags, directory::kSlotArrowValidated);
  cluster::ObjectRecord r = RecordOf(own, /*self=*/5, {{0x200000000000, 2 << 20}, {0x200000200000, 2 << 20}});
  EXPECT_TRUE(r.arrow_validated);
  EXPECT_FALSE(r.checksum_deferred);
  Object copy = CopyOf(r, /*id=*/7, {1, 2});
  EXPECT_EQ(SlotOf(copy, /*self=*/3, 1).flags, directory::kSlotArrowValidated);
  EXPECT_EQ(copy.header.flags, object::kFlagArrowValidated);
}

TEST(ObjectTest, ACopyMadeFromARecordSaysWhatItsOwnerPublished) {
  Object own = Committed();
  own.header.flags = object::kFlagChecksumDeferred;
  cluster::ObjectRecord r = RecordOf(own, /*self=*/2, {{0x200000000000, 2 << 20}, {0x200000200000, 2 << 20}});
  EXPECT_EQ(r.owner_node, 2u);
  EXPECT_EQ(r.object_id, 41u);
  EXPECT_TRUE(r.checksum_deferred);
  ASSERT_EQ(r.arenas.size(), 2u);

  Object copy = CopyOf(r, /*id=*/900, {7, 8});
  EXPECT_TRUE(copy.is_copy());
  EXPECT_EQ(copy.owner(/*self=*/3), 2u) << "a copy's owner is the node it came from";
  EXPECT_EQ(copy.remote_id, 41u);
  EXPECT_EQ(copy.id, 900u);
  EXPECT_EQ(copy.key, own.key);
  EXPECT_EQ(copy.type_name, own.type_name);
  EXPECT_EQ(copy.header.root, own.header.root);
  EXPECT_EQ(copy.header.data_size, own.header.data_size);
  EXPECT_EQ(copy.header.flags, object::kFlagChecksumDeferred);
  EXPECT_EQ(copy.extents.size(), 2u);
  EXPECT_EQ(copy.arena_ids, (std::vector<uint64_t>{7, 8}));

  // Its slot on the fetching node names the owner, not the node holding the copy.
  EXPECT_EQ(SlotOf(copy, /*self=*/3, 1).owner_node, 2u);
  // And its record, re-registered or listed, is the owner's, under the owner's id.
  cluster::ObjectRecord again = RecordOf(copy, /*self=*/3, r.arenas);
  EXPECT_EQ(again.owner_node, 2u);
  EXPECT_EQ(again.object_id, 41u);
  EXPECT_EQ(again.checksum_deferred, true);
}

}  // namespace
}  // namespace csm::node
