// SPDX-License-Identifier: Apache-2.0
#include "fota/orchestrator/rollout_spec.hpp"

#include <gtest/gtest.h>

#include "fota/orchestrator/rollout_spec_section.hpp"

namespace fota::orchestrator {
namespace {

constexpr const char* kArtifact = "0123456789abcdef0123456789abcdef";

std::string spec_with(const std::string& extra) {
  return std::string("name: spring\nartifact: ") + kArtifact + "\ntarget: {tags: [canary]}\n" + extra;
}

TEST(RolloutSpecTest, ParsesFullYamlSpec) {
  const std::string text = std::string("name: spring\nartifact: ") + kArtifact + R"(
target:
  hardware: [gw-v2]
  tags: [canary, lab]
waves:
  - size: 2
    success_ratio: 100%
    failure_threshold: 0
    soak: 10m
  - size: 50%
    success_ratio: 0.9
    failure_threshold: 0.05
max_concurrent: 10
max_bytes_per_second: 1000000
retries: {max: 3, backoff: 30s, max_backoff: 5m}
timeouts: {dispatch: 2m, downloading: 1h}
start_at: 2026-11-25T21:00:00+01:00
windows:
  - days: [weekdays]
    start: "02:00"
    duration: 3h
on_breach: rollback
command_ttl: 2h
)";
  auto spec = parse_rollout_spec(text);
  ASSERT_TRUE(spec.ok()) << spec.error().message;
  EXPECT_EQ(spec->name, "spring");
  ASSERT_EQ(spec->waves.size(), 2u);
  EXPECT_EQ(spec->waves[0].size_kind, WaveSizeKind::kCount);
  EXPECT_EQ(spec->waves[0].size, 2);
  EXPECT_EQ(spec->waves[0].soak_ms, 600'000);
  EXPECT_EQ(spec->waves[1].size_kind, WaveSizeKind::kPercent);
  EXPECT_DOUBLE_EQ(spec->waves[1].success_ratio, 0.9);
  EXPECT_EQ(spec->max_concurrent, 10u);
  EXPECT_EQ(spec->max_inflight_chunks, 0u);  // the device's default unless set
  auto windowed = parse_rollout_spec(spec_with("max_inflight_chunks: 4\n"));
  ASSERT_TRUE(windowed.ok()) << windowed.error().message;
  EXPECT_EQ(windowed->max_inflight_chunks, 4u);
  EXPECT_EQ(spec->retry.max_retries, 3u);
  EXPECT_EQ(spec->retry.max_backoff_ms, 300'000);
  EXPECT_EQ(spec->timeouts.dispatch_ms, 120'000);
  ASSERT_TRUE(spec->start_at_ms.has_value());
  EXPECT_EQ(format_timestamp(*spec->start_at_ms), "2026-11-25T20:00:00.000Z");
  ASSERT_EQ(spec->windows.size(), 1u);
  EXPECT_EQ(spec->windows[0].days_mask, 0x3e);
  EXPECT_EQ(spec->windows[0].start_minute, 120);
  EXPECT_EQ(spec->windows[0].duration_minutes, 180);
  EXPECT_EQ(spec->on_breach, BreachAction::kRollback);

  // The canonical JSON reads back to the same spec.
  auto again = parse_rollout_spec(rollout_spec_to_json(*spec));
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(rollout_spec_to_json(*again), rollout_spec_to_json(*spec));
}

TEST(RolloutSpecTest, AcceptsJson) {
  auto spec =
      parse_rollout_spec(std::string(R"({"name":"j","artifact":")") + kArtifact +
                         R"(","target":{"devices":["d1","d2"]},"waves":[{"size":1},{"size":"100%"}]})");
  ASSERT_TRUE(spec.ok()) << spec.error().message;
  EXPECT_EQ(spec->target.device_ids.size(), 2u);
  EXPECT_EQ(spec->waves.size(), 2u);
}

struct BadSpec {
  std::string text;
  std::string expected_fragment;
};

TEST(RolloutSpecTest, MalformedSpecsSayWhatToFix) {
  const std::vector<BadSpec> cases = {
      {"name: x\nartifact: [unclosed", "not valid YAML or JSON"},
      {"- just\n- a list", "expected a mapping"},
      {std::string("name: x\nartifact: nothex\ntarget: {all: true}"),
       "artifact: 'nothex' is not an artifact id"},
      {std::string("name: x\nartifact: ") + kArtifact + "\n", "target: required"},
      {std::string("name: x\nartifact: ") + kArtifact + "\ntarget: {}", "selects nothing"},
      {spec_with("waves:\n  - size: 150%\n"), "waves[0].size: 150 is out of range"},
      {spec_with("waves:\n  - size: 2.5\n"), "whole number"},
      {spec_with("waves:\n  - size: 1\n    soak: forever\n"), "waves[0].soak: 'forever' is not a duration"},
      {spec_with("waves: []\n"), "non-empty list"},
      {spec_with("wavez: []\n"), "wavez: unknown field"},
      {spec_with("on_breach: explode\n"), "use pause, abort or rollback"},
      {spec_with("windows:\n  - days: [funday]\n    start: '02:00'\n    duration: 1h\n"),
       "'funday' is not a day"},
      {spec_with("windows:\n  - start: '25:00'\n    duration: 1h\n"), "HH:MM"},
      {spec_with("windows:\n  - start: '01:00'\n    duration: 2d\n"), "between 1m and 24h"},
      {spec_with("start_at: tomorrow\n"), "RFC 3339"},
      {spec_with("waves:\n  - size: 1\n    success_ratio: 1.5\n"), "success_ratio: 1.5 is out of range"},
      {spec_with("max_inflight_chunks: 5000\n"), "max_inflight_chunks: 5000 is out of range"},
      // Missing fields are named, not reported as yaml-cpp's "invalid node".
      {std::string("artifact: ") + kArtifact + "\ntarget: {all: true}\n", "name: required"},
      {spec_with("windows:\n  - duration: 1h\n"), "windows[0].start: '' is not a local time"},
  };
  for (const BadSpec& c : cases) {
    auto spec = parse_rollout_spec(c.text);
    ASSERT_FALSE(spec.ok()) << c.text;
    EXPECT_NE(spec.error().message.find(c.expected_fragment), std::string::npos)
        << "spec:\n"
        << c.text << "\nerror: " << spec.error().message;
  }
}

// Issue 14: date::parse takes any two-digit UTC offset, so +25:00 scheduled the rollout a day
// early. Impossible dates and times it refuses itself.
TEST(RolloutSpecTest, StartAtRefusesImpossibleOffsetsAndFields) {
  const std::vector<BadSpec> cases = {
      {spec_with("start_at: 2026-11-25T21:00:00+25:00\n"), "start_at: UTC offset +25:00 is impossible"},
      {spec_with("start_at: 2026-11-25T21:00:00+23:75\n"), "UTC offset +23:75 is impossible"},
      {spec_with("start_at: 2026-11-25T21:00:00+99:59\n"), "UTC offset +99:59 is impossible"},
      {spec_with("start_at: 2026-11-25T21:00:00-24:00\n"), "UTC offset -24:00 is impossible"},
      {spec_with("start_at: 2026-11-25T21:00:00+1:00\n"), "RFC 3339"},
      {spec_with("start_at: 2026-13-25T21:00:00+01:00\n"), "RFC 3339"},
      {spec_with("start_at: 2026-02-30T21:00:00Z\n"), "RFC 3339"},
      {spec_with("start_at: 2026-11-25T24:00:00+01:00\n"), "RFC 3339"},
      {spec_with("start_at: 2026-11-25T23:60:00Z\n"), "RFC 3339"},
      {spec_with("start_at: 2026-11-25T23:59:61+01:00\n"), "RFC 3339"},
  };
  for (const BadSpec& c : cases) {
    auto spec = parse_rollout_spec(c.text);
    if (spec.ok()) {
      ADD_FAILURE() << "accepted:\n" << c.text;
      continue;
    }
    EXPECT_NE(spec.error().message.find(c.expected_fragment), std::string::npos)
        << "spec:\n"
        << c.text << "\nerror: " << spec.error().message;
  }
  auto edge = parse_rollout_spec(spec_with("start_at: 2026-11-25T21:00:00-23:59\n"));
  ASSERT_TRUE(edge.ok()) << edge.error().message;
  EXPECT_EQ(format_timestamp(*edge->start_at_ms), "2026-11-26T20:59:00.000Z");
}

// Found by fuzz/rollout_spec_fuzzer (issue 17): date::parse's %Y reads a sign and fewer than four
// digits, so "-026-11-26T02:00:00+01:00" was accepted as a time in year -26 that the canonical
// JSON writes as "0-26-11-26T01:00:00.000Z", which no longer parses: the store could not load
// the rollout again and the orchestrator would not start. Bytes inside the time made date::parse
// convert a NaN (UBSan: "-nan is outside the range of representable values of type 'long'").
TEST(RolloutSpecTest, StartAtNeedsAFourDigitYearSoTheStoredSpecReadsBack) {
  const std::vector<std::string> refused = {
      "-026-11-26T02:00:00+01:00", "+2026-11-26T02:00:00Z",
      "026-11-26T02:00:00+01:00",  "20260-11-26T02:00:00Z",
      " 2026-11-26T02:00:00Z",     "2026-11-26T02" + std::string(21, '\xff') + ":00:00+01:00",
      "2026-11-26T02:00:00.1234Z", "2026-11-26 02:00:00Z"};
  for (const std::string& start_at : refused) {
    auto spec = parse_rollout_spec(spec_with("start_at: '" + start_at + "'\n"));
    ASSERT_FALSE(spec.ok()) << start_at << " was accepted";
    EXPECT_NE(spec.error().message.find("is not an RFC 3339 time"), std::string::npos)
        << spec.error().message;
  }
  for (const char* start_at :
       {"0001-01-01T00:00:00Z", "2026-11-26T02:00:00+01:00", "9999-12-31T23:59:59.999Z"}) {
    auto spec = parse_rollout_spec(spec_with(std::string("start_at: '") + start_at + "'\n"));
    ASSERT_TRUE(spec.ok()) << start_at << ": " << spec.error().message;
    const std::string json = rollout_spec_to_json(*spec);
    auto again = parse_rollout_spec(json);
    ASSERT_TRUE(again.ok()) << json << ": " << again.error().message;
    EXPECT_EQ(rollout_spec_to_json(*again), json);
  }
}

// Found by fuzz/rollout_spec_fuzzer (issue 17): yaml-cpp passes bytes that are not UTF-8 through,
// and rollout_spec_to_json (how the store saves a spec and the API shows it) then threw
// nlohmann::json's type_error instead of returning.
TEST(RolloutSpecTest, StringsThatAreNotUtf8AreRefusedNamingTheField) {
  const std::vector<BadSpec> cases = {
      {std::string("name: spring\xff\nartifact: ") + kArtifact + "\ntarget: {tags: [canary]}\n",
       "name: is not valid UTF-8"},
      {std::string("name: spring\nartifact: ") + kArtifact + "\ntarget: {groups: [pl\xe2\x82-3]}\n",
       "target.groups: an entry is not valid UTF-8"},
      {std::string("name: spring\nartifact: ") + kArtifact + "\ntarget: {tags: \xc3}\n",
       "target.tags: an entry is not valid UTF-8"},
  };
  for (const BadSpec& c : cases) {
    auto spec = parse_rollout_spec(c.text);
    if (spec.ok()) {
      ADD_FAILURE() << "accepted:\n" << c.text;
      continue;
    }
    EXPECT_NE(spec.error().message.find(c.expected_fragment), std::string::npos) << spec.error().message;
  }
  auto accented = parse_rollout_spec(std::string("name: printemps-\xc3\xa9t\xc3\xa9\nartifact: ") +
                                     kArtifact + "\ntarget: {groups: [\xe2\x82\xac-plant]}\n");
  ASSERT_TRUE(accented.ok()) << accented.error().message;
  EXPECT_NE(rollout_spec_to_json(*accented).find("printemps"), std::string::npos);
}

// fota-sim's scenario `rollout:` section: the same spec, its program supplies artifact and target.
TEST(RolloutSpecSectionTest, ParsesASectionWithoutArtifactAndTarget) {
  const YAML::Node doc = YAML::Load(
      "name: scenario\n"
      "rollout:\n"
      "  driver: orchestrator\n"
      "  waves: [{size: 10%, failure_threshold: 5%, success_ratio: 0}, {size: 90%}]\n"
      "  windows: [{days: daily, start: \"02:00\", duration: 2h}]\n"
      "  command_ttl: 10m\n");
  auto spec = parse_rollout_spec_section(doc["rollout"], {"s.yaml", "rollout", {"driver"}});
  ASSERT_TRUE(spec.ok()) << spec.error().message;
  EXPECT_TRUE(spec->name.empty());
  EXPECT_TRUE(spec->artifact_id.empty());
  ASSERT_EQ(spec->waves.size(), 2u);
  EXPECT_DOUBLE_EQ(spec->waves[0].failure_threshold, 0.05);
  EXPECT_DOUBLE_EQ(spec->waves[0].success_ratio, 0.0);
  EXPECT_DOUBLE_EQ(spec->waves[1].success_ratio, 1.0);  // the spec's defaults
  ASSERT_EQ(spec->windows.size(), 1u);
  EXPECT_EQ(spec->windows[0].duration_minutes, 120);
  EXPECT_EQ(spec->command_ttl_ms, 600'000);

  auto empty = parse_rollout_spec_section(YAML::Node(YAML::NodeType::Map), {"s.yaml", "rollout", {}});
  ASSERT_TRUE(empty.ok()) << empty.error().message;
  EXPECT_EQ(empty->waves.size(), 1u);
}

TEST(RolloutSpecSectionTest, ErrorsNameTheDocumentLineColumnAndField) {
  const YAML::Node doc = YAML::Load(
      "name: scenario\n"
      "rollout:\n"
      "  driver: orchestrator\n"
      "  waves:\n"
      "    - size: 10%\n"
      "    - size: 150%\n");
  const RolloutSpecSection where{"bad.yaml", "rollout", {"driver"}};
  auto spec = parse_rollout_spec_section(doc["rollout"], where);
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.error().message.rfind("bad.yaml:6:13: rollout.waves[1].size: 150 is out of range", 0), 0u)
      << spec.error().message;

  const std::vector<BadSpec> cases = {
      {"rollout:\n  wavez: []\n", "bad.yaml:2:10: rollout.wavez: unknown field; known fields: name, waves"},
      {"rollout:\n  artifact: 0123456789abcdef0123456789abcdef\n", "rollout.artifact: unknown field"},
      {"rollout:\n  target: {all: true}\n", "rollout.target: unknown field"},
      {"rollout:\n  waves: [{size: 1, soak: forever}]\n",
       "bad.yaml:2:27: rollout.waves[0].soak: 'forever' is not a duration"},
      {"rollout:\n  on_breach: explode\n", "bad.yaml:2:14: rollout.on_breach: 'explode' is not an action"},
      {"rollout:\n  retries: {max: 1, maxi: 2}\n", "rollout.retries.maxi: unknown field"},
      {"rollout: [1, 2]\n", "bad.yaml:1:10: rollout: expected a mapping of rollout spec fields"},
      {"rollout:\n  name: ''\n", "rollout.name: required, 1 to 128 characters"},
  };
  for (const BadSpec& c : cases) {
    auto bad = parse_rollout_spec_section(YAML::Load(c.text)["rollout"], where);
    ASSERT_FALSE(bad.ok()) << c.text;
    EXPECT_NE(bad.error().message.find(c.expected_fragment), std::string::npos)
        << "section:\n"
        << c.text << "\nerror: " << bad.error().message;
    EXPECT_EQ(bad.error().message.rfind("bad.yaml", 0), 0u) << bad.error().message;
  }
}

TEST(RolloutSpecTest, Durations) {
  EXPECT_EQ(*parse_duration("500ms"), 500);
  EXPECT_EQ(*parse_duration("90"), 90'000);
  EXPECT_EQ(*parse_duration("2h"), 7'200'000);
  EXPECT_FALSE(parse_duration("-5s").ok());
  EXPECT_FALSE(parse_duration("5 parsecs").ok());
  EXPECT_EQ(format_duration(600'000), "10m");
}

}  // namespace
}  // namespace fota::orchestrator
