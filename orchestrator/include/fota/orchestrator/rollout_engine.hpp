// SPDX-License-Identifier: Apache-2.0
// The rollout engine: pure, tick-driven logic over (rollout, fleet, now) -> decisions. No I/O,
// no clock, no threads: the service feeds it device reports and the time, persists the rollout
// it mutates, and carries out the decisions (commands, audit entries). Tests run it with
// virtual time. docs/ORCHESTRATOR.md describes the rules.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "fota/common/result.hpp"
#include "fota/orchestrator/rollout_spec.hpp"
#include "fota/v1/fota.pb.h"

namespace fota::orchestrator {

// What the orchestrator knows about a device (from its inventory, presence and the operator).
struct DeviceFacts {
  std::string id;
  std::string hardware_type;
  std::string time_zone;    // IANA; empty or unknown = UTC
  std::string artifact_id;  // running now
  std::string version;
  std::vector<std::string> tags;  // reported by the device (its inventory's "tags" attribute)
  std::string group;              // reported by the device (its inventory's "group" attribute)
  // Set by operators (`fotactl device tag`, `fotactl group add`), kept apart from what the device
  // reports so that its next inventory does not wipe them. Sorted.
  std::vector<std::string> operator_tags;
  std::vector<std::string> static_groups;
  bool online = false;
  Millis last_seen_ms = 0;
  // Its certificate was revoked (`fotactl device revoke`): no selector matches it, so no rollout
  // takes it on; a rollout it already belongs to sees it go silent (docs/ORCHESTRATOR.md).
  bool revoked = false;
  // The X25519 key it decrypts artifacts with (Inventory.decryption_key_id); empty = none.
  std::string decryption_key_id;
};

// The devices plus which active rollout owns each device. The engine writes `claims` when it
// adds a member and releases them when a rollout ends, so two rollouts never share a device.
struct Fleet {
  std::unordered_map<std::string, DeviceFacts> devices;
  std::unordered_map<std::string, std::string> claims;  // device id -> rollout id
  // Bumped by the owner whenever a device is added or its selectable facts change, so ticks can
  // skip the late-joiner scan of a large fleet. 0 = not tracked: scan on every tick.
  std::uint64_t generation = 0;
};

enum class RolloutState { kCreated, kRunning, kPaused, kCompleted, kAborted, kRollingBack, kRolledBack };
std::string_view rollout_state_name(RolloutState state) noexcept;
common::Result<RolloutState> parse_rollout_state(std::string_view name);
// Created, running, paused and rolling back rollouts own their devices.
bool is_active(RolloutState state) noexcept;

enum class MemberState {
  kPending,      // not yet sent (wave not open, outside its window, concurrency full)
  kDispatched,   // install command sent, no progress yet
  kUpdating,     // progress received, not terminal
  kRetryWait,    // an attempt failed; waiting for the backoff
  kSucceeded,    // reported COMMITTED (or already ran the artifact)
  kFailed,       // out of attempts
  kCancelled,    // rollout aborted before it finished
  kRollingBack,  // rollback command sent
  kRolledBack,
  kRollbackFailed,
};
std::string_view member_state_name(MemberState state) noexcept;
common::Result<MemberState> parse_member_state(std::string_view name);
bool is_in_flight(MemberState state) noexcept;  // dispatched or updating
bool is_terminal(MemberState state) noexcept;   // nothing more will happen to it in this rollout

// One row of the member machine's transition table (docs/ORCHESTRATOR.md, "The member
// machine"): on `event` in state `from`, when `guard` holds, a member moves to `to`. Every state
// change of a member is one row; a move without a row is a bug: the state is kept, the rollout's
// `unexpected_events` counts it and an audit decision names it.
struct MemberTransition {
  MemberState from;
  const char* event;  // the input: "Dispatch", "Working", "Committed", "Inventory", "Timeout", ...
  const char* guard;  // the condition the handler found, e.g. "attempts left"
  MemberState to;
};
// The rows, top to bottom.
const std::vector<MemberTransition>& member_transitions();
// The event and guard columns; defined with the table in rollout_engine.cpp.
enum class MemberEvent : int;
enum class MemberGuard : int;

struct Member {
  std::string device_id;
  int wave = 0;
  MemberState state = MemberState::kPending;
  v1::Phase phase = v1::PHASE_UNSPECIFIED;
  Millis since_ms = 0;            // when state or phase last changed: the phase timeouts count from here
  std::uint32_t attempt = 0;      // install attempts started
  std::uint32_t command_seq = 0;  // commands sent to this device by this rollout
  std::string command_id;         // the last command sent
  Millis retry_at_ms = 0;
  std::string previous_artifact_id;  // what the device ran before this rollout touched it
  std::string last_error;
  std::uint64_t bytes_done = 0;
  std::uint64_t bytes_total = 0;
  std::uint64_t bytes_reused = 0;  // of bytes_done, copied from the device's running slot
  std::uint64_t last_sequence = 0;
  Millis started_ms = 0;   // first dispatch
  Millis finished_ms = 0;  // reached a terminal state
  bool late_joiner = false;
  bool dirty = true;     // changed since the store last saved it
  bool sampled = false;  // its finished update is in the prediction history (not stored)
};

enum class WaveStatus { kWaiting, kActive, kSoaking, kPassed, kBreached };
std::string_view wave_status_name(WaveStatus status) noexcept;
common::Result<WaveStatus> parse_wave_status(std::string_view name);

struct WaveState {
  WaveStatus status = WaveStatus::kWaiting;
  std::uint32_t planned_size = 0;
  Millis started_ms = 0;
  Millis gate_passed_ms = 0;  // soak starts here
  Millis finished_ms = 0;
  bool breach_overridden = false;  // the operator resumed after a breach: this wave's gate is waived
};

struct Rollout {
  std::string id;
  RolloutSpec spec;
  RolloutState state = RolloutState::kCreated;
  Millis created_ms = 0;
  Millis started_ms = 0;   // the operator's start (the spec's start_at may be later)
  Millis finished_ms = 0;  // completed, aborted or rolled back
  bool targets_resolved = false;
  std::string reason;  // why it is paused / aborted / rolled back
  std::vector<WaveState> waves;
  std::vector<Member> members;
  bool dirty = true;
  std::uint64_t scanned_fleet_generation = 0;  // not persisted: a restart scans once
  std::uint64_t unexpected_events = 0;  // member moves without a row (a bug, also audited); not persisted

  Member* find_member(std::string_view device_id);
  const Member* find_member(std::string_view device_id) const;
  void rebuild_index();

 private:
  std::unordered_map<std::string, std::size_t> index_;
};

struct Decision {
  enum class Kind {
    kInstall,   // send an InstallCommand for spec.artifact_id
    kCancel,    // send a CancelCommand
    kRollback,  // send a RollbackCommand to previous_artifact_id (empty = previous slot)
    kAudit,     // an automatic decision worth an audit entry
  };
  Kind kind = Kind::kAudit;
  std::string device_id;
  std::string command_id;
  std::uint64_t max_bytes_per_second = 0;
  std::string artifact_id;  // install: the rollout's artifact; rollback: the previous one
  std::string message;      // audit text
};
using Decisions = std::vector<Decision>;

// Does the device match the selector?
bool selector_matches(const TargetSelector& selector, const DeviceFacts& device);
// Whether `now` falls in one of the windows on the device's local clock. No windows = always.
bool in_maintenance_window(const std::vector<WeeklyWindow>& windows, std::string_view time_zone, Millis now);
// The earliest instant >= now inside a window (now when inside one), in the device's zone.
Millis next_window_open(const std::vector<WeeklyWindow>& windows, std::string_view time_zone, Millis now);
// Stable order of wave membership: the same rollout id and devices always give the same waves.
std::uint64_t membership_rank(std::string_view rollout_id, std::string_view device_id);

// The device's share of the rollout bandwidth cap (0 = unlimited).
// How many of a wave's members update at once (at least one).
std::size_t wave_concurrency(const RolloutSpec& spec, std::size_t wave_members);
std::uint64_t per_device_rate(const RolloutSpec& spec, std::size_t wave_members);

class RolloutEngine {
 public:
  RolloutEngine() = default;
  // `on_transition` is called with the index into member_transitions() of every row a member
  // takes (tests walk the table with it).
  explicit RolloutEngine(std::function<void(std::size_t row)> on_transition)
      : on_transition_(std::move(on_transition)) {}

  // A new rollout in state created. Checks the artifact id format and the target; does not
  // look at the fleet.
  static common::Result<Rollout> create(std::string id, RolloutSpec spec, Millis now);

  // kConflict naming the devices (and their rollout) when a device the spec selects is owned by
  // another active rollout, or selected by another active rollout that has not resolved its
  // targets yet (`unresolved_others`); kInvalidArgument when the spec selects no known device.
  static common::Status check_target(const Rollout& rollout, const Fleet& fleet,
                                     const std::vector<const Rollout*>& unresolved_others = {});

  // Created -> running. Targets resolve at the first tick at or after spec.start_at.
  common::Result<Decisions> start(Rollout& rollout, const Fleet& fleet, Millis now,
                                  const std::vector<const Rollout*>& unresolved_others = {}) const;
  common::Result<Decisions> pause(Rollout& rollout, std::string reason, Millis now) const;
  // Paused -> running; a wave that breached has its gate waived (the operator decided).
  common::Result<Decisions> resume(Rollout& rollout, Millis now) const;
  // Cancels in-flight devices; pending devices are never sent. Releases the devices.
  common::Result<Decisions> abort(Rollout& rollout, Fleet& fleet, std::string reason, Millis now) const;
  // Fleet rollback: every device this rollout updated is sent back to the artifact it ran before.
  common::Result<Decisions> rollback(Rollout& rollout, std::string reason, Millis now) const;

  // Advances time: resolves targets, picks up late joiners, applies timeouts and retries, gates
  // waves, dispatches within windows and caps.
  Decisions tick(Rollout& rollout, Fleet& fleet, Millis now) const;
  // A progress report from a member (others are ignored).
  Decisions on_progress(Rollout& rollout, const v1::Progress& progress, Millis now) const;
  // Level-triggered repair: a device's inventory says what it runs, what it works on and how its
  // last update ended. When it lost the command (reconnected without it and without an outcome
  // for it), the command is sent again; a known outcome is never answered with a re-send. The
  // caller judges `inventory.last_outcome()` with on_progress() first.
  Decisions on_inventory(Rollout& rollout, const DeviceFacts& device, const v1::Inventory& inventory,
                         Millis now) const;

 private:
  void resolve_targets(Rollout& rollout, Fleet& fleet, Millis now, Decisions& out) const;
  void pick_up_late_joiners(Rollout& rollout, Fleet& fleet, Millis now, Decisions& out) const;
  void apply_timeouts(Rollout& rollout, Millis now, Decisions& out) const;
  void gate_waves(Rollout& rollout, Fleet& fleet, Millis now, Decisions& out) const;
  void dispatch(Rollout& rollout, const Fleet& fleet, Millis now, Decisions& out) const;
  void attempt_failed(Rollout& rollout, Member& member, MemberEvent event, std::string error, Millis now,
                      Decisions& out) const;
  // The one place a member's state changes (see MemberTransition); false when there is no row.
  bool go(Rollout& rollout, Member& member, MemberEvent event, MemberGuard guard, Millis now,
          Decisions& out) const;
  void breach(Rollout& rollout, Fleet& fleet, int wave, std::string why, Millis now, Decisions& out) const;
  void finish(Rollout& rollout, Fleet& fleet, RolloutState state, Millis now) const;
  void send_install(Rollout& rollout, Member& member, std::uint64_t rate, Millis now, Decisions& out) const;
  void send_rollback(Rollout& rollout, Member& member, Millis now, Decisions& out) const;

  std::function<void(std::size_t row)> on_transition_;
};

}  // namespace fota::orchestrator
