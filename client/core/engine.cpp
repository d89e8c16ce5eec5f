// SPDX-License-Identifier: Apache-2.0
// The update engine's transition table and its handlers. docs/CLIENT.md draws the states.
#include "fota/client/engine.hpp"

#include <algorithm>
#include <iterator>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "fota/client/chunk_window.hpp"
#include "fota/common/codec.hpp"

namespace fota::client {
namespace {

using common::Errc;
using common::Error;
using journal::JournalRecord;
using S = EngineState;

constexpr std::uint64_t kSequenceGapAfterRestart = 1'000'000;
// Reuse phase: the journal is stored at least every this many chunks of the running slot read,
// so a power cut reads at most that many again.
constexpr std::uint32_t kReuseStoreEvery = 64;
// What a device measures (docs/CLIENT.md, "What a device measures"): downloads smaller than this
// say more about latency than about the link and are not a rate sample; one that ran at half its
// rollout's bandwidth cap or more may have measured the cap, not the link. A new sample weighs a
// quarter.
constexpr std::uint64_t kMinMeasuredBytes = 32 * 1024;
constexpr double kCappedFraction = 0.5;

template <typename T>
T averaged(T average, std::uint32_t samples, T sample) {
  return samples == 0 ? sample : static_cast<T>((3 * average + sample) / 4);
}

journal::EngineState to_record_state(EngineState state) {
  switch (state) {
    case S::kDownloading:
      return journal::ENGINE_STATE_DOWNLOADING;
    case S::kVerifying:
      return journal::ENGINE_STATE_VERIFYING;
    case S::kInstalling:
      return journal::ENGINE_STATE_INSTALLING;
    case S::kRebooting:
      return journal::ENGINE_STATE_REBOOTING;
    case S::kConfirming:
      return journal::ENGINE_STATE_CONFIRMING;
    case S::kRollingBack:
      return journal::ENGINE_STATE_ROLLING_BACK;
    case S::kAwaitingStart:
    case S::kIdle:
      break;
  }
  return journal::ENGINE_STATE_IDLE;
}

v1::Phase phase_of(EngineState state) {
  switch (state) {
    case S::kDownloading:
      return v1::PHASE_DOWNLOADING;
    case S::kVerifying:
      return v1::PHASE_VERIFYING;
    case S::kInstalling:
      return v1::PHASE_INSTALLING;
    case S::kRebooting:
      return v1::PHASE_REBOOTING;
    case S::kConfirming:
      return v1::PHASE_CONFIRMING;
    case S::kRollingBack:
      return v1::PHASE_ROLLING_BACK;
    case S::kAwaitingStart:
    case S::kIdle:
      break;
  }
  return v1::PHASE_IDLE;
}

ChunkWindow::Limits window_limits(const EngineConfig& config) {
  ChunkWindow::Limits limits;
  limits.initial_window = config.initial_window;
  limits.min_window = config.min_window;
  limits.max_window = config.max_window;
  limits.adaptive = config.adaptive_window;
  limits.chunk_timeout_ms = config.chunk_timeout_ms;
  limits.unavailable_backoff_ms = config.unavailable_backoff_ms;
  return limits;
}

enum class Event {
  kStarted,
  kCommand,
  kChunk,
  kTick,
  kConnected,
  kDisconnected,
  kSlotHash,
  kActiveChunk,
  kHealthResult,
  kActionFailed
};

const char* event_name(Event event) {
  switch (event) {
    case Event::kStarted:
      return "Started";
    case Event::kCommand:
      return "Command";
    case Event::kChunk:
      return "Chunk";
    case Event::kTick:
      return "Tick";
    case Event::kConnected:
      return "Connected";
    case Event::kDisconnected:
      return "Disconnected";
    case Event::kSlotHash:
      return "SlotHash";
    case Event::kActiveChunk:
      return "ActiveChunk";
    case Event::kHealthResult:
      return "HealthResult";
    case Event::kActionFailed:
      return "ActionFailed";
  }
  return "?";
}

// Why the engine moves: the condition a handler found, the guard column of kTransitions.
enum class Guard {
  kFirstStart,
  kNothingInProgress,
  kDownloadInterrupted,
  kVerifyInterrupted,
  kActivationInterrupted,
  kTrialBootOfTarget,
  kConfirmationInterrupted,
  kRevertNotDone,
  kInstallAccepted,
  kRollbackToPreviousSlot,
  kAllChunksVerified,
  kImageMatches,
  kSwitchedForReboot,
  kActivatedInPlace,
  kUnhealthy,
  kNoHealthAnswer,
  kConfirmActionFailed,
  kUpdateEnded,
};

const char* guard_name(Guard guard) {
  switch (guard) {
    case Guard::kFirstStart:
      return "no journal: first start";
    case Guard::kNothingInProgress:
      return "journal idle";
    case Guard::kDownloadInterrupted:
      return "journal downloading";
    case Guard::kVerifyInterrupted:
      return "journal verifying";
    case Guard::kActivationInterrupted:
      return "journal installing, target not booted on trial";
    case Guard::kTrialBootOfTarget:
      return "target slot booted on trial";
    case Guard::kConfirmationInterrupted:
      return "in-place payload, journal rebooting or confirming";
    case Guard::kRevertNotDone:
      return "journal rolling back, previous slot not booted";
    case Guard::kInstallAccepted:
      return "install command accepted";
    case Guard::kRollbackToPreviousSlot:
      return "rollback command, previous slot valid";
    case Guard::kAllChunksVerified:
      return "every chunk verified";
    case Guard::kImageMatches:
      return "slot hash = manifest image hash";
    case Guard::kSwitchedForReboot:
      return "A/B image: slot switched, reboot";
    case Guard::kActivatedInPlace:
      return "file or module payload activated in place";
    case Guard::kUnhealthy:
      return "health check failed";
    case Guard::kNoHealthAnswer:
      return "health check deadline passed";
    case Guard::kConfirmActionFailed:
      return "an action failed while confirming";
    case Guard::kUpdateEnded:
      return "update ended: outcome reported";
  }
  return "?";
}

struct TransitionRow {
  EngineState from;
  Event event;
  Guard guard;
  EngineState to;
};

// ---- The transition table: every state change the engine makes is one row. ------------------
// Handlers (Impl::find) do the work of an event and name the guard they found; Impl::go looks
// up (state, event, guard) here. Several rows may follow one another within one event (install:
// Installing, then Rebooting), so the engine never rests in Installing. "update ended" is
// finish(): the outcome is reported and stored. TransitionTableTest walks every row.
constexpr TransitionRow kTransitions[] = {
    // from              event                 guard                              to
    {S::kAwaitingStart, Event::kStarted, Guard::kFirstStart, S::kIdle},
    {S::kAwaitingStart, Event::kStarted, Guard::kNothingInProgress, S::kIdle},
    {S::kAwaitingStart, Event::kStarted, Guard::kDownloadInterrupted, S::kDownloading},
    {S::kAwaitingStart, Event::kStarted, Guard::kVerifyInterrupted, S::kVerifying},
    {S::kAwaitingStart, Event::kStarted, Guard::kActivationInterrupted, S::kInstalling},
    {S::kAwaitingStart, Event::kStarted, Guard::kTrialBootOfTarget, S::kConfirming},
    {S::kAwaitingStart, Event::kStarted, Guard::kConfirmationInterrupted, S::kConfirming},
    {S::kAwaitingStart, Event::kStarted, Guard::kRevertNotDone, S::kRollingBack},
    {S::kAwaitingStart, Event::kStarted, Guard::kUpdateEnded, S::kIdle},
    {S::kIdle, Event::kCommand, Guard::kInstallAccepted, S::kDownloading},
    {S::kIdle, Event::kCommand, Guard::kRollbackToPreviousSlot, S::kInstalling},
    {S::kIdle, Event::kCommand, Guard::kUpdateEnded, S::kIdle},  // already installed
    {S::kDownloading, Event::kStarted, Guard::kAllChunksVerified, S::kVerifying},
    {S::kDownloading, Event::kCommand, Guard::kAllChunksVerified, S::kVerifying},  // empty image
    {S::kDownloading, Event::kChunk, Guard::kAllChunksVerified, S::kVerifying},
    {S::kDownloading, Event::kActiveChunk, Guard::kAllChunksVerified, S::kVerifying},  // all reused
    {S::kDownloading, Event::kChunk, Guard::kUpdateEnded, S::kIdle},
    {S::kDownloading, Event::kTick, Guard::kUpdateEnded, S::kIdle},          // stalled
    {S::kDownloading, Event::kCommand, Guard::kUpdateEnded, S::kIdle},       // cancelled
    {S::kDownloading, Event::kActionFailed, Guard::kUpdateEnded, S::kIdle},  // write failed
    {S::kVerifying, Event::kSlotHash, Guard::kImageMatches, S::kInstalling},
    {S::kVerifying, Event::kSlotHash, Guard::kUpdateEnded, S::kIdle},  // mismatch, read error
    {S::kVerifying, Event::kCommand, Guard::kUpdateEnded, S::kIdle},   // cancelled
    {S::kVerifying, Event::kActionFailed, Guard::kUpdateEnded, S::kIdle},
    {S::kInstalling, Event::kStarted, Guard::kSwitchedForReboot, S::kRebooting},
    {S::kInstalling, Event::kCommand, Guard::kSwitchedForReboot, S::kRebooting},
    {S::kInstalling, Event::kSlotHash, Guard::kSwitchedForReboot, S::kRebooting},
    {S::kInstalling, Event::kStarted, Guard::kActivatedInPlace, S::kConfirming},
    {S::kInstalling, Event::kSlotHash, Guard::kActivatedInPlace, S::kConfirming},
    {S::kRebooting, Event::kActionFailed, Guard::kUpdateEnded, S::kIdle},
    {S::kConfirming, Event::kHealthResult, Guard::kUpdateEnded, S::kIdle},  // healthy: committed
    {S::kConfirming, Event::kHealthResult, Guard::kUnhealthy, S::kRollingBack},
    {S::kConfirming, Event::kTick, Guard::kNoHealthAnswer, S::kRollingBack},
    {S::kConfirming, Event::kActionFailed, Guard::kConfirmActionFailed, S::kRollingBack},
    {S::kRollingBack, Event::kHealthResult, Guard::kUpdateEnded, S::kIdle},  // in place: restored
    {S::kRollingBack, Event::kTick, Guard::kUpdateEnded, S::kIdle},
    {S::kRollingBack, Event::kActionFailed, Guard::kUpdateEnded, S::kIdle},
};

// The payload of one input; only the fields of its event are set.
struct EventData {
  const BootStatus* boot = nullptr;
  const v1::Command* command = nullptr;
  v1::ChunkData* chunk = nullptr;
  const common::Result<std::string>* digest = nullptr;
  std::uint32_t active_index = 0;  // with `digest`: the bytes of that chunk of the running slot
  bool healthy = false;
  const std::string* detail = nullptr;
  const Action* failed = nullptr;
  const Error* error = nullptr;
};

struct Refusal {
  v1::ErrorCode code;
  std::string detail;
};

}  // namespace

const char* action_name(const Action& action) noexcept {
  static constexpr const char* kNames[] = {
      "PublishProgress",    "PublishInventory", "RequestChunks",  "PersistJournal", "StoreManifest",
      "PrepareSlot",        "WriteChunk",       "HashSlot",       "ActivateSlot",   "Reboot",
      "RunHealthCheck",     "CommitSlot",       "RevertSlot",     "SetLogLevel",    "Log",
      "InstallCertificate", "RenewCertificate", "ReadActiveChunk"};
  return kNames[action.index()];
}

bool is_side_effect(const Action& action) noexcept {
  return std::holds_alternative<action::PersistJournal>(action) ||
         std::holds_alternative<action::StoreManifest>(action) ||
         std::holds_alternative<action::PrepareSlot>(action) ||
         std::holds_alternative<action::WriteChunk>(action) ||
         std::holds_alternative<action::ActivateSlot>(action) ||
         std::holds_alternative<action::Reboot>(action) ||
         std::holds_alternative<action::CommitSlot>(action) ||
         std::holds_alternative<action::RevertSlot>(action);
}

const std::vector<EngineTransition>& engine_transitions() {
  static const std::vector<EngineTransition> kRows = [] {
    std::vector<EngineTransition> rows;
    for (const TransitionRow& row : kTransitions) {
      rows.push_back(EngineTransition{row.from, event_name(row.event), guard_name(row.guard), row.to});
    }
    return rows;
  }();
  return kRows;
}

const char* engine_state_name(EngineState state) noexcept {
  switch (state) {
    case S::kAwaitingStart:
      return "AwaitingStart";
    case S::kIdle:
      return "Idle";
    case S::kDownloading:
      return "Downloading";
    case S::kVerifying:
      return "Verifying";
    case S::kInstalling:
      return "Installing";
    case S::kRebooting:
      return "Rebooting";
    case S::kConfirming:
      return "Confirming";
    case S::kRollingBack:
      return "RollingBack";
  }
  return "?";
}

struct UpdateEngine::Impl {
  Impl(EngineConfig c, const EngineCrypto& cr)
      : config(std::move(c)), crypto(cr), window(window_limits(config)) {}

  EngineConfig config;
  const EngineCrypto& crypto;
  EngineState state = S::kAwaitingStart;
  JournalRecord record;
  bool have_journal = false;
  std::string stored_manifest;  // only until on_started() has restored from it
  EngineStats stats;
  Actions out;
  Event current_event = Event::kStarted;  // the input being handled
  std::int64_t now = 0;
  bool connected = false;
  bool ever_connected = false;

  // Download state that is not persisted (rebuilt from the journal and the manifest). Which
  // chunks to ask for and when, and the chunk hashes, are the window's.
  ChunkWindow window;
  std::string image_hash;
  // An encrypted artifact's content key, unwrapped from the manifest for this download only: never
  // persisted (a restart unwraps it again) and wiped when the download ends.
  std::string content_key;
  std::uint32_t verified_count = 0;
  std::uint64_t next_request_id = 1;
  std::int64_t last_chunk_at = 0;
  std::uint32_t chunks_since_persist = 0;
  bool progress_dirty = false;
  std::int64_t next_progress_at = 0;
  std::uint64_t rate_bytes_at_report = 0;
  std::int64_t rate_time_at_report = 0;
  std::uint64_t rate_bytes_per_second = 0;
  std::int64_t health_deadline = kNoDeadline;
  // Reuse phase: the manifest's image-chunk hashes, sorted, each with its chunk index (inline
  // manifests of plain artifacts only; empty = no reuse), and whether a ReadActiveChunk is out.
  std::vector<std::pair<std::string, std::uint32_t>> reuse_index;
  bool reusing = false;

  // What the device measures of itself (kept in the journal as record.measurements()).
  v1::DeviceMeasurements measurements;
  // The download's time connected and bytes received so far, and where the running stretch
  // began (0 = not connected or not downloading).
  std::int64_t download_connected_ms = 0;
  std::uint64_t download_bytes = 0;
  bool download_clock_running = false;
  std::int64_t download_mark_ms = 0;
  std::uint64_t download_mark_bytes = 0;
  std::int64_t verify_started_ms = -1;  // -1 = no verify running
  std::int64_t health_started_ms = -1;  // -1 = no health check running

  using Handler = void (Impl::*)(EventData&);
  struct Transition {
    bool any_started_state;  // matches every state except kAwaitingStart
    EngineState state;
    Event event;
    Handler handler;
  };

  // ---- The handler table: who handles an event in a state; first matching row wins. -------
  // Handlers do the work and name the guard they found; go() moves by kTransitions.
  static const Transition* find(EngineState state, Event event) {
    static const Transition kTable[] = {
        // state                     event                  handler
        {false, S::kAwaitingStart, Event::kStarted, &Impl::boot},
        {false, S::kIdle, Event::kCommand, &Impl::idle_command},
        {false, S::kDownloading, Event::kChunk, &Impl::download_chunk},
        {false, S::kDownloading, Event::kTick, &Impl::download_tick},
        {false, S::kDownloading, Event::kConnected, &Impl::download_connected},
        {false, S::kDownloading, Event::kDisconnected, &Impl::disconnected},
        {false, S::kDownloading, Event::kActionFailed, &Impl::fail_before_install},
        {false, S::kDownloading, Event::kActiveChunk, &Impl::active_chunk},
        {false, S::kVerifying, Event::kSlotHash, &Impl::image_hashed},
        {false, S::kVerifying, Event::kActionFailed, &Impl::fail_before_install},
        {false, S::kInstalling, Event::kActionFailed, &Impl::activation_failed},
        {false, S::kRebooting, Event::kActionFailed, &Impl::activation_failed},
        {false, S::kConfirming, Event::kHealthResult, &Impl::health_result},
        {false, S::kConfirming, Event::kTick, &Impl::confirm_tick},
        {false, S::kConfirming, Event::kActionFailed, &Impl::commit_failed},
        {false, S::kRollingBack, Event::kActionFailed, &Impl::revert_failed},
        // Every state once started:
        {true, S::kIdle, Event::kCommand, &Impl::busy_command},
        {true, S::kIdle, Event::kConnected, &Impl::connected_event},
        {true, S::kIdle, Event::kDisconnected, &Impl::disconnected},
        {true, S::kIdle, Event::kTick, &Impl::nothing},
        {true, S::kIdle, Event::kChunk, &Impl::stray_chunk},
        {true, S::kIdle, Event::kActiveChunk, &Impl::nothing},  // the update ended meanwhile
        {true, S::kIdle, Event::kActionFailed, &Impl::settled_action_failed},
    };
    for (const Transition& row : kTable) {
      if (row.event != event) continue;
      if (row.any_started_state ? state != S::kAwaitingStart : row.state == state) return &row;
    }
    return nullptr;
  }

  Actions dispatch(Event input, EventData& data, std::int64_t now_ms) {
    current_event = input;
    now = now_ms;
    out.clear();
    if (const Transition* row = find(state, current_event)) {
      (this->*(row->handler))(data);
    } else {
      ++stats.unexpected_events;
      log(v1::LOG_LEVEL_ERROR, std::string("update engine bug: no transition for event ") +
                                   event_name(current_event) + " in state " + engine_state_name(state) +
                                   "; the event was ignored");
    }
    stats.window = window.width();
    Actions result;
    result.swap(out);
    return result;
  }

  // The one place the state changes: the row of kTransitions for (state, event, guard). A move
  // without a row is a bug: logged at error level and counted, and the state is kept.
  void go(Guard guard) {
    for (std::size_t i = 0; i < std::size(kTransitions); ++i) {
      const TransitionRow& row = kTransitions[i];
      if (row.from != state || row.event != current_event || row.guard != guard) continue;
      state = row.to;
      if (config.on_transition) config.on_transition(i);
      return;
    }
    ++stats.unexpected_events;
    log(v1::LOG_LEVEL_ERROR, std::string("update engine bug: no transition from ") +
                                 engine_state_name(state) + " on event " + event_name(current_event) +
                                 " when " + guard_name(guard) + "; the state was kept");
  }

  // ---- Small helpers ----------------------------------------------------------------------
  void log(v1::LogLevel level, std::string message) {
    out.emplace_back(action::Log{level, std::move(message)});
  }

  void persist() {
    record.set_format_version(kJournalFormatVersion);
    record.set_state(to_record_state(state));
    chunks_since_persist = 0;
    out.emplace_back(action::PersistJournal{record});
  }

  // ---- Measurements ------------------------------------------------------------------------
  void measured() {
    measurements.set_measured_at_ms(now);
    record.set_measurements(measurements.SerializeAsString());
  }

  void download_clock_start() {
    if (download_clock_running || !connected || state != S::kDownloading) return;
    download_clock_running = true;
    download_mark_ms = now;
    download_mark_bytes = stats.bytes_received;
  }

  void download_clock_stop() {
    if (!download_clock_running) return;
    download_clock_running = false;
    download_connected_ms += std::max<std::int64_t>(0, now - download_mark_ms);
    download_bytes += stats.bytes_received - download_mark_bytes;
  }

  // The download ended with every chunk verified: its rate is a sample unless too small or capped.
  void download_measured() {
    download_clock_stop();
    const std::uint64_t cap = record.update().max_bytes_per_second();
    if (download_bytes >= kMinMeasuredBytes && download_connected_ms > 0) {
      const std::uint64_t rate = download_bytes * 1000 / static_cast<std::uint64_t>(download_connected_ms);
      if (cap == 0 || static_cast<double>(rate) < kCappedFraction * static_cast<double>(cap)) {
        measurements.set_download_bytes_per_second(averaged<std::uint64_t>(
            measurements.download_bytes_per_second(), measurements.download_samples(), rate));
        measurements.set_download_samples(measurements.download_samples() + 1);
        measured();
      }
    }
    download_connected_ms = 0;
    download_bytes = 0;
  }

  std::uint64_t next_sequence() {
    // Unix milliseconds keep the sequence increasing across restarts without a store per report.
    const std::uint64_t seq = std::max<std::uint64_t>(
        record.progress_sequence() + 1, static_cast<std::uint64_t>(std::max<std::int64_t>(now, 0)));
    record.set_progress_sequence(seq);
    return seq;
  }

  std::uint64_t verified_bytes() const {
    const auto& u = record.update();
    if (u.chunk_count() == 0) return 0;
    std::uint64_t bytes = std::uint64_t{verified_count} * u.chunk_size();
    const std::uint32_t last = u.chunk_count() - 1;
    if (u.verified_bitmap().size() * 8 > last && chunk_verified(u.verified_bitmap(), last)) {
      bytes -= u.chunk_size() - (u.image_size() - std::uint64_t{last} * u.chunk_size());
    }
    return bytes;
  }

  v1::Progress progress(v1::Phase phase, v1::ErrorCode error, const std::string& detail) {
    const auto& u = record.update();
    v1::Progress p;
    p.set_device_id(config.device_id);
    p.set_deployment_id(u.deployment_id());
    p.set_command_id(u.command_id());
    p.set_artifact_id(u.artifact_id());
    p.set_version(u.version());
    p.set_phase(phase);
    p.set_bytes_done(u.no_download() ? 0 : verified_bytes());
    p.set_bytes_total(u.no_download() ? 0 : u.image_size());
    p.set_bytes_reused(u.reuse().bytes_reused());
    p.set_attempt(u.attempt());
    p.set_error(error);
    p.set_error_detail(detail);
    p.set_timestamp_ms(now);
    auto* link = p.mutable_link();
    link->set_reconnects(stats.reconnects);
    link->set_bytes_received(stats.bytes_received);
    link->set_chunk_retries(static_cast<std::uint32_t>(stats.chunk_retries));
    link->set_rtt_ms(stats.rtt_ms);
    link->set_rate_bytes_per_second(rate_bytes_per_second);
    p.set_sequence(next_sequence());
    return p;
  }

  void report(v1::Phase phase, v1::ErrorCode error = v1::ERROR_NONE, const std::string& detail = {}) {
    if (phase == v1::PHASE_DOWNLOADING) {
      const std::uint64_t bytes = verified_bytes();
      if (now > rate_time_at_report && bytes >= rate_bytes_at_report && rate_time_at_report > 0) {
        rate_bytes_per_second =
            (bytes - rate_bytes_at_report) * 1000 / static_cast<std::uint64_t>(now - rate_time_at_report);
      }
      rate_bytes_at_report = bytes;
      rate_time_at_report = now;
      progress_dirty = false;
      next_progress_at = now + config.progress_interval_ms;
    }
    out.emplace_back(action::PublishProgress{progress(phase, error, detail)});
  }

  // A refusal of one command: the current update (if any) is not affected.
  void refuse(const v1::Command& command, v1::ErrorCode code, const std::string& detail) {
    log(v1::LOG_LEVEL_WARN, "refused command '" + command.command_id() + "': " + detail);
    v1::Progress p = progress(v1::PHASE_FAILED, code, detail);
    p.set_command_id(command.command_id());
    p.set_deployment_id(command.deployment_id());
    p.set_artifact_id("");
    p.set_version("");
    p.set_bytes_done(0);
    p.set_bytes_total(0);
    if (command.has_install() && command.install().has_manifest()) {
      v1::Manifest m;
      if (m.ParseFromString(command.install().manifest().manifest())) {
        p.set_artifact_id(m.artifact_id());
        p.set_version(m.version());
      }
    }
    out.emplace_back(action::PublishProgress{std::move(p)});
  }

  journal::SlotRecord* slot(const std::string& name) {
    for (auto& s : *record.mutable_slots()) {
      if (s.name() == name) return &s;
    }
    return nullptr;
  }

  // A/B image updates switch slots and reboot; file and module payloads are activated in place
  // (no reboot) and reverted by their installer.
  bool ab_update() const {
    const auto type = record.update().payload_type();
    return type == v1::PAYLOAD_TYPE_AB_IMAGE || type == v1::PAYLOAD_TYPE_UNSPECIFIED;
  }

  static std::string payload_slot(const v1::Manifest& m) {
    switch (m.payload_type()) {
      case v1::PAYLOAD_TYPE_FILE:
        return std::string(kFileSlotPrefix) + m.payload_target();
      case v1::PAYLOAD_TYPE_MODULE:
        return std::string(kModuleSlotPrefix) + m.payload_target();
      default:
        return {};
    }
  }

  std::string other_slot(const std::string& name) const {
    return name == config.slot_a ? config.slot_b : config.slot_a;
  }

  void publish_inventory() { out.emplace_back(action::PublishInventory{inventory(now)}); }

  v1::Inventory inventory(std::int64_t at_ms) const {
    v1::Inventory inv;
    inv.set_device_id(config.device_id);
    inv.set_hardware_type(config.hardware_type);
    inv.set_decryption_key_id(crypto.decryption_key_id());
    inv.set_security_counter(record.accepted_security_counter());
    inv.set_active_slot(record.active_slot());
    for (const auto& s : record.slots()) {
      if (s.name() == record.active_slot()) {
        inv.set_version(s.version());
        inv.set_artifact_id(s.artifact_id());
      }
      auto* info = inv.add_slots();
      info->set_name(s.name());
      info->set_version(s.version());
      info->set_artifact_id(s.artifact_id());
      info->set_security_counter(s.security_counter());
      info->set_bootable(s.valid());
      info->set_capacity_bytes(config.slot_capacity_bytes);
    }
    for (auto c : config.capabilities) inv.add_capabilities(c);
    inv.set_free_bytes(config.slot_capacity_bytes);
    inv.set_time_zone(config.time_zone);
    inv.set_client_version(config.client_version);
    inv.set_reported_at_ms(at_ms);
    for (const auto& [k, v] : config.attributes) (*inv.mutable_attributes())[k] = v;
    if (state != S::kIdle && state != S::kAwaitingStart) {
      inv.set_pending_deployment_id(record.update().deployment_id());
      inv.set_pending_artifact_id(record.update().artifact_id());
    }
    if (!record.last_command_id().empty()) *inv.mutable_last_outcome() = last_outcome(at_ms);
    if (measurements.measured_at_ms() != 0) *inv.mutable_measurements() = measurements;
    return inv;
  }

  // Ends the update: records the outcome, goes idle, stores, reports.
  void finish(v1::Phase phase, v1::ErrorCode error, const std::string& detail) {
    if (error != v1::ERROR_NONE) {
      log(v1::LOG_LEVEL_WARN, std::string("update ") + record.update().artifact_id() + " ended in " +
                                  v1::Phase_Name(phase) + ": " + detail);
    }
    const v1::Progress final_report = progress(phase, error, detail);
    record.set_last_phase(static_cast<std::uint32_t>(phase));
    record.set_last_error(static_cast<std::uint32_t>(error));
    record.set_last_error_detail(detail);
    record.set_last_command_id(record.update().command_id());
    record.set_last_deployment_id(record.update().deployment_id());
    record.set_last_artifact_id(record.update().artifact_id());
    record.clear_update();
    clear_download();
    health_deadline = kNoDeadline;
    go(Guard::kUpdateEnded);
    // Report before storing: a power cut in between repeats the report after restart (the
    // journal still holds the old state), while the reverse order could lose it for good.
    out.emplace_back(action::PublishProgress{final_report});
    persist();
    publish_inventory();
  }

  void clear_download() {
    window.clear();
    reuse_index.clear();
    reuse_index.shrink_to_fit();
    reusing = false;
    image_hash.clear();
    verified_count = 0;
    wipe_content_key();
  }

  void wipe_content_key() {
    // Through a volatile pointer, so the stores are not dropped as dead.
    volatile char* p = content_key.data();
    for (std::size_t i = 0; i < content_key.size(); ++i) p[i] = 0;
    content_key.clear();
  }

  // An encrypted manifest's content key for this device, into content_key; a refusal otherwise.
  std::optional<Refusal> open_encryption(const v1::Manifest& manifest) {
    if (!manifest.has_encryption()) return std::nullopt;
    const v1::ArtifactEncryption& e = manifest.encryption();
    if (e.scheme() != v1::ENCRYPTION_SCHEME_X25519_AES256GCM_V1) {
      return Refusal{
          v1::ERROR_UNSUPPORTED_ENCRYPTION,
          "the artifact is encrypted with scheme " + std::to_string(e.scheme()) +
              ", which this client does not know (it knows ENCRYPTION_SCHEME_X25519_AES256GCM_V1); "
              "update the client or re-create the artifact"};
    }
    auto key = crypto.unwrap_content_key(e);
    if (!key.ok()) {
      std::string recipients;
      for (const auto& r : e.recipients())
        recipients += (recipients.empty() ? "" : ", ") + r.recipient_key_id();
      if (key.error().code == Errc::kNotFound) {
        const std::string mine = crypto.decryption_key_id();
        return Refusal{v1::ERROR_NOT_A_RECIPIENT,
                       "the artifact is encrypted for keys [" + recipients + "], not for this device's " +
                           (mine.empty() ? std::string("(it has no decryption key)") : "key " + mine) +
                           "; re-create it with --encrypt-for including this device's public key"};
      }
      return Refusal{v1::ERROR_KEY_UNWRAP_FAILED,
                     "the content key wrapped for this device does not open: " + key.error().message};
    }
    wipe_content_key();
    content_key = std::move(key).value();
    return std::nullopt;
  }

  // ---- Boot -------------------------------------------------------------------------------
  void boot(EventData& e) {
    const BootStatus& b = *e.boot;
    if (b.booted_slot != config.slot_a && b.booted_slot != config.slot_b) {
      log(v1::LOG_LEVEL_ERROR, "bootloader reports unknown slot '" + b.booted_slot + "'; expected '" +
                                   config.slot_a + "' or '" + config.slot_b + "'");
    }
    if (!have_journal) {
      // First start: the booted slot holds the factory image.
      record.Clear();
      for (const std::string& name : {config.slot_a, config.slot_b}) {
        auto* s = record.add_slots();
        s->set_name(name);
        if (name == b.booted_slot) {
          s->set_version(config.factory_version);
          s->set_security_counter(config.factory_security_counter);
          s->set_valid(true);
        }
      }
      record.set_active_slot(b.booted_slot);
      record.set_accepted_security_counter(config.factory_security_counter);
      go(Guard::kFirstStart);
      persist();
      return;
    }
    const auto& u = record.update();
    switch (record.state()) {
      case journal::ENGINE_STATE_DOWNLOADING:
      case journal::ENGINE_STATE_VERIFYING:
        if (!restore_manifest()) return;
        if (record.state() == journal::ENGINE_STATE_DOWNLOADING) {
          go(Guard::kDownloadInterrupted);
          start_download(/*resume=*/true);
        } else {
          go(Guard::kVerifyInterrupted);
          verify_started_ms = now;
          out.emplace_back(action::HashSlot{u.target_slot(), u.image_size()});
        }
        return;
      case journal::ENGINE_STATE_INSTALLING:
      case journal::ENGINE_STATE_REBOOTING:
      case journal::ENGINE_STATE_CONFIRMING:
      case journal::ENGINE_STATE_ROLLING_BACK:
        if (!ab_update()) {
          boot_in_place_update();
          return;
        }
        break;
      default:
        break;
    }
    switch (record.state()) {
      case journal::ENGINE_STATE_INSTALLING:
        if (b.booted_slot == u.target_slot() && b.trial) {
          enter_confirming(Guard::kTrialBootOfTarget);
        } else {
          go(Guard::kActivationInterrupted);
          activate();  // the switch may not have happened: do it again (idempotent)
        }
        return;
      case journal::ENGINE_STATE_REBOOTING:
      case journal::ENGINE_STATE_CONFIRMING:
        if (b.booted_slot == u.target_slot() && b.trial) {
          enter_confirming(Guard::kTrialBootOfTarget);
        } else if (b.booted_slot == u.target_slot()) {
          // Committed before the journal said so (power cut between commit and store).
          complete_commit();
        } else {
          // The bootloader gave up on the new slot (boot attempts exhausted) and went back.
          if (auto* t = slot(u.target_slot())) t->set_valid(false);
          record.set_active_slot(b.booted_slot);
          out.emplace_back(action::RevertSlot{b.booted_slot});
          finish(u.is_rollback() ? v1::PHASE_FAILED : v1::PHASE_ROLLED_BACK, v1::ERROR_BOOT_FAILED,
                 "slot '" + u.target_slot() + "' did not boot; the bootloader returned to slot '" +
                     b.booted_slot + "'");
        }
        return;
      case journal::ENGINE_STATE_ROLLING_BACK:
        if (b.booted_slot == u.previous_slot() && !b.trial) {
          record.set_active_slot(b.booted_slot);
          finish(u.is_rollback() ? v1::PHASE_FAILED : v1::PHASE_ROLLED_BACK,
                 static_cast<v1::ErrorCode>(record.last_error()), record.last_error_detail());
        } else {
          go(Guard::kRevertNotDone);
          out.emplace_back(action::RevertSlot{u.previous_slot()});
          out.emplace_back(action::Reboot{});
        }
        return;
      case journal::ENGINE_STATE_IDLE:
      default:
        go(Guard::kNothingInProgress);
        if (b.trial) {
          // A trial boot nobody is confirming: do not keep running unconfirmed code.
          log(v1::LOG_LEVEL_WARN, "booted slot '" + b.booted_slot +
                                      "' on trial without an update in progress; reverting to '" +
                                      record.active_slot() + "'");
          out.emplace_back(action::RevertSlot{record.active_slot()});
          out.emplace_back(action::Reboot{});
        } else if (b.booted_slot != record.active_slot()) {
          log(v1::LOG_LEVEL_WARN, "bootloader started slot '" + b.booted_slot + "' but the journal says '" +
                                      record.active_slot() + "'; following the bootloader");
          record.set_active_slot(b.booted_slot);
          persist();
        }
        return;
    }
  }

  // A restart during a file or module install: activation is idempotent, so redo the step.
  void boot_in_place_update() {
    const auto& u = record.update();
    switch (record.state()) {
      case journal::ENGINE_STATE_INSTALLING:
        go(Guard::kActivationInterrupted);
        activate();
        return;
      case journal::ENGINE_STATE_ROLLING_BACK:
        out.emplace_back(action::RevertSlot{u.target_slot()});
        finish(v1::PHASE_ROLLED_BACK, static_cast<v1::ErrorCode>(record.last_error()),
               record.last_error_detail());
        return;
      default:
        enter_confirming(Guard::kConfirmationInterrupted);
        return;
    }
  }

  bool restore_manifest() {
    v1::SignedManifest signed_manifest;
    common::Result<v1::Manifest> manifest = Error(Errc::kNotFound, "no stored manifest");
    if (!stored_manifest.empty() && signed_manifest.ParseFromString(stored_manifest)) {
      manifest = crypto.verify_manifest(signed_manifest);
    }
    stored_manifest.clear();
    stored_manifest.shrink_to_fit();
    if (!manifest.ok() || manifest->artifact_id() != record.update().artifact_id()) {
      finish(v1::PHASE_FAILED, v1::ERROR_INTERNAL,
             "the stored manifest of the interrupted update is missing or invalid (" +
                 (manifest.ok() ? std::string("different artifact") : manifest.error().to_string()) +
                 "); send the install command again");
      return false;
    }
    if (record.state() == journal::ENGINE_STATE_DOWNLOADING) {
      // The content key is not stored: unwrap it again to resume.
      if (auto refusal = open_encryption(*manifest)) {
        if (auto* t = slot(record.update().target_slot())) t->set_valid(false);
        finish(v1::PHASE_FAILED, refusal->code, refusal->detail);
        return false;
      }
    }
    load_hashes(*manifest);
    return true;
  }

  void load_hashes(const v1::Manifest& m) {
    window.load(m);
    image_hash = m.image_sha256();
    reuse_index.clear();
    // Reuse compares plaintext in the running slot with the signed hashes, so it needs them all
    // at hand (inline: at most 512) and hashes of plaintext (an encrypted artifact's are of
    // ciphertext). A hash-table manifest would need every hash chunk first: not done yet.
    const bool ab =
        m.payload_type() == v1::PAYLOAD_TYPE_AB_IMAGE || m.payload_type() == v1::PAYLOAD_TYPE_UNSPECIFIED;
    if (!ab || m.has_encryption()) return;
    reuse_index.reserve(static_cast<std::size_t>(m.chunk_sha256_size()));
    for (int j = 0; j < m.chunk_sha256_size(); ++j) {
      reuse_index.emplace_back(m.chunk_sha256(j), static_cast<std::uint32_t>(j));
    }
    std::sort(reuse_index.begin(), reuse_index.end());
  }

  // ---- Commands ---------------------------------------------------------------------------
  // Checks every command shares; records the id. Returns false when refused.
  bool accept_command(const v1::Command& c) {
    if (c.command_id().empty()) {
      refuse(c, v1::ERROR_COMMAND_MALFORMED, "command has no command_id");
      return false;
    }
    if (c.device_id() != config.device_id) {
      refuse(c, v1::ERROR_COMMAND_MALFORMED,
             "command is addressed to device '" + c.device_id() + "', this is '" + config.device_id + "'");
      return false;
    }
    if (c.expires_at_ms() <= 0) {
      refuse(c, v1::ERROR_COMMAND_MALFORMED,
             "command has no expiry (expires_at_ms); the orchestrator must set one");
      return false;
    }
    // expires_at_ms comes from the network: compare a difference, never a sum, so no value
    // overflows. It is positive here, so now - expires_at_ms cannot overflow once now is past it.
    if (now > c.expires_at_ms() && now - c.expires_at_ms() > config.clock_skew_allowance_ms) {
      refuse(c, v1::ERROR_COMMAND_EXPIRED,
             "command expired " + std::to_string(now - c.expires_at_ms()) +
                 " ms ago by this device's clock (beyond the clock skew allowance of " +
                 std::to_string(config.clock_skew_allowance_ms) +
                 " ms); send a fresh command, and check the device's clock if this repeats");
      return false;
    }
    for (const auto& id : record.recent_command_ids()) {
      if (id != c.command_id()) continue;
      if (state != S::kIdle && id == record.update().command_id()) {
        // A QoS 1 redelivery of the command being worked on: answer with where we are, not
        // with a failure the orchestrator would count against this update.
        log(v1::LOG_LEVEL_DEBUG, "command '" + id + "' delivered again; reporting the current phase");
        report(phase_of(state));
        return false;
      }
      refuse(c, v1::ERROR_COMMAND_REPLAYED,
             "command id '" + c.command_id() + "' was already received; ignored");
      return false;
    }
    record.add_recent_command_ids(c.command_id());
    while (static_cast<std::size_t>(record.recent_command_ids_size()) >
           std::max<std::size_t>(config.replay_memory, 1)) {
      record.mutable_recent_command_ids()->erase(record.mutable_recent_command_ids()->begin());
    }
    return true;
  }

  void idle_command(EventData& e) {
    const v1::Command& c = *e.command;
    if (!accept_command(c)) return;
    switch (c.body_case()) {
      case v1::Command::kInstall:
        if (!c.install().has_manifest()) {
          persist();
          refuse(c, v1::ERROR_COMMAND_MALFORMED, "install command carries no manifest");
          return;
        }
        start_install(c, c.install().manifest(), /*is_rollback=*/false);
        return;
      case v1::Command::kRollback:
        start_rollback(c);
        return;
      case v1::Command::kCancel:
        persist();
        log(v1::LOG_LEVEL_INFO, "cancel: nothing in progress");
        {
          v1::Progress p = progress(v1::PHASE_IDLE, v1::ERROR_NONE, "nothing to cancel");
          p.set_command_id(c.command_id());
          p.set_deployment_id(c.deployment_id());
          out.emplace_back(action::PublishProgress{std::move(p)});
        }
        return;
      default:
        persist();
        common_command(c);
        return;
    }
  }

  void busy_command(EventData& e) {
    const v1::Command& c = *e.command;
    if (!accept_command(c)) return;
    persist();
    switch (c.body_case()) {
      case v1::Command::kInstall: {
        v1::Manifest m;
        if (c.install().has_manifest() && m.ParseFromString(c.install().manifest().manifest()) &&
            m.artifact_id() == record.update().artifact_id()) {
          // The orchestrator re-sent what we are doing (level-triggered): say where we are.
          report(phase_of(state));
          return;
        }
        refuse(c, v1::ERROR_BUSY,
               std::string("an update of artifact ") + record.update().artifact_id() + " is in phase " +
                   v1::Phase_Name(phase_of(state)) + "; cancel it first or wait");
        return;
      }
      case v1::Command::kCancel:
        if (state == S::kDownloading || state == S::kVerifying) {
          if (auto* t = slot(record.update().target_slot())) t->set_valid(false);
          finish(v1::PHASE_CANCELLED, v1::ERROR_CANCELLED, "cancelled by command " + c.command_id());
        } else {
          refuse(
              c, v1::ERROR_BUSY,
              std::string("too late to cancel: the update is in phase ") + v1::Phase_Name(phase_of(state)));
        }
        return;
      case v1::Command::kRollback:
        refuse(c, v1::ERROR_BUSY, "an update is in progress; cancel it before rolling back");
        return;
      default:
        common_command(c);
        return;
    }
  }

  // Commands that do not depend on the update state.
  void common_command(const v1::Command& c) {
    switch (c.body_case()) {
      case v1::Command::kReportInventory:
        publish_inventory();
        return;
      case v1::Command::kSetLogLevel:
        out.emplace_back(action::SetLogLevel{c.set_log_level().level()});
        return;
      case v1::Command::kCertificateIssued:
        out.emplace_back(action::InstallCertificate{c.certificate_issued(), c.command_id()});
        return;
      case v1::Command::kRenewCertificate:
        out.emplace_back(action::RenewCertificate{c.command_id(), c.renew_certificate().reason()});
        return;
      default:
        refuse(c, v1::ERROR_COMMAND_MALFORMED, "command has no body this client understands");
        return;
    }
  }

  std::optional<Refusal> check_manifest(const v1::SignedManifest& signed_manifest, v1::Manifest& manifest) {
    auto verified = crypto.verify_manifest(signed_manifest);
    if (!verified.ok()) {
      switch (verified.error().code) {
        case Errc::kUntrustedKey:
          return Refusal{v1::ERROR_UNTRUSTED_KEY, "manifest signed by an untrusted key (key id '" +
                                                      signed_manifest.key_id() +
                                                      "'): " + verified.error().message};
        case Errc::kBadSignature:
          return Refusal{v1::ERROR_BAD_SIGNATURE,
                         "manifest signature does not verify: " + verified.error().message};
        default:
          return Refusal{v1::ERROR_MANIFEST_MALFORMED, "manifest is malformed: " + verified.error().message};
      }
    }
    manifest = std::move(verified).value();
    // EngineCrypto implementations are meant to check this; the engine relies on it, so it checks too.
    if (auto structure = common::check_manifest_structure(manifest); !structure.ok()) {
      return Refusal{v1::ERROR_MANIFEST_MALFORMED, structure.error().message};
    }
    const auto& hw = manifest.compatible_hardware();
    if (std::find(hw.begin(), hw.end(), config.hardware_type) == hw.end()) {
      std::string list;
      for (const auto& h : hw) list += (list.empty() ? "" : ", ") + h;
      return Refusal{v1::ERROR_HARDWARE_MISMATCH, "artifact is for hardware [" + list +
                                                      "], this device is '" + config.hardware_type + "'"};
    }
    if (std::find(config.capabilities.begin(), config.capabilities.end(), manifest.payload_type()) ==
        config.capabilities.end()) {
      return Refusal{v1::ERROR_UNSUPPORTED_PAYLOAD, std::string("payload type ") +
                                                        v1::PayloadType_Name(manifest.payload_type()) +
                                                        " is not supported by this device's installers"};
    }
    if (manifest.security_counter() < record.accepted_security_counter()) {
      return Refusal{v1::ERROR_DOWNGRADE, "security counter " + std::to_string(manifest.security_counter()) +
                                              " is lower than the device's " +
                                              std::to_string(record.accepted_security_counter()) +
                                              " (anti-rollback); sign the artifact with a counter >= " +
                                              std::to_string(record.accepted_security_counter())};
    }
    if (config.slot_capacity_bytes > 0 && manifest.image_size() > config.slot_capacity_bytes) {
      return Refusal{v1::ERROR_IMAGE_TOO_LARGE, "image of " + std::to_string(manifest.image_size()) +
                                                    " bytes does not fit the slot of " +
                                                    std::to_string(config.slot_capacity_bytes) + " bytes"};
    }
    if (manifest.has_delta()) return check_delta(manifest);
    // Last: unwrapping is the costliest check, and its key is kept for the download.
    return open_encryption(manifest);
  }

  // A delta artifact (docs/PROTOCOL.md, "Delta artifacts"), before anything is downloaded. The base
  // is checked by the running slot's artifact id: ids are content addresses (a hash of a manifest
  // that holds the image's SHA-256), so the same id is the same image. This client does not apply
  // patches yet: a delta over the right base is refused as unsupported, and the orchestrator
  // sends the full artifact on either refusal.
  std::optional<Refusal> check_delta(const v1::Manifest& manifest) {
    const v1::DeltaEncoding& d = manifest.delta();
    if (d.codec() != v1::DELTA_CODEC_ZSTD_PATCH_FROM) {
      return Refusal{v1::ERROR_UNSUPPORTED_DELTA, "delta codec " + std::to_string(d.codec()) +
                                                      " is not known to this client; send the full artifact"};
    }
    const auto* active = slot(record.active_slot());
    const std::string running = active != nullptr ? active->artifact_id() : std::string();
    if (running != d.base_artifact_id()) {
      return Refusal{
          v1::ERROR_DELTA_BASE_MISMATCH,
          "the delta applies to artifact " + d.base_artifact_id() + " (version " + d.base_version() +
              ") but slot '" + record.active_slot() + "' runs " +
              (running.empty() ? std::string("an image not installed by fota") : "artifact " + running) +
              "; send the full artifact " + d.target_artifact_id()};
    }
    return Refusal{
        v1::ERROR_UNSUPPORTED_DELTA,
        "this client does not apply delta artifacts yet; send the full artifact " + d.target_artifact_id()};
  }

  void start_install(const v1::Command& c, const v1::SignedManifest& signed_manifest, bool is_rollback) {
    v1::Manifest manifest;
    if (auto refusal = check_manifest(signed_manifest, manifest)) {
      persist();
      refuse(c, refusal->code, refusal->detail);
      return;
    }
    const bool ab = manifest.payload_type() == v1::PAYLOAD_TYPE_AB_IMAGE;
    const std::string target = ab ? other_slot(record.active_slot()) : payload_slot(manifest);
    auto* u = record.mutable_update();
    u->Clear();
    u->set_command_id(c.command_id());
    u->set_deployment_id(c.deployment_id());
    u->set_artifact_id(manifest.artifact_id());
    u->set_version(manifest.version());
    u->set_security_counter(manifest.security_counter());
    u->set_image_size(manifest.image_size());
    u->set_chunk_size(manifest.chunk_size());
    u->set_chunk_count(common::chunk_count(manifest.image_size(), manifest.chunk_size()));
    u->set_target_slot(target);
    u->set_previous_slot(record.active_slot());
    u->set_attempt(1);
    u->set_is_rollback(is_rollback);
    u->set_payload_type(static_cast<std::uint32_t>(manifest.payload_type()));
    u->set_payload_target(manifest.payload_target());
    if (c.has_install()) {
      u->set_max_inflight_chunks(c.install().max_inflight_chunks());
      u->set_max_bytes_per_second(c.install().max_bytes_per_second());
    }
    const auto* active = slot(record.active_slot());
    if (ab && active != nullptr && active->artifact_id() == manifest.artifact_id() && active->valid()) {
      finish(is_rollback ? v1::PHASE_ROLLED_BACK : v1::PHASE_COMMITTED, v1::ERROR_NONE,
             "artifact already installed and running");
      return;
    }
    u->set_verified_bitmap(std::string((u->chunk_count() + 7) / 8, '\0'));
    if (auto* t = slot(target)) {
      // The slot is about to be overwritten: it is no longer a rollback target.
      t->set_valid(false);
      t->set_version("");
      t->set_artifact_id("");
      t->set_security_counter(0);
    }
    load_hashes(manifest);
    go(Guard::kInstallAccepted);
    out.emplace_back(action::StoreManifest{manifest.artifact_id(), signed_manifest.SerializeAsString()});
    persist();
    start_download(/*resume=*/false);
  }

  void start_rollback(const v1::Command& c) {
    const std::string previous = other_slot(record.active_slot());
    const auto* p = slot(previous);
    if (p != nullptr && p->valid() && p->security_counter() >= record.accepted_security_counter()) {
      auto* u = record.mutable_update();
      u->Clear();
      u->set_command_id(c.command_id());
      u->set_deployment_id(c.deployment_id());
      u->set_artifact_id(p->artifact_id());
      u->set_version(p->version());
      u->set_security_counter(p->security_counter());
      u->set_target_slot(previous);
      u->set_previous_slot(record.active_slot());
      u->set_attempt(1);
      u->set_is_rollback(true);
      u->set_no_download(true);
      go(Guard::kRollbackToPreviousSlot);
      activate();
      return;
    }
    if (c.rollback().has_manifest()) {
      start_install(c, c.rollback().manifest(), /*is_rollback=*/true);
      return;
    }
    persist();
    std::string why = p == nullptr || !p->valid()
                          ? "slot '" + previous + "' holds no valid image"
                          : "slot '" + previous + "' has security counter " +
                                std::to_string(p->security_counter()) + " below the accepted " +
                                std::to_string(record.accepted_security_counter());
    refuse(c, p != nullptr && p->valid() ? v1::ERROR_DOWNGRADE : v1::ERROR_NOTHING_TO_ROLL_BACK,
           "cannot roll back: " + why + "; send a rollback command that carries an older signed artifact");
  }

  // ---- Download -----------------------------------------------------------------------------
  void start_download(bool resume) {
    const auto& u = record.update();
    verified_count = 0;
    for (std::uint32_t i = 0; i < u.chunk_count(); ++i) {
      verified_count += chunk_verified(u.verified_bitmap(), i) ? 1 : 0;
    }
    window.start(u.max_inflight_chunks(), u.max_bytes_per_second(), now);
    download_connected_ms = 0;
    download_bytes = 0;
    download_clock_running = false;
    download_clock_start();
    last_chunk_at = now;
    rate_time_at_report = now;
    rate_bytes_at_report = verified_bytes();
    out.emplace_back(action::PrepareSlot{u.target_slot(), u.image_size(), resume,
                                         static_cast<v1::PayloadType>(u.payload_type()), u.payload_target()});
    report(v1::PHASE_DOWNLOADING);
    // The retained inventory now names the update: an orchestrator that restarts reads it and
    // must not take the device for one that lost its command (found by RealAgentsTest's kill -9).
    if (!resume) publish_inventory();
    if (verified_count == u.chunk_count()) {
      enter_verifying();
      return;
    }
    if (config.reuse_active_slot && !u.reuse().done() && !reuse_index.empty()) {
      reusing = true;
      read_active_chunk();
      return;
    }
    fill_window();
  }

  // ---- Reuse: copy the chunks the running slot already holds -------------------------------
  // Chunk i of the running slot is read (ReadActiveChunk), hashed and, when it matches the signed
  // hash of missing image chunks j (any position: content may have moved), written there and
  // marked verified like a downloaded chunk. The cursor and the bytes copied are journaled with
  // the bitmap, so a power cut resumes where the last store left off.
  void read_active_chunk() {
    const auto& u = record.update();
    const std::uint32_t i = u.reuse().next_chunk();
    if (i >= u.chunk_count()) {
      end_reuse();
      return;
    }
    out.emplace_back(
        action::ReadActiveChunk{u.previous_slot(), i, std::uint64_t{i} * u.chunk_size(), u.chunk_size()});
  }

  void end_reuse() {
    auto& u = *record.mutable_update();
    reusing = false;
    u.mutable_reuse()->set_done(true);
    if (u.reuse().bytes_reused() > 0) {
      log(v1::LOG_LEVEL_INFO, "reused " + std::to_string(u.reuse().bytes_reused()) + " of " +
                                  std::to_string(u.image_size()) + " bytes from slot '" + u.previous_slot() +
                                  "'; downloading the rest");
    }
    // Nothing read (the first read failed): nothing to store or report, and a restart tries again.
    if (u.reuse().next_chunk() > 0) persist();
    if (u.reuse().bytes_reused() > 0) report(v1::PHASE_DOWNLOADING);
    last_chunk_at = now;  // the stall timer starts with the first request
    fill_window();
  }

  void active_chunk(EventData& e) {
    auto& u = *record.mutable_update();
    auto& reuse = *u.mutable_reuse();
    if (!reusing || e.active_index != reuse.next_chunk()) return;  // not asked for: stale
    if (!e.digest->ok()) {
      log(v1::LOG_LEVEL_INFO, "reuse skipped from chunk " + std::to_string(e.active_index) + ": slot '" +
                                  u.previous_slot() + "' cannot be read (" + e.digest->error().message +
                                  "); downloading every missing chunk");
      end_reuse();
      return;
    }
    const std::string& bytes = e.digest->value();
    const common::ChunkSpace& space = window.space();
    const std::uint32_t last = u.chunk_count() - 1;
    bool copied = false;
    auto copy = [&](std::uint32_t j, std::string_view data) {
      if (chunk_verified(u.verified_bitmap(), j)) return;
      out.emplace_back(
          action::WriteChunk{u.target_slot(), std::uint64_t{j} * u.chunk_size(), std::string(data)});
      mark_chunk_verified(*u.mutable_verified_bitmap(), j);
      ++verified_count;
      ++stats.chunks_verified;
      ++stats.chunks_reused;
      reuse.set_bytes_reused(reuse.bytes_reused() + data.size());
      copied = true;
    };
    if (bytes.size() == u.chunk_size()) {
      const std::string digest = crypto.sha256(bytes);
      auto it =
          std::lower_bound(reuse_index.begin(), reuse_index.end(), std::make_pair(digest, std::uint32_t{0}));
      for (; it != reuse_index.end() && it->first == digest; ++it) {
        if (space.length(it->second) == bytes.size()) copy(it->second, bytes);
      }
    }
    // The image's last chunk is usually shorter: it can only be found at its own position.
    const std::uint32_t tail = space.length(last);
    if (e.active_index == last && tail < u.chunk_size() && bytes.size() >= tail &&
        !chunk_verified(u.verified_bitmap(), last)) {
      const std::string_view head = std::string_view(bytes).substr(0, tail);
      if (crypto.sha256(head) == window.expected_hash(last)) copy(last, head);
    }
    reuse.set_next_chunk(e.active_index + 1);
    last_chunk_at = now;
    if (verified_count == u.chunk_count()) {
      reusing = false;
      reuse.set_done(true);
      enter_verifying();
      return;
    }
    // Stored like downloaded chunks; a run of chunks that matched nothing is stored now and then
    // so that a power cut does not read it all again.
    if (copied ? ++chunks_since_persist >= std::max<std::uint32_t>(config.persist_every_chunks, 1)
               : reuse.next_chunk() % kReuseStoreEvery == 0) {
      persist();
    }
    if (copied) {
      progress_dirty = true;
      if (now >= next_progress_at) report(v1::PHASE_DOWNLOADING);
    }
    read_active_chunk();
  }

  // Asks for what the window allows now, in one request of ascending ranges.
  void fill_window() {
    if (!connected || reusing) return;
    const auto& u = record.update();
    const std::vector<std::uint32_t> wanted = window.take_requests(u.verified_bitmap(), now);
    if (wanted.empty()) return;
    v1::ChunkRequest request;
    request.set_device_id(config.device_id);
    request.set_artifact_id(u.artifact_id());
    request.set_request_id(next_request_id++);
    for (std::uint32_t i : wanted) {
      auto* ranges = request.mutable_ranges();
      if (!ranges->empty() && ranges->rbegin()->first() + ranges->rbegin()->count() == i) {
        ranges->rbegin()->set_count(ranges->rbegin()->count() + 1);
      } else {
        auto* r = request.add_ranges();
        r->set_first(i);
        r->set_count(1);
      }
    }
    stats.chunks_requested += wanted.size();
    out.emplace_back(action::RequestChunks{std::move(request)});
  }

  void download_chunk(EventData& e) {
    v1::ChunkData& chunk = *e.chunk;
    auto& u = *record.mutable_update();
    if (chunk.artifact_id() != u.artifact_id()) {
      log(v1::LOG_LEVEL_DEBUG,
          "ignored a chunk of artifact " + chunk.artifact_id() + " (downloading " + u.artifact_id() + ")");
      return;
    }
    switch (chunk.status()) {
      case v1::CHUNK_STATUS_OK:
        break;
      case v1::CHUNK_STATUS_UNKNOWN_ARTIFACT:
        if (auto* t = slot(u.target_slot())) t->set_valid(false);
        finish(v1::PHASE_FAILED, v1::ERROR_UNKNOWN_ARTIFACT,
               "the chunk server does not know artifact " + u.artifact_id() + "; upload it before deploying");
        return;
      case v1::CHUNK_STATUS_UNAVAILABLE:
        window.pause(now);  // what was in flight is asked for again after a pause
        return;
      default:
        finish(v1::PHASE_FAILED, v1::ERROR_INTERNAL,
               "the chunk server answered chunk " + std::to_string(chunk.index()) + " with status " +
                   v1::ChunkStatus_Name(chunk.status()) + " although the manifest lists it");
        return;
    }
    const common::ChunkSpace& space = window.space();
    const std::uint32_t index = chunk.index();
    if (index >= space.total()) {
      log(v1::LOG_LEVEL_WARN, "ignored chunk " + std::to_string(index) + ": the artifact has " +
                                  std::to_string(space.total()) + " chunks");
      return;
    }
    if (space.is_hash_chunk(index)) {
      hash_chunk_arrived(chunk);
      return;
    }
    if (chunk_verified(u.verified_bitmap(), index)) {
      window.drop(index);
      return;  // a duplicate (a re-request crossed the answer)
    }
    stats.bytes_received += chunk.data().size();
    const std::uint32_t expected = space.length(index);
    if (chunk.data().size() > expected) {
      if (auto* t = slot(u.target_slot())) t->set_valid(false);
      finish(v1::PHASE_FAILED, v1::ERROR_CHUNK_TOO_LARGE,
             "chunk " + std::to_string(index) + " has " + std::to_string(chunk.data().size()) +
                 " bytes, the manifest allows " + std::to_string(expected));
      return;
    }
    const bool was_in_flight = note_answer(index);
    const std::string_view expected_digest = window.expected_hash(index);
    if (expected_digest.empty()) {
      // A late answer (its request timed out and is queued again) whose hash chunk has left the
      // cache: dropped, the queued request fetches both again. Only a hash chunk no request in
      // flight needs is evicted, so a chunk in flight lands here only if that rule is broken.
      if (was_in_flight) window.retry_later(index);
      fill_window();
      return;
    }
    const std::string digest = crypto.sha256(chunk.data());
    if (chunk.data().size() != expected || digest != expected_digest) {
      hash_mismatch(index, "chunk " + std::to_string(index));
      return;
    }
    if (space.chunk_overhead() > 0) {
      // Hash first (what travelled is what was signed), then the GCM tag, then the write. A chunk
      // that matches its signed hash but fails its tag was encrypted wrongly: asking again cannot help.
      if (auto opened = crypto.decrypt_chunk(content_key, index, *chunk.mutable_data()); !opened.ok()) {
        if (auto* t = slot(u.target_slot())) t->set_valid(false);
        finish(v1::PHASE_FAILED, v1::ERROR_CHUNK_DECRYPT_FAILED,
               "chunk " + std::to_string(index) + " matches its signed hash but does not decrypt (" +
                   opened.error().message + "); the artifact is broken, re-create it");
        return;
      }
    }
    out.emplace_back(action::WriteChunk{u.target_slot(), std::uint64_t{index} * u.chunk_size(),
                                        std::move(*chunk.mutable_data())});
    mark_chunk_verified(*u.mutable_verified_bitmap(), index);
    ++verified_count;
    ++stats.chunks_verified;
    last_chunk_at = now;
    window.on_verified();
    if (verified_count == u.chunk_count()) {
      enter_verifying();
      return;
    }
    if (++chunks_since_persist >= std::max<std::uint32_t>(config.persist_every_chunks, 1)) persist();
    progress_dirty = true;
    if (now >= next_progress_at) report(v1::PHASE_DOWNLOADING);
    fill_window();
  }

  // The answer to `index` is in: its round trip is the link's latest RTT. False when it was
  // not in flight (a late answer to a request that timed out).
  bool note_answer(std::uint32_t index) {
    const std::optional<std::int64_t> rtt = window.answered(index, now);
    if (rtt) stats.rtt_ms = static_cast<std::uint32_t>(*rtt);
    return rtt.has_value();
  }

  // Chunk `index` (`name` in messages) failed its manifest hash: ask again, or fail the update
  // after max_chunk_failures.
  void hash_mismatch(std::uint32_t index, const std::string& name) {
    ++stats.chunk_retries;
    const std::uint32_t failures = window.on_hash_mismatch(index);
    if (failures >= config.max_chunk_failures) {
      if (auto* t = slot(record.update().target_slot())) t->set_valid(false);
      finish(v1::PHASE_FAILED, v1::ERROR_CHUNK_HASH_MISMATCH,
             name + " failed its manifest hash " + std::to_string(failures) +
                 " times; the chunk server or the link corrupts data");
      return;
    }
    log(v1::LOG_LEVEL_WARN, name + " does not match its manifest hash; asking again");
    fill_window();
  }

  // A chunk of the hash table: verified against the manifest, then cached for the image chunks
  // it covers.
  void hash_chunk_arrived(v1::ChunkData& chunk) {
    const std::uint32_t index = chunk.index();
    if (!window.awaits_hash_chunk(index)) {
      window.drop(index);
      return;  // a duplicate, or no longer needed
    }
    const auto& u = record.update();
    stats.bytes_received += chunk.data().size();
    const std::uint32_t expected = window.space().length(index);
    const std::string name = "hash-table chunk " + std::to_string(index - window.space().image_chunks()) +
                             " (chunk " + std::to_string(index) + ")";
    if (chunk.data().size() > expected) {
      if (auto* t = slot(u.target_slot())) t->set_valid(false);
      finish(v1::PHASE_FAILED, v1::ERROR_CHUNK_TOO_LARGE,
             name + " has " + std::to_string(chunk.data().size()) + " bytes, the manifest allows " +
                 std::to_string(expected));
      return;
    }
    note_answer(index);
    const std::string digest = crypto.sha256(chunk.data());
    if (chunk.data().size() != expected ||
        std::string_view(digest).substr(0, common::kSha256Bytes) != window.expected_hash(index)) {
      hash_mismatch(index, name);
      return;
    }
    window.store_hash_chunk(index, std::move(*chunk.mutable_data()));
    last_chunk_at = now;
    window.on_verified();
    fill_window();
  }

  void download_tick(EventData&) {
    stats.chunk_retries += window.expire(now);
    if (connected && !reusing && now - last_chunk_at >= config.download_stall_timeout_ms) {
      if (auto* t = slot(record.update().target_slot())) t->set_valid(false);
      finish(v1::PHASE_FAILED, v1::ERROR_DOWNLOAD_TIMEOUT,
             "no chunk arrived for " + std::to_string(now - last_chunk_at) + " ms while connected");
      return;
    }
    if (progress_dirty && now >= next_progress_at) report(v1::PHASE_DOWNLOADING);
    fill_window();
  }

  void download_connected(EventData& e) {
    connected_event(e);
    // Requests sent before the link dropped may be lost: ask again (verified chunks never).
    window.requeue_in_flight();
    last_chunk_at = now;
    report(v1::PHASE_DOWNLOADING);
    fill_window();
  }

  void connected_event(EventData&) {
    if (ever_connected) ++stats.reconnects;
    ever_connected = true;
    connected = true;
    download_clock_start();
    const bool reboot_measured = record.reboot_requested_ms() > 0;
    if (reboot_measured) {
      // Connected again after the reboot into an update's image: a reboot_ms sample.
      const std::int64_t took = now - record.reboot_requested_ms();
      record.set_reboot_requested_ms(0);
      if (took > 0) {
        measurements.set_reboot_ms(
            averaged<std::int64_t>(measurements.reboot_ms(), measurements.reboot_samples(), took));
        measurements.set_reboot_samples(measurements.reboot_samples() + 1);
        measured();
      }
    }
    publish_inventory();
    // Stored after the inventory, so that a later boot does not take itself for this reboot.
    if (reboot_measured) persist();
    if (state == S::kIdle && !record.last_command_id().empty()) {
      // The outcome may have been reported while offline (e.g. right after the reboot that
      // confirmed it): repeat it on every connect; receivers deduplicate by command id. The
      // inventory above carries it too, so the order in which the two arrive does not matter.
      v1::Progress p = last_outcome(now);
      p.set_sequence(next_sequence());
      out.emplace_back(action::PublishProgress{std::move(p)});
    }
  }

  // The terminal report of the last finished update, rebuilt from the journal (no sequence: it
  // repeats a report already sent, or one that was lost).
  v1::Progress last_outcome(std::int64_t at_ms) const {
    v1::Progress p;
    p.set_device_id(config.device_id);
    p.set_deployment_id(record.last_deployment_id());
    p.set_command_id(record.last_command_id());
    p.set_artifact_id(record.last_artifact_id());
    for (const auto& s : record.slots()) {
      if (s.artifact_id() == record.last_artifact_id()) p.set_version(s.version());
    }
    p.set_phase(static_cast<v1::Phase>(record.last_phase()));
    p.set_error(static_cast<v1::ErrorCode>(record.last_error()));
    p.set_error_detail(record.last_error_detail());
    p.set_timestamp_ms(at_ms);
    return p;
  }

  void disconnected(EventData&) {
    download_clock_stop();
    connected = false;
  }

  void nothing(EventData&) {}

  void stray_chunk(EventData& e) {
    log(v1::LOG_LEVEL_DEBUG, "ignored chunk " + std::to_string(e.chunk->index()) + " of " +
                                 e.chunk->artifact_id() + ": no download in progress");
  }

  void settled_action_failed(EventData& e) {
    log(v1::LOG_LEVEL_ERROR, std::string("action ") + action_name(*e.failed) + " failed in state " +
                                 engine_state_name(state) + ": " + e.error->to_string());
  }

  void fail_before_install(EventData& e) {
    const bool write = std::holds_alternative<action::WriteChunk>(*e.failed) ||
                       std::holds_alternative<action::PrepareSlot>(*e.failed);
    if (auto* t = slot(record.update().target_slot())) t->set_valid(false);
    finish(v1::PHASE_FAILED, write ? v1::ERROR_WRITE_FAILED : v1::ERROR_INTERNAL,
           std::string(action_name(*e.failed)) + " failed: " + e.error->message);
  }

  // ---- Verify, install, reboot -------------------------------------------------------------
  void enter_verifying() {
    download_measured();
    verify_started_ms = now;
    go(Guard::kAllChunksVerified);
    window.clear();  // the hashes too: verifying compares the image hash only
    wipe_content_key();
    persist();
    report(v1::PHASE_VERIFYING);
    out.emplace_back(action::HashSlot{record.update().target_slot(), record.update().image_size()});
  }

  void image_hashed(EventData& e) {
    auto& u = *record.mutable_update();
    if (!e.digest->ok()) {
      finish(v1::PHASE_FAILED, v1::ERROR_WRITE_FAILED,
             "reading slot '" + u.target_slot() + "' back failed: " + e.digest->error().message);
      return;
    }
    if (e.digest->value() != image_hash) {
      // Every chunk matched, so storage changed what was written: start over next time.
      u.set_verified_bitmap(std::string(u.verified_bitmap().size(), '\0'));
      finish(v1::PHASE_FAILED, v1::ERROR_IMAGE_HASH_MISMATCH,
             "slot '" + u.target_slot() +
                 "' read back does not match the manifest image hash; storage is unreliable");
      return;
    }
    if (auto* t = slot(u.target_slot())) {
      t->set_version(u.version());
      t->set_artifact_id(u.artifact_id());
      t->set_security_counter(u.security_counter());
      t->set_valid(true);
    }
    if (verify_started_ms >= 0 && now > verify_started_ms) {
      const auto rate = u.image_size() * 1000 / static_cast<std::uint64_t>(now - verify_started_ms);
      measurements.set_verify_bytes_per_second(averaged<std::uint64_t>(measurements.verify_bytes_per_second(),
                                                                       measurements.verify_samples(), rate));
      measurements.set_verify_samples(measurements.verify_samples() + 1);
      measured();
    }
    verify_started_ms = -1;
    clear_download();
    go(Guard::kImageMatches);
    activate();
  }

  // In Installing: switch the bootloader to the target for one boot and reboot (A/B), or
  // activate the payload in place. Persisted on both sides.
  void activate() {
    const auto& u = record.update();
    persist();
    report(v1::PHASE_INSTALLING);
    out.emplace_back(action::ActivateSlot{u.target_slot()});
    if (!ab_update()) {
      enter_confirming(Guard::kActivatedInPlace);  // the new payload is live now
      return;
    }
    go(Guard::kSwitchedForReboot);
    record.set_reboot_requested_ms(now);
    persist();
    report(v1::PHASE_REBOOTING);
    out.emplace_back(action::Reboot{});
  }

  void activation_failed(EventData& e) {
    const auto& u = record.update();
    out.emplace_back(action::RevertSlot{ab_update() ? u.previous_slot() : u.target_slot()});
    finish(v1::PHASE_FAILED, v1::ERROR_INSTALL_FAILED,
           std::string(action_name(*e.failed)) + " failed while switching to slot '" + u.target_slot() +
               "': " + e.error->message);
  }

  void enter_confirming(Guard why) {
    go(why);
    health_deadline = now + config.health_check_timeout_ms;
    health_started_ms = now;
    persist();
    report(v1::PHASE_CONFIRMING);
    out.emplace_back(action::RunHealthCheck{health_deadline});
  }

  void health_result(EventData& e) {
    if (e.healthy) {
      if (health_started_ms >= 0 && now >= health_started_ms) {
        measurements.set_health_check_ms(averaged<std::int64_t>(
            measurements.health_check_ms(), measurements.health_check_samples(), now - health_started_ms));
        measurements.set_health_check_samples(measurements.health_check_samples() + 1);
        measured();
      }
      health_started_ms = -1;
      out.emplace_back(action::CommitSlot{record.update().target_slot()});
      complete_commit();
    } else {
      start_revert(Guard::kUnhealthy, v1::ERROR_HEALTH_CHECK_FAILED, "health check failed: " + *e.detail);
    }
  }

  void confirm_tick(EventData&) {
    if (now >= health_deadline) {
      start_revert(
          Guard::kNoHealthAnswer, v1::ERROR_HEALTH_CHECK_FAILED,
          "health check gave no answer within " + std::to_string(config.health_check_timeout_ms) + " ms");
    }
  }

  void complete_commit() {
    const auto& u = record.update();
    if (ab_update()) record.set_active_slot(u.target_slot());
    record.set_accepted_security_counter(std::max(record.accepted_security_counter(), u.security_counter()));
    if (auto* t = slot(u.target_slot())) t->set_valid(true);
    finish(u.is_rollback() ? v1::PHASE_ROLLED_BACK : v1::PHASE_COMMITTED, v1::ERROR_NONE, "");
  }

  void start_revert(Guard why, v1::ErrorCode error, const std::string& detail) {
    const auto& u = record.update();
    log(v1::LOG_LEVEL_WARN, "reverting to slot '" + u.previous_slot() + "': " + detail);
    if (auto* t = slot(u.target_slot())) t->set_valid(false);
    record.set_last_error(static_cast<std::uint32_t>(error));
    record.set_last_error_detail(detail);
    health_deadline = kNoDeadline;
    go(why);
    persist();
    report(v1::PHASE_ROLLING_BACK, error, detail);
    if (!ab_update()) {
      // The installer restores the previous payload in place.
      out.emplace_back(action::RevertSlot{u.target_slot()});
      finish(v1::PHASE_ROLLED_BACK, error, detail);
      return;
    }
    out.emplace_back(action::RevertSlot{u.previous_slot()});
    out.emplace_back(action::Reboot{});
  }

  void commit_failed(EventData& e) {
    start_revert(
        Guard::kConfirmActionFailed, v1::ERROR_INSTALL_FAILED,
        std::string(action_name(*e.failed)) + " failed while confirming the update: " + e.error->message);
  }

  void revert_failed(EventData& e) {
    log(v1::LOG_LEVEL_ERROR, std::string(action_name(*e.failed)) +
                                 " failed while rolling back: " + e.error->message +
                                 "; the bootloader's boot counter will revert on the next boot");
    report(v1::PHASE_ROLLING_BACK, v1::ERROR_INTERNAL, e.error->message);
  }

  std::int64_t next_deadline() const {
    std::int64_t deadline = kNoDeadline;
    if (state == S::kDownloading) {
      deadline = std::min(deadline, window.timeout_deadline_ms());
      if (connected && !reusing)
        deadline = std::min(deadline, last_chunk_at + config.download_stall_timeout_ms);
      if (progress_dirty) deadline = std::min(deadline, next_progress_at);
      if (connected) deadline = std::min(deadline, window.send_deadline_ms(now));
    }
    if (state == S::kConfirming) deadline = std::min(deadline, health_deadline);
    return deadline;
  }
};

UpdateEngine::UpdateEngine(EngineConfig config, const EngineCrypto& crypto,
                           const journal::JournalRecord* journal, std::string_view signed_manifest)
    : impl_(std::make_unique<Impl>(std::move(config), crypto)) {
  if (journal != nullptr) {
    impl_->record = *journal;
    // Reports after the last store were not journaled: skip past any sequence they may have used.
    impl_->record.set_progress_sequence(journal->progress_sequence() + kSequenceGapAfterRestart);
    impl_->have_journal = true;
    impl_->stored_manifest = std::string(signed_manifest);
    // Measurements that do not parse (a damaged field) are only lost, not fatal: measured afresh.
    if (!impl_->measurements.ParseFromString(journal->measurements())) impl_->measurements.Clear();
  }
}

UpdateEngine::~UpdateEngine() = default;

Actions UpdateEngine::on_started(const BootStatus& boot, std::int64_t now_ms) {
  EventData d;
  d.boot = &boot;
  return impl_->dispatch(Event::kStarted, d, now_ms);
}

Actions UpdateEngine::on_command(std::string_view payload, std::int64_t now_ms) {
  // First, before the state machine, the journal or the replay memory see anything of it.
  auto command = impl_->crypto.verify_command(payload);
  if (!command) {
    ++impl_->stats.commands_unverified;
    return Actions{
        action::Log{v1::LOG_LEVEL_WARN, "refused a command of " + std::to_string(payload.size()) +
                                            " bytes before reading it: " + command.error().message}};
  }
  EventData d;
  d.command = &*command;
  return impl_->dispatch(Event::kCommand, d, now_ms);
}

Actions UpdateEngine::on_chunk(v1::ChunkData chunk, std::int64_t now_ms) {
  EventData d;
  d.chunk = &chunk;
  return impl_->dispatch(Event::kChunk, d, now_ms);
}

Actions UpdateEngine::on_tick(std::int64_t now_ms) {
  EventData d;
  return impl_->dispatch(Event::kTick, d, now_ms);
}

Actions UpdateEngine::on_connected(std::int64_t now_ms) {
  EventData d;
  return impl_->dispatch(Event::kConnected, d, now_ms);
}

Actions UpdateEngine::on_disconnected(std::int64_t now_ms) {
  EventData d;
  return impl_->dispatch(Event::kDisconnected, d, now_ms);
}

Actions UpdateEngine::on_slot_hash(const common::Result<std::string>& digest, std::int64_t now_ms) {
  EventData d;
  d.digest = &digest;
  return impl_->dispatch(Event::kSlotHash, d, now_ms);
}

Actions UpdateEngine::on_active_chunk(std::uint32_t index, const common::Result<std::string>& data,
                                      std::int64_t now_ms) {
  EventData d;
  d.active_index = index;
  d.digest = &data;
  return impl_->dispatch(Event::kActiveChunk, d, now_ms);
}

Actions UpdateEngine::on_health_result(bool healthy, const std::string& detail, std::int64_t now_ms) {
  EventData d;
  d.healthy = healthy;
  d.detail = &detail;
  return impl_->dispatch(Event::kHealthResult, d, now_ms);
}

Actions UpdateEngine::on_action_failed(const Action& failed, const common::Error& error,
                                       std::int64_t now_ms) {
  EventData d;
  d.failed = &failed;
  d.error = &error;
  return impl_->dispatch(Event::kActionFailed, d, now_ms);
}

std::int64_t UpdateEngine::next_deadline_ms() const noexcept { return impl_->next_deadline(); }
EngineState UpdateEngine::state() const noexcept { return impl_->state; }
const journal::JournalRecord& UpdateEngine::record() const noexcept { return impl_->record; }
const EngineStats& UpdateEngine::stats() const noexcept { return impl_->stats; }
v1::Inventory UpdateEngine::inventory(std::int64_t now_ms) const { return impl_->inventory(now_ms); }

}  // namespace fota::client
