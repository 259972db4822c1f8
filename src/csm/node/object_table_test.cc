// ObjectTable: live objects by key; deleted ones wait, off their key, until erased.
#include "csm/node/object_table.h"

#include <gtest/gtest.h>

namespace csm::node {
namespace {

Object Named(ObjectTable& t, const std::string& key) {
  Object o;
  o.id = t.NewId();
  o.key = key;
  return o;
}

TEST(ObjectTableTest, IdsStartWhereTheNodesIncarnationSaysAndNeverRepeat) {
  ObjectTable t(1000);
  EXPECT_EQ(t.NewId(), 1000u);
  EXPECT_EQ(t.NewId(), 1001u);
}

TEST(ObjectTableTest, ADeletedObjectLeavesItsKeyButWaitsUntilErased) {
  ObjectTable t(1);
  const uint64_t a = t.Insert(Named(t, "a")).id;
  t.Insert(Named(t, "b"));
  EXPECT_EQ(t.live(), 2u);
  ASSERT_NE(t.Live("a"), nullptr);
  EXPECT_EQ(t.Live("a")->id, a);
  EXPECT_TRUE(t.IsLive("b"));
  EXPECT_EQ(t.Live("c"), nullptr);

  Object* gone = t.Unlist("a");
  ASSERT_NE(gone, nullptr);
  EXPECT_TRUE(gone->deleted);
  EXPECT_FALSE(t.IsLive("a"));
  EXPECT_EQ(t.live(), 1u);
  EXPECT_EQ(t.waiting().count(a), 1u);
  EXPECT_EQ(t.at(a).key, "a") << "still here for its readers";
  EXPECT_EQ(t.LiveById(a), nullptr) << "but no longer live";
  EXPECT_EQ(t.Unlist("a"), nullptr) << "once";

  // The key is free for a new object while the old one still waits.
  const uint64_t a2 = t.Insert(Named(t, "a")).id;
  EXPECT_NE(a2, a);
  EXPECT_EQ(t.Live("a")->id, a2);
  EXPECT_EQ(t.LiveById(a2), t.Live("a"));
  t.Erase(a);
  EXPECT_TRUE(t.waiting().empty());
  EXPECT_EQ(t.Live("a")->id, a2) << "erasing the old one leaves the new one";
}

TEST(ObjectTableTest, OnlyLiveObjectsAreVisited) {
  ObjectTable t(1);
  for (const char* k : {"x", "y", "z"}) t.Insert(Named(t, k));
  t.Unlist("y");
  std::set<std::string> seen;
  t.ForEachLive([&](const Object& o) { seen.insert(o.key); });
  EXPECT_EQ(seen, (std::set<std::string>{"x", "z"}));
}

}  // namespace
}  // namespace csm::node
