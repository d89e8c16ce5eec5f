// SPDX-License-Identifier: Apache-2.0
// fota-orchestrator: runs rollouts. `fota-orchestrator --config orchestrator.yaml`.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <thread>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <CLI/CLI.hpp>

#include "audit_checkpoints.hpp"
#include "config.hpp"
#include "http_api.hpp"
#include "mqtt_link.hpp"
#include "orchestrator_service.hpp"
#include "webhook_sender.hpp"

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }
volatile std::sig_atomic_t g_reload_keys = 0;
void on_hangup(int) { g_reload_keys = 1; }

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int fail(const std::string& message) {
  std::fprintf(stderr, "fota-orchestrator: error: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace fota;
  CLI::App app{"fota-orchestrator - runs staged, scheduled fleet rollouts over MQTT (docs/ORCHESTRATOR.md)"};
  app.set_version_flag("--version", std::string("fota-orchestrator ") + FOTA_VERSION);
  std::string config_path, data_dir, store, broker_uri, log_level;
  int http_port = -1;
  app.add_option("-c,--config", config_path, "YAML config file")->required()->check(CLI::ExistingFile);
  app.add_option("--data-dir", data_dir, "override data_dir (state.db and artifacts)");
  app.add_option("--store", store, "override store: sqlite:PATH or postgresql://user@host:port/database");
  app.add_option("--broker-uri", broker_uri, "override broker.uri, e.g. ssl://127.0.0.1:8883");
  app.add_option("--http-port", http_port, "override http.port (0 = any free port)");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error");
  CLI11_PARSE(app, argc, argv);

  auto config = orchestrator::load_service_config(config_path);
  if (!config) return fail(config.error().message);
  if (!data_dir.empty()) config->data_dir = data_dir;
  if (!store.empty()) config->store = store;
  if (!broker_uri.empty()) config->broker_uri = broker_uri;
  if (http_port >= 0) config->http_port = http_port;
  if (!log_level.empty()) config->log_level = log_level;
  if (auto st = orchestrator::validate_service_config(*config); !st) return fail(st.error().message);

  auto log = spdlog::stderr_color_mt("orchestrator");
  log->set_level(spdlog::level::from_str(config->log_level));

  auto topics = common::TopicScheme::create(config->topic_prefix);
  if (!topics) return fail("topic_prefix: " + topics.error().message);
  orchestrator::ServiceOptions options;
  options.topics = *topics;
  options.data_dir = config->data_dir;
  options.store = config->store;
  options.artifacts_dir = config->artifacts_dir;
  options.default_link_rate = static_cast<std::uint64_t>(config->default_link_rate);
  options.default_device_time_ms = config->default_device_time_ms;
  options.tick_interval_ms = config->tick_interval_ms;
  options.deny_list = config->revocation_deny_list;
  options.max_pending_certificate_requests = config->pki_max_pending_requests;
  options.webhooks = config->webhooks;
  options.artifact_retention = config->artifact_retention;
  if (auto st = options.trust.load(config->trusted_keys); !st)
    return fail("trusted_keys: " + st.error().message);
  options.trusted_keys_path = config->trusted_keys;
  auto command_key = common::Ed25519PrivateKey::load(config->command_key);
  if (!command_key) {
    return fail("command_key: " + command_key.error().message +
                " (an Ed25519 private key in PEM; `fotactl pki command-key` makes one)");
  }
  options.command_key = std::make_shared<const common::Ed25519PrivateKey>(std::move(command_key).value());
  log->info("signing commands with command key {}", options.command_key->public_key().key_id());

  if (!config->pki_issuing_ca.empty()) {
    auto ca = common::CertificateAuthority::open(config->pki_issuing_ca);
    if (!ca) return fail("pki.issuing_ca: " + ca.error().message);
    if (!ca->is_issuing()) {
      return fail("pki.issuing_ca " + config->pki_issuing_ca.string() +
                  " is a root CA; keep the root offline and give the orchestrator an issuing CA made "
                  "with `fotactl pki issue-ca NAME`");
    }
    options.issuing_ca = std::make_shared<const common::CertificateAuthority>(std::move(ca).value());
    options.device_cert_validity = std::chrono::seconds(config->pki_device_cert_validity_ms / 1000);
    log->info("renewing device certificates with the issuing CA in {} ({} s validity)",
              config->pki_issuing_ca.string(), options.device_cert_validity.count());
  } else {
    log->info("no pki.issuing_ca: device certificate requests are refused");
  }

  auto service = orchestrator::OrchestratorService::open(std::move(options), log);
  if (!service) return fail(service.error().message);

  std::signal(SIGHUP, on_hangup);  // re-read trusted_keys (the default action would end the process)

  orchestrator::MqttLink mqtt(*config, *topics, **service, log);
  (*service)->set_publisher(&mqtt);
  if (auto st = mqtt.connect(std::chrono::seconds(10)); !st) return fail(st.error().message);

  // Signed audit checkpoints: the key stays in its file, the checkpoints go to their own file.
  const auto checkpoint_file = config->audit_checkpoint_file.empty()
                                   ? config->data_dir / "audit-checkpoints.jsonl"
                                   : config->audit_checkpoint_file;
  std::unique_ptr<orchestrator::AuditCheckpointer> checkpointer;
  if (!config->audit_checkpoint_key.empty()) {
    auto key = common::Ed25519PrivateKey::load(config->audit_checkpoint_key);
    if (!key) return fail("audit.checkpoint_key: " + key.error().message);
    auto opened = orchestrator::AuditCheckpointer::open(
        std::move(key).value(), checkpoint_file, config->audit_checkpoint_interval_ms,
        [&service](std::int64_t after) { return (*service)->audit(after, 100'000); }, log);
    if (!opened) return fail("audit checkpoints: " + opened.error().message);
    checkpointer = std::move(opened).value();
  }

  orchestrator::HttpApi api(**service, config->api_tokens, config->http_tls, config->data_dir / "uploads",
                            config->http_max_body_bytes, log);
  if (checkpointer) api.serve_audit_checkpoints(checkpoint_file);
  auto port = api.start(config->http_listen, config->http_port);
  if (!port) return fail(port.error().message);
  std::printf("fota-orchestrator: %s api on %s:%d\n", config->http_tls.enabled() ? "https" : "http",
              config->http_listen.c_str(), *port);
  std::fflush(stdout);

  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  // Chunk requests are answered on a thread of their own: publishing chunks waits for the broker,
  // which must hold up neither Paho's callback thread nor the rollout loop.
  std::atomic<bool> stop_chunks{false};
  std::thread chunk_server([&] {
    while (!stop_chunks) (*service)->serve_chunk_requests(std::chrono::milliseconds(200));
  });
  // So are the commands: a wave of thousands waits for the broker's acknowledgements.
  std::atomic<bool> stop_commands{false};
  std::thread command_sender([&] {
    while (!stop_commands) (*service)->send_commands(std::chrono::milliseconds(200));
  });
  // Webhook deliveries too: a slow or dead receiver must not hold anything else up.
  orchestrator::WebhookSender webhook_sender(**service, now_ms, log);
  webhook_sender.start();
  const auto tick = std::chrono::milliseconds(config->tick_interval_ms);
  while (!g_stop) {
    if (g_reload_keys) {
      g_reload_keys = 0;
      (void)(*service)->reload_trusted_keys();  // logs what it did
    }
    (*service)->wait_for_input(tick);
    (*service)->run_once(now_ms());
    (*service)->run_artifact_retention_if_due(now_ms());
    if (checkpointer) {
      if (auto st = checkpointer->tick(now_ms()); !st) log->error("audit checkpoint: {}", st.error().message);
    }
  }
  log->info("stopping");
  webhook_sender.stop();  // what it had not sent stays in the outbox for the next start
  stop_chunks = true;
  chunk_server.join();
  api.stop();
  (*service)->run_once(now_ms());
  stop_commands = true;
  command_sender.join();
  (*service)->send_commands(std::chrono::milliseconds(0));
  if (checkpointer) {
    if (auto st = checkpointer->tick(now_ms(), true); !st)
      log->error("audit checkpoint: {}", st.error().message);
  }
  (*service)->set_publisher(nullptr);
  mqtt.disconnect();
  return 0;
}
