// SPDX-License-Identifier: Apache-2.0
// Orchestrator benchmarks on the real service core and a real store, for each back end in one run:
// a SQLite file (WAL) and a PostgreSQL database (a throwaway cluster on loopback with fsync on,
// started like the tests' one, or the server --postgresql names):
//  1. progress-report ingest with durable state (decode, validate, engine, batched commit),
//     against a baseline of the same path committing every report on its own;
//  2. resident memory with N registered devices and one rollout over all of them.
// Usage: fota_orchestrator_bench [--devices 100000] [--reports 200000] [--batch 2000] [--dir /tmp/x]
//                                [--backends sqlite,postgresql] [--postgresql URL]
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>

#include <spdlog/sinks/null_sink.h>
#include <CLI/CLI.hpp>

#include "fota/common/artifact.hpp"
#include "fota/common/codec.hpp"
#include "fota/testing/postgres.hpp"
#include "orchestrator_service.hpp"

namespace {

using namespace fota;
using Clock = std::chrono::steady_clock;

double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

long rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class CountingPublisher : public orchestrator::Publisher {
 public:
  void publish(const std::string&, const std::string&, int, std::uint32_t) override { ++published; }
  std::size_t published = 0;
};

std::string device_name(std::size_t i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "dev-%06zu", i);
  return buf;
}

struct Sizes {
  std::size_t devices, reports, batch, baseline_reports;
};

// One back end's figures; `store` is the ServiceOptions::store URL (empty: SQLite in dir/data).
int run(const std::string& label, const std::string& store, const std::string& dir, const Sizes& sizes) {
  const auto [devices, reports, batch, baseline_reports] = sizes;
  std::printf("[%s]\n", label.c_str());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto log = std::make_shared<spdlog::logger>("bench", std::make_shared<spdlog::sinks::null_sink_mt>());

  // A trusted key and a small artifact for the rollout.
  auto key = common::Ed25519PrivateKey::generate();
  common::TrustStore trust;
  trust.add(key->public_key());
  {
    std::ofstream image(dir + "/image", std::ios::binary);
    for (int i = 0; i < 1024 * 1024; ++i) image.put(static_cast<char>(i));
  }
  common::ArtifactSpec spec;
  spec.name = "bench";
  spec.version = "2.0";
  spec.compatible_hardware = {"gw"};
  auto manifest = common::build_signed_manifest(dir + "/image", spec, *key, wall_ms());
  (void)common::write_bundle(dir + "/bench.bundle", *manifest, dir + "/image");

  orchestrator::ServiceOptions options;
  options.data_dir = dir + "/data";
  options.store = store;
  options.trust = trust;
  options.command_key = std::make_shared<const common::Ed25519PrivateKey>(
      std::move(common::Ed25519PrivateKey::generate()).value());
  const long rss_start = rss_kib();
  auto service = orchestrator::OrchestratorService::open(options, log);
  if (!service) {
    std::fprintf(stderr, "%s\n", service.error().message.c_str());
    return 1;
  }
  CountingPublisher publisher;
  (*service)->set_publisher(&publisher);
  auto imported = (*service)->import_artifact(dir + "/bench.bundle", "operator:bench", wall_ms());
  const std::string artifact_id = imported ? imported->artifact_id() : std::string();

  // Register the fleet through the MQTT input path (inventory messages), committed in batches.
  common::TopicScheme topics;
  auto t0 = Clock::now();
  for (std::size_t i = 0; i < devices; ++i) {
    const std::string id = device_name(i);
    v1::Inventory inv;
    inv.set_device_id(id);
    inv.set_hardware_type("gw");
    inv.set_version("1.0");
    inv.set_time_zone(i % 2 ? "Europe/Berlin" : "America/New_York");
    (*inv.mutable_attributes())["tags"] = "fleet";
    (*service)->on_message(topics.device_topic(*common::DeviceId::parse(id), common::Channel::kInventory),
                           common::encode(inv));
    if ((i + 1) % batch == 0) (*service)->run_once(wall_ms());
  }
  (*service)->run_once(wall_ms());
  const double register_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const long rss_devices = rss_kib();

  // One rollout over the whole fleet; everything dispatched at once.
  auto created = (*service)->create_rollout(
      "name: bench\nartifact: " + artifact_id + "\ntarget: {tags: [fleet]}\n", "operator:bench", wall_ms());
  const std::string rollout_id = created ? created->id : std::string();
  (void)(*service)->rollout_action(rollout_id, "start", "operator:bench", wall_ms());
  (*service)->run_once(wall_ms());
  (*service)->send_commands(std::chrono::milliseconds(0));
  const long rss_rollout = rss_kib();
  std::printf("registered %zu devices in %.2f s (%.0f inventories/s); %zu commands dispatched\n", devices,
              register_s, static_cast<double>(devices) / register_s, publisher.published);

  auto progress_for = [&](std::size_t n) {
    const std::string id = device_name(n % devices);
    v1::Progress p;
    p.set_device_id(id);
    p.set_deployment_id(rollout_id);
    p.set_phase(v1::PHASE_DOWNLOADING);
    p.set_bytes_total(1024 * 1024);
    p.set_bytes_done((n / devices + 1) * 16 * 1024);
    p.set_sequence(n / devices + 1);
    p.mutable_link()->set_rate_bytes_per_second(100'000);
    return std::make_pair(topics.device_topic(*common::DeviceId::parse(id), common::Channel::kProgress),
                          common::encode(p));
  };

  // Baseline: the same path, one transaction per report.
  t0 = Clock::now();
  for (std::size_t n = 0; n < baseline_reports; ++n) {
    auto [topic, payload] = progress_for(n);
    (*service)->on_message(topic, payload);
    (*service)->run_once(wall_ms());
  }
  const double baseline_s = std::chrono::duration<double>(Clock::now() - t0).count();

  // Batched ingest.
  t0 = Clock::now();
  const double cpu0 = cpu_seconds();
  for (std::size_t n = 0; n < reports; ++n) {
    auto [topic, payload] = progress_for(baseline_reports + n);
    (*service)->on_message(topic, payload);
    if ((n + 1) % batch == 0) (*service)->run_once(wall_ms());
  }
  (*service)->run_once(wall_ms());
  const double ingest_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const double ingest_cpu_s = cpu_seconds() - cpu0;

  std::printf(
      "progress ingest, durable, batches of %zu: %zu reports in %.2f s = %.0f reports/s (target >= 20000)\n",
      batch, reports, ingest_s, static_cast<double>(reports) / ingest_s);
  std::printf(
      "  CPU time of that ingest: %.2f s = %.0f reports per CPU second (the wall figure includes waiting "
      "for a CPU on a shared machine)\n",
      ingest_cpu_s, static_cast<double>(reports) / ingest_cpu_s);
  std::printf("baseline, one commit per report:      %zu reports in %.2f s = %.0f reports/s\n",
              baseline_reports, baseline_s, static_cast<double>(baseline_reports) / baseline_s);
  std::printf(
      "RSS: %.1f MB at start, %.1f MB with %zu devices, %.1f MB with a rollout over all (target <= 500 MB)\n",
      static_cast<double>(rss_start) / 1024, static_cast<double>(rss_devices) / 1024, devices,
      static_cast<double>(rss_rollout) / 1024);
  service->reset();
  std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"orchestrator benchmarks: durable progress ingest and memory per registered device"};
  Sizes sizes{100'000, 200'000, 2000, 2000};
  std::string dir = "/tmp/fota-orchestrator-bench-" + std::to_string(std::random_device{}());
  std::vector<std::string> backends = {"sqlite", "postgresql"};
  std::string postgresql;
  app.add_option("--devices", sizes.devices, "registered devices")->capture_default_str();
  app.add_option("--reports", sizes.reports, "progress reports to ingest")->capture_default_str();
  app.add_option("--batch", sizes.batch, "reports per transaction")->capture_default_str();
  app.add_option("--baseline-reports", sizes.baseline_reports,
                 "reports for the one-commit-per-report baseline")
      ->capture_default_str();
  app.add_option("--dir", dir, "scratch directory (removed afterwards)");
  app.add_option("--backends", backends, "stores to measure, in this order")
      ->delimiter(',')
      ->check(CLI::IsMember({"sqlite", "postgresql"}))
      ->capture_default_str();
  app.add_option("--postgresql", postgresql,
                 "an existing empty database (postgresql://...) instead of a throwaway cluster");
  CLI11_PARSE(app, argc, argv);

  std::unique_ptr<testing::PostgresCluster> cluster;
  for (const std::string& backend : backends) {
    std::string store;
    if (backend == "postgresql") {
      store = postgresql;
      if (store.empty()) {
        try {
          // Durable: fsync on, as a production server commits.
          if (!cluster) cluster = std::make_unique<testing::PostgresCluster>(testing::PostgresOptions{true});
          store = cluster->create_database();
        } catch (const std::exception& e) {
          std::fprintf(stderr, "cannot start PostgreSQL for the benchmark: %s\n", e.what());
          return 1;
        }
      }
    }
    if (int rc = run(backend, store, dir, sizes); rc != 0) return rc;
  }
  return 0;
}
