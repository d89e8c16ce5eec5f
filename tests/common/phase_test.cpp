// SPDX-License-Identifier: Apache-2.0
#include "fota/common/phase.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <set>
#include <string>

namespace fota::common {
namespace {

TEST(PhaseName, EveryPhaseIsItsEnumNameInSnakeCase) {
  std::set<std::string_view> seen;
  for (int value = v1::Phase_MIN; value <= v1::Phase_MAX; ++value) {
    ASSERT_TRUE(v1::Phase_IsValid(value));
    const auto phase = static_cast<v1::Phase>(value);
    std::string expected = v1::Phase_Name(phase).substr(std::string("PHASE_").size());
    std::transform(expected.begin(), expected.end(), expected.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    EXPECT_EQ(phase_name(phase), expected);
    EXPECT_TRUE(seen.insert(phase_name(phase)).second) << phase_name(phase);
  }
  EXPECT_EQ(phase_name(v1::PHASE_ROLLING_BACK), "rolling_back");
  EXPECT_EQ(phase_name(v1::PHASE_ROLLED_BACK), "rolled_back");
}

TEST(PhaseName, ValueFromANewerPeerIsUnknown) {
  EXPECT_EQ(phase_name(static_cast<v1::Phase>(v1::Phase_MAX + 1)), "unknown");
}

}  // namespace
}  // namespace fota::common
