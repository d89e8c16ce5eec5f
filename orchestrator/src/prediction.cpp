#include "fota/orchestrator/prediction.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <queue>

namespace fota::orchestrator {
namespace {

// A measured rate counts down to this fraction of the device's declared link rate, no lower.
constexpr std::uint64_t kMeasuredBelowNominal = 4;

}  // namespace

std::vector<std::vector<std::string>> plan_wave_membership(const Rollout& r, const Fleet& fleet) {
  std::vector<std::vector<std::string>> waves(r.spec.waves.size());
  if (r.targets_resolved) {
    for (const Member& m : r.members) waves[static_cast<std::size_t>(m.wave)].push_back(m.device_id);
    return waves;
  }
  std::vector<std::pair<std::uint64_t, std::string>> candidates;
  for (const auto& [id, device] : fleet.devices) {
    if (!selector_matches(r.spec.target, device)) continue;
    auto claim = fleet.claims.find(id);
    if (claim != fleet.claims.end() && claim->second != r.id) continue;
    candidates.emplace_back(membership_rank(r.id, id), id);
  }
  std::sort(candidates.begin(), candidates.end());
  const auto sizes = wave_sizes(r.spec, candidates.size());
  std::size_t next = 0;
  for (std::size_t w = 0; w < sizes.size(); ++w) {
    for (std::size_t i = 0; i < sizes[w]; ++i) waves[w].push_back(candidates[next++].second);
  }
  return waves;
}

RolloutPrediction predict_rollout(const Rollout& r, const Fleet& fleet, std::uint64_t image_size,
                                  const LinkModel& model, Millis now) {
  RolloutPrediction out;
  const auto waves = plan_wave_membership(r, fleet);
  Millis cursor = std::max(now, r.spec.start_at_ms.value_or(now));
  out.start_ms = cursor;
  const Millis fixed = model.measured_fixed_ms > 0 ? model.measured_fixed_ms : model.default_fixed_ms;
  for (std::size_t w = 0; w < waves.size(); ++w) {
    WavePrediction wp;
    wp.devices = waves[w].size();
    const WaveState* state = w < r.waves.size() ? &r.waves[w] : nullptr;
    if (state != nullptr && state->status == WaveStatus::kPassed) {
      wp.start_ms = state->started_ms;
      wp.end_ms = state->finished_ms;
      out.waves.push_back(wp);
      continue;
    }
    wp.start_ms = cursor;
    const std::uint64_t cap = per_device_rate(r.spec, waves[w].size());
    struct Job {
      Millis duration;
      std::string tz;
    };
    std::vector<Job> jobs;
    Millis running_until = cursor;  // devices already in flight occupy slots until they finish
    std::vector<Millis> busy;
    for (const std::string& id : waves[w]) {
      auto device = fleet.devices.find(id);
      std::uint64_t rate = model.default_rate_bytes_per_second;
      std::uint64_t rate_floor = 0;
      if (auto nominal = model.nominal_rate.find(id);
          nominal != model.nominal_rate.end() && nominal->second > 0) {
        rate = nominal->second;
        rate_floor = nominal->second / kMeasuredBelowNominal;
      }
      auto measured = model.measured_rate.find(id);
      ++out.devices;
      if (measured != model.measured_rate.end() && measured->second > 0) {
        // A device's latest sample right after a stall says almost nothing moves; its declared
        // link bounds how far that is believed.
        rate = std::max(measured->second, rate_floor);
        ++out.devices_with_history;
      }
      if (cap > 0) rate = std::min(rate, cap);
      rate = std::max<std::uint64_t>(rate, 1);
      const Member* m = r.targets_resolved ? r.find_member(id) : nullptr;
      std::uint64_t bytes = image_size;
      if (m != nullptr) {
        if (m->state == MemberState::kSucceeded || m->state == MemberState::kFailed ||
            m->state == MemberState::kCancelled || m->state == MemberState::kRolledBack ||
            m->state == MemberState::kRollbackFailed) {
          continue;
        }
        if (is_in_flight(m->state)) {
          const bool downloaded = m->phase > v1::PHASE_DOWNLOADING;
          bytes = downloaded ? 0 : image_size - std::min(image_size, m->bytes_done);
          const Millis left =
              static_cast<Millis>(static_cast<double>(bytes) * 1000.0 / static_cast<double>(rate)) +
              (m->phase >= v1::PHASE_REBOOTING ? fixed / 2 : fixed);
          busy.push_back(cursor + left);
          running_until = std::max(running_until, cursor + left);
          continue;
        }
      }
      const Millis duration =
          static_cast<Millis>(static_cast<double>(bytes) * 1000.0 / static_cast<double>(rate)) + fixed;
      jobs.push_back({duration, device == fleet.devices.end() ? std::string() : device->second.time_zone});
    }
    // List scheduling on the concurrency slots; a device starts when a slot is free and its window open.
    const std::size_t slots = r.spec.max_concurrent > 0 ? r.spec.max_concurrent
                                                        : std::max<std::size_t>(1, jobs.size() + busy.size());
    std::priority_queue<Millis, std::vector<Millis>, std::greater<>> free_at;
    for (Millis b : busy) free_at.push(b);
    while (free_at.size() < slots) free_at.push(cursor);
    Millis wave_end = running_until;
    for (const Job& job : jobs) {
      Millis slot = free_at.top();
      free_at.pop();
      const Millis start = next_window_open(r.spec.windows, job.tz, slot);
      const Millis end = start + job.duration;
      wave_end = std::max(wave_end, end);
      free_at.push(end);
    }
    Millis soak = r.spec.waves[w].soak_ms;
    if (state != nullptr && state->status == WaveStatus::kSoaking) {
      soak = std::max<Millis>(0, state->gate_passed_ms + soak - now);
    }
    wp.end_ms = wave_end + soak;
    cursor = wp.end_ms;
    out.waves.push_back(wp);
  }
  out.end_ms = cursor;
  out.duration_ms = cursor - out.start_ms;
  return out;
}

}  // namespace fota::orchestrator
