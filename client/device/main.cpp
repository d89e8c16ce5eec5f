// SPDX-License-Identifier: Apache-2.0
// fota-device: the Linux agent running the client over A/B slots (files or block devices) and
// the device's boot loader (GRUB, U-Boot, or a simulated one for the demo and tests).
// docs/CLIENT.md ("fota-device") describes the config file; device.yaml is a commented example.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>

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

#include "device_config.hpp"
#include "fota/client/boot_environment.hpp"
#include "fota/client/identity_store.hpp"
#include "fota/client/mosquitto/device_client.hpp"
#include "fota/client/mqtt_client.hpp"
#include "fota/client/runtime.hpp"
#include "fota/client/uboot_environment.hpp"
#include "fota/common/crypto.hpp"
#include "fota/common/pki.hpp"
#include "fota/common/process.hpp"

namespace {

using namespace fota;

using device::BootLoader;
using device::DeviceConfig;

std::atomic<bool> g_stop{false};
// A renewed certificate was installed: the session ends and a new one connects with it.
std::atomic<bool> g_identity_changed{false};

void on_signal(int) { g_stop = true; }

// systemd readiness (Type=notify in fota-device.service): ready once the agent runs its update
// client, stopping when asked to. Without $NOTIFY_SOCKET (not under systemd) these do nothing.
void notify_ready() { (void)sd_notify(0, "READY=1\nSTATUS=running the update client"); }
void notify_stopping() { (void)sd_notify(0, "STOPPING=1"); }

// The application hooks, the same for both transports.
struct DeviceHooks {
  client::HealthCheck health_check;
  client::CertificateRenewalSetup certificate;
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

// kReconnect: a renewed certificate is installed; connect again with it (same boot).
enum class BootEnd { kStopped, kReboot, kFailed, kReconnect };

// One boot on the Paho adapter: its own thread runs the client; this one waits for a signal or
// the end of the client's loop (a reboot).
BootEnd run_paho_client(const DeviceConfig& config, client::Installer& installer,
                        client::FileJournal& journal, const client::OpenSslEngineCrypto& crypto,
                        const DeviceHooks& device_hooks, const std::shared_ptr<spdlog::logger>& logger) {
  client::MqttDeviceClient::Hooks hooks;
  hooks.health_check = device_hooks.health_check;
  hooks.certificate = device_hooks.certificate;
  auto client =
      client::MqttDeviceClient::create(config.mqtt, config.engine, installer, journal, crypto, hooks, logger);
  if (!client.ok()) {
    logger->error("{}", client.error().to_string());
    return BootEnd::kFailed;
  }
  if (auto started = (*client)->start(); !started.ok()) {
    logger->error("{}", started.error().to_string());
    return BootEnd::kFailed;
  }
  notify_ready();
  while (!g_stop && !g_identity_changed && !(*client)->wait(std::chrono::milliseconds(200))) {
  }
  if (g_stop) notify_stopping();
  const bool reboot = (*client)->reboot_requested();
  (*client)->stop();
  if (reboot) return BootEnd::kReboot;
  return g_identity_changed && !g_stop ? BootEnd::kReconnect : BootEnd::kStopped;
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
  hooks.certificate = device_hooks.certificate;
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
  notify_ready();
  while (!g_stop && !g_identity_changed && !(*client)->finished()) loop.run_once(200);
  if (g_stop) notify_stopping();
  const bool reboot = (*client)->reboot_requested();
  (*client)->stop();
  // Let the offline presence and the DISCONNECT leave (bounded: the broker may be gone).
  const std::int64_t until = client::mosquitto::EventLoop::wall_clock_ms() + 2000;
  while (!(*client)->closed() && client::mosquitto::EventLoop::wall_clock_ms() < until) loop.run_once(50);
  if (reboot) return BootEnd::kReboot;
  return g_identity_changed && !g_stop ? BootEnd::kReconnect : BootEnd::kStopped;
}

// The boot loader's variables for the configured boot loader.
std::unique_ptr<client::BootEnvironment> open_boot_environment(const DeviceConfig& config) {
  switch (config.bootloader) {
    case BootLoader::kGrub:
      return std::make_unique<client::GrubEnvironment>(config.grubenv);
    case BootLoader::kUBoot:
      return std::make_unique<client::UBootEnvironment>(config.fw_env_config);
    case BootLoader::kSimulated:
      break;
  }
  return std::make_unique<client::FileBootEnvironment>(config.state_dir / "bootenv.txt");
}

// Certificate renewal for the pair `identity` says is current: off (with a warning) when the
// certificate's validity cannot be read.
client::CertificateRenewalSetup certificate_renewal(const DeviceConfig& config,
                                                    client::IdentityStore& identity,
                                                    const std::string& ca_pem,
                                                    const std::shared_ptr<spdlog::logger>& logger) {
  client::CertificateRenewalSetup setup;
  if (!config.renew_certificate) return setup;
  const client::IdentityFiles files = identity.current();
  auto pem = common::read_file(files.cert, 1 << 20);
  auto not_after = pem.ok() ? common::certificate_not_after(*pem) : common::Result<std::int64_t>(pem.error());
  if (!not_after.ok()) {
    logger->warn("certificate renewal is off: cannot read the validity of {}: {}", files.cert.string(),
                 not_after.error().message);
    return setup;
  }
  logger->info("connecting with {} (valid until {}); renewing {} s before that", files.cert.string(),
               *not_after, config.certificate.renew_before_ms / 1000);
  setup.config = config.certificate;
  setup.not_after_s = *not_after;
  const std::string device_id = config.engine.device_id;
  setup.make_request = [device_id]() -> common::Result<client::CertificateRequestMade> {
    auto made = common::make_certificate_request(device_id, common::Role::kDevice);
    if (!made.ok()) return made.error();
    return client::CertificateRequestMade{std::move(made->key_pem), std::move(made->csr_pem)};
  };
  setup.check = [ca_pem](std::string_view chain, std::string_view key,
                         std::int64_t now_s) -> common::Result<client::CheckedCertificate> {
    auto verified = common::verify_certificate_chain(chain, ca_pem, key, now_s);
    if (!verified.ok()) return verified.error();
    return client::CheckedCertificate{verified->identity.common_name,
                                      std::string(common::role_name(verified->identity.role)),
                                      verified->not_after};
  };
  setup.install = [&identity, logger](const client::RenewedCertificate& renewed) {
    auto st = identity.install(renewed);
    if (st.ok()) {
      logger->info("installed a renewed certificate valid until {}; reconnecting with it", renewed.not_after);
      g_identity_changed = true;
    }
    return st;
  };
  return setup;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"fota-device: the fota update agent (A/B slots, GRUB / U-Boot / simulated boot loader)"};
  app.set_version_flag("--version", std::string("fota-device ") + FOTA_VERSION);
  std::filesystem::path config_path;
  app.add_option("-c,--config", config_path, "YAML config file")->required()->check(CLI::ExistingFile);
  std::string transport;
  app.add_option("--transport", transport,
                 "MQTT adapter: paho (a client thread, the default) or mosquitto (libmosquitto on an "
                 "event loop); overrides the config's 'transport'")
      ->check(CLI::IsMember(
          std::vector<std::string>(std::begin(device::kTransports), std::end(device::kTransports))));
  CLI11_PARSE(app, argc, argv);

  auto logger = std::make_shared<spdlog::logger>("fota-device",
                                                 std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  auto config = device::load_config(config_path);
  if (!config.ok()) {
    logger->error("{}", config.error().message);
    return 2;
  }
  logger->set_level(spdlog::level::from_str(config->log_level));
  if (!transport.empty()) config->transport = transport;
  logger->info("transport: {}, boot loader: {}", config->transport,
               device::bootloader_name(config->bootloader));
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
  common::TrustStore command_keys;
  if (auto s = command_keys.load(config->command_keys); !s.ok() || command_keys.empty()) {
    logger->error(
        "cannot load the orchestrator's command keys from {}: {}; every command must be signed by one "
        "of them (`fotactl pki command-key` makes one)",
        config->command_keys.string(), s.ok() ? std::string("no keys found") : s.error().to_string());
    return 2;
  }
  std::filesystem::create_directories(config->state_dir);
  std::shared_ptr<const common::X25519PrivateKey> decryption_key;
  if (!config->decryption_key.empty()) {
    auto key = common::X25519PrivateKey::load(config->decryption_key);
    if (!key.ok()) {
      logger->error("cannot load the decryption key: {} (`fotactl keys generate --x25519` makes one)",
                    key.error().message);
      return 2;
    }
    decryption_key = std::make_shared<const common::X25519PrivateKey>(std::move(key).value());
    logger->info("decryption key {} opens encrypted artifacts", decryption_key->public_key().key_id());
  }
  client::OpenSslEngineCrypto crypto(std::move(trust), std::move(command_keys), std::move(decryption_key));
  client::IdentityStore identity(config->state_dir / "identity", {config->mqtt.cert, config->mqtt.key});
  auto ca_pem = common::read_file(config->mqtt.ca_cert, 1 << 20);
  if (!ca_pem.ok()) {
    logger->error("cannot read the CA certificate: {}", ca_pem.error().to_string());
    return 2;
  }
  client::FileJournal journal(config->state_dir / "journal");
  auto env = open_boot_environment(*config);
  client::BootSchemeConfig scheme;
  scheme.slots = {"a", "b"};
  scheme.tries = config->boot_tries;
  auto chooser = client::BootChooser::create(scheme);
  if (!chooser.ok()) {
    logger->error("{}", chooser.error().message);
    return 2;
  }
  client::BootControl boot(*env, *chooser, client::cmdline_file(config->kernel_cmdline));
  const bool simulated = config->bootloader == BootLoader::kSimulated;

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);

  // One pass per boot: on a real device the only pass (a reboot ends this process); with the
  // simulated boot loader each pass is one boot of the simulated device.
  while (!g_stop) {
    if (simulated) {
      auto booted = client::simulate_bootloader(*env, boot.chooser(), config->kernel_cmdline);
      if (!booted.ok()) {
        logger->error("simulated boot loader: {}", booted.error().to_string());
        return 1;
      }
      // A fresh simulated device: the factory image is whatever slot a holds (created empty if missing).
      std::ofstream touch(config->slots["a"], std::ios::app);
    }
    auto status = boot.peek();
    if (!status.ok()) {
      logger->error("cannot tell which slot booted: {}", status.error().to_string());
      return 1;
    }
    logger->info("booted slot {}{}", status->status.booted_slot, status->status.trial ? " on trial" : "");
    if (!status->abandoned_trial.empty()) {
      logger->warn("slot {} was on trial and did not come up; the boot loader fell back to slot {}",
                   status->abandoned_trial, status->status.booted_slot);
    }
    client::AbSlotInstaller slots(config->slots, boot);
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
    BootEnd end = BootEnd::kReconnect;
    while (end == BootEnd::kReconnect && !g_stop) {
      g_identity_changed = false;
      // The renewed pair once there is one; the provisioned one until then.
      DeviceConfig session = *config;
      const client::IdentityFiles pair = identity.current();
      session.mqtt.cert = pair.cert;
      session.mqtt.key = pair.key;
      hooks.certificate = certificate_renewal(session, identity, *ca_pem, logger);
      end = config->transport == "mosquitto"
                ? run_mosquitto_client(session, installer, journal, crypto, hooks, logger)
                : run_paho_client(session, installer, journal, crypto, hooks, logger);
    }
    if (end == BootEnd::kFailed) return 1;
    if (end == BootEnd::kStopped || end == BootEnd::kReconnect) break;  // kReconnect: stopped meanwhile
    if (!config->reboot_command.empty()) {
      logger->info("rebooting: {}", config->reboot_command);
      return std::system(config->reboot_command.c_str()) == 0 ? 0 : 1;
    }
    logger->info("simulated reboot");
  }
  return 0;
}
