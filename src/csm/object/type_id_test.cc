#include <gtest/gtest.h>

#include "csm/containers.h"
#include "csm/type_id.h"

struct Trade {
  int64_t id;
  double price;
  csm::string venue;
};
CSM_REGISTER_TYPE(Trade, 1, id, price, venue)

struct TradeV2 {
  int64_t id;
  double price;
  csm::string venue;
};
CSM_REGISTER_TYPE(TradeV2, 2, id, price, venue)

namespace csm {
namespace {

TEST(TypeIdTest, DistinctStableIds) {
  EXPECT_NE(TypeId<int32_t>(), TypeId<uint32_t>());
  EXPECT_NE(TypeId<int32_t>(), TypeId<int64_t>());
  EXPECT_EQ(TypeId<long>(), TypeId<long long>()) << "same layout, same id";
  EXPECT_NE(TypeId<vector<int32_t>>(), TypeId<vector<int64_t>>());
  EXPECT_NE((TypeId<map<int32_t, string>>()), (TypeId<unordered_map<int32_t, string>>()));
  EXPECT_NE(TypeId<Trade>(), TypeId<TradeV2>());
  EXPECT_EQ(TypeId<Trade>(), TypeId<Trade>());
  EXPECT_NE(TypeName<Trade>().find("venue:csm::string"), std::string::npos) << TypeName<Trade>();
  EXPECT_NE(TypeName<vector<Trade>>().find("Trade#v1"), std::string::npos);
}

}  // namespace
}  // namespace csm
