// SPDX-License-Identifier: Apache-2.0
#include "fota/orchestrator/rollout_engine.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>

#include <date/date.h>
#include <date/tz.h>

#include "fota/common/codec.hpp"
#include "fota/common/crypto.hpp"
#include "fota/common/phase.hpp"

namespace fota::orchestrator {

using common::Errc;
using common::Error;
using common::Result;
using common::Status;

namespace {

// The command id suffix of a member that was too far into its update to cancel when the rollout
// started rolling back: the rollback waits for the update to end (see rollback()).
constexpr std::string_view kRollbackPending = ".rollback-pending";
// The command id suffix of a member that was downloading when the rollout started rolling back:
// it was sent a cancel, and is not done until its device says how its update ended (a cancel can
// cross the update's last chunk, be refused as too late, or be lost).
constexpr std::string_view kCancelPending = ".cancel";

bool waits_for_its_update(const Member& m) {
  return m.state == MemberState::kRollingBack &&
         (std::string_view(m.command_id).ends_with(kRollbackPending) ||
          std::string_view(m.command_id).ends_with(kCancelPending));
}

constexpr std::string_view kRolloutStateNames[] = {"created", "running",      "paused",     "completed",
                                                   "aborted", "rolling_back", "rolled_back"};
constexpr std::string_view kMemberStateNames[] = {
    "pending", "dispatched", "updating",     "retry_wait",  "succeeded",
    "failed",  "cancelled",  "rolling_back", "rolled_back", "rollback_failed"};
constexpr std::string_view kWaveStatusNames[] = {"waiting", "active", "soaking", "passed", "breached"};

template <typename E, std::size_t N>
Result<E> parse_enum(std::string_view name, const std::string_view (&names)[N], const char* what) {
  for (std::size_t i = 0; i < N; ++i) {
    if (names[i] == name) return static_cast<E>(i);
  }
  std::string known;
  for (std::size_t i = 0; i < N; ++i) known += (i ? ", " : "") + std::string(names[i]);
  return Error(Errc::kMalformed,
               std::string("unknown ") + what + " '" + std::string(name) + "'; use one of " + known);
}

const date::time_zone* zone_or_utc(std::string_view name) {
  if (!name.empty()) {
    try {
      return date::locate_zone(name);
    } catch (const std::exception&) {
      // Unknown zone names fall back to UTC (documented); the inventory shows what the device sent.
    }
  }
  return date::locate_zone("UTC");
}

Millis phase_timeout(const PhaseTimeouts& t, const Member& m) {
  if (m.state == MemberState::kDispatched) return t.dispatch_ms;
  if (m.state == MemberState::kRollingBack) return t.rolling_back_ms;
  switch (m.phase) {
    case v1::PHASE_DOWNLOADING:
      return t.downloading_ms;
    case v1::PHASE_VERIFYING:
      return t.verifying_ms;
    case v1::PHASE_INSTALLING:
      return t.installing_ms;
    case v1::PHASE_REBOOTING:
      return t.rebooting_ms;
    case v1::PHASE_CONFIRMING:
      return t.confirming_ms;
    case v1::PHASE_ROLLING_BACK:
      return t.rolling_back_ms;
    default:
      return t.dispatch_ms;
  }
}

std::string percent(double ratio) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f%%", ratio * 100.0);
  return buf;
}

Decision audit(std::string message) {
  Decision d;
  d.kind = Decision::Kind::kAudit;
  d.message = std::move(message);
  return d;
}

}  // namespace

// ---- The member machine ------------------------------------------------------------------------
// Inputs that move a member. A progress report is the event of its phase ("Working" = any phase
// before an outcome).
enum class MemberEvent : int {
  kDispatch,    // tick: the member's wave is open, its window is open and there is room
  kWorking,     // a report: downloading ... confirming
  kCommitted,   // a report: COMMITTED
  kFailed,      // a report: FAILED
  kCancelled,   // a report: CANCELLED
  kRolledBack,  // a report: ROLLED_BACK
  kInventory,   // the device's inventory (level-triggered repair, on_inventory())
  kTimeout,     // tick: the device stayed silent past its phase timeout
  kAbort,       // the operator's or a breach's abort
  kRollback,    // the operator's or a breach's fleet rollback
};

// Why a member moves: the condition a handler found, the guard column of kMemberTransitions.
enum class MemberGuard : int {
  kAlreadyRunsArtifact,
  kTurn,
  kBackoffOver,
  kCurrentAttempt,
  kAttemptsLeft,
  kOutOfAttempts,
  kRevertedAfterCommit,
  kCommandLost,
  kCommitReportLost,
  kNothingInFlight,
  kCancelSent,
  kTooLateToCancel,
  kUpdatedByRollout,
  kRollbackReport,
  kWaitingAfterCancel,
  kCancelRefused,
  kWaitingForUpdate,
  kBackAfterCancel,
  kBackOnPrevious,
  kStillOnArtifact,
  kRollbackSilent,
};

namespace {

const char* event_name(MemberEvent event) {
  switch (event) {
    case MemberEvent::kDispatch:
      return "Dispatch";
    case MemberEvent::kWorking:
      return "Working";
    case MemberEvent::kCommitted:
      return "Committed";
    case MemberEvent::kFailed:
      return "Failed";
    case MemberEvent::kCancelled:
      return "Cancelled";
    case MemberEvent::kRolledBack:
      return "RolledBack";
    case MemberEvent::kInventory:
      return "Inventory";
    case MemberEvent::kTimeout:
      return "Timeout";
    case MemberEvent::kAbort:
      return "Abort";
    case MemberEvent::kRollback:
      return "Rollback";
  }
  return "?";
}

const char* guard_name(MemberGuard guard) {
  switch (guard) {
    case MemberGuard::kAlreadyRunsArtifact:
      return "device already runs the artifact";
    case MemberGuard::kTurn:
      return "its turn: install sent";
    case MemberGuard::kBackoffOver:
      return "backoff over: install sent again";
    case MemberGuard::kCurrentAttempt:
      return "report of the current attempt";
    case MemberGuard::kAttemptsLeft:
      return "attempts left";
    case MemberGuard::kOutOfAttempts:
      return "out of attempts";
    case MemberGuard::kRevertedAfterCommit:
      return "device reverted after committing";
    case MemberGuard::kCommandLost:
      return "command lost: install sent again";
    case MemberGuard::kCommitReportLost:
      return "runs the artifact: COMMITTED report lost";
    case MemberGuard::kNothingInFlight:
      return "no update in flight";
    case MemberGuard::kCancelSent:
      return "in flight: cancel sent";
    case MemberGuard::kTooLateToCancel:
      return "installing or later: waits for its update";
    case MemberGuard::kUpdatedByRollout:
      return "updated by this rollout: rollback sent";
    case MemberGuard::kRollbackReport:
      return "report of the rollback command";
    case MemberGuard::kWaitingAfterCancel:
      return "cancel sent, waits for its update";
    case MemberGuard::kCancelRefused:
      return "cancel refused as too late";
    case MemberGuard::kWaitingForUpdate:
      return "waits for its update";
    case MemberGuard::kBackAfterCancel:
      return "back on the previous artifact, cancel sent";
    case MemberGuard::kBackOnPrevious:
      return "back on the previous artifact";
    case MemberGuard::kStillOnArtifact:
      return "runs the artifact: rollback sent";
    case MemberGuard::kRollbackSilent:
      return "rolling-back timeout passed";
  }
  return "?";
}

struct MemberTransitionRow {
  MemberState from;
  MemberEvent event;
  MemberGuard guard;
  MemberState to;
};

using M = MemberState;
using E = MemberEvent;
using G = MemberGuard;

// ---- The transition table: every state change of a member is one row. ----------------------
// Handlers (dispatch, on_progress, on_inventory, apply_timeouts, abort, rollback) filter the
// inputs that are not the member's (another deployment, a stale sequence, a report of an older
// command), name the guard they found, and move by RolloutEngine::go(), which looks up
// (state, event, guard) here; then they do the row's work (send a command, write the audit).
// A RollingBack member either had a rollback sent, or waits for its update to end: it was sent
// a cancel while downloading, or was too far into its update to cancel (the command id's suffix
// says which). MemberTableTest walks every row.
constexpr MemberTransitionRow kMemberTransitions[] = {
    // from           event            guard                     to
    {M::kPending, E::kDispatch, G::kAlreadyRunsArtifact, M::kSucceeded},
    {M::kPending, E::kDispatch, G::kTurn, M::kDispatched},
    {M::kPending, E::kAbort, G::kNothingInFlight, M::kCancelled},
    {M::kPending, E::kRollback, G::kNothingInFlight, M::kCancelled},

    {M::kDispatched, E::kWorking, G::kCurrentAttempt, M::kUpdating},
    {M::kDispatched, E::kCommitted, G::kCurrentAttempt, M::kSucceeded},
    {M::kDispatched, E::kFailed, G::kAttemptsLeft, M::kRetryWait},
    {M::kDispatched, E::kFailed, G::kOutOfAttempts, M::kFailed},
    {M::kDispatched, E::kCancelled, G::kAttemptsLeft, M::kRetryWait},
    {M::kDispatched, E::kCancelled, G::kOutOfAttempts, M::kFailed},
    {M::kDispatched, E::kRolledBack, G::kAttemptsLeft, M::kRetryWait},
    {M::kDispatched, E::kRolledBack, G::kOutOfAttempts, M::kFailed},
    {M::kDispatched, E::kInventory, G::kCommandLost, M::kDispatched},
    {M::kDispatched, E::kInventory, G::kCommitReportLost, M::kSucceeded},
    {M::kDispatched, E::kTimeout, G::kAttemptsLeft, M::kRetryWait},  // a cancel is sent too
    {M::kDispatched, E::kTimeout, G::kOutOfAttempts, M::kFailed},
    {M::kDispatched, E::kAbort, G::kCancelSent, M::kCancelled},
    {M::kDispatched, E::kRollback, G::kCancelSent, M::kRollingBack},

    {M::kUpdating, E::kWorking, G::kCurrentAttempt, M::kUpdating},
    {M::kUpdating, E::kCommitted, G::kCurrentAttempt, M::kSucceeded},
    {M::kUpdating, E::kFailed, G::kAttemptsLeft, M::kRetryWait},
    {M::kUpdating, E::kFailed, G::kOutOfAttempts, M::kFailed},
    {M::kUpdating, E::kCancelled, G::kAttemptsLeft, M::kRetryWait},
    {M::kUpdating, E::kCancelled, G::kOutOfAttempts, M::kFailed},
    {M::kUpdating, E::kRolledBack, G::kAttemptsLeft, M::kRetryWait},
    {M::kUpdating, E::kRolledBack, G::kOutOfAttempts, M::kFailed},
    {M::kUpdating, E::kInventory, G::kCommandLost, M::kDispatched},
    {M::kUpdating, E::kInventory, G::kCommitReportLost, M::kSucceeded},
    {M::kUpdating, E::kTimeout, G::kAttemptsLeft, M::kRetryWait},  // a cancel is sent too
    {M::kUpdating, E::kTimeout, G::kOutOfAttempts, M::kFailed},
    {M::kUpdating, E::kAbort, G::kCancelSent, M::kCancelled},
    {M::kUpdating, E::kRollback, G::kCancelSent, M::kRollingBack},  // still downloading
    {M::kUpdating, E::kRollback, G::kTooLateToCancel, M::kRollingBack},

    {M::kRetryWait, E::kDispatch, G::kBackoffOver, M::kDispatched},
    {M::kRetryWait, E::kAbort, G::kNothingInFlight, M::kCancelled},
    {M::kRetryWait, E::kRollback, G::kNothingInFlight, M::kCancelled},

    {M::kSucceeded, E::kRolledBack, G::kRevertedAfterCommit, M::kFailed},
    {M::kSucceeded, E::kRollback, G::kUpdatedByRollout, M::kRollingBack},

    // A rollback command was sent.
    {M::kRollingBack, E::kWorking, G::kRollbackReport, M::kRollingBack},
    {M::kRollingBack, E::kCommitted, G::kRollbackReport, M::kRolledBack},
    {M::kRollingBack, E::kRolledBack, G::kRollbackReport, M::kRolledBack},
    {M::kRollingBack, E::kFailed, G::kRollbackReport, M::kRollbackFailed},
    {M::kRollingBack, E::kCancelled, G::kRollbackReport, M::kRollbackFailed},
    // Sent a cancel while downloading: the update's reports and the cancel's answer say how it
    // ended. Committed anyway (the cancel crossed its last chunk) or refused as too late: it
    // now waits like an update too far to cancel, and its inventory gets it the rollback.
    {M::kRollingBack, E::kCommitted, G::kWaitingAfterCancel, M::kRollingBack},
    {M::kRollingBack, E::kFailed, G::kCancelRefused, M::kRollingBack},
    {M::kRollingBack, E::kCancelled, G::kWaitingAfterCancel, M::kCancelled},
    {M::kRollingBack, E::kFailed, G::kWaitingAfterCancel, M::kCancelled},
    {M::kRollingBack, E::kRolledBack, G::kWaitingAfterCancel, M::kRolledBack},
    // Too far into its update to cancel: it finishes; when it reverted on its own it is back.
    {M::kRollingBack, E::kCommitted, G::kWaitingForUpdate, M::kRollingBack},
    {M::kRollingBack, E::kCancelled, G::kWaitingForUpdate, M::kRolledBack},
    {M::kRollingBack, E::kFailed, G::kWaitingForUpdate, M::kRolledBack},
    {M::kRollingBack, E::kRolledBack, G::kWaitingForUpdate, M::kRolledBack},
    // Any of the three.
    {M::kRollingBack, E::kInventory, G::kBackAfterCancel, M::kCancelled},
    {M::kRollingBack, E::kInventory, G::kBackOnPrevious, M::kRolledBack},
    {M::kRollingBack, E::kInventory, G::kStillOnArtifact, M::kRollingBack},
    {M::kRollingBack, E::kTimeout, G::kRollbackSilent, M::kRollbackFailed},
};

// The event a report is.
MemberEvent report_event(v1::Phase phase) {
  switch (phase) {
    case v1::PHASE_COMMITTED:
      return MemberEvent::kCommitted;
    case v1::PHASE_FAILED:
      return MemberEvent::kFailed;
    case v1::PHASE_CANCELLED:
      return MemberEvent::kCancelled;
    case v1::PHASE_ROLLED_BACK:
      return MemberEvent::kRolledBack;
    default:
      return MemberEvent::kWorking;
  }
}

}  // namespace

const std::vector<MemberTransition>& member_transitions() {
  static const std::vector<MemberTransition> kRows = [] {
    std::vector<MemberTransition> rows;
    for (const MemberTransitionRow& row : kMemberTransitions) {
      rows.push_back(MemberTransition{row.from, event_name(row.event), guard_name(row.guard), row.to});
    }
    return rows;
  }();
  return kRows;
}

// A move without a row is a bug: counted, audited, and the state is kept.
bool RolloutEngine::go(Rollout& r, Member& m, MemberEvent event, MemberGuard guard, Millis now,
                       Decisions& out) const {
  for (std::size_t i = 0; i < std::size(kMemberTransitions); ++i) {
    const MemberTransitionRow& row = kMemberTransitions[i];
    if (row.from != m.state || row.event != event || row.guard != guard) continue;
    if (row.to != m.state) {
      m.state = row.to;
      m.dirty = true;
      if (is_terminal(row.to)) m.finished_ms = now;
    }
    if (on_transition_) on_transition_(i);
    return true;
  }
  ++r.unexpected_events;
  out.push_back(audit("rollout engine bug: device " + m.device_id + " has no transition from " +
                      std::string(member_state_name(m.state)) + " on " + event_name(event) + " when " +
                      guard_name(guard) + "; its state was kept"));
  return false;
}

std::string_view rollout_state_name(RolloutState state) noexcept {
  return kRolloutStateNames[static_cast<int>(state)];
}
Result<RolloutState> parse_rollout_state(std::string_view name) {
  return parse_enum<RolloutState>(name, kRolloutStateNames, "rollout state");
}
bool is_active(RolloutState s) noexcept {
  return s == RolloutState::kCreated || s == RolloutState::kRunning || s == RolloutState::kPaused ||
         s == RolloutState::kRollingBack;
}
std::string_view member_state_name(MemberState state) noexcept {
  return kMemberStateNames[static_cast<int>(state)];
}
Result<MemberState> parse_member_state(std::string_view name) {
  return parse_enum<MemberState>(name, kMemberStateNames, "member state");
}
bool is_terminal(MemberState s) noexcept {
  return s == MemberState::kSucceeded || s == MemberState::kFailed || s == MemberState::kCancelled ||
         s == MemberState::kRolledBack || s == MemberState::kRollbackFailed;
}

bool is_in_flight(MemberState s) noexcept {
  return s == MemberState::kDispatched || s == MemberState::kUpdating;
}
std::string_view wave_status_name(WaveStatus status) noexcept {
  return kWaveStatusNames[static_cast<int>(status)];
}
Result<WaveStatus> parse_wave_status(std::string_view name) {
  return parse_enum<WaveStatus>(name, kWaveStatusNames, "wave status");
}

Member* Rollout::find_member(std::string_view device_id) {
  if (index_.size() != members.size()) rebuild_index();
  auto it = index_.find(std::string(device_id));
  return it == index_.end() ? nullptr : &members[it->second];
}
const Member* Rollout::find_member(std::string_view device_id) const {
  return const_cast<Rollout*>(this)->find_member(device_id);
}
void Rollout::rebuild_index() {
  index_.clear();
  index_.reserve(members.size());
  for (std::size_t i = 0; i < members.size(); ++i) index_[members[i].device_id] = i;
}

bool selector_matches(const TargetSelector& s, const DeviceFacts& d) {
  auto any_of = [](const std::vector<std::string>& wanted, const auto& pred) {
    return wanted.empty() || std::any_of(wanted.begin(), wanted.end(), pred);
  };
  if (d.revoked) return false;
  if (!s.decryption_keys.empty() && std::find(s.decryption_keys.begin(), s.decryption_keys.end(),
                                              d.decryption_key_id) == s.decryption_keys.end())
    return false;
  if (!any_of(s.device_ids, [&](const std::string& id) { return id == d.id; })) return false;
  if (!any_of(s.hardware_types, [&](const std::string& hw) { return hw == d.hardware_type; })) return false;
  if (!any_of(s.groups, [&](const std::string& g) {
        if (auto resolved = s.resolved_groups.find(g); resolved != s.resolved_groups.end())
          return std::binary_search(resolved->second.begin(), resolved->second.end(), d.id);
        return g == d.group;
      })) {
    return false;
  }
  if (!any_of(s.tags, [&](const std::string& t) {
        return std::find(d.tags.begin(), d.tags.end(), t) != d.tags.end() ||
               std::binary_search(d.operator_tags.begin(), d.operator_tags.end(), t);
      })) {
    return false;
  }
  return true;
}

bool in_maintenance_window(const std::vector<WeeklyWindow>& windows, std::string_view time_zone, Millis now) {
  if (windows.empty()) return true;
  using namespace std::chrono;
  const date::time_zone* zone = zone_or_utc(time_zone);
  const auto local = zone->to_local(date::sys_time<milliseconds>(milliseconds(now)));
  const auto day = date::floor<date::days>(local);
  const unsigned weekday = date::weekday(day).c_encoding();  // 0 = Sunday
  const unsigned yesterday = (weekday + 6) % 7;
  const auto minute = static_cast<int>(duration_cast<minutes>(local - day).count());
  for (const WeeklyWindow& w : windows) {
    // The wall clock decides: on a DST change a window keeps its local start and end times.
    if (((w.days_mask >> weekday) & 1u) && minute >= w.start_minute &&
        minute < w.start_minute + w.duration_minutes) {
      return true;
    }
    if (((w.days_mask >> yesterday) & 1u) && minute + 1440 < w.start_minute + w.duration_minutes) return true;
  }
  return false;
}

Millis next_window_open(const std::vector<WeeklyWindow>& windows, std::string_view time_zone, Millis now) {
  if (in_maintenance_window(windows, time_zone, now)) return now;
  using namespace std::chrono;
  const date::time_zone* zone = zone_or_utc(time_zone);
  const auto local = zone->to_local(date::sys_time<milliseconds>(milliseconds(now)));
  const auto today = date::floor<date::days>(local);
  Millis best = now + 8LL * 86'400'000;
  for (int offset = 0; offset <= 7; ++offset) {
    const auto day = today + date::days(offset);
    const unsigned weekday = date::weekday(day).c_encoding();
    for (const WeeklyWindow& w : windows) {
      if (!((w.days_mask >> weekday) & 1u)) continue;
      const auto local_start = day + minutes(w.start_minute);
      // A start inside a spring-forward gap opens at the end of the gap.
      const auto sys = zone->to_sys(local_start, date::choose::earliest);
      const Millis at = duration_cast<milliseconds>(sys.time_since_epoch()).count();
      if (at > now && at < best) best = at;
    }
  }
  return best;
}

std::uint64_t membership_rank(std::string_view rollout_id, std::string_view device_id) {
  std::string key;
  key.reserve(rollout_id.size() + device_id.size() + 1);
  key.append(rollout_id).push_back('/');
  key.append(device_id);
  const auto digest = common::Sha256::digest(key);
  std::uint64_t rank = 0;
  for (int i = 0; i < 8; ++i) rank = (rank << 8) | digest[static_cast<std::size_t>(i)];
  return rank;
}

std::size_t wave_concurrency(const RolloutSpec& spec, std::size_t wave_members) {
  std::size_t share = std::max<std::size_t>(wave_members, 1);
  if (spec.max_concurrent > 0) share = std::min<std::size_t>(share, spec.max_concurrent);
  return share;
}

std::uint64_t per_device_rate(const RolloutSpec& spec, std::size_t wave_members) {
  if (spec.max_bytes_per_second == 0) return 0;
  return std::max<std::uint64_t>(1, spec.max_bytes_per_second / wave_concurrency(spec, wave_members));
}

Result<Rollout> RolloutEngine::create(std::string id, RolloutSpec spec, Millis now) {
  if (id.empty()) return Error(Errc::kInvalidArgument, "rollout id is empty");
  if (!common::is_valid_artifact_id(spec.artifact_id)) {
    return Error(Errc::kInvalidArgument, "artifact '" + spec.artifact_id + "' is not a valid artifact id");
  }
  if (spec.waves.empty()) spec.waves.push_back(WaveSpec{});
  Rollout r;
  r.id = std::move(id);
  r.spec = std::move(spec);
  r.created_ms = now;
  r.waves.resize(r.spec.waves.size());
  return r;
}

Status RolloutEngine::check_target(const Rollout& rollout, const Fleet& fleet,
                                   const std::vector<const Rollout*>& unresolved_others) {
  std::vector<std::string> conflicts;
  std::size_t selected = 0;
  for (const auto& [id, device] : fleet.devices) {
    if (!selector_matches(rollout.spec.target, device)) continue;
    ++selected;
    auto claim = fleet.claims.find(id);
    if (claim != fleet.claims.end() && claim->second != rollout.id) {
      conflicts.push_back(id + " (in " + claim->second + ")");
      continue;
    }
    for (const Rollout* other : unresolved_others) {
      if (other->id != rollout.id && is_active(other->state) && !other->targets_resolved &&
          selector_matches(other->spec.target, device)) {
        conflicts.push_back(id + " (in " + other->id + ")");
        break;
      }
    }
  }
  if (!conflicts.empty()) {
    std::sort(conflicts.begin(), conflicts.end());
    std::string list;
    for (std::size_t i = 0; i < conflicts.size() && i < 5; ++i) list += (i ? ", " : "") + conflicts[i];
    if (conflicts.size() > 5) list += " and " + std::to_string(conflicts.size() - 5) + " more";
    return Error(Errc::kConflict,
                 std::to_string(conflicts.size()) +
                     " targeted device(s) already belong to another active rollout: " + list +
                     "; wait for it to finish, abort it, or narrow this rollout's target");
  }
  // Explicitly named devices must be known: a typo would otherwise silently target nothing.
  for (const std::string& id : rollout.spec.target.device_ids) {
    auto device = fleet.devices.find(id);
    if (device == fleet.devices.end()) {
      return Error(
          Errc::kInvalidArgument,
          "target device '" + id + "' is not registered; `fotactl device list` shows the known devices");
    }
    if (device->second.revoked) {
      return Error(Errc::kInvalidArgument,
                   "target device '" + id + "' is revoked and takes no updates; take it out of the target");
    }
  }
  if (selected == 0) {
    return Error(Errc::kInvalidArgument,
                 "the target selects no registered device; check the tags, groups or hardware types "
                 "against `fotactl device list`");
  }
  return common::ok_status();
}

Result<Decisions> RolloutEngine::start(Rollout& r, const Fleet& fleet, Millis now,
                                       const std::vector<const Rollout*>& unresolved_others) const {
  if (r.state != RolloutState::kCreated) {
    return Error(Errc::kConflict, "rollout " + r.id + " is " + std::string(rollout_state_name(r.state)) +
                                      "; only a created rollout can be started");
  }
  if (auto st = check_target(r, fleet, unresolved_others); !st) return st.error();
  r.state = RolloutState::kRunning;
  r.started_ms = now;
  r.dirty = true;
  Decisions out;
  if (r.spec.start_at_ms && *r.spec.start_at_ms > now) {
    out.push_back(
        audit("rollout " + r.id + " scheduled to start at " + format_timestamp(*r.spec.start_at_ms)));
  }
  return out;
}

Result<Decisions> RolloutEngine::pause(Rollout& r, std::string reason, Millis /*now*/) const {
  if (r.state != RolloutState::kRunning) {
    return Error(Errc::kConflict, "rollout " + r.id + " is " + std::string(rollout_state_name(r.state)) +
                                      "; only a running rollout can be paused");
  }
  r.state = RolloutState::kPaused;
  r.reason = std::move(reason);
  r.dirty = true;
  return Decisions{};
}

Result<Decisions> RolloutEngine::resume(Rollout& r, Millis /*now*/) const {
  if (r.state != RolloutState::kPaused) {
    return Error(Errc::kConflict, "rollout " + r.id + " is " + std::string(rollout_state_name(r.state)) +
                                      "; only a paused rollout can be resumed");
  }
  Decisions out;
  for (std::size_t i = 0; i < r.waves.size(); ++i) {
    WaveState& w = r.waves[i];
    if (w.status == WaveStatus::kBreached) {
      w.status = WaveStatus::kActive;
      w.breach_overridden = true;
      out.push_back(audit("wave " + std::to_string(i + 1) + " gate waived by the operator's resume"));
    }
  }
  r.state = RolloutState::kRunning;
  r.reason.clear();
  r.dirty = true;
  return out;
}

Result<Decisions> RolloutEngine::abort(Rollout& r, Fleet& fleet, std::string reason, Millis now) const {
  if (r.state != RolloutState::kCreated && r.state != RolloutState::kRunning &&
      r.state != RolloutState::kPaused) {
    return Error(Errc::kConflict, "rollout " + r.id + " is " + std::string(rollout_state_name(r.state)) +
                                      "; only a created, running or paused rollout can be aborted");
  }
  Decisions out;
  for (Member& m : r.members) {
    if (is_terminal(m.state)) continue;
    const bool in_flight = is_in_flight(m.state);
    if (!go(r, m, MemberEvent::kAbort, in_flight ? MemberGuard::kCancelSent : MemberGuard::kNothingInFlight,
            now, out)) {
      continue;
    }
    if (in_flight) {
      m.command_id = r.id + "." + m.device_id + "." + std::to_string(++m.command_seq) + ".cancel";
      out.push_back(Decision{Decision::Kind::kCancel, m.device_id, m.command_id, 0, r.spec.artifact_id, {}});
    }
    m.since_ms = now;
  }
  r.reason = std::move(reason);
  finish(r, fleet, RolloutState::kAborted, now);
  return out;
}

Result<Decisions> RolloutEngine::rollback(Rollout& r, std::string reason, Millis now) const {
  if (r.state == RolloutState::kCreated || r.state == RolloutState::kRollingBack ||
      r.state == RolloutState::kRolledBack) {
    return Error(Errc::kConflict,
                 "rollout " + r.id + " is " + std::string(rollout_state_name(r.state)) +
                     "; a rollback needs a rollout that has updated devices and is not already "
                     "rolling back");
  }
  Decisions out;
  std::size_t count = 0;
  for (Member& m : r.members) {
    if (is_in_flight(m.state) && m.phase >= v1::PHASE_INSTALLING && m.phase <= v1::PHASE_CONFIRMING &&
        m.previous_artifact_id != r.spec.artifact_id) {
      // Too late to cancel: the device finishes the update. Wait for it: when its inventory shows
      // the new artifact it gets the rollback (on_inventory); when it reverted on its own, it is
      // back already. The pending id keeps the update's own reports from counting.
      if (!go(r, m, MemberEvent::kRollback, MemberGuard::kTooLateToCancel, now, out)) continue;
      m.command_id =
          r.id + "." + m.device_id + "." + std::to_string(++m.command_seq) + std::string(kRollbackPending);
      m.since_ms = now;
      ++count;
    } else if (is_in_flight(m.state)) {
      // Still downloading: cancel it, and wait for the device to say how its update ended.
      if (!go(r, m, MemberEvent::kRollback, MemberGuard::kCancelSent, now, out)) continue;
      m.command_id =
          r.id + "." + m.device_id + "." + std::to_string(++m.command_seq) + std::string(kCancelPending);
      out.push_back(Decision{Decision::Kind::kCancel, m.device_id, m.command_id, 0, r.spec.artifact_id, {}});
      m.since_ms = now;
    } else if (m.state == MemberState::kPending || m.state == MemberState::kRetryWait) {
      (void)go(r, m, MemberEvent::kRollback, MemberGuard::kNothingInFlight, now, out);
    } else if (m.state == MemberState::kSucceeded && m.previous_artifact_id != r.spec.artifact_id &&
               m.attempt > 0) {
      if (!go(r, m, MemberEvent::kRollback, MemberGuard::kUpdatedByRollout, now, out)) continue;
      send_rollback(r, m, now, out);
      ++count;
    }
    // Otherwise it has nothing of this rollout's to undo: it failed, was cancelled, or already
    // ran the artifact before the rollout.
  }
  r.state = RolloutState::kRollingBack;
  r.reason = std::move(reason);
  r.dirty = true;
  out.push_back(audit("rollout " + r.id + " rolling back " + std::to_string(count) +
                      " updated device(s): " + r.reason));
  return out;
}

void RolloutEngine::send_install(Rollout& r, Member& m, std::uint64_t rate, Millis now,
                                 Decisions& out) const {
  m.command_id = r.id + "." + m.device_id + "." + std::to_string(++m.command_seq);
  m.phase = v1::PHASE_UNSPECIFIED;
  m.since_ms = now;
  m.last_sequence = 0;
  if (m.started_ms == 0) m.started_ms = now;
  m.dirty = true;
  out.push_back(Decision{Decision::Kind::kInstall, m.device_id, m.command_id, rate, r.spec.artifact_id, {}});
}

void RolloutEngine::send_rollback(Rollout& r, Member& m, Millis now, Decisions& out) const {
  m.command_id = r.id + "." + m.device_id + "." + std::to_string(++m.command_seq) + ".rollback";
  m.phase = v1::PHASE_UNSPECIFIED;
  m.since_ms = now;
  m.last_sequence = 0;
  m.dirty = true;
  out.push_back(
      Decision{Decision::Kind::kRollback, m.device_id, m.command_id, 0, m.previous_artifact_id, {}});
}

void RolloutEngine::finish(Rollout& r, Fleet& fleet, RolloutState state, Millis now) const {
  r.state = state;
  r.finished_ms = now;
  r.dirty = true;
  for (const Member& m : r.members) {
    auto it = fleet.claims.find(m.device_id);
    if (it != fleet.claims.end() && it->second == r.id) fleet.claims.erase(it);
  }
}

void RolloutEngine::resolve_targets(Rollout& r, Fleet& fleet, Millis now, Decisions& out) const {
  struct Candidate {
    std::uint64_t rank;
    const DeviceFacts* device;
  };
  std::vector<Candidate> candidates;
  std::size_t skipped = 0;
  for (const auto& [id, device] : fleet.devices) {
    if (!selector_matches(r.spec.target, device)) continue;
    auto claim = fleet.claims.find(id);
    if (claim != fleet.claims.end() && claim->second != r.id) {
      ++skipped;
      continue;
    }
    candidates.push_back({membership_rank(r.id, id), &device});
  }
  // Deterministic: the order depends only on the rollout id and the device ids.
  std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) {
    return a.rank != b.rank ? a.rank < b.rank : a.device->id < b.device->id;
  });
  const auto sizes = wave_sizes(r.spec, candidates.size());
  std::size_t next = 0;
  for (std::size_t w = 0; w < sizes.size(); ++w) {
    const std::size_t size = sizes[w];
    r.waves[w].planned_size = static_cast<std::uint32_t>(size);
    for (std::size_t i = 0; i < size; ++i, ++next) {
      Member m;
      m.device_id = candidates[next].device->id;
      m.wave = static_cast<int>(w);
      m.since_ms = now;
      m.previous_artifact_id = candidates[next].device->artifact_id;
      fleet.claims[m.device_id] = r.id;
      r.members.push_back(std::move(m));
    }
  }
  r.rebuild_index();
  r.targets_resolved = true;
  r.dirty = true;
  std::string text = "rollout " + r.id + " started: " + std::to_string(candidates.size()) + " device(s) in " +
                     std::to_string(r.spec.waves.size()) + " wave(s)";
  if (skipped) text += "; " + std::to_string(skipped) + " device(s) skipped, owned by another rollout";
  out.push_back(audit(text));
}

void RolloutEngine::pick_up_late_joiners(Rollout& r, Fleet& fleet, Millis now, Decisions& out) const {
  if (r.spec.target.device_ids.size() == r.members.size() && !r.spec.target.device_ids.empty()) return;
  int wave = -1;
  for (std::size_t w = 0; w < r.waves.size(); ++w) {
    if (r.waves[w].status != WaveStatus::kPassed) {
      wave = static_cast<int>(w);
      break;
    }
  }
  if (wave < 0) return;
  if (fleet.generation != 0 && fleet.generation == r.scanned_fleet_generation) return;
  r.scanned_fleet_generation = fleet.generation;
  std::vector<const DeviceFacts*> joiners;
  for (const auto& [id, device] : fleet.devices) {
    if (fleet.claims.count(id)) continue;  // ours already, or another rollout's
    if (r.find_member(id) != nullptr) continue;
    if (!selector_matches(r.spec.target, device)) continue;
    joiners.push_back(&device);
  }
  std::sort(joiners.begin(), joiners.end(),
            [](const DeviceFacts* a, const DeviceFacts* b) { return a->id < b->id; });
  for (const DeviceFacts* device : joiners) {
    Member m;
    m.device_id = device->id;
    m.wave = wave;
    m.since_ms = now;
    m.previous_artifact_id = device->artifact_id;
    m.late_joiner = true;
    fleet.claims[m.device_id] = r.id;
    r.members.push_back(std::move(m));
    r.waves[static_cast<std::size_t>(wave)].planned_size++;
    out.push_back(
        audit("device " + device->id + " joined the target; added to wave " + std::to_string(wave + 1)));
  }
  if (!joiners.empty()) {
    r.rebuild_index();
    r.dirty = true;
  }
}

void RolloutEngine::attempt_failed(Rollout& r, Member& m, MemberEvent event, std::string error, Millis now,
                                   Decisions& out) const {
  const bool retry = m.attempt <= r.spec.retry.max_retries;
  if (!go(r, m, event, retry ? MemberGuard::kAttemptsLeft : MemberGuard::kOutOfAttempts, now, out)) return;
  m.last_error = std::move(error);
  m.since_ms = now;
  m.dirty = true;
  if (retry) {
    Millis backoff = r.spec.retry.backoff_ms;
    for (std::uint32_t i = 1; i < m.attempt && backoff < r.spec.retry.max_backoff_ms; ++i) backoff *= 2;
    backoff = std::min(backoff, r.spec.retry.max_backoff_ms);
    m.retry_at_ms = now + backoff;
    out.push_back(audit("device " + m.device_id + " attempt " + std::to_string(m.attempt) + " failed (" +
                        m.last_error + "); retry in " + format_duration(backoff)));
  } else {
    out.push_back(audit("device " + m.device_id + " failed after " + std::to_string(m.attempt) +
                        " attempt(s): " + m.last_error));
  }
}

void RolloutEngine::apply_timeouts(Rollout& r, Millis now, Decisions& out) const {
  for (Member& m : r.members) {
    if (!is_in_flight(m.state) && m.state != MemberState::kRollingBack) continue;
    const Millis limit = phase_timeout(r.spec.timeouts, m);
    if (now - m.since_ms < limit) continue;
    const std::string where = m.state == MemberState::kDispatched
                                  ? std::string("waiting for the device to start")
                                  : "phase " + std::string(common::phase_name(m.phase));
    const std::string error = "timed out after " + format_duration(limit) + " in " + where;
    if (m.state == MemberState::kRollingBack) {
      if (!go(r, m, MemberEvent::kTimeout, MemberGuard::kRollbackSilent, now, out)) continue;
      m.last_error = error;
      m.since_ms = now;
      out.push_back(audit("device " + m.device_id + " rollback " + error));
      continue;
    }
    // Stop the device working on a stale attempt before the next one.
    const std::string cancel_id =
        r.id + "." + m.device_id + "." + std::to_string(++m.command_seq) + ".cancel";
    out.push_back(Decision{Decision::Kind::kCancel, m.device_id, cancel_id, 0, r.spec.artifact_id, {}});
    attempt_failed(r, m, MemberEvent::kTimeout, error, now, out);
  }
}

void RolloutEngine::breach(Rollout& r, Fleet& fleet, int wave, std::string why, Millis now,
                           Decisions& out) const {
  r.waves[static_cast<std::size_t>(wave)].status = WaveStatus::kBreached;
  r.dirty = true;
  const std::string text = "wave " + std::to_string(wave + 1) + " breached: " + why;
  out.push_back(audit(text + "; action: " + std::string(breach_action_name(r.spec.on_breach))));
  switch (r.spec.on_breach) {
    case BreachAction::kPause:
      r.state = RolloutState::kPaused;
      r.reason = text;
      break;
    case BreachAction::kAbort: {
      auto d = abort(r, fleet, text, now);
      if (d) out.insert(out.end(), d->begin(), d->end());
      break;
    }
    case BreachAction::kRollback: {
      auto d = rollback(r, text, now);
      if (d) out.insert(out.end(), d->begin(), d->end());
      break;
    }
  }
}

void RolloutEngine::gate_waves(Rollout& r, Fleet& fleet, Millis now, Decisions& out) const {
  for (std::size_t w = 0; w < r.waves.size(); ++w) {
    WaveState& wave = r.waves[w];
    if (wave.status == WaveStatus::kPassed) continue;
    if (wave.status == WaveStatus::kBreached) return;  // waiting for the operator
    const WaveSpec& spec = r.spec.waves[w];
    if (wave.status == WaveStatus::kWaiting) {
      wave.status = WaveStatus::kActive;
      wave.started_ms = now;
      r.dirty = true;
      if (w > 0) out.push_back(audit("wave " + std::to_string(w + 1) + " started"));
    }
    std::size_t size = 0, succeeded = 0, failed = 0, open = 0;
    for (const Member& m : r.members) {
      if (m.wave != static_cast<int>(w)) continue;
      ++size;
      if (m.state == MemberState::kSucceeded)
        ++succeeded;
      else if (m.state == MemberState::kFailed)
        ++failed;
      else if (!is_terminal(m.state))
        ++open;
    }
    const double denom = size == 0 ? 1.0 : static_cast<double>(size);
    const double failed_ratio = static_cast<double>(failed) / denom;
    if (!wave.breach_overridden && failed > 0 && failed_ratio > spec.failure_threshold) {
      breach(r, fleet, static_cast<int>(w),
             std::to_string(failed) + " of " + std::to_string(size) + " device(s) failed (" +
                 percent(failed_ratio) + "), over the failure threshold of " +
                 percent(spec.failure_threshold),
             now, out);
      return;
    }
    if (open > 0) return;
    const double success_ratio = size == 0 ? 1.0 : static_cast<double>(succeeded) / denom;
    if (wave.status == WaveStatus::kActive) {
      if (success_ratio + 1e-9 < spec.success_ratio && !wave.breach_overridden) {
        breach(r, fleet, static_cast<int>(w),
               "only " + std::to_string(succeeded) + " of " + std::to_string(size) +
                   " device(s) succeeded (" + percent(success_ratio) + "), the gate needs " +
                   percent(spec.success_ratio),
               now, out);
        return;
      }
      wave.status = WaveStatus::kSoaking;
      wave.gate_passed_ms = now;
      r.dirty = true;
      out.push_back(audit("wave " + std::to_string(w + 1) + " gate passed: " + std::to_string(succeeded) +
                          " of " + std::to_string(size) + " succeeded (" + percent(success_ratio) + ")" +
                          (spec.soak_ms > 0 ? "; soaking for " + format_duration(spec.soak_ms) : "")));
    }
    if (wave.status == WaveStatus::kSoaking) {
      if (now - wave.gate_passed_ms < spec.soak_ms) return;
      wave.status = WaveStatus::kPassed;
      wave.finished_ms = now;
      r.dirty = true;
      if (spec.soak_ms > 0) out.push_back(audit("wave " + std::to_string(w + 1) + " soak finished"));
    }
  }
  finish(r, fleet, RolloutState::kCompleted, now);
  std::size_t succeeded = 0;
  for (const Member& m : r.members) succeeded += m.state == MemberState::kSucceeded ? 1 : 0;
  out.push_back(audit("rollout " + r.id + " completed: " + std::to_string(succeeded) + " of " +
                      std::to_string(r.members.size()) + " device(s) updated"));
}

void RolloutEngine::dispatch(Rollout& r, const Fleet& fleet, Millis now, Decisions& out) const {
  int current = -1;
  for (std::size_t w = 0; w < r.waves.size(); ++w) {
    if (r.waves[w].status == WaveStatus::kActive) {
      current = static_cast<int>(w);
      break;
    }
    if (r.waves[w].status != WaveStatus::kPassed) return;  // soaking or breached: no new work
  }
  if (current < 0) return;
  std::size_t in_flight = 0, wave_members = 0;
  for (const Member& m : r.members) {
    in_flight += is_in_flight(m.state) ? 1 : 0;
    wave_members += m.wave == current ? 1 : 0;
  }
  const std::uint64_t rate = per_device_rate(r.spec, wave_members);
  for (Member& m : r.members) {
    if (m.wave != current) continue;
    if (m.state != MemberState::kPending && !(m.state == MemberState::kRetryWait && now >= m.retry_at_ms))
      continue;
    auto device = fleet.devices.find(m.device_id);
    if (device == fleet.devices.end()) continue;
    if (m.state == MemberState::kPending && m.attempt == 0 &&
        device->second.artifact_id == r.spec.artifact_id) {
      // Already runs the artifact (it committed it before): nothing to send.
      if (go(r, m, MemberEvent::kDispatch, MemberGuard::kAlreadyRunsArtifact, now, out)) m.since_ms = now;
      continue;
    }
    if (r.spec.max_concurrent > 0 && in_flight >= r.spec.max_concurrent) continue;
    if (!in_maintenance_window(r.spec.windows, device->second.time_zone, now)) continue;
    const MemberGuard turn =
        m.state == MemberState::kPending ? MemberGuard::kTurn : MemberGuard::kBackoffOver;
    if (!go(r, m, MemberEvent::kDispatch, turn, now, out)) continue;
    ++m.attempt;
    send_install(r, m, rate, now, out);
    ++in_flight;
  }
}

Decisions RolloutEngine::tick(Rollout& r, Fleet& fleet, Millis now) const {
  Decisions out;
  switch (r.state) {
    case RolloutState::kRunning:
      if (r.spec.start_at_ms && now < *r.spec.start_at_ms) return out;
      if (!r.targets_resolved) resolve_targets(r, fleet, now, out);
      pick_up_late_joiners(r, fleet, now, out);
      apply_timeouts(r, now, out);
      gate_waves(r, fleet, now, out);
      if (r.state == RolloutState::kRunning) dispatch(r, fleet, now, out);
      break;
    case RolloutState::kPaused:
      apply_timeouts(r, now, out);  // in-flight devices still finish or time out
      break;
    case RolloutState::kRollingBack: {
      apply_timeouts(r, now, out);
      const bool open = std::any_of(r.members.begin(), r.members.end(),
                                    [](const Member& m) { return m.state == MemberState::kRollingBack; });
      if (!open) {
        std::size_t ok = 0, bad = 0;
        for (const Member& m : r.members) {
          ok += m.state == MemberState::kRolledBack ? 1 : 0;
          bad += m.state == MemberState::kRollbackFailed ? 1 : 0;
        }
        finish(r, fleet, RolloutState::kRolledBack, now);
        out.push_back(audit("rollout " + r.id + " rolled back: " + std::to_string(ok) +
                            " device(s) restored, " + std::to_string(bad) + " failed"));
      }
      break;
    }
    default:
      break;
  }
  return out;
}

Decisions RolloutEngine::on_progress(Rollout& r, const v1::Progress& p, Millis now) const {
  Decisions out;
  Member* m = r.find_member(p.device_id());
  if (m == nullptr || p.deployment_id() != r.id) return out;
  const MemberEvent event = report_event(p.phase());
  if (waits_for_its_update(*m)) {
    // The member's update was still running when the rollout started rolling back (see
    // rollback()): its update's own reports, and the answer to our cancel, say how it ended.
    const bool cancel_sent = std::string_view(m->command_id).ends_with(kCancelPending);
    const bool about_update = p.command_id() != m->command_id && p.artifact_id() == r.spec.artifact_id;
    MemberGuard guard;
    if (cancel_sent && p.command_id() == m->command_id && p.phase() == v1::PHASE_FAILED &&
        p.error() == v1::ERROR_BUSY) {
      guard = MemberGuard::kCancelRefused;
    } else if (p.phase() == v1::PHASE_CANCELLED ||
               (about_update && (p.phase() == v1::PHASE_COMMITTED || p.phase() == v1::PHASE_FAILED ||
                                 p.phase() == v1::PHASE_ROLLED_BACK))) {
      guard = cancel_sent ? MemberGuard::kWaitingAfterCancel : MemberGuard::kWaitingForUpdate;
    } else {
      return out;  // the update is still under way, or the report is not about it
    }
    if (!go(r, *m, event, guard, now, out)) return out;
    if (m->state != MemberState::kRollingBack) {
      m->phase = p.phase();
      m->since_ms = now;
    } else if (cancel_sent) {
      // It runs (or will run) the new artifact: its next inventory gets it the rollback.
      m->command_id =
          r.id + "." + m->device_id + "." + std::to_string(++m->command_seq) + std::string(kRollbackPending);
      m->dirty = true;
    }
    return out;
  }
  // Reports about an older command of ours change nothing, with one exception: a device that is
  // still working on this rollout's artifact under an earlier command (the re-sent command crossed
  // its reconnect; the client keeps going under the id it started with) is making progress we
  // want, so its forward progress counts. Failures of older commands stay ignored.
  if (!p.command_id().empty() && p.command_id() != m->command_id) {
    const bool forward = p.phase() >= v1::PHASE_DOWNLOADING && p.phase() <= v1::PHASE_COMMITTED;
    if (!forward || p.artifact_id() != r.spec.artifact_id || !is_in_flight(m->state)) return out;
  }
  if (p.sequence() != 0 && p.sequence() <= m->last_sequence) return out;
  if (p.sequence() != 0) m->last_sequence = p.sequence();
  m->dirty = true;
  const v1::Phase phase = p.phase();
  if (m->state == MemberState::kRollingBack) {
    if (!go(r, *m, event, MemberGuard::kRollbackReport, now, out)) return out;
    if (m->state == MemberState::kRollbackFailed) {
      m->last_error = p.error_detail().empty() ? v1::ErrorCode_Name(p.error()) : p.error_detail();
    }
    if (phase != m->phase) m->since_ms = now;
    m->phase = phase;
    return out;
  }
  if (m->state == MemberState::kSucceeded) {
    // Only a revert after committing (e.g. a later health check failed) changes a success; other
    // reports repeat the update it finished.
    if (event != MemberEvent::kRolledBack) return out;
    if (!go(r, *m, event, MemberGuard::kRevertedAfterCommit, now, out)) return out;
    m->phase = phase;
    m->last_error = "device rolled back after committing";
    out.push_back(audit("device " + m->device_id + " rolled back after committing; counted as failed"));
    return out;
  }
  if (!is_in_flight(m->state)) return out;  // pending, waiting to retry or settled: nothing in flight
  if (phase != m->phase) m->since_ms = now;
  m->phase = phase;
  m->bytes_done = p.bytes_done();
  m->bytes_total = p.bytes_total();
  // A report rebuilt from the device's journal after the update ended carries no byte counts.
  if (p.bytes_total() > 0) m->bytes_reused = p.bytes_reused();
  if (event == MemberEvent::kWorking || event == MemberEvent::kCommitted) {
    if (go(r, *m, event, MemberGuard::kCurrentAttempt, now, out) && event == MemberEvent::kCommitted) {
      m->last_error.clear();
    }
    return out;
  }
  std::string error(common::phase_name(phase));
  if (p.error() != v1::ERROR_NONE) error += ": " + v1::ErrorCode_Name(p.error());
  if (!p.error_detail().empty()) error += ": " + p.error_detail();
  attempt_failed(r, *m, event, error, now, out);
  return out;
}

Decisions RolloutEngine::on_inventory(Rollout& r, const DeviceFacts& device, const v1::Inventory& inventory,
                                      Millis now) const {
  Decisions out;
  Member* m = r.find_member(device.id);
  if (m == nullptr || inventory.pending_deployment_id() == r.id) return out;
  // The device finished our last command: its outcome (judged by on_progress) decides, whatever
  // the device runs now. Re-sending here would start a failed update all over again.
  if (inventory.has_last_outcome() && inventory.last_outcome().deployment_id() == r.id &&
      inventory.last_outcome().command_id() == m->command_id) {
    return out;
  }
  MemberGuard guard;
  if (is_in_flight(m->state) && (r.state == RolloutState::kRunning || r.state == RolloutState::kPaused) &&
      device.artifact_id != r.spec.artifact_id) {
    // The device does not work on our command and has no outcome for it: it lost it (offline,
    // expired, rebooted before it arrived). Resend.
    guard = MemberGuard::kCommandLost;
  } else if (is_in_flight(m->state) && device.artifact_id == r.spec.artifact_id) {
    // It runs our artifact and works on nothing: it committed, and the COMMITTED report was lost
    // (sent while the orchestrator was down; found by the kill -9 test and fota-sim's
    // orchestrator-kill scenario). A device still confirming names our deployment.
    guard = MemberGuard::kCommitReportLost;
  } else if (m->state == MemberState::kRollingBack && device.artifact_id == m->previous_artifact_id) {
    // Back on what it ran before (an empty id is a factory image), working on nothing of ours.
    guard = std::string_view(m->command_id).ends_with(kCancelPending) ? MemberGuard::kBackAfterCancel
                                                                      : MemberGuard::kBackOnPrevious;
  } else if (m->state == MemberState::kRollingBack && device.artifact_id == r.spec.artifact_id) {
    guard = MemberGuard::kStillOnArtifact;
  } else {
    return out;  // nothing to repair
  }
  if (!go(r, *m, MemberEvent::kInventory, guard, now, out)) return out;
  switch (guard) {
    case MemberGuard::kCommandLost: {
      std::size_t wave_members = 0;
      for (const Member& x : r.members) wave_members += x.wave == m->wave ? 1 : 0;
      send_install(r, *m, per_device_rate(r.spec, wave_members), now, out);
      break;
    }
    case MemberGuard::kCommitReportLost:
      m->phase = v1::PHASE_COMMITTED;
      m->since_ms = now;
      m->last_error.clear();
      out.push_back(audit("device " + m->device_id + " runs " + r.spec.artifact_id +
                          " (its inventory says so; the COMMITTED report was lost): counted as succeeded"));
      break;
    case MemberGuard::kStillOnArtifact:
      send_rollback(r, *m, now, out);
      break;
    default:
      break;
  }
  return out;
}

}  // namespace fota::orchestrator
