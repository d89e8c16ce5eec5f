// SPDX-License-Identifier: Apache-2.0
// An edge broker's artifact cache fill (docs/BROKER_PLUGIN.md, "Edge brokers"): the I/O adapter
// that fetches an artifact's signed bundle once from the orchestrator's API over HTTPS, on a
// thread of its own, verifies it against the release keys and puts it into the store the plugin
// serves chunks from. The broker's thread only queues requests and reads counters and log lines.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <spdlog/common.h>

#include "fota/common/artifact.hpp"
#include "fota/common/crypto.hpp"
#include "fota/plugin/options.hpp"

namespace fota::plugin {

class EdgeCacheFiller {
 public:
  // `store` must outlive the filler. Starts the fetch thread.
  EdgeCacheFiller(PluginOptions::Upstream upstream, common::ArtifactStore& store, common::TrustStore trust);
  ~EdgeCacheFiller();
  EdgeCacheFiller(const EdgeCacheFiller&) = delete;
  EdgeCacheFiller& operator=(const EdgeCacheFiller&) = delete;

  // Queues a fill of `artifact_id` unless it is queued, being fetched, or failed less than
  // upstream.retry_ms ago. Never blocks on the network.
  void request(const std::string& artifact_id, std::int64_t now_ms);

  std::uint64_t fills() const noexcept { return fills_.load(); }
  std::uint64_t failures() const noexcept { return failures_.load(); }
  std::uint64_t bytes_fetched() const noexcept { return bytes_.load(); }
  // Log lines of the fetch thread, for the broker's thread to write (Mosquitto's log is not
  // documented as safe from other threads).
  std::vector<std::pair<spdlog::level::level_enum, std::string>> drain_log();

 private:
  void run();
  // Fetches and imports one artifact; the error says what failed.
  common::Status fill(const std::string& artifact_id);
  void log(spdlog::level::level_enum level, std::string line);

  PluginOptions::Upstream upstream_;
  common::ArtifactStore& store_;
  common::TrustStore trust_;
  std::string host_;
  int port_ = 443;

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::string> queue_;
  std::set<std::string> pending_;                  // queued or in flight
  std::map<std::string, std::int64_t> failed_at_;  // last failure, for the retry pause
  std::vector<std::pair<spdlog::level::level_enum, std::string>> log_;
  bool stop_ = false;
  std::atomic<std::uint64_t> fills_{0};
  std::atomic<std::uint64_t> failures_{0};
  std::atomic<std::uint64_t> bytes_{0};
  std::thread thread_;
};

}  // namespace fota::plugin
