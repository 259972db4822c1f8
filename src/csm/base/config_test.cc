#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>

#include "csm/config.h"

namespace csm {
namespace {

TEST(ConfigTest, ParseSize) {
  EXPECT_EQ(*ParseSize("4096"), 4096u);
  EXPECT_EQ(*ParseSize("64M"), 64ull << 20);
  EXPECT_EQ(*ParseSize("16T"), 16ull << 40);
  EXPECT_EQ(*ParseSize("0x200000000000"), 0x200000000000ull);
  EXPECT_FALSE(ParseSize("12Q").ok());
  EXPECT_FALSE(ParseSize("lots").ok());
  EXPECT_FALSE(ParseSize("99999999999T").ok());
  EXPECT_EQ(FormatSize(64ull << 20), "64.0 MiB");
}

TEST(ConfigTest, DefaultsAreValid) { EXPECT_TRUE(ValidateConfig(DefaultConfig()).ok()); }

TEST(ConfigTest, ValidationNamesTheProblem) {
  Config c = DefaultConfig();
  c.window.base += 4096;
  Status s = ValidateConfig(c);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("segment_size"), std::string::npos);
  c = DefaultConfig();
  c.max_objects = 1000;
  EXPECT_FALSE(ValidateConfig(c).ok());
  c = DefaultConfig();
  c.window.base = 0x7f0000000000;
  c.window.size = 64ull << 40;
  EXPECT_FALSE(ValidateConfig(c).ok());
}

TEST(ConfigTest, FileThenEnvironment) {
  std::string path = ::testing::TempDir() + "/csm_config_test.json";
  std::ofstream(path) << R"({"heap_base": "0x100000000000", "arena_size": "32M", "max_objects": 1024})";
  setenv("CSM_CONFIG", path.c_str(), 1);
  setenv("CSM_ARENA_SIZE", "16M", 1);
  auto c = LoadConfig();
  unsetenv("CSM_CONFIG");
  unsetenv("CSM_ARENA_SIZE");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->window.base, 0x100000000000ull);
  EXPECT_EQ(c->arena_size, 16ull << 20) << "the environment wins over the file";
  EXPECT_EQ(c->max_objects, 1024u);

  std::ofstream(path) << R"({"heap_bass": "1"})";
  setenv("CSM_CONFIG", path.c_str(), 1);
  auto bad = LoadConfig();
  unsetenv("CSM_CONFIG");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("unknown setting 'heap_bass'"), std::string::npos);
}

}  // namespace
}  // namespace csm
