// SPDX-License-Identifier: Apache-2.0
#include "fota/orchestrator/prediction.hpp"

#include <gtest/gtest.h>

namespace fota::orchestrator {
namespace {

constexpr const char* kArtifact = "0123456789abcdef0123456789abcdef";

class PredictionTest : public ::testing::Test {
 protected:
  void add(const std::string& id, const std::string& tz = "UTC") {
    DeviceFacts d;
    d.id = id;
    d.time_zone = tz;
    d.tags = {"fleet"};
    fleet_.devices[id] = d;
  }
  Rollout make(const std::string& extra) {
    auto spec = parse_rollout_spec(std::string("name: p\nartifact: ") + kArtifact +
                                   "\ntarget: {tags: [fleet]}\n" + extra);
    EXPECT_TRUE(spec.ok()) << spec.error().message;
    return std::move(RolloutEngine::create("r-plan", *spec, now_)).value();
  }
  // A rollout over the fleet, started and ticked once (the first wave dispatched).
  Rollout start(const std::string& extra) {
    Rollout r = make(extra);
    RolloutEngine engine;
    EXPECT_TRUE(engine.start(r, fleet_, now_).ok());
    engine.tick(r, fleet_, now_);
    return r;
  }
  Fleet fleet_;
  Millis now_ = *parse_timestamp("2026-11-25T12:00:00Z");
  LinkModel model_;  // 1 MB/s, 30 s fixed
};

TEST_F(PredictionTest, WavesConcurrencyAndSoakWithoutHistory) {
  for (int i = 0; i < 4; ++i) add("dev-" + std::to_string(i));
  const Rollout r = make("waves: [{size: 1, soak: 10m}, {size: 100%}]\nmax_concurrent: 2\n");
  const auto p = predict_rollout(r, fleet_, 1'000'000, model_, now_);
  ASSERT_EQ(p.waves.size(), 2u);
  EXPECT_EQ(p.waves[0].devices, 1u);
  EXPECT_EQ(p.waves[0].end_ms - p.waves[0].start_ms, 31'000 + 600'000);  // 1 s transfer + 30 s fixed + soak
  EXPECT_EQ(p.waves[1].devices, 3u);
  EXPECT_EQ(p.waves[1].end_ms - p.waves[1].start_ms, 2 * 31'000);  // 3 devices on 2 slots
  EXPECT_EQ(p.duration_ms, 631'000 + 62'000);
  EXPECT_EQ(p.devices_with_default_rate, 4u);
  EXPECT_EQ(p.devices_from_history + p.devices_with_measured_rate + p.devices_with_own_measurements +
                p.devices_with_nominal_rate,
            0u);
  // The plan's waves are the ones the engine will use.
  const auto membership = plan_wave_membership(r, fleet_);
  Rollout started = r;
  RolloutEngine engine;
  ASSERT_TRUE(engine.start(started, fleet_, now_).ok());
  engine.tick(started, fleet_, now_);
  for (const Member& m : started.members) {
    const auto& wave = membership[static_cast<std::size_t>(m.wave)];
    EXPECT_NE(std::find(wave.begin(), wave.end(), m.device_id), wave.end());
  }
}

TEST_F(PredictionTest, MeasuredRatesBandwidthCapAndWindows) {
  add("fast");
  add("tokyo", "Asia/Tokyo");
  model_.measured_rate["fast"] = 10'000'000;
  model_.measured_fixed_ms = 10'000;
  // Cap 2 MB/s shared by 2 devices = 1 MB/s each, so the measured 10 MB/s does not help.
  Rollout r = make("max_bytes_per_second: 2000000\n");
  auto p = predict_rollout(r, fleet_, 4'000'000, model_, now_);
  EXPECT_EQ(p.duration_ms, 14'000);
  EXPECT_EQ(p.devices_with_measured_rate, 1u);
  EXPECT_EQ(p.devices_with_default_rate, 1u);
  // A window at 02:00 local: Tokyo opens at 17:00 UTC today, the UTC device only tomorrow at 02:00.
  r = make("windows: [{days: [daily], start: '02:00', duration: 1h}]\n");
  p = predict_rollout(r, fleet_, 4'000'000, model_, now_);
  EXPECT_EQ(p.end_ms, *parse_timestamp("2026-11-26T02:00:00Z") + 400 + 10'000);
  fleet_.devices.erase("fast");
  p = predict_rollout(r, fleet_, 4'000'000, model_, now_);
  EXPECT_EQ(p.end_ms, *parse_timestamp("2026-11-25T17:00:00Z") + 4'000 + 10'000);
}

TEST_F(PredictionTest, NominalLinkRatesFromInventoryUntilMeasured) {
  add("cellular");
  add("ethernet");
  model_.nominal_rate["cellular"] = 100'000;  // the device says its link does 100 kB/s
  model_.nominal_rate["ethernet"] = 10'000'000;
  model_.measured_rate["ethernet"] = 2'000'000;  // measured beats nominal
  const Rollout r = make("");
  const auto p = predict_rollout(r, fleet_, 1'000'000, model_, now_);
  EXPECT_EQ(p.duration_ms, 10'000 + 30'000);  // the slowest device: 1 MB at 100 kB/s, plus fixed
  EXPECT_EQ(p.devices_with_measured_rate, 1u);
  EXPECT_EQ(p.devices_with_nominal_rate, 1u);
}

TEST_F(PredictionTest, AMeasuredRateRightAfterAStallIsBoundedByTheDeclaredLink) {
  // Found by fota-sim's flaky-links: a device's rate sample after a 2 s stall is near zero, and the
  // live ETA jumped to four times the actual duration.
  add("stalled");
  model_.nominal_rate["stalled"] = 1'000'000;
  model_.measured_rate["stalled"] = 1'000;
  model_.measured_fixed_ms = 1'000;
  const auto p = predict_rollout(make(""), fleet_, 1'000'000, model_, now_);
  EXPECT_EQ(p.duration_ms, 4'000 + 1'000);  // a quarter of the declared link, not 1 kB/s
  // Without a declared link the measurement stands.
  model_.nominal_rate.clear();
  EXPECT_EQ(predict_rollout(make(""), fleet_, 1'000'000, model_, now_).duration_ms, 1'000'000 + 1'000);
}

TEST_F(PredictionTest, LiveEtaCountsOnlyRemainingWork) {
  for (int i = 0; i < 2; ++i) add("dev-" + std::to_string(i));
  Rollout r = start("");
  r.members[0].state = MemberState::kSucceeded;
  r.members[1].state = MemberState::kUpdating;
  r.members[1].phase = v1::PHASE_DOWNLOADING;
  r.members[1].bytes_done = 500'000;
  const auto p = predict_rollout(r, fleet_, 1'000'000, model_, now_);
  EXPECT_EQ(p.end_ms - now_, 500 + 30'000);
}

// `count` finished updates that took `ratio` times their baseline, in waves of `concurrency`.
void add_history(LinkModel& model, std::size_t count, double ratio, std::size_t concurrency,
                 Millis baseline = 10'000) {
  for (std::size_t i = 0; i < count; ++i) {
    UpdateSample s;
    s.rollout_id = "r-old";
    s.device_id = "old-" + std::to_string(model.history.size());
    s.concurrency = concurrency;
    s.baseline_ms = baseline;
    s.duration_ms = static_cast<Millis>(static_cast<double>(baseline) * ratio);
    model.history.push_back(s);
  }
}

TEST_F(PredictionTest, WithHistoryAWaveLastsAsLongAsItsSlowTail) {
  for (int i = 0; i < 100; ++i) add("dev-" + std::to_string(i));
  // Last time four in five updates took their baseline and one in five three times as long (a
  // flaky link, a slow flash): a wave of 100 ends with its slowest.
  add_history(model_, 80, 1.0, 100);
  add_history(model_, 20, 3.0, 100);
  const auto p = predict_rollout(make(""), fleet_, 1'000'000, model_, now_);
  EXPECT_EQ(p.duration_ms, 3 * 31'000);  // baseline: 1 s transfer + 30 s default device time
  EXPECT_EQ(p.history_samples, 100u);
  // A canary of 5 is not a wave of 100: the link model plans it. The 95 after it include the tail.
  const auto waves =
      predict_rollout(make("waves: [{size: 5}, {size: 100%}]\n"), fleet_, 1'000'000, model_, now_);
  EXPECT_EQ(waves.waves[0].end_ms - waves.waves[0].start_ms, 31'000);
  EXPECT_EQ(waves.waves[1].end_ms - waves.waves[1].start_ms, 3 * 31'000);
  // Too little history says nothing: the link model decides.
  model_.history.resize(7);
  EXPECT_EQ(predict_rollout(make(""), fleet_, 1'000'000, model_, now_).duration_ms, 31'000);
}

TEST_F(PredictionTest, HistoryComesFromWavesOfComparableSize) {
  for (int i = 0; i < 40; ++i) add("dev-" + std::to_string(i));
  add_history(model_, 10, 1.0, 2);   // small waves went at their links' pace
  add_history(model_, 10, 2.0, 40);  // big ones were host-bound
  EXPECT_EQ(predict_rollout(make(""), fleet_, 1'000'000, model_, now_).duration_ms, 2 * 31'000);
  EXPECT_EQ(predict_rollout(make("max_concurrent: 2\n"), fleet_, 1'000'000, model_, now_).duration_ms,
            20 * 31'000);
  // Updates two at a time say nothing about forty at once: the link model plans it.
  model_.history.resize(10);
  EXPECT_EQ(predict_rollout(make(""), fleet_, 1'000'000, model_, now_).duration_ms, 31'000);
}

TEST_F(PredictionTest, ARolloutsCanaryCalibratesItsLaterWavesWhenNothingComparableExists) {
  for (int i = 0; i < 100; ++i) add("dev-" + std::to_string(i));
  Rollout r = start("waves: [{size: 10}, {size: 100%}]\n");
  // The canary's ten took twice their 31 s baseline.
  for (Member& m : r.members) {
    if (m.wave != 0) continue;
    m.state = MemberState::kSucceeded;
    m.started_ms = now_ - 62'000;
    m.finished_ms = now_;
    m.attempt = 1;
    model_.history.push_back(*update_sample(r, m, 1'000'000, model_));
  }
  r.waves[0].status = WaveStatus::kPassed;
  r.waves[0].started_ms = now_ - 62'000;
  r.waves[0].finished_ms = now_;
  // Ten at once say little about ninety at once, but more than the link model's 31 s.
  EXPECT_EQ(predict_rollout(r, fleet_, 1'000'000, model_, now_).end_ms - now_, 62'000);
  // Another rollout's ten say nothing.
  for (UpdateSample& s : model_.history) s.rollout_id = "r-other";
  EXPECT_EQ(predict_rollout(r, fleet_, 1'000'000, model_, now_).end_ms - now_, 31'000);
}

TEST_F(PredictionTest, EachLinkClassReadsItsOwnHistory) {
  for (int i = 0; i < 20; ++i) add("dev-" + std::to_string(i));
  for (int i = 0; i < 10; ++i) model_.nominal_rate["dev-" + std::to_string(i)] = 20'000;  // 50 s + 30 s
  // Fast links queued behind the host took twice their 31 s; slow ones only 1.2 times their 80 s.
  add_history(model_, 10, 2.0, 20, 31'000);
  add_history(model_, 10, 1.2, 20, 80'000);
  EXPECT_EQ(predict_rollout(make(""), fleet_, 1'000'000, model_, now_).duration_ms, 96'000);  // not 2 x 80 s
}

TEST_F(PredictionTest, ARunningDeviceFinishesWhenHistorySaysOrOnceOverdueWhenItsLinkSays) {
  for (int i = 0; i < 10; ++i) add("dev-" + std::to_string(i));
  add_history(model_, 10, 2.0, 10);
  Rollout r = start("");
  for (Member& m : r.members) m.state = MemberState::kSucceeded;
  Member& running = r.members[3];
  running.state = MemberState::kUpdating;
  running.phase = v1::PHASE_DOWNLOADING;
  running.started_ms = now_ - 10'000;
  running.bytes_done = 900'000;
  // Drawn: twice its 31 s baseline from its start; the link alone would say 0.1 s + 30 s.
  EXPECT_EQ(predict_rollout(r, fleet_, 1'000'000, model_, now_).end_ms - now_, 62'000 - 10'000);
  // Two seconds before its drawn end, history still says when; the link's 30.1 s is not believed.
  running.started_ms = now_ - 60'000;
  EXPECT_EQ(predict_rollout(r, fleet_, 1'000'000, model_, now_).end_ms - now_, 2'000);
  // Past its drawn end: what its link needs.
  running.started_ms = now_ - 70'000;
  EXPECT_EQ(predict_rollout(r, fleet_, 1'000'000, model_, now_).end_ms - now_, 100 + 30'000);
}

TEST_F(PredictionTest, HistoryNeverBeatsTheBandwidthCap) {
  // Issue 14: an 8 MiB image under a 100 KiB/s cap was planned at 11 s from the history of fast
  // updates (a tenth of their baseline); the cap alone needs 80 s.
  add("dev-0");
  add_history(model_, 10, 0.1, 1);
  const std::uint64_t image = 8 * 1024 * 1024;
  Rollout r = make("max_bytes_per_second: 102400\n");
  EXPECT_EQ(predict_rollout(r, fleet_, image, model_, now_).duration_ms, 81'920);
  // Two devices at once share the cap: each needs twice as long.
  add("dev-1");
  r = make("max_bytes_per_second: 102400\n");
  EXPECT_EQ(predict_rollout(r, fleet_, image, model_, now_).duration_ms, 2 * 81'920);
  // The live ETA: a running device that stalled on its way (a quarter done after 100 s) needs what
  // its share of the cap allows for the rest, not the 64 s left of its drawn time.
  r = start("max_bytes_per_second: 102400\n");
  for (Member& m : r.members) m.state = MemberState::kSucceeded;
  Member& running = r.members[0];
  running.state = MemberState::kUpdating;
  running.phase = v1::PHASE_DOWNLOADING;
  running.started_ms = now_ - 100'000;
  running.bytes_done = image / 4;
  EXPECT_EQ(predict_rollout(r, fleet_, image, model_, now_).end_ms - now_, 3 * 40'960);
}

TEST_F(PredictionTest, AFinishedUpdateBecomesASampleAgainstItsBaseline) {
  for (int i = 0; i < 4; ++i) add("dev-" + std::to_string(i));
  model_.nominal_rate["dev-0"] = 500'000;
  Rollout r = start("max_concurrent: 2\n");
  Member& m = *r.find_member("dev-0");
  EXPECT_FALSE(update_sample(r, m, 1'000'000, model_));  // dispatched, not finished
  m.state = MemberState::kSucceeded;
  m.started_ms = now_;
  m.finished_ms = now_ + 45'000;
  m.attempt = 1;
  const auto sample = update_sample(r, m, 1'000'000, model_);
  ASSERT_TRUE(sample);
  EXPECT_EQ(sample->rollout_id, "r-plan");
  EXPECT_EQ(sample->device_id, "dev-0");
  EXPECT_EQ(sample->concurrency, 2u);
  EXPECT_EQ(sample->baseline_ms, 2'000 + 30'000);  // 1 MB at its declared 500 kB/s, plus the default
  EXPECT_EQ(sample->duration_ms, 45'000);
  m.state = MemberState::kCancelled;
  EXPECT_FALSE(update_sample(r, m, 1'000'000, model_));
}

TEST_F(PredictionTest, ADevicesOwnMeasurementsReplaceTheDeclaredLinkAndTheDefaultTime) {
  // Issue 20: a fresh orchestrator planned real agents on fast links at the default 1 MB/s and 30 s
  // (34 s planned, 3-6 s taken). What each device measured of its own downloads and reboots decides.
  add("measured");
  add("declared");
  model_.nominal_rate["declared"] = 500'000;
  DeviceMeasured own;
  own.download_bytes_per_second = 4'000'000;
  own.verify_bytes_per_second = 10'000'000;
  own.reboot_ms = 1'500;
  own.health_check_ms = 200;
  model_.device_measured["measured"] = own;
  const Rollout r = make("max_concurrent: 1\n");
  auto p = predict_rollout(r, fleet_, 4'000'000, model_, now_);
  // measured: 1 s transfer + 0.4 s verify + 1.5 s reboot + 0.2 s health = 3.1 s;
  // declared: 8 s transfer + the default 30 s.
  EXPECT_EQ(p.duration_ms, 3'100 + 38'000);
  EXPECT_EQ(p.devices_with_own_measurements, 1u);
  EXPECT_EQ(p.devices_with_nominal_rate, 1u);
  EXPECT_EQ(own.fixed_ms(4'000'000), 2'100);
  // A device that measured no reboot yet keeps the default time; its rate still counts.
  own.reboot_ms = 0;
  model_.device_measured["measured"] = own;
  p = predict_rollout(r, fleet_, 4'000'000, model_, now_);
  EXPECT_EQ(p.duration_ms, 1'000 + 30'000 + 38'000);
  EXPECT_EQ(p.devices_with_own_measurements, 1u);
  // A rate reported during this orchestrator's own rollouts beats the device's older figure.
  model_.measured_rate["measured"] = 2'000'000;
  p = predict_rollout(r, fleet_, 4'000'000, model_, now_);
  EXPECT_EQ(p.duration_ms, 2'000 + 30'000 + 38'000);
  EXPECT_EQ(p.devices_with_measured_rate, 1u);
  EXPECT_EQ(p.devices_with_own_measurements, 0u);
}

TEST_F(PredictionTest, TheBoundWidensWithWhatTheFigureRestsOn) {
  add("dev-0");
  const Rollout r = make("");
  // Nothing known: transfer and fixed time six times the median's.
  auto p = predict_rollout(r, fleet_, 1'000'000, model_, now_);
  EXPECT_EQ(p.duration_ms, 31'000);
  EXPECT_EQ(p.bound_duration_ms, 6 * 31'000);
  EXPECT_EQ(p.bound_end_ms, p.start_ms + p.bound_duration_ms);
  // The declared link: five times.
  model_.nominal_rate["dev-0"] = 1'000'000;
  p = predict_rollout(r, fleet_, 1'000'000, model_, now_);
  EXPECT_EQ(p.bound_duration_ms, 5 * 31'000);
  // Measured by the device: twice.
  DeviceMeasured own;
  own.download_bytes_per_second = 1'000'000;
  own.reboot_ms = 4'000;
  model_.device_measured["dev-0"] = own;
  p = predict_rollout(r, fleet_, 1'000'000, model_, now_);
  EXPECT_EQ(p.duration_ms, 5'000);
  EXPECT_EQ(p.bound_duration_ms, 10'000);
  // A soak is not uncertain: it is added once to both.
  p = predict_rollout(make("waves: [{size: 100%, soak: 1m}]\n"), fleet_, 1'000'000, model_, now_);
  EXPECT_EQ(p.duration_ms, 65'000);
  EXPECT_EQ(p.bound_duration_ms, 70'000);
}

TEST_F(PredictionTest, WithHistoryTheBoundIsTheUpperHalfOfItAndAFifthMore) {
  for (int i = 0; i < 100; ++i) add("dev-" + std::to_string(i));
  // Ratios 1.0 .. 2.0 evenly: the median wave ends with its slowest device near 2.0; the bound's
  // devices draw from 1.5 .. 2.0 and a fifth more, with slots to spare: the slowest 2.0 x 1.2.
  for (int i = 0; i <= 100; ++i) add_history(model_, 1, 1.0 + i / 100.0, 100);
  const auto p = predict_rollout(make(""), fleet_, 1'000'000, model_, now_);
  EXPECT_NEAR(static_cast<double>(p.duration_ms), 2.0 * 31'000, 31'000 * 0.02);
  EXPECT_NEAR(static_cast<double>(p.bound_duration_ms), 2.0 * 1.2 * 31'000, 31'000 * 0.03);
  EXPECT_EQ(p.devices_from_history, 100u);
  EXPECT_EQ(p.devices_with_default_rate, 0u);
  // Every bound is at least the median.
  EXPECT_GE(p.bound_end_ms, p.end_ms);
}

}  // namespace
}  // namespace fota::orchestrator
