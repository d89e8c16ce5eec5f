// SPDX-License-Identifier: Apache-2.0
// A firmware program built out of tree against the installed client package (tests/packaging/,
// docs/CLIENT.md "Using the installed package"): it calls into every library it links, so a
// missing library, header or transitive dependency fails its build, link or run.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>

#include "fota/client/boot_chooser.hpp"
#include "fota/client/boot_environment.hpp"
#include "fota/client/installer.hpp"
#include "fota/client/mosquitto/mosquitto_session.hpp"
#include "fota/client/runtime.hpp"
#if defined(FOTA_CONSUMER_UBOOT)
#include "fota/client/uboot_environment.hpp"
#endif
#if defined(FOTA_CONSUMER_MQTT)
#include "fota/client/mqtt_client.hpp"
#endif

namespace {

int failures = 0;

void check(bool ok, const char* what, const std::string& detail) {
  std::printf("%s: %s (%s)\n", ok ? "ok" : "FAILED", what, detail.c_str());
  if (!ok) ++failures;
}

std::string hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

}  // namespace

int main() {
  // fota::client: OpenSSL (libcrypto) through the engine's crypto, the boot chooser's checks.
  const fota::client::OpenSslEngineCrypto crypto{fota::common::TrustStore{}, fota::common::TrustStore{}};
  std::string digest = crypto.sha256("abc");
  if (digest.size() == 32) digest = hex(digest);
  check(digest == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "sha256 of \"abc\"",
        digest);
  fota::client::BootSchemeConfig bad_scheme;
  bad_scheme.tries = 0;
  auto chooser = fota::client::BootChooser::create(bad_scheme);
  check(!chooser.ok(), "a boot scheme with 0 tries is refused",
        chooser.ok() ? "accepted" : chooser.error().message);
  auto good = fota::client::BootChooser::create(fota::client::BootSchemeConfig{});
  check(good.ok(), "the default boot scheme", good.ok() ? "a b, 3 tries" : good.error().message);

  // fota::client_mosquitto: libmosquitto and libssl.
  const fota::client::mosquitto::MosquittoLibrary library;
  auto tls = fota::client::mosquitto::TlsContext::create("not a certificate", "", "");
  check(!tls.ok(), "a TLS context from garbage is refused", tls.ok() ? "accepted" : tls.error().message);

#if defined(FOTA_CONSUMER_UBOOT)
  // fota::client_uboot: libubootenv.
  fota::client::UBootEnvironment uboot("/nonexistent/fw_env.config");
  auto vars = uboot.load();
  check(!vars.ok(), "a missing fw_env.config is refused", vars.ok() ? "loaded" : vars.error().message);
#endif
#if defined(FOTA_CONSUMER_MQTT)
  // fota::client_mqtt: Paho MQTT C++ refuses a broker URI with an unknown scheme when the client
  // is created (after the journal, slots and boot environment of a scratch directory are set up).
  const auto dir = std::filesystem::temp_directory_path() / ("fota-consumer-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  fota::client::FileBootEnvironment env(dir / "bootenv.txt");
  fota::client::BootControl boot(env, *good, fota::client::cmdline_file(dir / "cmdline"));
  fota::client::AbSlotInstaller slots({{"a", dir / "slot-a"}, {"b", dir / "slot-b"}}, boot);
  fota::client::FileJournal journal(dir / "journal");
  fota::client::MqttClientConfig mqtt;
  mqtt.broker_uri = "carrier-pigeon://127.0.0.1:1";
  fota::client::EngineConfig engine;
  engine.device_id = "consumer-1";
  auto client = fota::client::MqttDeviceClient::create(mqtt, engine, slots, journal, crypto, {}, nullptr);
  check(!client.ok(), "Paho refuses a broker URI it cannot use",
        client.ok() ? "accepted" : client.error().message);
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
#endif
  std::printf("%s\n", failures == 0 ? "consumer: all checks passed" : "consumer: checks failed");
  return failures == 0 ? 0 : 1;
}
