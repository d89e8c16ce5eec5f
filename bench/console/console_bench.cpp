// SPDX-License-Identifier: Apache-2.0
// The web console's first view with a large fleet (docs/BENCHMARKS.md, "Console"): the real
// fota-orchestrator on a real SQLite file seeded with --devices registered devices, and the
// console's fleet page (the first view after sign-in: the fleet summary and the first page of the
// device list) loaded in Debian's headless chromium by tests/browser/first-view.mjs. The baseline,
// in the same run, is the same view of an empty fleet. Prints the median and worst of --runs loads.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>
#include <CLI/CLI.hpp>

#include "fota/orchestrator/store.hpp"
#include "fota/testing/broker.hpp"
#include "fota/testing/command.hpp"
#include "fota/testing/orchestrator_setup.hpp"

namespace fs = std::filesystem;
using namespace fota;
using namespace fota::testing;

namespace {

constexpr const char* kToken = "console-bench-token-0123456789";

struct Figures {
  double median_ms = 0;
  double max_ms = 0;
  double summary_ms = 0;  // GET /api/v1/fleet/summary alone, median (its snapshot expired each time)
  double page_ms = 0;     // GET /api/v1/devices?limit=50 alone, median
  std::string raw;
};

// The median time of `runs` calls of `path`, 2.1 s apart (past the live snapshot's 2 s for the summary).
double median_call_ms(int port, const std::string& path, int runs) {
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2100));
    httplib::Client client("127.0.0.1", port);
    client.set_bearer_token_auth(kToken);
    const auto t0 = std::chrono::steady_clock::now();
    auto res = client.Get(path);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    if (!res || res->status != 200) throw std::runtime_error("GET " + path + " failed");
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// Seeds `devices` devices, starts the orchestrator, loads the first view `runs` times.
Figures measure(const fs::path& dir, TestPki& pki, const MosquittoBroker& broker, int devices, int runs) {
  const OrchestratorSetup setup = write_orchestrator_setup(dir, pki, broker, "bench", kToken);
  fs::create_directories(dir / "data");
  {
    auto store = orchestrator::open_store("sqlite:" + (dir / "data" / "state.db").string());
    if (!store) throw std::runtime_error(store.error().message);
    auto st = (*store)->transaction([&]() -> common::Status {
      for (int i = 0; i < devices; ++i) {
        char id[16];
        std::snprintf(id, sizeof id, "dev-%06d", i);
        orchestrator::DeviceRecord d;
        d.facts.id = id;
        d.facts.hardware_type = i % 3 ? "rpi4" : "gw-v2";
        d.facts.version = "1." + std::to_string(i % 20);
        d.facts.artifact_id = "ffffffffffffffffffffffffffffffff";
        d.facts.time_zone = "UTC";
        d.registered_ms = 1;
        if (auto saved = (*store)->upsert_device(d); !saved) return saved;
      }
      return common::ok_status();
    });
    if (!st) throw std::runtime_error(st.error().message);
  }
  const fs::path log = dir / "orchestrator.log";
  std::string failure;
  pid_t pid = spawn_until_ready(
      {FOTA_ORCHESTRATOR_PATH, "--config", setup.config.string()}, log,
      [&] {
        std::ifstream in(log);
        return std::string(std::istreambuf_iterator<char>(in), {}).find("api on 127.0.0.1") !=
               std::string::npos;
      },
      failure);
  if (pid <= 0) throw std::runtime_error("the orchestrator did not start: " + failure);
  const std::string url = "http://127.0.0.1:" + std::to_string(setup.http_port) + "/console/";
  const CommandRun run =
      run_command("cd '" FOTA_BROWSER_DIR "' && node first-view.mjs '" + url + "' " + kToken + " " +
                  std::to_string(devices) + " " + std::to_string(runs) + " 2>&1");
  const double summary_ms = median_call_ms(setup.http_port, "/api/v1/fleet/summary", 5);
  const double page_ms = median_call_ms(setup.http_port, "/api/v1/devices?limit=50", 5);
  stop_process(pid);
  std::smatch m;
  static const std::regex kLine(R"(median ([0-9.]+) ms, max ([0-9.]+) ms)");
  if (run.exit_code != 0 || !std::regex_search(run.output, m, kLine))
    throw std::runtime_error("first-view.mjs failed:\n" + run.output);
  return Figures{std::stod(m[1]), std::stod(m[2]), summary_ms, page_ms, run.output};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("The web console's first view with a large fleet, against an empty fleet (baseline)");
  int devices = 100'000;
  int runs = 7;
  app.add_option("--devices", devices, "Registered devices")->check(CLI::Range(1, 1'000'000));
  app.add_option("--runs", runs, "Loads of the first view (the median is reported)")
      ->check(CLI::Range(1, 100));
  CLI11_PARSE(app, argc, argv);
  try {
    TempDir dir;
    TestPki pki(dir.path() / "pki");
    MosquittoBroker broker(pki, dir.path() / "broker");
    const Figures base = measure(dir.path() / "empty", pki, broker, 0, runs);
    const Figures big = measure(dir.path() / "fleet", pki, broker, devices, runs);
    if (std::getenv("FOTA_FIRST_VIEW_DEBUG") != nullptr)
      std::printf("%s\n%s\n", base.raw.c_str(), big.raw.c_str());
    std::printf("console first view, baseline (0 devices): median %.0f ms, max %.0f ms over %d loads\n",
                base.median_ms, base.max_ms, runs);
    std::printf("console first view, %d devices: median %.0f ms, max %.0f ms over %d loads (%+.0f ms)\n",
                devices, big.median_ms, big.max_ms, runs, big.median_ms - base.median_ms);
    std::printf(
        "  the API alone (median of 5): fleet summary %.1f ms (baseline %.1f), first device page %.1f ms "
        "(baseline %.1f)\n",
        big.summary_ms, base.summary_ms, big.page_ms, base.page_ms);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fota_console_bench: %s\n", e.what());
    return 1;
  }
}
