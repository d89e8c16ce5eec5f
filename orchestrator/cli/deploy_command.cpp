// SPDX-License-Identifier: Apache-2.0
// fotactl deploy: the developer fast path. Sign an image with a development key, upload it, roll
// it out to one device and print its logs until it commits (or fails).
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <random>
#include <stdexcept>
#include <thread>

#include "api_client.hpp"
#include "commands.hpp"
#include "fota/common/artifact.hpp"

namespace fota::cli {

using nlohmann::json;

namespace {

struct DeployArgs {
  ApiConnection conn;
  std::string device;
  std::string image;
  std::string key;
  std::string version;
  std::uint32_t chunk_size = 64 * 1024;
  bool follow = false;
  double timeout_s = 600;
};

json must(common::Result<json> r) {
  if (!r) throw std::runtime_error(r.error().message);
  return std::move(r).value();
}

std::filesystem::path default_key_path() {
  const char* home = std::getenv("HOME");
  return std::filesystem::path(home ? home : ".") / ".config" / "fota" / "dev-key.pem";
}

common::Ed25519PrivateKey load_or_create_key(const std::filesystem::path& path) {
  if (std::filesystem::exists(path)) {
    auto key = common::Ed25519PrivateKey::load(path);
    if (!key) throw std::runtime_error("development key " + path.string() + ": " + key.error().message);
    return std::move(key).value();
  }
  auto key = common::Ed25519PrivateKey::generate();
  if (!key) throw std::runtime_error(key.error().message);
  std::filesystem::create_directories(path.parent_path());
  auto pub = path;
  pub.replace_extension(".pub");
  if (auto st = common::save_key_pair(*key, path, pub); !st) throw std::runtime_error(st.error().message);
  std::cerr
      << "created development key " << path.string() << "; copy " << pub.string()
      << " into the orchestrator's trusted_keys directory (read at the next upload, no restart) and the "
         "device's trust store, then run deploy again\n";
  throw std::runtime_error("the new development key is not trusted yet");
}

}  // namespace

void register_deploy_command(CLI::App& app) {
  auto a = std::make_shared<DeployArgs>();
  auto* deploy = app.add_subcommand("deploy",
                                    "Developer fast path: sign IMAGE with a dev key, upload it, update one "
                                    "device and show its logs");
  deploy->add_option("--device", a->device, "Device id")->required();
  deploy->add_option("image", a->image, "Image file")->required()->check(CLI::ExistingFile);
  deploy->add_option("--key", a->key,
                     "Development Ed25519 key (default ~/.config/fota/dev-key.pem, created if missing)");
  deploy->add_option("--version", a->version, "Version string (default dev-<unix time>)");
  deploy->add_option("--chunk-size", a->chunk_size, "Chunk size in bytes")->capture_default_str();
  deploy->add_flag("-f,--follow", a->follow, "Keep following the device's logs after it committed");
  deploy->add_option("--timeout", a->timeout_s, "Give up after this many seconds")->capture_default_str();
  a->conn.add_options(deploy, false);
  deploy->callback([a] {
    const auto t0 = std::chrono::steady_clock::now();
    auto elapsed = [&] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    if (auto st = check_device_id(a->device); !st) throw std::runtime_error(st.error().message);
    ApiClient client(a->conn);
    json device = must(client.get("/api/v1/devices/" + a->device));
    if (device.value("hardware", "").empty()) {
      throw std::runtime_error("device " + a->device +
                               " has not reported its inventory yet (hardware type unknown); "
                               "wait until it is online");
    }
    const auto key = load_or_create_key(a->key.empty() ? default_key_path() : std::filesystem::path(a->key));
    const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    common::ArtifactSpec spec;
    spec.name = std::filesystem::path(a->image).filename().string();
    spec.version = a->version.empty() ? "dev-" + std::to_string(now_ms / 1000) : a->version;
    spec.security_counter = device.value("security_counter", std::uint64_t{0});
    spec.compatible_hardware = {device.value("hardware", "")};
    spec.chunk_size = a->chunk_size;
    auto manifest = common::build_signed_manifest(a->image, spec, key, now_ms);
    if (!manifest) throw std::runtime_error(manifest.error().message);
    const auto bundle = std::filesystem::temp_directory_path() /
                        ("fotactl-deploy-" + std::to_string(std::random_device{}()) + ".bundle");
    if (auto st = common::write_bundle(bundle, *manifest, a->image); !st)
      throw std::runtime_error(st.error().message);
    auto uploaded = client.post_file("/api/v1/artifacts", bundle, nullptr);
    std::filesystem::remove(bundle);
    json artifact = must(std::move(uploaded));
    const std::string artifact_id = artifact.value("artifact_id", "");
    json rollout_spec = {
        {"name", "deploy to " + a->device}, {"artifact", artifact_id}, {"target", {{"devices", {a->device}}}},
        {"waves", {{{"size", 1}}}},         {"retries", {{"max", 0}}}, {"on_breach", "abort"}};
    json rollout = must(client.post("/api/v1/rollouts", rollout_spec.dump(), "application/json"));
    const std::string rollout_id = rollout.value("id", "");
    must(client.post("/api/v1/rollouts/" + rollout_id + "/start", ""));
    std::cerr << "deploying " << spec.version << " (" << artifact_id << ") to " << a->device << " as rollout "
              << rollout_id << "\n";
    std::int64_t after = 0;
    std::string last_phase;
    bool done = false;
    while (!done || a->follow) {
      json logs = must(client.get("/api/v1/devices/" + a->device + "/logs?after=" + std::to_string(after)));
      for (const auto& e : logs) {
        after = std::max<std::int64_t>(after, e.value("id", 0));
        std::cout << a->device << ": " << e.value("message", "") << "\n";
      }
      if (!done) {
        json r = must(client.get("/api/v1/rollouts/" + rollout_id));
        const auto& members = r["members"];
        if (!members.empty()) {
          const json& m = members[0];
          const std::string phase = m.value("phase", "");
          if (phase != last_phase && phase != "unspecified") {
            std::cerr << "  " << phase << " (" << std::fixed << std::setprecision(2) << elapsed() << " s)\n";
            last_phase = phase;
          }
          const std::string state = m.value("state", "");
          if (state == "succeeded") {
            std::cerr << "deployed to " << a->device << " in " << std::fixed << std::setprecision(2)
                      << elapsed() << " s\n";
            done = true;
          } else if (state == "failed" || state == "cancelled") {
            throw std::runtime_error("deploy to " + a->device +
                                     " failed: " + m.value("error", std::string("unknown")));
          }
        }
        if (elapsed() > a->timeout_s) {
          throw std::runtime_error("deploy did not finish within " +
                                   std::to_string(static_cast<int>(a->timeout_s)) +
                                   " s; `fotactl rollout status " + rollout_id + "` shows where it stands");
        }
      }
      std::cout.flush();
      std::this_thread::sleep_for(std::chrono::milliseconds(done ? 300 : 20));
    }
  });
}

}  // namespace fota::cli
