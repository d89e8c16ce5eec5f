// SPDX-License-Identifier: Apache-2.0
#include "edge_cache.hpp"

#include <charconv>
#include <filesystem>
#include <fstream>

#include <httplib.h>
#include <spdlog/fmt/fmt.h>

namespace fota::plugin {

namespace fs = std::filesystem;
using common::Errc;
using common::Error;

EdgeCacheFiller::EdgeCacheFiller(PluginOptions::Upstream upstream, common::ArtifactStore& store,
                                 common::TrustStore trust)
    : upstream_(std::move(upstream)), store_(store), trust_(std::move(trust)) {
  // parse_plugin_options checked the https:// prefix; the rest is host[:port].
  std::string rest = upstream_.url.substr(std::string_view("https://").size());
  host_ = rest;
  if (const auto colon = rest.rfind(':'); colon != std::string::npos && rest.find(']') == std::string::npos) {
    host_ = rest.substr(0, colon);
    const std::string port = rest.substr(colon + 1);
    int parsed = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), parsed);
    if (ec != std::errc() || ptr != port.data() + port.size() || parsed <= 0 || parsed > 65535) {
      throw std::invalid_argument("plugin_opt_upstream_url \"" + upstream_.url +
                                  "\": the port must be a number from 1 to 65535");
    }
    port_ = parsed;
  }
  thread_ = std::thread([this] { run(); });
}

EdgeCacheFiller::~EdgeCacheFiller() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void EdgeCacheFiller::request(const std::string& artifact_id, std::int64_t now_ms) {
  {
    std::lock_guard lock(mutex_);
    if (pending_.count(artifact_id) != 0) return;
    if (auto failed = failed_at_.find(artifact_id);
        failed != failed_at_.end() && now_ms - failed->second < upstream_.retry_ms) {
      return;
    }
    pending_.insert(artifact_id);
    queue_.push_back(artifact_id);
  }
  wake_.notify_one();
}

std::vector<std::pair<spdlog::level::level_enum, std::string>> EdgeCacheFiller::drain_log() {
  std::lock_guard lock(mutex_);
  return std::exchange(log_, {});
}

void EdgeCacheFiller::log(spdlog::level::level_enum level, std::string line) {
  std::lock_guard lock(mutex_);
  if (log_.size() < 1000) log_.emplace_back(level, std::move(line));
}

void EdgeCacheFiller::run() {
  for (;;) {
    std::string id;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      id = std::move(queue_.front());
      queue_.pop_front();
    }
    const auto started = std::chrono::steady_clock::now();
    auto st = fill(id);
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started)
            .count();
    const std::int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count();
    std::lock_guard lock(mutex_);
    pending_.erase(id);
    if (st) {
      failed_at_.erase(id);
      ++fills_;
      if (log_.size() < 1000)
        log_.emplace_back(spdlog::level::info, fmt::format("cached artifact {} ({} ms)", id, ms));
    } else {
      failed_at_[id] = now;
      ++failures_;
      if (log_.size() < 1000) {
        log_.emplace_back(
            spdlog::level::warn,
            fmt::format("caching artifact {} failed, its chunks keep coming through the bridge; "
                        "next try in {} s: {}",
                        id, upstream_.retry_ms / 1000, st.error().message));
      }
    }
  }
}

common::Status EdgeCacheFiller::fill(const std::string& artifact_id) {
  if (!common::is_valid_artifact_id(artifact_id)) {
    return Error(Errc::kInvalidArgument, "not an artifact id");
  }
  if (store_.contains(artifact_id)) return common::ok_status();
  const fs::path bundle = store_.root() / (".fetch-" + artifact_id + ".bundle");
  std::error_code ec;
  fs::remove(bundle, ec);
  httplib::SSLClient client(host_, port_, upstream_.cert.string(), upstream_.key.string());
  client.set_ca_cert_path(upstream_.ca.string().c_str());
  client.enable_server_certificate_verification(true);
  client.set_connection_timeout(10, 0);
  client.set_read_timeout(60, 0);
  std::uint64_t received = 0;
  {
    std::ofstream out(bundle, std::ios::binary | std::ios::trunc);
    if (!out) return Error(Errc::kIo, "cannot create " + bundle.string() + " (is artifact_dir writable?)");
    bool write_failed = false;
    // The body goes to the file whatever the status: an error answer is read back from it below.
    auto result =
        client.Get("/api/v1/artifacts/" + artifact_id + "/bundle", [&](const char* data, std::size_t length) {
          out.write(data, static_cast<std::streamsize>(length));
          received += length;
          if (!out) write_failed = true;
          return !write_failed;
        });
    out.flush();
    if (!result) {
      fs::remove(bundle, ec);
      return Error(Errc::kUnavailable, "fetching from " + upstream_.url +
                                           " failed: " + httplib::to_string(result.error()) +
                                           (result.error() == httplib::Error::SSLServerVerification
                                                ? " (the orchestrator's certificate does not verify against "
                                                  "plugin_opt_upstream_ca)"
                                                : ""));
    }
    if (result->status != 200) {
      std::string body;
      {
        std::ifstream in(bundle, std::ios::binary);
        body.assign(std::istreambuf_iterator<char>(in), {});
      }
      fs::remove(bundle, ec);
      return Error(Errc::kUnavailable, fmt::format("{} answered HTTP {}: {}", upstream_.url, result->status,
                                                   body.substr(0, 300)));
    }
    if (write_failed || !out) {
      fs::remove(bundle, ec);
      return Error(Errc::kIo, "writing " + bundle.string() + " failed (disk full?)");
    }
  }
  // The bundle must be the artifact asked for, signed by a release key this edge trusts, and
  // whole: import_bundle verifies the signature, every chunk hash and the image hash.
  // The id is compared before anything enters the cache; import_bundle verifies the signature.
  auto header = common::read_bundle_header(bundle);
  v1::Manifest claimed;
  common::Status outcome = common::ok_status();
  if (!header) {
    outcome = Error(Errc::kMalformed, "the bundle fetched is not a bundle: " + header.error().message);
  } else if (!claimed.ParseFromString(header->signed_manifest.manifest()) ||
             claimed.artifact_id() != artifact_id) {
    outcome = Error(Errc::kMalformed, "the bundle fetched is artifact " +
                                          claimed.artifact_id().substr(0, 64) + ", not the one asked for");
  } else if (auto imported = store_.import_bundle(bundle, trust_); !imported) {
    outcome = Error(imported.error().code, "the bundle fetched does not verify: " + imported.error().message);
  }
  fs::remove(bundle, ec);
  if (outcome) bytes_ += received;
  return outcome;
}

}  // namespace fota::plugin
