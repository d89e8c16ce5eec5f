// SPDX-License-Identifier: Apache-2.0
// fotactl commands that talk to the orchestrator API: artifact upload/list, device, rollout, audit.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "api_client.hpp"
#include "commands.hpp"
#include "fota/common/crypto.hpp"
#include "fota/orchestrator/audit.hpp"
#include "fota/orchestrator/rollout_engine.hpp"
#include "fota/orchestrator/rollout_spec.hpp"

namespace fota::cli {

using nlohmann::json;

namespace {

json must(common::Result<json> r) {
  if (!r) throw std::runtime_error(r.error().message);
  return std::move(r).value();
}

void must_be_device_id(const std::string& id) {
  if (auto st = check_device_id(id); !st) throw std::runtime_error(st.error().message);
}

std::string str(const json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return "";
  return j[key].is_string() ? j[key].get<std::string>() : j[key].dump();
}

// Fixed-width table for human output.
void print_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width(header.size());
  for (std::size_t i = 0; i < header.size(); ++i) width[i] = header[i].size();
  for (const auto& row : rows) {
    for (std::size_t i = 0; i < row.size() && i < width.size(); ++i)
      width[i] = std::max(width[i], row[i].size());
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (std::size_t i = 0; i < cells.size(); ++i) {
      out += cells[i];
      if (i + 1 < cells.size()) out += std::string(width[i] - cells[i].size() + 2, ' ');
    }
    std::cout << out << "\n";
  };
  line(header);
  for (const auto& row : rows) line(row);
}

std::string read_spec(const std::string& path) {
  if (path == "-") {
    std::stringstream s;
    s << std::cin.rdbuf();
    return s.str();
  }
  std::ifstream in(path);
  if (!in)
    throw std::runtime_error("cannot read rollout spec " + path + "; give the path of a YAML or JSON file");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string wave_line(const json& w) {
  const double devices = w.value("devices", 0);
  const json counts = w.value("counts", json::object());
  const double done = counts.value("succeeded", 0) + counts.value("failed", 0) +
                      counts.value("cancelled", 0) + counts.value("rolled_back", 0) +
                      counts.value("rollback_failed", 0);
  const double fraction = devices > 0 ? done / devices : (w.value("status", "") == "passed" ? 1.0 : 0.0);
  std::ostringstream out;
  out << "  wave " << w.value("index", 0) << " " << progress_bar(fraction) << "  " << w.value("status", "")
      << "  " << counts.value("succeeded", 0) << " ok / " << counts.value("failed", 0) << " failed / "
      << (counts.value("dispatched", 0) + counts.value("updating", 0)) << " updating / "
      << (counts.value("pending", 0) + counts.value("retry_wait", 0)) << " waiting of " << devices;
  return out.str();
}

void print_rollout(const json& r) {
  std::cout << "rollout " << str(r, "id") << " (" << str(r, "name") << ")  state: " << str(r, "state")
            << "\n";
  std::cout << "  artifact: " << str(r, "artifact") << "\n";
  if (!str(r, "reason").empty()) std::cout << "  reason: " << str(r, "reason") << "\n";
  if (r.contains("eta")) {
    std::cout << "  eta: " << r["eta"].value("end_at", "") << " (" << r["eta"].value("remaining_seconds", 0)
              << " s remaining";
    if (r["eta"].contains("bound_remaining_ms"))
      std::cout << "; 90 % bound " << r["eta"].value("bound_end_at", "") << ", "
                << r["eta"].value("bound_remaining_ms", std::int64_t{0}) / 1000 << " s";
    std::cout << ")\n";
  }
  for (const auto& w : r.value("waves", json::array())) std::cout << wave_line(w) << "\n";
}

struct RolloutArgs {
  ApiConnection conn;
  std::string id;
  std::string file;
  bool start = false;
  double interval = 1.0;
  bool devices = false;             // status: the device table
  std::vector<std::string> states;  // status: only members in these states (implies the table)
};

// --limit/--cursor on a list command: without --limit every page is fetched; with it, one page,
// and the cursor of the next goes to stderr.
struct ListArgs {
  std::size_t limit = 0;
  std::string cursor;
  std::string version, state, online, hardware, group, tag, q;  // the device list's filters

  void add_paging(CLI::App* command) {
    command->add_option("--limit", limit, "At most this many (1 to 1000); prints the cursor of the next page")
        ->check(CLI::Range(1, 1000));
    command->add_option("--cursor", cursor, "Start at this page (the cursor a --limit listing printed)");
  }
  json fetch(const ApiClient& client, const std::string& path,
             std::vector<std::pair<std::string, std::string>> params) const {
    if (limit == 0 && cursor.empty()) return must(client.get_all(path + query_string(params)));
    params.emplace_back("limit", std::to_string(limit == 0 ? 1000 : limit));
    params.emplace_back("cursor", cursor);
    auto page = client.get_page(path + query_string(params));
    if (!page) throw std::runtime_error(page.error().message);
    if (!page->next.empty()) std::cerr << "next page: --cursor " << page->next << "\n";
    return page->items;
  }
};

// A rollout's members in a few lines: how many are in each state, and the first failures with
// their errors. A fleet's rollout has thousands of members; the table is on request.
void print_member_summary(const json& members) {
  std::map<std::string, std::size_t> by_state;
  std::vector<const json*> failures;
  for (const auto& m : members) {
    const std::string state = str(m, "state");
    ++by_state[state];
    if (state == "failed" || state == "rollback_failed") failures.push_back(&m);
  }
  std::cout << "  devices: " << members.size();
  for (const auto& [state, n] : by_state) std::cout << ", " << n << " " << state;
  std::cout << "\n";
  // What the devices copied from their running slot instead of downloading (docs/CLIENT.md, "Reuse").
  // Of the images' bytes (bytes_total: a finished member's bytes_done may no longer be reported).
  std::uint64_t total = 0;
  std::uint64_t reused = 0;
  for (const auto& m : members) {
    total += m.value("bytes_total", std::uint64_t{0});
    reused += m.value("bytes_reused", std::uint64_t{0});
  }
  if (total > 0) {
    std::cout << "  bytes: " << total << " of images, " << reused << " of them reused on the devices ("
              << reused * 100 / total << " %)\n";
  }
  constexpr std::size_t kShown = 10;
  for (std::size_t i = 0; i < failures.size() && i < kShown; ++i) {
    const json& m = *failures[i];
    std::cout << "  " << str(m, "state") << ": " << str(m, "device") << " (wave " << str(m, "wave")
              << ", attempt " << str(m, "attempt") << ")"
              << (str(m, "error").empty() ? "" : ": " + str(m, "error")) << "\n";
  }
  if (failures.size() > kShown) std::cout << "  ... and " << failures.size() - kShown << " more failed\n";
  std::cout << "  (--devices lists every device; --state STATE lists those in a state)\n";
}

}  // namespace

void register_artifact_upload_commands(CLI::App& app) {
  CLI::App* artifact = app.get_subcommand("artifact");
  auto a = std::make_shared<RolloutArgs>();
  auto* upload =
      artifact->add_subcommand("upload", "Upload a signed bundle to the orchestrator (verified there)");
  upload->add_option("bundle", a->file, "Bundle file from `fotactl artifact create`")
      ->required()
      ->check(CLI::ExistingFile);
  a->conn.add_options(upload, true);
  upload->callback([a] {
    const bool tty = isatty(fileno(stderr)) != 0;
    auto result = ApiClient(a->conn).post_file(
        "/api/v1/artifacts", a->file, [&](std::uint64_t sent, std::uint64_t total) {
          if (!a->conn.json) {
            std::fprintf(
                stderr, "%supload %s %llu/%llu bytes%s", tty ? "\r" : "",
                progress_bar(total ? static_cast<double>(sent) / static_cast<double>(total) : 1).c_str(),
                static_cast<unsigned long long>(sent), static_cast<unsigned long long>(total),
                tty ? "" : "\n");
          }
        });
    if (!a->conn.json) std::fprintf(stderr, "\n");
    json m = must(std::move(result));
    if (a->conn.json) {
      std::cout << m.dump(2) << "\n";
    } else {
      std::cout << "uploaded artifact " << str(m, "artifact_id") << " (" << str(m, "name") << " "
                << str(m, "version") << ", " << str(m, "image_size") << " bytes)\n";
    }
  });
  auto d = std::make_shared<RolloutArgs>();
  auto* del = artifact->add_subcommand(
      "delete", "Delete an artifact from the orchestrator (refused while a rollout uses it)");
  del->add_option("artifact", d->id, "Artifact id")->required();
  d->conn.add_options(del, false);
  del->callback([d] {
    must(ApiClient(d->conn).del("/api/v1/artifacts/" + path_segment(d->id)));
    std::cout << "deleted artifact " << d->id << "\n";
  });
  auto pr = std::make_shared<RolloutArgs>();
  auto dry_run = std::make_shared<bool>(false);
  auto* prune = artifact->add_subcommand(
      "prune",
      "Apply the orchestrator's retention rule (artifacts.retention) now: delete old artifacts no "
      "rollout or device uses, keeping the newest of each name and hardware");
  prune->add_flag("--dry-run", *dry_run, "Only show what would be deleted and why the rest stays");
  pr->conn.add_options(prune, true);
  prune->callback([pr, dry_run] {
    json answer = must(ApiClient(pr->conn).post(
        std::string("/api/v1/artifacts/retention/run?dry_run=") + (*dry_run ? "true" : "false"), "",
        "application/json"));
    if (pr->conn.json) {
      std::cout << answer.dump(2) << "\n";
      return;
    }
    const json gone = answer.value(*dry_run ? "would_delete" : "deleted", json::array());
    std::vector<std::vector<std::string>> rows;
    for (const auto& item : gone)
      rows.push_back({str(item, "artifact_id"), str(item, "name"), str(item, "version"),
                      *dry_run ? "would delete" : "deleted", str(item, "reason")});
    for (const auto& item : answer.value("kept", json::array()))
      rows.push_back(
          {str(item, "artifact_id"), str(item, "name"), str(item, "version"), "kept", str(item, "reason")});
    print_table({"ARTIFACT", "NAME", "VERSION", "", "WHY"}, rows);
    std::cout << (*dry_run ? "would delete " : "deleted ") << gone.size() << " artifact(s)"
              << (*dry_run ? " (dry run: nothing was deleted)" : "") << "\n";
  });
  auto l = std::make_shared<RolloutArgs>();
  auto p = std::make_shared<ListArgs>();
  auto* list = artifact->add_subcommand("list", "List the artifacts the orchestrator has");
  l->conn.add_options(list, true);
  p->add_paging(list);
  list->callback([l, p] {
    json all = p->fetch(ApiClient(l->conn), "/api/v1/artifacts", {});
    if (l->conn.json) {
      std::cout << all.dump(2) << "\n";
      return;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& m : all) {
      rows.push_back({str(m, "artifact_id"), str(m, "name"), str(m, "version"), str(m, "image_size"),
                      str(m, "created_at")});
    }
    print_table({"ARTIFACT", "NAME", "VERSION", "BYTES", "CREATED"}, rows);
  });
}

void register_device_commands(CLI::App& app) {
  auto* device = app.add_subcommand(
      "device", "Registered devices: list, show, logs; renew-cert (operator); revoke, decommission (admin)");
  device->require_subcommand(1);
  auto l = std::make_shared<RolloutArgs>();
  auto f = std::make_shared<ListArgs>();
  auto* list =
      device->add_subcommand("list", "List registered devices (filtered and paged by the orchestrator)");
  l->conn.add_options(list, true);
  f->add_paging(list);
  list->add_option("--version", f->version, "Only this version, or a comparison like '<2.0' or '>=1.5'");
  list->add_option("--state", f->state,
                   "Only devices whose last report was in this phase (committed, failed, ...)");
  list->add_option("--online", f->online, "true or false");
  list->add_option("--hardware", f->hardware, "Only this hardware type");
  list->add_option("--group", f->group,
                   "Only this group (an operator group, static or dynamic, or a reported one)");
  list->add_option("--tag", f->tag, "Only devices with this tag (reported or set by an operator)");
  list->add_option("-q,--search", f->q, "Only devices whose id contains this text");
  list->callback([l, f] {
    json all = f->fetch(ApiClient(l->conn), "/api/v1/devices",
                        {{"version", f->version},
                         {"state", f->state},
                         {"online", f->online},
                         {"hardware", f->hardware},
                         {"group", f->group},
                         {"tag", f->tag},
                         {"q", f->q}});
    if (l->conn.json) {
      std::cout << all.dump(2) << "\n";
      return;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& d : all) {
      std::string tags;
      for (const char* key : {"tags", "operator_tags"}) {
        for (const auto& t : d.value(key, json::array()))
          tags += (tags.empty() ? "" : ",") + t.get<std::string>();
      }
      const std::string presence = d.value("revoked", false)  ? "REVOKED"
                                   : d.value("online", false) ? "online"
                                                              : "offline";
      rows.push_back({str(d, "id"), presence, str(d, "hardware"), str(d, "version"), str(d, "time_zone"),
                      tags, str(d, "last_phase"), str(d, "rollout"), str(d, "last_seen")});
    }
    print_table(
        {"DEVICE", "PRESENCE", "HARDWARE", "VERSION", "TIME ZONE", "TAGS", "PHASE", "ROLLOUT", "LAST SEEN"},
        rows);
  });

  auto s = std::make_shared<RolloutArgs>();
  auto* show = device->add_subcommand("show", "Show one device with its recent events");
  show->add_option("device", s->id, "Device id")->required();
  s->conn.add_options(show, true);
  show->callback([s] {
    must_be_device_id(s->id);
    json d = must(ApiClient(s->conn).get("/api/v1/devices/" + s->id));
    if (s->conn.json) {
      std::cout << d.dump(2) << "\n";
      return;
    }
    for (const auto& [k, v] : d.items()) {
      if (k == "recent_events") continue;
      std::cout << "  " << k << ": " << (v.is_string() ? v.get<std::string>() : v.dump()) << "\n";
    }
    std::cout << "  recent events:\n";
    for (const auto& e : d.value("recent_events", json::array())) {
      std::cout << "    " << str(e, "time") << "  " << str(e, "kind") << "  " << str(e, "detail") << "\n";
    }
  });

  auto g = std::make_shared<RolloutArgs>();
  auto follow = std::make_shared<bool>(false);
  auto* logs = device->add_subcommand("logs", "Print a device's log (--follow to stream)");
  logs->add_option("device", g->id, "Device id")->required();
  logs->add_flag("-f,--follow", *follow, "Keep printing new entries until interrupted");
  g->conn.add_options(logs, true);
  logs->callback([g, follow] {
    must_be_device_id(g->id);
    static const char* kLevels[] = {"?", "TRACE", "DEBUG", "INFO", "WARN", "ERROR"};
    std::int64_t after = 0;
    ApiClient client(g->conn);
    do {
      json entries = must(client.get("/api/v1/devices/" + g->id + "/logs?after=" + std::to_string(after)));
      for (const auto& e : entries) {
        after = std::max<std::int64_t>(after, e.value("id", 0));
        if (g->conn.json) {
          std::cout << e.dump() << "\n";
        } else {
          const int level = std::clamp(e.value("level", 0), 0, 5);
          std::cout << str(e, "time") << " " << kLevels[level] << " " << str(e, "source") << ": "
                    << str(e, "message") << "\n";
        }
      }
      std::cout.flush();
      if (*follow && entries.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(300));
    } while (*follow);
  });

  // Operator tags (operator role): docs/ORCHESTRATOR.md, "Tags and groups".
  auto t = std::make_shared<RolloutArgs>();
  auto tags = std::make_shared<std::vector<std::string>>();
  auto untag = std::make_shared<bool>(false);
  auto* tag = device->add_subcommand("tag", "Put tags on a device (--remove takes them off)");
  tag->add_option("device", t->id, "Device id")->required();
  tag->add_option("tags", *tags, "Tags")->required();
  tag->add_flag("--remove", *untag, "Take the tags off instead");
  t->conn.add_options(tag, true);
  tag->callback([t, tags, untag] {
    must_be_device_id(t->id);
    ApiClient client(t->conn);
    json d;
    for (const std::string& name : *tags) {
      const std::string path = "/api/v1/devices/" + t->id + "/tags/" + path_segment(name);
      d = must(*untag ? client.del(path) : client.put(path));
    }
    if (t->conn.json) {
      std::cout << d.dump(2) << "\n";
      return;
    }
    std::string now;
    for (const auto& x : d.value("operator_tags", json::array()))
      now += (now.empty() ? "" : ",") + x.get<std::string>();
    std::cout << "device " << t->id << " operator tags: " << (now.empty() ? "(none)" : now) << "\n";
  });

  // Certificate lifecycle (admin role): docs/ORCHESTRATOR.md, "Revocation and decommissioning".
  for (const std::string action : {"revoke", "decommission"}) {
    auto r = std::make_shared<RolloutArgs>();
    auto reason = std::make_shared<std::string>();
    const bool decommission = action == "decommission";
    auto* cmd = device->add_subcommand(
        action, decommission ? "Revoke a device and remove it from the inventory and every future rollout "
                               "(its events, logs and audit entries stay)"
                             : "Revoke a device's certificate: the broker disconnects it within seconds and "
                               "refuses it from then on; no rollout takes it on");
    cmd->add_option("device", r->id, "Device id")->required();
    cmd->add_option("--reason", *reason, "Why, for the audit log (e.g. \"stolen 2026-11-25\")");
    r->conn.add_options(cmd, true);
    cmd->callback([r, reason, action] {
      must_be_device_id(r->id);
      json j = must(ApiClient(r->conn).post("/api/v1/devices/" + r->id + "/" + action,
                                            json{{"reason", *reason}}.dump(), "application/json"));
      if (r->conn.json) {
        std::cout << j.dump(2) << "\n";
        return;
      }
      const bool decommissioned = !str(j, "decommissioned_at").empty();
      std::cout << "device " << r->id << " " << (decommissioned ? "decommissioned" : "revoked") << " at "
                << str(j, (decommissioned ? "decommissioned_at" : "revoked_at")) << " by " << str(j, "actor")
                << (str(j, "reason").empty() ? "" : " (" + str(j, "reason") + ")") << "\n";
      if (!j.value("registered", true)) {
        std::cerr << "fotactl: note: " << r->id
                  << " was not in the inventory (never connected, or a typo): it is refused all the same\n";
      }
      if (j.contains("deny_list") && j["deny_list"].is_null()) {
        std::cerr << "fotactl: warning: the orchestrator has no revocation.deny_list configured, so the "
                     "broker was NOT told: add the device to the broker's deny list yourself\n";
      } else {
        std::cout << "  broker deny list: " << str(j, "deny_list")
                  << " (the plugin re-reads it within a second and disconnects the device)\n";
      }
    });
  }

  // A certificate renewal now (operator role): docs/ORCHESTRATOR.md, "Certificate renewal".
  auto n = std::make_shared<RolloutArgs>();
  auto renew_reason = std::make_shared<std::string>();
  auto* renew = device->add_subcommand(
      "renew-cert",
      "Have a device renew its certificate now (a new key and request, signed by the orchestrator's "
      "issuing CA), whatever its renew_before says");
  renew->add_option("device", n->id, "Device id")->required();
  renew->add_option("--reason", *renew_reason, "Why, for the audit log and the device's log");
  n->conn.add_options(renew, true);
  renew->callback([n, renew_reason] {
    must_be_device_id(n->id);
    json j = must(ApiClient(n->conn).post("/api/v1/devices/" + n->id + "/renew-certificate",
                                          json{{"reason", *renew_reason}}.dump(), "application/json"));
    if (n->conn.json) {
      std::cout << j.dump(2) << "\n";
      return;
    }
    std::cout << "asked device " << n->id << " to renew its certificate (command " << str(j, "command_id")
              << ", valid until " << str(j, "expires_at") << ")\n";
    if (!j.value("online", false)) {
      std::cerr << "fotactl: note: " << n->id
                << " is offline: it renews if it connects before the command expires; otherwise ask again\n";
    }
    std::cout << "  `fotactl device show " << n->id
              << "` shows certificate_not_after once the device has reconnected with the new certificate\n";
  });
}

namespace {
void print_group(const json& g) {
  std::cout << "group " << str(g, "name") << " (" << str(g, "kind")
            << (str(g, "selector").empty() ? "" : ": " + str(g, "selector")) << ")";
  if (g.contains("members")) {
    std::cout << ", " << g["members"].size() << " device(s)";
    std::size_t shown = 0;
    for (const auto& m : g["members"]) {
      if (++shown > 20) {
        std::cout << " ...";
        break;
      }
      std::cout << (shown == 1 ? ": " : ", ") << m.get<std::string>();
    }
  }
  std::cout << "\n";
}
}  // namespace

void register_group_commands(CLI::App& app) {
  auto* group = app.add_subcommand(
      "group",
      "Operator groups: static (a list of devices) or dynamic (a selector like tag=lab,version<2.0)");
  group->require_subcommand(1);

  auto c = std::make_shared<RolloutArgs>();
  auto selector = std::make_shared<std::string>();
  auto* create = group->add_subcommand("create", "Create a group (static unless --selector is given)");
  create->add_option("name", c->id, "Group name")->required();
  create->add_option("--selector", *selector,
                     "Dynamic: the devices matching terms like hardware=rpi4,tag=lab,group=NAME,online=true,"
                     "version<2.0");
  c->conn.add_options(create, true);
  create->callback([c, selector] {
    json g = must(ApiClient(c->conn).post(
        "/api/v1/groups", json{{"name", c->id}, {"selector", *selector}}.dump(), "application/json"));
    if (c->conn.json) {
      std::cout << g.dump(2) << "\n";
      return;
    }
    print_group(g);
  });

  auto l = std::make_shared<RolloutArgs>();
  auto p = std::make_shared<ListArgs>();
  auto* list = group->add_subcommand("list", "List the groups");
  l->conn.add_options(list, true);
  p->add_paging(list);
  list->callback([l, p] {
    json all = p->fetch(ApiClient(l->conn), "/api/v1/groups", {});
    if (l->conn.json) {
      std::cout << all.dump(2) << "\n";
      return;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& g : all)
      rows.push_back(
          {str(g, "name"), str(g, "kind"), str(g, "selector"), str(g, "created_by"), str(g, "created_at")});
    print_table({"GROUP", "KIND", "SELECTOR", "CREATED BY", "CREATED"}, rows);
  });

  auto s = std::make_shared<RolloutArgs>();
  auto* show = group->add_subcommand("show", "Show a group and the devices in it now");
  show->add_option("name", s->id, "Group name")->required();
  s->conn.add_options(show, true);
  show->callback([s] {
    json g = must(ApiClient(s->conn).get("/api/v1/groups/" + path_segment(s->id)));
    if (s->conn.json) {
      std::cout << g.dump(2) << "\n";
      return;
    }
    print_group(g);
  });

  for (const std::string action : {"add", "remove"}) {
    auto m = std::make_shared<RolloutArgs>();
    auto devices = std::make_shared<std::vector<std::string>>();
    auto* cmd = group->add_subcommand(
        action, action == "add" ? "Put devices into a static group" : "Take devices out of a static group");
    cmd->add_option("name", m->id, "Group name")->required();
    cmd->add_option("devices", *devices, "Device ids")->required();
    m->conn.add_options(cmd, true);
    cmd->callback([m, devices, action] {
      ApiClient client(m->conn);
      json g;
      for (const std::string& id : *devices) {
        must_be_device_id(id);
        const std::string path = "/api/v1/groups/" + path_segment(m->id) + "/members/" + id;
        g = must(action == "add" ? client.put(path) : client.del(path));
      }
      if (m->conn.json) {
        std::cout << g.dump(2) << "\n";
        return;
      }
      print_group(g);
    });
  }

  auto d = std::make_shared<RolloutArgs>();
  auto* del =
      group->add_subcommand("delete", "Delete a group (rollouts that targeted it keep their devices)");
  del->add_option("name", d->id, "Group name")->required();
  d->conn.add_options(del, false);
  del->callback([d] {
    must(ApiClient(d->conn).del("/api/v1/groups/" + path_segment(d->id)));
    std::cout << "deleted group " << d->id << "\n";
  });
}

void register_rollout_commands(CLI::App& app) {
  auto* rollout = app.add_subcommand("rollout",
                                     "Staged rollouts: create, plan, start, pause, resume, abort, rollback, "
                                     "status, watch");
  rollout->require_subcommand(1);

  auto c = std::make_shared<RolloutArgs>();
  auto* create = rollout->add_subcommand("create", "Create a rollout from a spec (docs/ORCHESTRATOR.md)");
  create->add_option("-f,--file", c->file, "Spec file, YAML or JSON ('-' = stdin)")->required();
  create->add_flag("--start", c->start, "Start it right away");
  c->conn.add_options(create, true);
  create->callback([c] {
    ApiClient client(c->conn);
    json r = must(client.post("/api/v1/rollouts", read_spec(c->file)));
    if (c->start) r = must(client.post("/api/v1/rollouts/" + str(r, "id") + "/start", ""));
    if (c->conn.json) {
      std::cout << r.dump(2) << "\n";
    } else {
      std::cout << "created rollout " << str(r, "id")
                << (c->start ? " and started it"
                             : "; start it with `fotactl rollout start " + str(r, "id") + "`")
                << "\n";
    }
  });

  auto p = std::make_shared<RolloutArgs>();
  auto* plan = rollout->add_subcommand("plan", "Predict how long a rollout takes, wave by wave");
  plan->add_option("rollout", p->id, "Rollout id")->required();
  p->conn.add_options(plan, true);
  plan->callback([p] {
    json plan_json = must(ApiClient(p->conn).get("/api/v1/rollouts/" + p->id + "/plan"));
    if (p->conn.json) {
      std::cout << plan_json.dump(2) << "\n";
      return;
    }
    std::cout << "rollout " << p->id << ": " << plan_json.value("devices", 0) << " device(s), predicted "
              << plan_json.value("duration_seconds", 0) << " s, from " << str(plan_json, "start_at") << " to "
              << str(plan_json, "end_at") << "\n";
    std::cout << "  90 % bound: " << plan_json.value("bound_duration_seconds", 0) << " s, until "
              << str(plan_json, "bound_end_at") << "\n";
    // What the device times rest on: one line, the sources that have devices.
    std::string basis;
    const auto source = [&](const char* field, const std::string& what) {
      const auto n = plan_json.value(field, 0);
      if (n > 0) basis += (basis.empty() ? "" : ", ") + std::to_string(n) + " " + what;
    };
    source("devices_from_history",
           "from the history of " + str(plan_json, "history_samples") + " comparable update(s)");
    source("devices_with_measured_rate", "at the rate measured in their progress reports");
    source("devices_with_own_measurements", "at what they measured themselves (inventory)");
    source("devices_with_nominal_rate", "at their declared link_rate");
    source("devices_with_default_rate",
           "at the default " + str(plan_json, "assumed_rate_bytes_per_second") + " B/s");
    std::cout << "  model: " << (basis.empty() ? "no open device" : basis) << "; "
              << str(plan_json, "fixed_seconds_per_device")
              << " s install+reboot+confirm for devices without their own\n";
    std::vector<std::vector<std::string>> rows;
    for (const auto& w : plan_json.value("waves", json::array())) {
      rows.push_back({str(w, "index"), str(w, "devices"), str(w, "start_at"), str(w, "end_at"),
                      str(w, "duration_seconds")});
    }
    print_table({"WAVE", "DEVICES", "START", "END", "SECONDS"}, rows);
  });

  for (const char* action : {"start", "pause", "resume", "abort", "rollback"}) {
    auto a = std::make_shared<RolloutArgs>();
    const std::string help =
        std::string(action) == "rollback"
            ? "Send every device this rollout updated back to the artifact it ran before"
            : std::string(1, static_cast<char>(std::toupper(action[0]))) + (action + 1) + " a rollout";
    auto* cmd = rollout->add_subcommand(action, help);
    cmd->add_option("rollout", a->id, "Rollout id")->required();
    a->conn.add_options(cmd, true);
    const std::string act = action;
    cmd->callback([a, act] {
      json r = must(ApiClient(a->conn).post("/api/v1/rollouts/" + a->id + "/" + act, ""));
      if (a->conn.json) {
        std::cout << r.dump(2) << "\n";
      } else {
        std::cout << "rollout " << a->id << ": " << str(r, "state") << "\n";
      }
    });
  }

  auto s = std::make_shared<RolloutArgs>();
  auto* status = rollout->add_subcommand("status", "Show one rollout (or list all without an id)");
  status->add_option("rollout", s->id, "Rollout id");
  status->add_flag("--devices", s->devices, "List every device of the rollout, not only a summary");
  status
      ->add_option("--state", s->states,
                   "List only the devices in this state (repeatable): pending, dispatched, updating, "
                   "retry_wait, succeeded, failed, cancelled, rolling_back, rolled_back, rollback_failed")
      ->check([](const std::string& state) {
        auto parsed = orchestrator::parse_member_state(state);
        return parsed ? std::string() : parsed.error().message;
      });
  s->conn.add_options(status, true);
  status->callback([s] {
    ApiClient client(s->conn);
    if (s->id.empty() && (s->devices || !s->states.empty()))
      throw std::runtime_error(
          "--devices and --state need a rollout id: fotactl rollout status ID --devices");
    if (s->id.empty()) {
      json all = must(client.get("/api/v1/rollouts"));
      if (s->conn.json) {
        std::cout << all.dump(2) << "\n";
        return;
      }
      std::vector<std::vector<std::string>> rows;
      for (const auto& r : all) {
        rows.push_back({str(r, "id"), str(r, "name"), str(r, "state"), str(r, "devices"), str(r, "artifact"),
                        str(r, "created_at")});
      }
      print_table({"ROLLOUT", "NAME", "STATE", "DEVICES", "ARTIFACT", "CREATED"}, rows);
      return;
    }
    json r = must(client.get("/api/v1/rollouts/" + s->id));
    if (s->conn.json) {
      std::cout << r.dump(2) << "\n";
      return;
    }
    print_rollout(r);
    const json members = r.value("members", json::array());
    if (!s->devices && s->states.empty()) {
      print_member_summary(members);
      return;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& m : members) {
      const std::string state = str(m, "state");
      if (!s->states.empty() && std::find(s->states.begin(), s->states.end(), state) == s->states.end())
        continue;
      rows.push_back({str(m, "device"), str(m, "wave"), state, str(m, "phase"), str(m, "attempt"),
                      str(m, "bytes_done"), str(m, "bytes_reused"), str(m, "error")});
    }
    print_table({"DEVICE", "WAVE", "STATE", "PHASE", "ATTEMPT", "BYTES", "REUSED", "ERROR"}, rows);
  });

  auto w = std::make_shared<RolloutArgs>();
  auto* watch =
      rollout->add_subcommand("watch", "Live view: a bar per wave and the ETA, until the rollout ends");
  watch->add_option("rollout", w->id, "Rollout id")->required();
  watch->add_option("--interval", w->interval, "Seconds between updates")->capture_default_str();
  w->conn.add_options(watch, true);
  watch->callback([w] {
    ApiClient client(w->conn);
    const bool tty = isatty(fileno(stdout)) != 0;
    for (;;) {
      json r = must(client.get("/api/v1/rollouts/" + w->id));
      if (w->conn.json) {
        r.erase("members");
        std::cout << r.dump() << "\n";
      } else {
        if (tty) std::cout << "\x1b[2J\x1b[H";
        print_rollout(r);
      }
      std::cout.flush();
      const std::string state = str(r, "state");
      if (state == "completed" || state == "aborted" || state == "rolled_back") return;
      std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int>(w->interval * 1000)));
    }
  });
}

void register_audit_commands(CLI::App& app) {
  auto* audit = app.add_subcommand("audit", "The hash-chained audit log: list, verify");
  audit->require_subcommand(1);
  auto l = std::make_shared<RolloutArgs>();
  auto* list = audit->add_subcommand("list", "Print audit entries");
  l->conn.add_options(list, true);
  list->callback([l] {
    json all = must(ApiClient(l->conn).get("/api/v1/audit"));
    if (l->conn.json) {
      std::cout << all.dump(2) << "\n";
      return;
    }
    for (const auto& e : all) {
      std::cout << str(e, "seq") << "  " << str(e, "time") << "  " << str(e, "actor") << "  "
                << str(e, "action") << "  " << str(e, "detail") << "\n";
    }
  });
  auto v = std::make_shared<RolloutArgs>();
  auto checkpoint_key = std::make_shared<std::string>();
  auto checkpoint_file = std::make_shared<std::string>();
  auto* verify = audit->add_subcommand(
      "verify",
      "Re-compute the hash chain; fails on any edited or deleted entry, and with --checkpoint-key on a chain "
      "that no longer matches its signed checkpoints (rewritten with recomputed hashes)");
  verify->add_option("--head", v->id, "A head hash recorded earlier: also detects entries cut from the end");
  verify
      ->add_option("--checkpoint-key", *checkpoint_key,
                   "The audit key's public half (PREFIX.pub from `fotactl keys generate`): check the signed "
                   "checkpoints")
      ->check(CLI::ExistingFile);
  verify
      ->add_option("--checkpoints", *checkpoint_file,
                   "Read the checkpoints from this copy of the checkpoint file instead of the API")
      ->check(CLI::ExistingFile);
  v->conn.add_options(verify, true);
  verify->callback([v, checkpoint_key, checkpoint_file] {
    json all = must(ApiClient(v->conn).get("/api/v1/audit"));
    std::vector<orchestrator::AuditEntry> entries;
    for (const auto& e : all) {
      entries.push_back(orchestrator::AuditEntry{
          e.value("seq", std::int64_t{0}), e.value("time_ms", std::int64_t{0}), str(e, "actor"),
          str(e, "action"), str(e, "detail"), str(e, "prev_hash"), str(e, "hash")});
    }
    auto result = orchestrator::verify_audit_chain(entries, v->id);
    if (!result) throw std::runtime_error("audit log verification FAILED: " + result.error().message);
    json out{{"ok", true}, {"entries", result->entries}, {"head", result->head_hash}};
    std::string checkpoints_line;
    if (!checkpoint_key->empty()) {
      auto key = common::Ed25519PublicKey::load(*checkpoint_key);
      if (!key) throw std::runtime_error("--checkpoint-key: " + key.error().message);
      common::Result<std::vector<orchestrator::AuditCheckpoint>> checkpoints =
          std::vector<orchestrator::AuditCheckpoint>{};
      if (!checkpoint_file->empty()) {
        auto text = common::read_file(*checkpoint_file);
        if (!text) throw std::runtime_error("--checkpoints: " + text.error().message);
        checkpoints = orchestrator::parse_audit_checkpoints(*text);
      } else {
        json listed = must(ApiClient(v->conn).get("/api/v1/audit/checkpoints"));
        std::vector<orchestrator::AuditCheckpoint> parsed;
        for (const auto& c : listed) {
          parsed.push_back(orchestrator::AuditCheckpoint{c.value("seq", std::int64_t{0}), str(c, "head_hash"),
                                                         c.value("time_ms", std::int64_t{0}),
                                                         str(c, "key_id"), str(c, "signature")});
        }
        checkpoints = std::move(parsed);
      }
      if (!checkpoints) throw std::runtime_error(checkpoints.error().message);
      auto signed_ok = orchestrator::verify_audit_checkpoints(entries, *checkpoints, *key);
      if (!signed_ok) throw std::runtime_error("audit log verification FAILED: " + signed_ok.error().message);
      out["checkpoints"] = signed_ok->checkpoints;
      out["last_checkpoint_seq"] = signed_ok->last_seq;
      checkpoints_line =
          "; " + std::to_string(signed_ok->checkpoints) + " signed checkpoint(s) match it (key " +
          key->key_id() + "), the last at entry " + std::to_string(signed_ok->last_seq) + " of " +
          orchestrator::format_timestamp(signed_ok->last_time_ms) +
          (signed_ok->last_seq < result->entries ? " (later entries are covered by the chain only)" : "");
    }
    if (v->conn.json) {
      std::cout << out.dump(2) << "\n";
    } else {
      std::cout << "OK: " << result->entries << " audit entries, chain intact; head " << result->head_hash
                << " (record it to detect truncation later with --head)" << checkpoints_line << "\n";
    }
  });
}

// Webhooks (admin): docs/ORCHESTRATOR.md, "Webhooks".
void register_webhook_commands(CLI::App& app) {
  auto* webhook = app.add_subcommand(
      "webhook",
      "Webhooks: signed HTTP POSTs to a receiver when rollouts start, breach, complete, abort or "
      "roll back, and when a device fails (admin)");
  webhook->require_subcommand(1);

  struct AddArgs {
    ApiConnection conn;
    std::string url, secret, secret_file, ca_file;
    std::vector<std::string> events;
  };
  auto a = std::make_shared<AddArgs>();
  auto* add = webhook->add_subcommand("add", "Subscribe a receiver URL to events");
  add->add_option("url", a->url, "http:// or https:// URL the deliveries are POSTed to")->required();
  add->add_option("--event,-e", a->events,
                  "An event to deliver (repeatable): rollout.started, rollout.breached, rollout.completed, "
                  "rollout.aborted, rollout.rolled_back, device.failed")
      ->required();
  add->add_option("--secret-file", a->secret_file,
                  "File holding the shared secret (16 to 512 bytes; a trailing newline is dropped), the "
                  "HMAC-SHA256 key of the signatures");
  add->add_option("--secret", a->secret,
                  "The shared secret itself (visible in the process list: prefer --secret-file)");
  add->add_option("--ca-file", a->ca_file,
                  "https: PEM CA bundle on the orchestrator's host the receiver's certificate must chain to "
                  "(default: the system's CAs)");
  a->conn.add_options(add, true);
  add->callback([a] {
    std::string secret = a->secret;
    if (!a->secret_file.empty()) {
      if (!secret.empty()) throw std::runtime_error("give --secret or --secret-file, not both");
      std::ifstream in(a->secret_file, std::ios::binary);
      if (!in) throw std::runtime_error("cannot read --secret-file " + a->secret_file);
      std::stringstream text;
      text << in.rdbuf();
      secret = text.str();
      while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
    }
    if (secret.empty()) {
      throw std::runtime_error(
          "a webhook needs a secret: --secret-file FILE (e.g. made with `openssl rand -hex 32 > FILE`), "
          "shared with the receiver so that it can check each delivery's signature");
    }
    json body{{"url", a->url}, {"events", a->events}, {"secret", secret}};
    if (!a->ca_file.empty()) body["ca_file"] = a->ca_file;
    json w = must(ApiClient(a->conn).post("/api/v1/webhooks", body.dump(), "application/json"));
    if (a->conn.json) {
      std::cout << w.dump(2) << "\n";
      return;
    }
    std::cout << "webhook " << str(w, "id") << " -> " << str(w, "url") << " (" << w["events"].size()
              << " event(s))\n";
  });

  auto l = std::make_shared<RolloutArgs>();
  auto p = std::make_shared<ListArgs>();
  auto* list = webhook->add_subcommand("list", "List the webhooks (their secrets are never shown)");
  l->conn.add_options(list, true);
  p->add_paging(list);
  list->callback([l, p] {
    json all = p->fetch(ApiClient(l->conn), "/api/v1/webhooks", {});
    if (l->conn.json) {
      std::cout << all.dump(2) << "\n";
      return;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& w : all) {
      std::string events;
      for (const auto& e : w.value("events", json::array()))
        events += (events.empty() ? "" : ",") + e.get<std::string>();
      rows.push_back({str(w, "id"), str(w, "url"), events, str(w, "created_by"), str(w, "created")});
    }
    print_table({"WEBHOOK", "URL", "EVENTS", "CREATED BY", "CREATED"}, rows);
  });

  auto r = std::make_shared<RolloutArgs>();
  auto* rm = webhook->add_subcommand("rm", "Delete a webhook and its deliveries");
  rm->add_option("id", r->id, "Webhook id (wh-...)")->required();
  r->conn.add_options(rm, false);
  rm->callback([r] {
    must(ApiClient(r->conn).del("/api/v1/webhooks/" + path_segment(r->id)));
    std::cout << "deleted webhook " << r->id << "\n";
  });

  auto d = std::make_shared<RolloutArgs>();
  auto state = std::make_shared<std::string>();
  auto limit = std::make_shared<int>(100);
  auto* deliveries = webhook->add_subcommand("deliveries", "A webhook's deliveries, newest first");
  deliveries->add_option("id", d->id, "Webhook id (wh-...)")->required();
  deliveries->add_option("--state", *state, "Only pending, delivered or failed ones");
  deliveries->add_option("--limit", *limit, "At most this many (1 to 1000)")->check(CLI::Range(1, 1000));
  d->conn.add_options(deliveries, true);
  deliveries->callback([d, state, limit] {
    std::string path =
        "/api/v1/webhooks/" + path_segment(d->id) + "/deliveries?limit=" + std::to_string(*limit);
    if (!state->empty()) path += "&state=" + path_segment(*state);
    json all = must(ApiClient(d->conn).get(path));
    if (d->conn.json) {
      std::cout << all.dump(2) << "\n";
      return;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& x : all)
      rows.push_back({str(x, "id"), str(x, "event"), str(x, "state"), str(x, "attempts"), str(x, "created"),
                      str(x, "last_error")});
    print_table({"DELIVERY", "EVENT", "STATE", "ATTEMPTS", "CREATED", "LAST ERROR"}, rows);
  });
}

}  // namespace fota::cli
