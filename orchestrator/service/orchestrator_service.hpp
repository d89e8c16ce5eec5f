// The orchestrator service core: devices, artifacts, rollouts and the audit log, driven by MQTT
// messages, operator requests and time. Transport-free: MQTT arrives through on_message() and
// leaves through a Publisher; the HTTP API calls the operator methods. One worker (run_once)
// drains the inbox in batches, ticks the engine, commits everything in one transaction and only
// then publishes commands, so a command never goes out that a restart would forget.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "fota/common/artifact.hpp"
#include "fota/common/topics.hpp"
#include "fota/orchestrator/prediction.hpp"
#include "fota/orchestrator/rollout_engine.hpp"
#include "fota/orchestrator/store.hpp"

namespace fota::orchestrator {

class Publisher {
 public:
  virtual ~Publisher() = default;
  // expiry_seconds > 0: the MQTT 5 message expiry interval; the broker drops the message when it
  // could not deliver it within that time (a command queued for a device that stayed offline).
  virtual void publish(const std::string& topic, const std::string& payload, int qos,
                       std::uint32_t expiry_seconds) = 0;
};

// A decoded message from a device channel.
using DeviceMessage = std::variant<v1::Inventory, v1::Progress, v1::Presence, v1::LogBatch, v1::ChunkRequest>;

struct ServiceOptions {
  common::TopicScheme topics;
  std::filesystem::path data_dir;
  std::filesystem::path artifacts_dir;
  common::TrustStore trust;
  // Where `trust` was read from (a *.pub file or a directory of them): re-read by
  // reload_trusted_keys() and when an upload is signed with a key not in `trust`. Empty: never.
  std::filesystem::path trusted_keys_path;
  std::uint64_t default_link_rate = 1'000'000;
  Millis default_device_time_ms = 30'000;  // verify + install + reboot + confirm, until measured
  // Rollouts are ticked at most this often; reports in between are applied at once.
  Millis tick_interval_ms = 200;
  // A fresh rollout id ("r-" and ten hex digits) each call; called under the state lock, never
  // concurrently. Empty: random_rollout_ids(). Tests pass a deterministic one.
  std::function<std::string()> new_rollout_id;
};

// Rollout ids from a random generator of its own, seeded from std::random_device.
std::function<std::string()> random_rollout_ids();

// What an operator call returns: a JSON body or an error with the HTTP status it maps to.
struct ApiError {
  int status = 400;
  std::string message;
};
using ApiResult = std::variant<nlohmann::json, ApiError>;

class OrchestratorService {
 public:
  static common::Result<std::unique_ptr<OrchestratorService>> open(ServiceOptions options,
                                                                   std::shared_ptr<spdlog::logger> logger);
  ~OrchestratorService();

  void set_publisher(Publisher* publisher);

  // MQTT input; any thread, never waits. Chunk requests are queued for serve_chunk_requests(),
  // the rest for run_once().
  void on_message(const std::string& topic, const std::string& payload);
  // Answers the queued chunk requests (waiting up to `wait` for one); returns how many. Run it on
  // a thread of its own: publishing waits for the broker's acknowledgements, so it must not run
  // on the transport's callback thread, and it should not hold up run_once().
  std::size_t serve_chunk_requests(std::chrono::milliseconds wait);
  // Sends the commands that run_once() and the operator actions committed (waiting up to `wait`
  // for one); returns how many. Run it on a thread of its own, like serve_chunk_requests():
  // sending waits for the broker's acknowledgements, and the commands of a wave of thousands must
  // hold up neither the rollout loop nor the HTTP API (fota-sim's fleet-10k: 8,000 took 32 s,
  // timed once with a timer since removed).
  std::size_t send_commands(std::chrono::milliseconds wait);
  // Drains the inbox, ticks every rollout, commits, queues the commands. Returns the messages
  // processed.
  std::size_t run_once(Millis now);
  // Blocks until a message arrives or the timeout passes.
  void wait_for_input(std::chrono::milliseconds timeout);

  // Re-reads options.trusted_keys_path (on SIGHUP): keys added there are trusted from now on, keys
  // removed no longer are. On error (unreadable file, no key left) the keys in use stay and the
  // error says what to fix. Any thread.
  common::Status reload_trusted_keys();

  // Operator actions; `actor` goes to the audit log.
  ApiResult import_artifact(const std::filesystem::path& bundle, const std::string& actor, Millis now);
  ApiResult list_artifacts();
  ApiResult get_artifact(const std::string& id);
  ApiResult list_devices();
  ApiResult get_device(const std::string& id);
  ApiResult device_logs(const std::string& id, std::int64_t after, std::size_t limit);
  ApiResult create_rollout(const std::string& spec_text, const std::string& actor, Millis now);
  ApiResult rollout_action(const std::string& id, const std::string& action, const std::string& actor,
                           Millis now);
  ApiResult list_rollouts(Millis now);
  ApiResult get_rollout(const std::string& id, Millis now);
  ApiResult plan_rollout(const std::string& id, Millis now);
  ApiResult events(const std::string& device, const std::string& rollout, std::size_t limit);
  ApiResult audit(std::int64_t after, std::size_t limit);
  std::string metrics(Millis now);

 private:
  OrchestratorService(ServiceOptions options, std::shared_ptr<spdlog::logger> logger,
                      std::unique_ptr<Store> store);
  struct Inbound {
    common::DeviceId device;
    common::Channel channel;
    DeviceMessage message;
  };
  struct ChunkWork {
    common::DeviceId device;
    v1::ChunkRequest request;
  };
  struct Outbound {
    std::string topic;
    std::string payload;
    std::uint32_t expiry_seconds;  // the command's TTL
  };
  common::Status load();
  void handle(const Inbound& message, Millis now);
  void ingest_progress(const std::string& device_id, const v1::Progress& progress, Millis now);
  void handle_chunk_request(const common::DeviceId& device, const v1::ChunkRequest& request);
  DeviceRecord& device_record(const std::string& id, Millis now);
  void apply(Rollout& rollout, const Decisions& decisions, Millis now);
  // What is queued but not yet saved, as one batch; moves newly finished updates into the
  // prediction history on the way (record_history).
  StoreBatch unsaved_batch();
  // Writes unsaved_batch() in one transaction; on success nothing is left queued but the outbox.
  common::Status persist(Millis now);
  // Moves the rollout's newly finished updates into the prediction history (and the store's).
  void record_history(Rollout& rollout);
  void flush_outbox();
  Rollout* find_rollout(const std::string& id);
  std::vector<const Rollout*> unresolved_rollouts() const;
  nlohmann::json rollout_json(const Rollout& rollout, Millis now, bool with_members);
  RolloutPrediction predict(const Rollout& rollout, Millis now);
  common::Status audit_now(const std::string& actor, const std::string& action, const std::string& detail,
                           Millis now);
  // What is queued but not yet saved, counted before an operator action, so that an action whose
  // save fails takes back exactly what it queued (and nothing queued before it).
  struct UnsavedMark {
    std::size_t events;
    std::size_t audit;
    std::size_t outbox;
  };
  UnsavedMark mark_unsaved() const;
  void drop_unsaved_since(const UnsavedMark& mark);

  std::shared_ptr<const common::TrustStore> trusted_keys() const;

  ServiceOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<Store> store_;
  common::ArtifactStore artifacts_;
  mutable std::mutex trust_mutex_;
  std::shared_ptr<const common::TrustStore> trust_;  // replaced whole by reload_trusted_keys()
  RolloutEngine engine_;
  std::atomic<Publisher*> publisher_{nullptr};

  std::mutex inbox_mutex_;
  std::condition_variable inbox_cv_;
  std::deque<Inbound> inbox_;

  std::mutex chunk_mutex_;
  std::condition_variable chunk_cv_;
  std::deque<ChunkWork> chunk_requests_;

  std::mutex command_mutex_;
  std::condition_variable command_cv_;
  std::deque<Outbound> commands_;  // committed, waiting for send_commands()

  // Everything below is guarded by state_mutex_.
  std::mutex state_mutex_;
  Fleet fleet_;
  std::unordered_map<std::string, DeviceRecord> devices_;
  std::unordered_set<std::string> dirty_devices_;
  std::map<std::string, Rollout> rollouts_;
  std::vector<EventRecord> pending_events_;
  std::vector<LogRecord> pending_logs_;
  std::vector<AuditRecord> pending_audit_;
  std::vector<Outbound> outbox_;
  LinkModel link_model_;
  std::vector<UpdateSample> pending_samples_;
  std::size_t samples_since_prune_ = 0;  // stored since update_samples was last pruned
  Millis last_tick_ms_ = 0;
  std::unordered_set<std::string> touched_rollouts_;
  std::unordered_set<std::string> settled_rollouts_;  // a member finished in this batch: tick now

  // Metrics.
  std::atomic<std::uint64_t> chunks_served_{0};
  std::atomic<std::uint64_t> chunk_bytes_served_{0};
  std::atomic<std::uint64_t> reports_ingested_{0};
  std::atomic<std::uint64_t> commands_sent_{0};
  std::atomic<std::uint64_t> messages_rejected_{0};
  std::atomic<std::uint64_t> chunk_requests_dropped_{0};
};

}  // namespace fota::orchestrator
