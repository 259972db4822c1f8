// Readers copy slots while the writer rewrites them: no torn reads (run under TSan).
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "csm/base/hash.h"
#include "csm/directory/directory_table.h"

namespace csm::directory {
namespace {

TEST(DirectoryTableConcurrencyTest, ReadersNeverSeeTornSlots) {
  std::vector<uint64_t> mem(DirectoryBytes(256) / 8);
  DirectoryTable t(mem.data(), 256);
  t.Init(1);
  std::atomic<bool> stop{false};
  std::atomic<int> torn{0}, seen{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&] {
      while (!stop.load()) {
        if (auto f = t.Find("hot")) {
          // Every field was written from the same id: a mix means a torn read.
          if (f->data.type_id != f->data.object_id * 3 || f->data.root != f->data.object_id * 5) ++torn;
          ++seen;
        }
      }
    });
  }
  for (uint64_t id = 1; id <= 20000; ++id) {
    SlotData d{};
    d.object_id = id;
    d.type_id = id * 3;
    d.root = id * 5;
    d.key_hash = Hash64("hot");
    d.state = static_cast<uint8_t>(SlotState::kLive);
    d.key_length = 3;
    std::memcpy(d.key, "hot", 3);
    auto index = t.Insert(d);
    ASSERT_TRUE(index.ok());
    t.MarkDeleted(*index);
    t.MarkReclaimed(*index, id);  // as csmd does once no reader pins it: the slot is free
  }
  stop = true;
  for (auto& r : readers) r.join();
  EXPECT_EQ(torn.load(), 0);
}

}  // namespace
}  // namespace csm::directory
