// SPDX-License-Identifier: Apache-2.0
// Selectors, version order and page cursors (fota/orchestrator/device_query.hpp): pure, table-driven.
#include "fota/orchestrator/device_query.hpp"

#include <gtest/gtest.h>

namespace fota::orchestrator {
namespace {

DeviceFacts facts(std::string hardware, std::string version, std::vector<std::string> tags = {},
                  std::vector<std::string> operator_tags = {}, std::vector<std::string> static_groups = {}) {
  DeviceFacts d;
  d.id = "dev-1";
  d.hardware_type = std::move(hardware);
  d.version = std::move(version);
  d.tags = std::move(tags);
  d.operator_tags = std::move(operator_tags);
  d.static_groups = std::move(static_groups);
  return d;
}

TEST(DeviceSelectorTest, MatchesEveryTermAndComparesVersionsAsVersions) {
  const DeviceFacts rpi = facts("rpi4", "1.10", {"lab"}, {"field"}, {"canary"});
  const struct {
    const char* selector;
    bool matches;
  } cases[] = {
      {"hardware=rpi4", true},
      {"hardware=gw-v2", false},
      {"hardware=rpi4,tag=lab,version<2.0", true},  // the brief's example
      {"version<1.9", false},                       // 1.10 is after 1.9
      {"version>1.9", true},
      {"version>=1.10,version<=1.10", true},
      {"version=1.10", true},
      {"version!=1.10", false},
      {"tag=field", true},  // an operator tag
      {"tag=lab,tag=field", true},
      {"tag=other", false},
      {"group=canary", true},  // a static group
      {"group=other", false},
      {"online=false", true},
      {"online=true", false},
      {" hardware = rpi4 , tag = lab ", true},
  };
  for (const auto& c : cases) {
    auto s = parse_device_selector(c.selector);
    ASSERT_TRUE(s.ok()) << c.selector << ": " << s.error().message;
    EXPECT_EQ(device_selector_matches(*s, rpi), c.matches) << c.selector;
    // The canonical text reads back to a selector that answers the same.
    auto again = parse_device_selector(device_selector_text(*s));
    ASSERT_TRUE(again.ok()) << device_selector_text(*s);
    EXPECT_EQ(device_selector_matches(*again, rpi), c.matches) << device_selector_text(*s);
  }
  DeviceFacts revoked = rpi;
  revoked.revoked = true;
  EXPECT_FALSE(device_selector_matches(*parse_device_selector("hardware=rpi4"), revoked));
}

TEST(DeviceSelectorTest, MalformedSelectorsSayWhatIsWrong) {
  const struct {
    const char* selector;
    const char* says;
  } cases[] = {
      {"", "empty selector"},
      {"hardware", "is not KEY=VALUE"},
      {"colour=red", "unknown key 'colour'; use hardware, tag, group, online or version"},
      {"hardware<rpi4", "only version takes '<'"},
      {"version<<2", "more than one operator"},
      {"version<", "has no value"},
      {"online=maybe", "online is true or false"},
      {"hardware=rpi4,,tag=lab", "empty term"},
  };
  for (const auto& c : cases) {
    auto s = parse_device_selector(c.selector);
    ASSERT_FALSE(s.ok()) << c.selector;
    EXPECT_NE(s.error().message.find(c.says), std::string::npos) << c.selector << ": " << s.error().message;
  }
}

TEST(DeviceSelectorTest, VersionKeysSortLikeVersions) {
  const char* ascending[] = {"", "0.9", "1", "1.0", "1.2", "1.9", "1.10", "1.10.1", "2.0", "2.0.rc1", "10.0"};
  for (std::size_t i = 1; i < std::size(ascending); ++i) {
    EXPECT_LT(version_sort_key(ascending[i - 1]), version_sort_key(ascending[i]))
        << ascending[i - 1] << " < " << ascending[i];
  }
}

TEST(DeviceSelectorTest, LabelsAndCursors) {
  EXPECT_TRUE(check_label("tag", "lab-1.a:b_c").ok());
  for (const char* bad : {"", "-lead", "with space", "slash/",
                          "0123456789012345678901234567890123456789012345678901234567890123x"}) {
    EXPECT_FALSE(check_label("tag", bad).ok()) << bad;
  }
  const std::string cursor = encode_cursor("devices", "dev-0042");
  auto key = decode_cursor("devices", cursor);
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(*key, "dev-0042");
  EXPECT_FALSE(decode_cursor("events", cursor).ok());  // a cursor belongs to its list
  auto junk = decode_cursor("devices", "not-hex");
  ASSERT_FALSE(junk.ok());
  EXPECT_NE(junk.error().message.find("cursor: 'not-hex' is not a cursor of the devices list"),
            std::string::npos);
}

}  // namespace
}  // namespace fota::orchestrator
