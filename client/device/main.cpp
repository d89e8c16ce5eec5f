// fota-device: a small Linux agent running the client with file-backed A/B slots.
// docs/CLIENT.md ("fota-device") describes the config file.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <yaml-cpp/yaml.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "fota/client/mosquitto/device_client.hpp"
#include "fota/client/mqtt_client.hpp"
#include "fota/client/runtime.hpp"
#include "fota/common/process.hpp"
#include "module_config.hpp"

namespace {

using namespace fota;

std::atomic<bool> g_stop{false};

void on_signal(int) { g_stop = true; }

struct DeviceConfig {
  client::MqttClientConfig mqtt;
  client::EngineConfig engine;
  std::filesystem::path trust;
  std::filesystem::path state_dir;
  std::map<std::string, std::filesystem::path> slots;
  std::map<std::string, std::filesystem::path> files;  // file payload targets
  std::filesystem::path modules_dir;                   // update modules (empty = none)
  client::ModuleSandbox module_sandbox;
  std::string health_check_command;
  std::string reboot_command;  // empty = simulated reboot inside this process
  std::string log_level = "info";
  std::string transport = "paho";  // or "mosquitto" (the event-loop adapter)
};

constexpr const char* kTransports[] = {"paho", "mosquitto"};

bool known_transport(const std::string& name) {
  for (const char* known : kTransports) {
    if (name == known) return true;
  }
  return false;
}

// Loads the YAML config; paths are relative to the config file's directory.
common::Result<DeviceConfig> load_config(const std::filesystem::path& path) {
  DeviceConfig c;
  try {
    const YAML::Node y = YAML::LoadFile(path.string());
    const std::filesystem::path base = std::filesystem::absolute(path).parent_path();
    auto rel = [&](const std::string& p) {
      return std::filesystem::path(p).is_absolute() ? std::filesystem::path(p) : base / p;
    };
    auto need = [&](const char* key) -> std::string {
      if (!y[key]) throw std::runtime_error(std::string("missing required key '") + key + "'");
      return y[key].as<std::string>();
    };
    c.engine.device_id = need("device_id");
    c.engine.hardware_type = need("hardware_type");
    c.mqtt.broker_uri = need("broker");
    c.mqtt.ca_cert = rel(need("ca"));
    c.mqtt.cert = rel(need("cert"));
    c.mqtt.key = rel(need("key"));
    c.trust = rel(need("trust"));
    c.state_dir = rel(need("state_dir"));
    if (y["topic_prefix"]) c.mqtt.topic_prefix = y["topic_prefix"].as<std::string>();
    if (y["factory_version"]) c.engine.factory_version = y["factory_version"].as<std::string>();
    if (y["factory_security_counter"]) {
      c.engine.factory_security_counter = y["factory_security_counter"].as<std::uint64_t>();
    }
    c.engine.slot_capacity_bytes =
        y["slot_capacity_bytes"] ? y["slot_capacity_bytes"].as<std::uint64_t>() : std::uint64_t{1} << 30;
    if (y["time_zone"]) c.engine.time_zone = y["time_zone"].as<std::string>();
    if (y["window"]) c.engine.max_window = y["window"].as<std::uint32_t>();
    if (y["progress_interval_ms"])
      c.engine.progress_interval_ms = y["progress_interval_ms"].as<std::int64_t>();
    if (y["health_check_timeout_ms"]) {
      c.engine.health_check_timeout_ms = y["health_check_timeout_ms"].as<std::int64_t>();
    }
    if (y["attributes"]) {
      for (const auto& kv : y["attributes"]) {
        c.engine.attributes[kv.first.as<std::string>()] = kv.second.as<std::string>();
      }
    }
    c.slots = {{"a", c.state_dir / "slot-a"}, {"b", c.state_dir / "slot-b"}};
    if (y["slots"]) {
      for (const char* name : {"a", "b"}) {
        if (y["slots"][name]) c.slots[name] = rel(y["slots"][name].as<std::string>());
      }
    }
    if (y["files"]) {
      for (const auto& kv : y["files"])
        c.files[kv.first.as<std::string>()] = rel(kv.second.as<std::string>());
      c.engine.capabilities.push_back(v1::PAYLOAD_TYPE_FILE);
    }
    if (y["modules_dir"]) {
      c.modules_dir = rel(y["modules_dir"].as<std::string>());
      c.engine.capabilities.push_back(v1::PAYLOAD_TYPE_MODULE);
    }
    c.module_sandbox = device::module_sandbox_from_config(y);
    if (y["health_check"]) c.health_check_command = y["health_check"].as<std::string>();
    if (y["reboot_command"]) c.reboot_command = y["reboot_command"].as<std::string>();
    if (y["log_level"]) c.log_level = y["log_level"].as<std::string>();
    if (y["transport"]) {
      c.transport = y["transport"].as<std::string>();
      if (!known_transport(c.transport)) {
        throw std::runtime_error("transport '" + c.transport + "' is not paho or mosquitto");
      }
    }
  } catch (const std::exception& e) {
    return common::Error(common::Errc::kInvalidArgument,
                         "config " + path.string() + ": " + e.what() + " (see docs/CLIENT.md, fota-device)");
  }
  return c;
}

// The application hooks, the same for both transports.
struct DeviceHooks {
  client::HealthCheck health_check;
};

// Runs the configured health-check command with `/bin/sh -c`, telling it what it checks in the
// environment (docs/CLIENT.md, "fota-device"): values from the network never become shell text.
// Its output goes to this agent's stderr.
bool run_health_check_command(const std::string& command, const std::string& device_id,
                              const client::HealthCheckSubject& update, std::string& detail) {
  const pid_t pid =
      common::spawn_process({"/bin/sh", "-c", command}, "/dev/stderr",
                            {"FOTA_SLOT=" + update.slot, "FOTA_VERSION=" + update.version,
                             "FOTA_ARTIFACT_ID=" + update.artifact_id, "FOTA_DEVICE_ID=" + device_id});
  if (pid < 0) {
    detail = "cannot start the health check command '" + command + "': fork failed";
    return false;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      detail = "lost the health check command '" + command + "'";
      return false;
    }
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return true;
  detail = "health check command '" + command + "' " +
           (WIFEXITED(status) ? "exited with status " + std::to_string(WEXITSTATUS(status))
                              : "was killed by signal " + std::to_string(WTERMSIG(status)));
  return false;
}

enum class BootEnd { kStopped, kReboot, kFailed };

// One boot on the Paho adapter: its own thread runs the client; this one waits for a signal or
// the end of the client's loop (a reboot).
BootEnd run_paho_client(const DeviceConfig& config, client::Installer& installer,
                        client::FileJournal& journal, const client::OpenSslEngineCrypto& crypto,
                        const DeviceHooks& device_hooks, const std::shared_ptr<spdlog::logger>& logger) {
  client::MqttDeviceClient::Hooks hooks;
  hooks.health_check = device_hooks.health_check;
  auto client =
      client::MqttDeviceClient::create(config.mqtt, config.engine, installer, journal, crypto, hooks, logger);
  if (!client.ok()) {
    logger->error("{}", client.error().to_string());
    return BootEnd::kFailed;
  }
  (*client)->start();
  while (!g_stop && !(*client)->wait(std::chrono::milliseconds(200))) {
  }
  const bool reboot = (*client)->reboot_requested();
  (*client)->stop();
  return reboot ? BootEnd::kReboot : BootEnd::kStopped;
}

// One boot on the libmosquitto adapter: this thread runs the event loop the client lives on.
BootEnd run_mosquitto_client(const DeviceConfig& config, client::Installer& installer,
                             client::FileJournal& journal, const client::OpenSslEngineCrypto& crypto,
                             const DeviceHooks& device_hooks, const std::shared_ptr<spdlog::logger>& logger) {
  client::mosquitto::MosquittoLibrary library;
  client::mosquitto::EventLoop loop;
  client::mosquitto::MosquittoClientConfig mqtt;
  mqtt.broker_uri = config.mqtt.broker_uri;
  mqtt.ca_cert = config.mqtt.ca_cert;
  mqtt.cert = config.mqtt.cert;
  mqtt.key = config.mqtt.key;
  mqtt.topic_prefix = config.mqtt.topic_prefix;
  client::mosquitto::MosquittoDeviceClient::Hooks hooks;
  hooks.health_check = device_hooks.health_check;
  auto client = client::mosquitto::MosquittoDeviceClient::create(loop, mqtt, config.engine, installer,
                                                                 journal, crypto, hooks, logger);
  if (!client.ok()) {
    logger->error("{}", client.error().to_string());
    return BootEnd::kFailed;
  }
  if (auto started = (*client)->start(); !started.ok()) {
    logger->error("{}", started.error().to_string());
    return BootEnd::kFailed;
  }
  while (!g_stop && !(*client)->finished()) loop.run_once(200);
  const bool reboot = (*client)->reboot_requested();
  (*client)->stop();
  // Let the offline presence and the DISCONNECT leave (bounded: the broker may be gone).
  const std::int64_t until = client::mosquitto::EventLoop::wall_clock_ms() + 2000;
  while (!(*client)->closed() && client::mosquitto::EventLoop::wall_clock_ms() < until) loop.run_once(50);
  return reboot ? BootEnd::kReboot : BootEnd::kStopped;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"fota-device: runs the fota client with file-backed A/B slots"};
  std::filesystem::path config_path;
  app.add_option("-c,--config", config_path, "YAML config file")->required()->check(CLI::ExistingFile);
  std::string transport;
  app.add_option("--transport", transport,
                 "MQTT adapter: paho (a client thread, the default) or mosquitto (libmosquitto on an "
                 "event loop); overrides the config's 'transport'")
      ->check(CLI::IsMember(std::vector<std::string>(std::begin(kTransports), std::end(kTransports))));
  CLI11_PARSE(app, argc, argv);

  auto logger = std::make_shared<spdlog::logger>("fota-device",
                                                 std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  auto config = load_config(config_path);
  if (!config.ok()) {
    logger->error("{}", config.error().message);
    return 2;
  }
  logger->set_level(spdlog::level::from_str(config->log_level));
  if (!transport.empty()) config->transport = transport;
  logger->info("transport: {}", config->transport);
  std::unique_ptr<client::ModuleInstaller> modules;
  if (!config->modules_dir.empty()) {
    auto created = client::ModuleInstaller::create(config->modules_dir, config->state_dir / "module-work",
                                                   config->module_sandbox);
    if (!created.ok()) {
      logger->error("update modules: {} (see docs/CLIENT.md, fota-device)", created.error().message);
      return 2;
    }
    modules = std::move(created).value();
  }

  common::TrustStore trust;
  if (auto s = trust.load(config->trust); !s.ok() || trust.empty()) {
    logger->error("cannot load the artifact signing keys from {}: {}", config->trust.string(),
                  s.ok() ? std::string("no keys found") : s.error().to_string());
    return 2;
  }
  std::filesystem::create_directories(config->state_dir);
  client::OpenSslEngineCrypto crypto(std::move(trust));
  client::FileBootEnvironment env(config->state_dir / "bootenv.txt");
  client::FileJournal journal(config->state_dir / "journal");

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);

  // Each pass of this loop is one boot of the simulated device.
  while (!g_stop) {
    auto booted = client::simulate_bootloader(env, "a");
    if (!booted.ok()) {
      logger->error("boot environment {}: {}", env.path().string(), booted.error().to_string());
      return 1;
    }
    {
      // A fresh device: the factory image is whatever slot a holds (created empty if missing).
      std::ofstream touch(config->slots["a"], std::ios::app);
    }
    logger->info("booted slot {}", *booted);
    client::AbSlotInstaller slots(config->slots, env);
    client::FileInstaller files(config->files);
    client::PayloadRouter installer(slots, config->files.empty() ? nullptr : &files, modules.get());
    DeviceHooks hooks;
    const std::string health = config->health_check_command;
    const std::string device_id = config->engine.device_id;
    hooks.health_check = [health, device_id, logger](const client::HealthCheckSubject& update,
                                                     std::string& detail) {
      if (health.empty()) return true;
      const bool ok = run_health_check_command(health, device_id, update, detail);
      logger->info("health check of {} in slot {}: {}", update.version, update.slot, ok ? "healthy" : detail);
      return ok;
    };
    const auto boot = config->transport == "mosquitto"
                          ? run_mosquitto_client(*config, installer, journal, crypto, hooks, logger)
                          : run_paho_client(*config, installer, journal, crypto, hooks, logger);
    if (boot == BootEnd::kFailed) return 1;
    if (boot == BootEnd::kStopped) break;
    if (!config->reboot_command.empty()) {
      logger->info("rebooting: {}", config->reboot_command);
      return std::system(config->reboot_command.c_str()) == 0 ? 0 : 1;
    }
    logger->info("simulated reboot");
  }
  return 0;
}
