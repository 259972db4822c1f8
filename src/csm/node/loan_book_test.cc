#include "csm/node/loan_book.h"

#include <gtest/gtest.h>

namespace csm::node {
namespace {

TEST(LoanBookTest, LoansAreBoundedAndOnlyTheirBorrowerGivesThemBack) {
  LoanBook book(64u << 20);
  ASSERT_TRUE(book.CheckRoom(64u << 20).ok());
  book.Add({0x1000000, 32u << 20, 0, 2, 7});
  book.Add({0x4000000, 16u << 20, 32u << 20, 3, 9});
  EXPECT_TRUE(book.CheckRoom(16u << 20).ok());
  EXPECT_TRUE(book.CheckRoom(17u << 20).IsCapacityExceeded()) << "the limit counts every loan";
  EXPECT_TRUE(book.Covers(0x1000000 + 4096, 4096, 2));
  EXPECT_FALSE(book.Covers(0x1000000 + 4096, 4096, 3)) << "another borrower's";
  EXPECT_FALSE(book.Covers(0x1000000 + (32u << 20) - 10, 20, 2)) << "past its end";
  EXPECT_TRUE(book.Take(0x1000000, 3).status().IsNotFound()) << "not node 3's to give back";
  auto back = book.Take(0x1000000, 2);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->size, 32u << 20);
  EXPECT_EQ(book.lent(), 16u << 20);
  EXPECT_EQ(book.Borrowers(), std::vector<uint32_t>{3});
}

TEST(LoanBookTest, ADeadOrRestartedBorrowersLoansComeBack) {
  LoanBook book(1u << 30);
  book.Add({0x1000000, 2u << 20, 0, 2, 7});
  book.Add({0x2000000, 2u << 20, 2u << 20, 2, 8});  // its next incarnation's
  book.Add({0x3000000, 2u << 20, 4u << 20, 3, 9});
  EXPECT_TRUE(book.TakeStale(2, 8).size() == 1) << "only the earlier incarnation's";
  EXPECT_TRUE(book.TakeStale(2, 8).empty());
  EXPECT_EQ(book.TakeStale(3, 0).size(), 1u) << "dead: all of them";
  EXPECT_EQ(book.count(), 1u);
  EXPECT_EQ(book.lent(), 2u << 20);
}

}  // namespace
}  // namespace csm::node
