// SPDX-License-Identifier: Apache-2.0
#include "http_api.hpp"

#include <httplib.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <regex>
#include <set>
#include <sstream>

#include "audit_checkpoints.hpp"
#include "console_assets.hpp"
#include "fota/common/crypto.hpp"
#include "fota/common/phase.hpp"

namespace fota::orchestrator {

using nlohmann::json;

namespace {

Millis now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(2) + "\n", "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& message) {
  send_json(res, status, json{{"error", {{"status", status}, {"message", message}}}});
}

// HTTP status of an error the service or the core returned.
int http_status(const common::Error& e) {
  switch (e.code) {
    case common::Errc::kInvalidArgument:
    case common::Errc::kMalformed:
      return 400;
    case common::Errc::kNotFound:
      return 404;
    case common::Errc::kConflict:
    case common::Errc::kAlreadyExists:
      return 409;
    case common::Errc::kTooLarge:
      return 413;
    case common::Errc::kBadSignature:
    case common::Errc::kUntrustedKey:
    case common::Errc::kIntegrity:
      return 422;
    case common::Errc::kPermissionDenied:
      return 403;
    default:
      return 500;
  }
}

json webhook_json(const WebhookRecord& w) {
  return {{"id", w.id},
          {"url", w.url},
          {"events", w.events},
          {"ca_file", w.ca_file},
          {"created", format_timestamp(w.created_ms)},
          {"created_by", w.actor}};
}

json webhook_delivery_json(const WebhookDelivery& d) {
  json j{{"id", d.id},
         {"webhook", d.webhook_id},
         {"event", d.event},
         {"state", d.state},
         {"created", format_timestamp(d.created_ms)},
         {"attempts", d.attempts},
         {"last_status", d.last_status},
         {"last_error", d.last_error},
         {"body", json::parse(d.body, nullptr, false)}};
  if (d.state == "pending") j["next_attempt"] = format_timestamp(d.next_attempt_ms);
  if (d.finished_ms != 0) j["finished"] = format_timestamp(d.finished_ms);
  return j;
}

json device_json(const DeviceView& view) {
  const DeviceRecord& d = view.device;
  json j{{"id", d.facts.id},
         {"hardware", d.facts.hardware_type},
         {"time_zone", d.facts.time_zone},
         {"artifact_id", d.facts.artifact_id},
         {"version", d.facts.version},
         {"tags", d.facts.tags},
         {"group", d.facts.group},
         {"online", d.facts.online},
         {"last_seen", d.facts.last_seen_ms ? format_timestamp(d.facts.last_seen_ms) : ""},
         {"client_version", d.client_version},
         {"security_counter", d.security_counter},
         {"free_bytes", d.free_bytes},
         {"pending_deployment_id", d.pending_deployment_id},
         {"last_phase", d.last_phase},
         {"last_error", d.last_error},
         {"registered_at", d.registered_ms ? format_timestamp(d.registered_ms) : ""},
         {"rollout", view.rollout},
         {"revoked", d.facts.revoked},
         {"operator_tags", d.facts.operator_tags},
         {"groups", view.groups}};
  // What the device reported; absent until it has (an older client, or renewal not configured).
  if (d.certificate_not_after > 0)
    j["certificate_not_after"] = format_timestamp(d.certificate_not_after * 1000);
  if (!d.facts.decryption_key_id.empty()) j["decryption_key_id"] = d.facts.decryption_key_id;
  // What the device measured itself (Inventory.measurements), what plans use before history.
  if (d.measured.download_bytes_per_second > 0 || d.measured.reboot_ms > 0)
    j["measurements"] = {{"download_bytes_per_second", d.measured.download_bytes_per_second},
                         {"verify_bytes_per_second", d.measured.verify_bytes_per_second},
                         {"reboot_ms", d.measured.reboot_ms},
                         {"health_check_ms", d.measured.health_check_ms}};
  return j;
}

json group_json(const GroupView& v) {
  json j{{"name", v.group.name},
         {"kind", v.group.dynamic() ? "dynamic" : "static"},
         {"selector", v.group.selector},
         {"created_at", format_timestamp(v.group.created_ms)},
         {"created_by", v.group.actor}};
  if (v.members) j["members"] = *v.members;
  return j;
}

json renewal_order_json(const CertificateRenewalOrder& o) {
  return json{{"device", o.device_id},
              {"command_id", o.command_id},
              {"expires_at", format_timestamp(o.expires_at_ms)},
              {"online", o.online}};
}

json revocation_json(const RevocationRecord& r) {
  return json{{"device", r.device_id},
              {"reason", r.reason},
              {"actor", r.actor},
              {"revoked_at", format_timestamp(r.revoked_ms)},
              {"decommissioned_at", r.decommissioned_ms ? format_timestamp(r.decommissioned_ms) : ""}};
}

json revocation_view_json(const RevocationView& v) {
  json j = revocation_json(v.revocation);
  j["registered"] = v.registered;
  j["deny_list"] = v.deny_list.empty() ? json(nullptr) : json(v.deny_list.string());
  return j;
}

// The optional {"reason": "..."} body of a lifecycle action; an empty body is no reason.
common::Result<std::string> reason_of(const httplib::Request& req) {
  if (req.body.empty()) return std::string();
  const json body = json::parse(req.body, nullptr, false);
  if (body.is_discarded() || !body.is_object() || (body.contains("reason") && !body["reason"].is_string())) {
    return common::Error(common::Errc::kInvalidArgument,
                         "the body must be a JSON object like {\"reason\": \"stolen 2026-11-25\"}");
  }
  return body.value("reason", std::string());
}

json manifest_json(const v1::Manifest& m) {
  // Recipient key ids of an encrypted artifact (docs/SECURITY.md); empty when it is not encrypted.
  std::vector<std::string> encrypted_for;
  for (const auto& r : m.encryption().recipients()) encrypted_for.push_back(r.recipient_key_id());
  return json{{"artifact_id", m.artifact_id()},
              {"name", m.name()},
              {"version", m.version()},
              {"security_counter", m.security_counter()},
              {"compatible_hardware",
               std::vector<std::string>(m.compatible_hardware().begin(), m.compatible_hardware().end())},
              {"image_size", m.image_size()},
              {"chunk_size", m.chunk_size()},
              {"chunks", common::ChunkSpace::of(m).image_chunks()},
              {"image_sha256", common::to_hex(m.image_sha256())},
              {"encrypted_for", encrypted_for},
              {"created_at", format_timestamp(m.created_at_ms())}};
}

json member_json(const Member& m) {
  return json{{"device", m.device_id},
              {"wave", m.wave + 1},
              {"state", std::string(member_state_name(m.state))},
              {"phase", std::string(common::phase_name(m.phase))},
              {"attempt", m.attempt},
              {"bytes_done", m.bytes_done},
              {"bytes_total", m.bytes_total},
              {"bytes_reused", m.bytes_reused},
              {"previous_artifact", m.previous_artifact_id},
              {"error", m.last_error},
              {"late_joiner", m.late_joiner}};
}

json rollout_json(const RolloutView& r, Millis now) {
  json j;
  j["id"] = r.id;
  j["name"] = r.spec.name;
  j["artifact"] = r.spec.artifact_id;
  j["state"] = std::string(rollout_state_name(r.state));
  j["reason"] = r.reason;
  j["created_at"] = format_timestamp(r.created_ms);
  j["started_at"] = r.started_ms ? format_timestamp(r.started_ms) : "";
  j["finished_at"] = r.finished_ms ? format_timestamp(r.finished_ms) : "";
  // From the operator's start (or the spec's later start_at) to the end, as the plan counts it.
  if (r.finished_ms > 0 && r.started_ms > 0)
    j["duration_ms"] = r.finished_ms - std::max(r.started_ms, r.spec.start_at_ms.value_or(r.started_ms));
  j["spec"] = json::parse(rollout_spec_to_json(r.spec));
  json waves = json::array();
  for (std::size_t w = 0; w < r.waves.size(); ++w) {
    const WaveView& wave = r.waves[w];
    waves.push_back({{"index", w + 1},
                     {"status", std::string(wave_status_name(wave.state.status))},
                     {"started_at", wave.state.started_ms ? format_timestamp(wave.state.started_ms) : ""},
                     {"finished_at", wave.state.finished_ms ? format_timestamp(wave.state.finished_ms) : ""},
                     {"devices", wave.devices},
                     {"counts", wave.counts},
                     {"bytes_done", wave.bytes_done},
                     {"bytes_total", wave.bytes_total},
                     {"bytes_reused", wave.bytes_reused}});
  }
  j["waves"] = waves;
  j["counts"] = r.counts;
  j["devices"] = r.devices;
  if (r.eta_end_ms) {
    j["eta"] = {{"end_at", format_timestamp(*r.eta_end_ms)},
                {"remaining_seconds", (*r.eta_end_ms - now) / 1000},
                {"remaining_ms", *r.eta_end_ms - now}};
    if (r.eta_bound_end_ms) {
      j["eta"]["bound_end_at"] = format_timestamp(*r.eta_bound_end_ms);
      j["eta"]["bound_remaining_ms"] = *r.eta_bound_end_ms - now;
    }
  }
  if (r.members) {
    json members = json::array();
    for (const Member& m : *r.members) members.push_back(member_json(m));
    j["members"] = members;
  }
  return j;
}

json plan_json(const RolloutPlan& plan) {
  const RolloutPrediction& p = plan.prediction;
  json waves = json::array();
  for (std::size_t w = 0; w < p.waves.size(); ++w) {
    waves.push_back({{"index", w + 1},
                     {"devices", p.waves[w].devices},
                     {"start_at", format_timestamp(p.waves[w].start_ms)},
                     {"end_at", format_timestamp(p.waves[w].end_ms)},
                     {"duration_seconds", (p.waves[w].end_ms - p.waves[w].start_ms) / 1000}});
  }
  return json{{"rollout", plan.rollout},
              {"start_at", format_timestamp(p.start_ms)},
              {"end_at", format_timestamp(p.end_ms)},
              {"duration_seconds", p.duration_ms / 1000},
              {"duration_ms", p.duration_ms},
              {"devices", p.devices},
              {"bound_end_at", format_timestamp(p.bound_end_ms)},
              {"bound_duration_ms", p.bound_duration_ms},
              {"bound_duration_seconds", p.bound_duration_ms / 1000},
              // What each open device's time came from (docs/ORCHESTRATOR.md, "Prediction").
              {"devices_from_history", p.devices_from_history},
              {"devices_with_measured_rate", p.devices_with_measured_rate},
              {"devices_with_own_measurements", p.devices_with_own_measurements},
              {"devices_with_nominal_rate", p.devices_with_nominal_rate},
              {"devices_with_default_rate", p.devices_with_default_rate},
              {"history_samples", p.history_samples},
              {"image_size", plan.image_size},
              {"assumed_rate_bytes_per_second", plan.assumed_rate_bytes_per_second},
              {"fixed_seconds_per_device", plan.fixed_ms_per_device / 1000},
              {"waves", waves}};
}

json event_json(const EventRecord& e) {
  return json{{"id", e.id},
              {"time", format_timestamp(e.time_ms)},
              {"device", e.device_id},
              {"rollout", e.rollout_id},
              {"kind", e.kind},
              {"detail", e.detail}};
}

json audit_json(const AuditEntry& e) {
  return json{{"seq", e.seq},
              {"time_ms", e.time_ms},
              {"time", format_timestamp(e.time_ms)},
              {"actor", e.actor},
              {"action", e.action},
              {"detail", e.detail},
              {"prev_hash", e.prev_hash},
              {"hash", e.hash}};
}

json checkpoint_json(const AuditCheckpoint& c) {
  return json{{"seq", c.seq},         {"head_hash", c.head_hash},
              {"time_ms", c.time_ms}, {"time", format_timestamp(c.time_ms)},
              {"key_id", c.key_id},   {"signature", c.signature}};
}

json log_json(const LogRecord& l) {
  return json{{"id", l.id},
              {"time", format_timestamp(l.time_ms)},
              {"level", l.level},
              {"message", l.message},
              {"source", l.source}};
}

template <typename T>
json array_of(const std::vector<T>& items, json (*render)(const T&)) {
  json out = json::array();
  for (const T& item : items) out.push_back(render(item));
  return out;
}

// One Prometheus counter: its HELP line (when `help` is set), TYPE line and value.
template <typename N>
void counter(std::ostringstream& out, std::string_view name, std::string_view help, N value) {
  if (!help.empty()) out << "# HELP " << name << " " << help << "\n";
  out << "# TYPE " << name << " counter\n" << name << " " << value << "\n";
}

// Prometheus text exposition of the metrics.
std::string metrics_text(const ServiceMetrics& m) {
  const FleetSummary& s = m.fleet;
  std::ostringstream out;
  out << "# HELP fota_devices Registered devices by presence.\n# TYPE fota_devices gauge\n";
  out << "fota_devices{presence=\"online\"} " << s.online << "\n";
  out << "fota_devices{presence=\"offline\"} " << s.devices - s.online << "\n";
  out << "# HELP fota_devices_by_phase Devices by the phase of their last progress report.\n"
         "# TYPE fota_devices_by_phase gauge\n";
  for (const auto& [phase, n] : s.devices_by_phase)
    out << "fota_devices_by_phase{phase=\"" << phase << "\"} " << n << "\n";
  out << "# HELP fota_rollouts Rollouts by state.\n# TYPE fota_rollouts gauge\n";
  for (const auto& [state, n] : s.rollouts_by_state)
    out << "fota_rollouts{state=\"" << state << "\"} " << n << "\n";
  out << "# HELP fota_rollout_eta_seconds Predicted seconds until an active rollout finishes.\n"
         "# TYPE fota_rollout_eta_seconds gauge\n";
  for (const auto& [id, remaining_ms] : s.running_rollout_remaining_ms)
    out << "fota_rollout_eta_seconds{rollout=\"" << id << "\"} " << remaining_ms / 1000 << "\n";
  counter(out, "fota_chunks_served_total", "", m.chunks_served);
  counter(out, "fota_chunk_bytes_served_total", "", m.chunk_bytes_served);
  counter(out, "fota_progress_reports_total", "", s.progress_reports);
  counter(out, "fota_messages_from_revoked_total", "Messages from revoked devices, ignored.",
          s.messages_from_revoked);
  counter(out, "fota_commands_sent_total", "", m.commands_sent);
  counter(out, "fota_messages_rejected_total", "", m.messages_rejected);
  counter(out, "fota_chunk_requests_dropped_total", "Chunk requests dropped because the queue was full.",
          m.chunk_requests_dropped);
  counter(out, "fota_chunk_requests_refused_total",
          "Chunk requests for an artifact the device is not assigned.", m.chunk_requests_refused);
  counter(out, "fota_certificates_issued_total", "Device certificate requests signed by the issuing CA.",
          m.certificates_issued);
  counter(out, "fota_certificate_requests_refused_total", "Device certificate requests refused.",
          m.certificate_requests_refused);
  counter(
      out, "fota_certificate_requests_dropped_total",
      "Device certificate requests not handled: over pki.max_pending_requests or the per-device interval.",
      m.certificate_requests_dropped);
  counter(out, "fota_certificates_refused_by_devices_total",
          "Certificates a device refused to install (ERROR_CERTIFICATE_REFUSED).",
          m.certificates_refused_by_devices);
  out << "# HELP fota_webhook_deliveries Webhook deliveries in the outbox by state (failed: gave up).\n"
         "# TYPE fota_webhook_deliveries gauge\n";
  for (const auto& [state, n] : m.webhook_deliveries)
    out << "fota_webhook_deliveries{state=\"" << state << "\"} " << n << "\n";
  counter(out, "fota_webhook_attempts_failed_total",
          "Webhook delivery attempts the receiver did not accept (no answer or not 2xx).",
          m.webhook_attempts_failed);
  return out.str();
}

// A typed answer as JSON with `ok_status`, or its error with the status its code maps to.
template <typename T, typename Render>
void send(httplib::Response& res, const common::Result<T>& result, Render render, int ok_status = 200) {
  if (result) {
    send_json(res, ok_status, render(*result));
  } else {
    send_error(res, http_status(result.error()), result.error().message);
  }
}

// Refuses a query parameter the route does not take (a typo would otherwise filter nothing).
common::Status check_params(const httplib::Request& req, std::initializer_list<std::string_view> allowed) {
  for (const auto& [name, value] : req.params) {
    if (std::find(allowed.begin(), allowed.end(), name) != allowed.end()) continue;
    std::string list;
    for (std::string_view a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
    return common::Error(common::Errc::kInvalidArgument,
                         name.substr(0, 40) + ": GET " + req.path + " takes no parameter '" +
                             name.substr(0, 40) + "'" +
                             (list.empty() ? std::string() : "; it takes " + list));
  }
  return common::ok_status();
}

// A whole number parameter in [min, max], or `fallback` when absent; errors name the parameter.
common::Result<std::int64_t> number_param(const httplib::Request& req, const char* name,
                                          std::int64_t fallback, std::int64_t min, std::int64_t max) {
  if (!req.has_param(name)) return fallback;
  const std::string text = req.get_param_value(name);
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < min || value > max) {
    return common::Error(common::Errc::kInvalidArgument,
                         std::string(name) + ": '" + text.substr(0, 40) + "' is not a whole number from " +
                             std::to_string(min) + " to " + std::to_string(max));
  }
  return value;
}

// The page size a list takes: ?limit= from 1 to kMaxPage; absent = the whole list (as before
// paging existed; the console and fotactl always page).
constexpr std::int64_t kMaxPage = 1000;
constexpr std::int64_t kWholeList = std::int64_t{1} << 40;
common::Result<std::size_t> limit_param(const httplib::Request& req) {
  auto limit = number_param(req, "limit", kWholeList, 1, kMaxPage);
  if (!limit) return limit.error();
  return static_cast<std::size_t>(*limit);
}

// Where the page starts: the key in ?cursor= (empty when absent).
common::Result<std::string> cursor_param(const httplib::Request& req, std::string_view list) {
  if (!req.has_param("cursor")) return std::string();
  return decode_cursor(list, req.get_param_value("cursor"));
}

// The next page's cursor, when there is one: in the X-Next-Cursor header, and as a Link to the
// next page (RFC 8288), so that the body stays the list it always was.
void set_next(const httplib::Request& req, httplib::Response& res, std::string_view list,
              const std::string& key) {
  if (key.empty()) return;
  const std::string cursor = encode_cursor(list, key);
  res.set_header("X-Next-Cursor", cursor);
  std::string query;
  for (const auto& [name, value] : req.params) {
    if (name == "cursor") continue;
    query += (query.empty() ? "?" : "&") + httplib::detail::encode_query_param(name) + "=" +
             httplib::detail::encode_query_param(value);
  }
  query += (query.empty() ? "?" : "&") + std::string("cursor=") + cursor;
  res.set_header("Link", "<" + req.path + query + ">; rel=\"next\"");
}

// A page of an in-memory list sorted by `key`: the items after `after`, at most `limit`; `next`
// is set when more follow.
template <typename T, typename Key>
std::vector<T> page_of(std::vector<T> sorted, Key key, const std::string& after, std::size_t limit,
                       std::string& next) {
  std::stable_sort(sorted.begin(), sorted.end(), [&](const T& a, const T& b) { return key(a) < key(b); });
  auto first = std::upper_bound(sorted.begin(), sorted.end(), after,
                                [&](const std::string& a, const T& item) { return a < key(item); });
  if (after.empty()) first = sorted.begin();
  std::vector<T> out;
  for (auto it = first; it != sorted.end() && out.size() < limit; ++it) out.push_back(std::move(*it));
  if (!out.empty() && out.size() == limit && first + static_cast<std::ptrdiff_t>(limit) != sorted.end())
    next = key(out.back());
  return out;
}

// The device list's filters, or an error naming the parameter.
common::Result<DeviceListRequest> device_list_request(const httplib::Request& req) {
  if (auto st = check_params(
          req, {"limit", "cursor", "version", "state", "online", "hardware", "group", "tag", "q"});
      !st)
    return st.error();
  DeviceListRequest out;
  auto limit = limit_param(req);
  if (!limit) return limit.error();
  out.limit = *limit;
  auto after = cursor_param(req, "devices");
  if (!after) return after.error();
  out.after_id = *after;
  // Each filter is a selector term, so that the list and dynamic groups mean the same thing.
  std::string terms;
  for (const char* name : {"hardware", "tag", "online"}) {
    if (!req.has_param(name)) continue;
    const std::string value = req.get_param_value(name);
    if (value.empty() || value.find(',') != std::string::npos) {
      return common::Error(common::Errc::kInvalidArgument,
                           std::string(name) + ": give one non-empty value without commas");
    }
    terms += (terms.empty() ? "" : ",") + std::string(name) + "=" + value;
  }
  if (req.has_param("version")) {
    // ?version=2.0 is exact; ?version=<2.0 (or <=, >, >=, !=) compares.
    const std::string value = req.get_param_value("version");
    const bool has_op =
        !value.empty() && (value[0] == '<' || value[0] == '>' || value[0] == '!' || value[0] == '=');
    if (value.empty() || value.find(',') != std::string::npos) {
      return common::Error(common::Errc::kInvalidArgument,
                           "version: give a version like 2.0, or a comparison like <2.0 or >=1.5");
    }
    terms += (terms.empty() ? "" : ",") + std::string("version") + (has_op ? "" : "=") + value;
  }
  if (!terms.empty()) {
    auto selector = parse_device_selector(terms);
    if (!selector) {
      const std::string& m = selector.error().message;
      // Name the parameter the bad term came from.
      std::string param = "filter";
      for (const char* name : {"hardware", "tag", "online", "version"}) {
        if (m.find("'" + std::string(name)) != std::string::npos) param = name;
      }
      return common::Error(common::Errc::kInvalidArgument, param + ": " + m);
    }
    out.filter = std::move(selector).value();
  }
  out.group = req.get_param_value("group");
  out.phase = req.get_param_value("state");
  out.id_contains = req.get_param_value("q");
  return out;
}

std::int64_t int_param(const httplib::Request& req, const char* name, std::int64_t fallback) {
  if (!req.has_param(name)) return fallback;
  try {
    return std::stoll(req.get_param_value(name));
  } catch (const std::exception&) {
    return fallback;
  }
}

json fleet_summary_json(const FleetSummary& s) {
  return json{{"devices", s.devices},
              {"online", s.online},
              {"offline", s.devices - s.online},
              {"by_phase", s.devices_by_phase},
              {"by_version", s.devices_by_version},
              {"by_hardware", s.devices_by_hardware},
              {"rollouts_by_state", s.rollouts_by_state}};
}

// The event stream (server-sent events) and its bounds: a client gets at most kMaxStreamItems
// items a step (past that a "resync" asks it to reload), so what is queued for one client is
// bounded; a client too slow to take a step within the write timeout is disconnected, and only its
// own connection thread ever waits on it.
constexpr const char* kEventStreamPath = "/api/v1/events/stream";
constexpr int kMaxEventStreams = 16;
constexpr std::size_t kMaxStreamItems = 100;
constexpr Millis kStreamKeepAliveMs = 10'000;
// How old a live snapshot (events, rollouts, fleet summary) may be before it is taken again: the
// streams and GET /api/v1/fleet/summary share it, so their cost does not grow with the watchers.
constexpr Millis kSnapshotMaxAgeMs = 500;
// The fleet summary walks every device under the service's lock (100,000 of them in a large
// fleet): it is taken again at most every 2 s, however many watch.
constexpr Millis kFleetSummaryMaxAgeMs = 2000;
// Connection threads: the streams plus as many for ordinary requests.
constexpr std::size_t kHttpThreads = 2 * kMaxEventStreams;

std::string sse(std::string_view event, const json& data) {
  return "event: " + std::string(event) + "\ndata: " + data.dump() + "\n\n";
}

}  // namespace

struct LiveSnapshot {
  Millis taken_ms = 0;
  Millis fleet_taken_ms = 0;
  std::vector<EventRecord> events;                            // newest first
  std::vector<std::pair<std::string, std::string>> rollouts;  // id -> its JSON
  std::string fleet;                                          // the fleet summary's JSON
};

struct EventStreamState {
  Millis interval_ms = 1000;
  bool started = false;
  std::int64_t last_event_id = 0;
  Millis last_write_ms = 0;
  std::string fleet;                            // the last fleet summary sent
  std::map<std::string, std::string> rollouts;  // id -> the last JSON sent (or seen at the start)
};

namespace {

// The TLS context of the API: the server certificate and key, and with a client CA, client
// certificates verified against it (optional unless required: bearer tokens keep working).
// Returns why it failed, or empty.
std::string setup_tls(SSL_CTX& ctx, const HttpTlsConfig& tls) {
  auto failed = [](const std::string& what) {
    const unsigned long code = ERR_get_error();
    char reason[256] = "";
    if (code != 0) ERR_error_string_n(code, reason, sizeof reason);
    ERR_clear_error();
    return what + (code != 0 ? std::string(" (") + reason + ")" : std::string());
  };
  SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(&ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  if (SSL_CTX_use_certificate_chain_file(&ctx, tls.cert.c_str()) != 1)
    return failed("http.tls.cert " + tls.cert.string() + " is not a PEM certificate");
  if (SSL_CTX_use_PrivateKey_file(&ctx, tls.key.c_str(), SSL_FILETYPE_PEM) != 1)
    return failed("http.tls.key " + tls.key.string() + " is not a PEM private key");
  if (SSL_CTX_check_private_key(&ctx) != 1)
    return failed("http.tls.key does not belong to http.tls.cert " + tls.cert.string());
  if (!tls.client_ca.empty()) {
    if (SSL_CTX_load_verify_locations(&ctx, tls.client_ca.c_str(), nullptr) != 1)
      return failed("http.tls.client_ca " + tls.client_ca.string() + " is not a PEM CA certificate");
    // A certificate that does not chain to the CA (another CA, expired) fails the handshake.
    SSL_CTX_set_verify(
        &ctx, SSL_VERIFY_PEER | (tls.require_client_certificate ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
        nullptr);
  }
  return {};
}

}  // namespace

HttpApi::HttpApi(OrchestratorService& service, std::vector<ApiToken> tokens, HttpTlsConfig tls,
                 std::filesystem::path upload_dir, std::uint64_t max_body_bytes,
                 std::shared_ptr<spdlog::logger> logger)
    : service_(service),
      auth_(std::move(tokens)),
      upload_dir_(std::move(upload_dir)),
      max_body_bytes_(max_body_bytes),
      log_(std::move(logger)) {
  if (tls.enabled()) {
    server_ = std::make_unique<httplib::SSLServer>([this, &tls](SSL_CTX& ctx) {
      tls_error_ = setup_tls(ctx, tls);
      return tls_error_.empty();
    });
  } else {
    server_ = std::make_unique<httplib::Server>();
  }
  server_->new_task_queue = [] { return new httplib::ThreadPool(kHttpThreads); };
  routes();
  console_routes();
}

HttpApi::~HttpApi() { stop(); }

void HttpApi::routes() {
  httplib::Server& s = *server_;
  // Bodies are read into memory before a handler sees them (an artifact bundle too): a body over
  // the limit is drained without being kept and answered 413.
  s.set_payload_max_length(static_cast<std::size_t>(max_body_bytes_));
  // Every route with its methods, so that a method a route does not take is answered 405.
  auto known = std::make_shared<std::vector<std::pair<std::string, std::regex>>>();
  // Who is calling, from the Authorization header and the client certificate the handshake verified.
  auto identify = [this](const httplib::Request& req) {
    const X509* certificate = req.ssl != nullptr ? SSL_get0_peer_certificate(req.ssl) : nullptr;
    return auth_.identify(req.get_header_value("Authorization"), certificate);
  };
  // An /api/ route: its handler runs only for a caller whose role includes `needed`.
  using ApiHandler = std::function<void(const httplib::Request&, httplib::Response&, const ApiCaller&)>;
  auto guarded = [identify](ApiRole needed, ApiHandler handler) {
    return [identify, needed, handler = std::move(handler)](const httplib::Request& req,
                                                            httplib::Response& res) {
      auto caller = identify(req);  // the pre-routing handler refused a request without one
      if (!caller) return send_error(res, 401, caller.error().message);
      if (!api_role_grants(caller->role, needed)) {
        return send_error(res, 403,
                          caller->actor + " has the " + std::string(api_role_name(caller->role)) + " role; " +
                              req.method + " " + req.path + " needs " + std::string(api_role_name(needed)) +
                              ": ask an admin for a token or certificate with that role");
      }
      handler(req, res, *caller);
    };
  };
  auto open_get = [&s, known](const std::string& pattern, httplib::Server::Handler handler) {
    known->emplace_back("GET", std::regex(pattern));
    s.Get(pattern, std::move(handler));
  };
  auto get = [&s, known, guarded](const std::string& pattern, ApiRole needed, ApiHandler handler) {
    known->emplace_back("GET", std::regex(pattern));
    s.Get(pattern, guarded(needed, std::move(handler)));
  };
  auto post = [&s, known, guarded](const std::string& pattern, ApiRole needed, ApiHandler handler) {
    known->emplace_back("POST", std::regex(pattern));
    s.Post(pattern, guarded(needed, std::move(handler)));
  };
  auto put = [&s, known, guarded](const std::string& pattern, ApiRole needed, ApiHandler handler) {
    known->emplace_back("PUT", std::regex(pattern));
    s.Put(pattern, guarded(needed, std::move(handler)));
  };
  auto del = [&s, known, guarded](const std::string& pattern, ApiRole needed, ApiHandler handler) {
    known->emplace_back("DELETE", std::regex(pattern));
    s.Delete(pattern, guarded(needed, std::move(handler)));
  };
  s.set_pre_routing_handler([this, identify](const httplib::Request& req, httplib::Response& res) {
    // cpp-httplib bounds only bodies with a Content-Length: a chunked body, or one that lasts until
    // the connection closes, would be read into memory whatever its size.
    const bool has_body = req.method == "POST" || req.method == "PUT" || req.method == "PATCH";
    if (has_body && (req.has_header("Transfer-Encoding") || !req.has_header("Content-Length"))) {
      send_error(res, 411,
                 "length required: send the body of " + req.method + " " + req.path +
                     " with a Content-Length header (at most " + std::to_string(max_body_bytes_) +
                     " bytes, http.max_body_bytes), not chunked");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (req.path.rfind("/api/", 0) != 0) return httplib::Server::HandlerResponse::Unhandled;
    // The event stream's ticket stands for the caller (EventSource sends no header): its route checks it.
    if (req.path == kEventStreamPath && req.has_param("ticket"))
      return httplib::Server::HandlerResponse::Unhandled;
    // Who calls is checked before anything else, unknown routes included; what the role allows,
    // by each route.
    if (auto caller = identify(req); !caller) {
      send_error(res, caller.error().code == common::Errc::kPermissionDenied ? 403 : 401,
                 caller.error().message);
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  s.set_exception_handler([this](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    log_->error("{} {} failed: {}", req.method, req.path, what);
    send_error(res, 500, "internal error: " + what);
  });

  // What cpp-httplib answers itself (no route, a body over the limit, a malformed request) comes
  // with an empty body: give it the JSON error every other answer has.
  s.set_error_handler(httplib::Server::HandlerWithResponse([this, known](const httplib::Request& req,
                                                                         httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    const std::string request = req.method + " " + req.path;
    std::string message;
    switch (res.status) {
      case 404: {
        std::set<std::string> methods;
        for (const auto& [method, pattern] : *known) {
          if (std::regex_match(req.path, pattern)) methods.insert(method);
        }
        if (!methods.empty()) {
          std::string allowed, alternatives;
          for (const std::string& method : methods) {
            const bool last = method == *methods.rbegin();
            allowed += (allowed.empty() ? "" : ", ") + method;
            alternatives += (alternatives.empty() ? "" : last ? " or " : ", ") + method;
          }
          res.status = 405;
          res.set_header("Allow", allowed);
          message = req.method + " is not allowed on " + req.path + "; use " + alternatives;
        } else {
          message = "no such route: " + request +
                    "; the routes are listed in docs/openapi.yaml (an id is one path segment: no '/')";
        }
        break;
      }
      case 413:
        message = "request body of " + req.get_header_value("Content-Length") + " bytes to " + request +
                  " is larger than this orchestrator takes (" + std::to_string(max_body_bytes_) +
                  " bytes); send less, or raise http.max_body_bytes in the orchestrator's config";
        break;
      case 414:
        message = "request URI too long: shorten the path and query of " + req.method + " " +
                  req.path.substr(0, 64) + "...";
        break;
      case 400:
        message = "malformed request " + request +
                  ": the request line, a header or the body could not be read; send a well-formed HTTP/1.1 "
                  "request";
        break;
      default:
        message = "HTTP " + std::to_string(res.status) + " for " + request + "; see the orchestrator's log";
    }
    send_error(res, res.status, message);
    return httplib::Server::HandlerResponse::Handled;
  }));

  open_get("/healthz",
           [](const httplib::Request&, httplib::Response& res) { res.set_content("ok\n", "text/plain"); });
  open_get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_text(service_.metrics(now_ms())), "text/plain; version=0.0.4");
  });

  // Who the caller is and what it may do: the console hides the actions its role is refused.
  get("/api/v1/whoami", ApiRole::kViewer,
      [](const httplib::Request&, httplib::Response& res, const ApiCaller& caller) {
        send_json(res, 200, json{{"actor", caller.actor}, {"role", std::string(api_role_name(caller.role))}});
      });
  // The fleet at a glance: counts by presence, phase, version and hardware, rollouts by state.
  get("/api/v1/fleet/summary", ApiRole::kViewer,
      [this](const httplib::Request& req, httplib::Response& res, const ApiCaller&) {
        if (auto st = check_params(req, {}); !st) return send_error(res, 400, st.error().message);
        res.set_content(live_snapshot(now_ms())->fleet + "\n", "application/json");
      });
  // A ticket for the event stream (EventSource cannot send the Authorization header).
  post("/api/v1/events/stream-tickets", ApiRole::kViewer,
       [this](const httplib::Request&, httplib::Response& res, const ApiCaller& caller) {
         auto ticket = stream_tickets_.issue(caller, now_ms());
         if (!ticket) return send_error(res, 503, ticket.error().message);
         send_json(res, 201,
                   json{{"ticket", *ticket},
                        {"expires_in_seconds", StreamTickets::kTicketLifetimeMs / 1000},
                        {"url", std::string(kEventStreamPath) + "?ticket=" + *ticket}});
       });
  open_get(kEventStreamPath, [this, identify](const httplib::Request& req, httplib::Response& res) {
    auto caller = req.has_param("ticket") ? stream_tickets_.redeem(req.get_param_value("ticket"), now_ms())
                                          : identify(req);
    if (!caller) return send_error(res, 401, caller.error().message);
    if (auto st = check_params(req, {"ticket", "interval_ms"}); !st)
      return send_error(res, 400, st.error().message);
    auto interval = number_param(req, "interval_ms", 1000, 100, 60'000);
    if (!interval) return send_error(res, 400, interval.error().message);
    if (streams_.fetch_add(1) >= kMaxEventStreams) {
      --streams_;
      res.set_header("Retry-After", "5");
      return send_error(res, 503,
                        "this orchestrator already serves " + std::to_string(kMaxEventStreams) +
                            " event streams; close one (a console tab) or retry later");
    }
    auto state = std::make_shared<EventStreamState>();
    state->interval_ms = *interval;
    res.set_header("Cache-Control", "no-store");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, state](std::size_t, httplib::DataSink& sink) { return stream_step(*state, sink); },
        [this](bool) { --streams_; });
  });

  post("/api/v1/artifacts", ApiRole::kAdmin,
       [this](const httplib::Request& req, httplib::Response& res, const ApiCaller& caller) {
         if (req.body.empty()) {
           send_error(
               res, 400,
               "empty body: send the bundle file made by `fotactl artifact create` as the request body");
           return;
         }
         std::error_code ec;
         std::filesystem::create_directories(upload_dir_, ec);
         const auto path = upload_dir_ / ("upload-" + std::to_string(std::random_device{}()) + ".bundle");
         {
           std::ofstream out(path, std::ios::binary);
           out.write(req.body.data(), static_cast<std::streamsize>(req.body.size()));
           if (!out) {
             send_error(res, 500, "cannot store the upload in " + upload_dir_.string());
             return;
           }
         }
         auto result = service_.import_artifact(path, caller.actor, now_ms());
         std::filesystem::remove(path, ec);
         send(res, result, manifest_json, 201);
       });
  get("/api/v1/artifacts", ApiRole::kViewer,
      [this](const httplib::Request& req, httplib::Response& res, const ApiCaller&) {
        if (auto st = check_params(req, {"limit", "cursor"}); !st)
          return send_error(res, 400, st.error().message);
        auto limit = limit_param(req);
        if (!limit) return send_error(res, 400, limit.error().message);
        auto after = cursor_param(req, "artifacts");
        if (!after) return send_error(res, 400, after.error().message);
        std::string next;
        auto page = page_of(
            service_.list_artifacts(), [](const v1::Manifest& m) { return m.artifact_id(); }, *after, *limit,
            next);
        set_next(req, res, "artifacts", next);
        send_json(res, 200, array_of(page, manifest_json));
      });
  // The retention rule now (docs/ORCHESTRATOR.md, "Artifact retention"); ?dry_run=true only says.
  post("/api/v1/artifacts/retention/run", ApiRole::kAdmin,
       [this](const httplib::Request& req, httplib::Response& res, const ApiCaller& caller) {
         if (auto st = check_params(req, {"dry_run"}); !st) return send_error(res, 400, st.error().message);
         const std::string dry = req.has_param("dry_run") ? req.get_param_value("dry_run") : "false";
         if (dry != "true" && dry != "false")
           return send_error(res, 400, "dry_run: '" + dry.substr(0, 20) + "' is neither true nor false");
         send(res, service_.run_artifact_retention(dry == "true", caller.actor, now_ms()),
              [](const RetentionReport& report) {
                json deleted = json::array(), kept = json::array();
                for (const RetentionDecision& d : report.decisions) {
                  json j{{"artifact_id", d.artifact.artifact_id},
                         {"name", d.artifact.name},
                         {"version", d.artifact.version},
                         {"compatible_hardware", d.artifact.hardware},
                         {"created_at", format_timestamp(d.artifact.created_ms)},
                         {"reason", d.reason}};
                  (d.remove ? deleted : kept).push_back(std::move(j));
                }
                return json{{"dry_run", report.dry_run},
                            {"rule",
                             {{"keep_last", report.rule.keep_last},
                              {"min_age_seconds", report.rule.min_age_ms / 1000},
                              {"interval_seconds", report.rule.interval_ms / 1000}}},
                            {report.dry_run ? "would_delete" : "deleted", deleted},
                            {"kept", kept}};
              });
       });
  // Refused (409, naming the rollout) while a rollout may still send it or roll back to it.
  del(R"(/api/v1/artifacts/([^/]+))", ApiRole::kAdmin,
      [this](const httplib::Request& req, httplib::Response& res, const ApiCaller& caller) {
        auto st = service_.delete_artifact(req.matches[1], caller.actor, now_ms());
        if (!st) return send_error(res, http_status(st.error()), st.error().message);
        res.status = 204;
      });
  // The artifact as the signed bundle it was uploaded as (bundle header, then the image), streamed
  // from the store: what an edge broker fetches once to serve its devices (docs/BROKER_PLUGIN.md,
  // "Edge brokers"). An edge's broker certificate may call this route and no other.
  get(R"(/api/v1/artifacts/([^/]+)/bundle)", ApiRole::kEdge,
      [this](const httplib::Request& req, httplib::Response& res, const ApiCaller& caller) {
        auto bundle = service_.artifact_bundle(req.matches[1]);
        if (!bundle) return send_error(res, http_status(bundle.error()), bundle.error().message);
        auto image = std::make_shared<std::ifstream>(bundle->image, std::ios::binary);
        if (!*image)
          return send_error(res, 500, "cannot read the stored image of " + std::string(req.matches[1]));
        log_->info("{} downloads the bundle of artifact {}", caller.actor, std::string(req.matches[1]));
        auto header = std::make_shared<std::string>(std::move(bundle->header));
        const std::uint64_t total = header->size() + bundle->image_size;
        res.set_content_provider(
            static_cast<std::size_t>(total), "application/octet-stream",
            [header, image](std::size_t offset, std::size_t length, httplib::DataSink& sink) {
              constexpr std::size_t kPiece = 256 * 1024;
              if (offset < header->size()) {
                const std::size_t n = std::min(length, header->size() - offset);
                return sink.write(header->data() + offset, n);
              }
              std::string piece(std::min(length, kPiece), '\0');
              image->seekg(static_cast<std::streamoff>(offset - header->size()));
              image->read(piece.data(), static_cast<std::streamsize>(piece.size()));
              const auto got = static_cast<std::size_t>(image->gcount());
              if (got == 0) return false;  // the image shrank under us: end the answer short
              return sink.write(piece.data(), got);
            });
      });
  get(R"(/api/v1/artifacts/([^/]+))", ApiRole::kViewer,
      [this](const httplib::Request& req, httplib::Response& res, const ApiCaller&) {
        send(res, service_.get_artifact(req.matches[1]), manifest_json);
      });

  get("/api/v1/devices", ApiRole::kViewer,
      [this](const httplib::Request& req, httplib::Response& res, const ApiCaller&) {
        auto request = device_list_request(req);
        if (!request) return send_error(res, 400, request.error().message);
        auto page = service_.list_devices(*request);
        if (!page) return send_error(res, http_status(page.error()), page.error().message);
        set_next(req, res, "devices", page->next_after);
        send_json(res, 200, array_of(page->devices, device_json));
      });
  // Operator tags (docs/ORCHESTRATOR.md, "Tags and groups").
  put(R"(/api/v1/devices/([^/]+)/tags/([^/]+))", ApiRole::kOperator,
      [this](const httplib::Request& req, httplib::Response& res, const ApiCaller& caller) {
        send(res, service_.set_device_tag(req.matches[1], req.matches[2], true, caller.actor, now_ms()),
             device_json);
      });
  del(R"(/api/v1/devices/([^/]+)/tags/([^/]+))", ApiRole::kOperator,
      [this](const httplib::Request& req, httplib::Response& res, const ApiCaller& caller) {
        send(res, service_.set_device_tag(req.matches[1], req.matches[2], false, caller.actor, now_ms()),
             device_json);
      });
  // Deleting a device is decommissioning it (admin): revoked, out of the inventory.
  del(R"(/api/v1/devices/([^/]+))", ApiRole::kAdmin,
      [this](const httplib::Request& req, httplib::Response& res, const ApiCaller& caller) {
        auto reason = reason_of(req);
        if (!reason) return send_error(res, 400, reason.error().message);
        send(res, service_.decommission_device(req.matches[1], *reason, caller.actor, now_ms()),
             revocation_view_json);
      });

  // Webhooks (docs/ORCHESTRATOR.md, "Webhooks"): admins subscribe; the secret is never shown.
  post("/api/v1/webhooks", ApiRole::kAdmin,
       [this](const httplib::Request& req, httplib::Response& res, const ApiCaller& caller) {
         const json body = json::parse(req.body, nullptr, false);
         const char* shape =
             "the body must be a JSON object like {\"url\": \"https://hooks.example.com/fota\", \"events\": "
             "[\"rollout.completed\", \"device.failed\"], \"secret\": \"...\"} (optional \"ca_file\": a PEM "
             "CA bundle on the orchestrator's host for https)";
         if (body.is_discarded() || !body.is_object()) return send_error(res, 400, shape);
         for (const auto& [key, value] : body.items()) {
           if (key != "url" && key != "events" && key != "secret" && key != "ca_file")
             return send_error(res, 400, key.substr(0, 40) + ": unknown field; " + shape);
           if (key == "events" ? !value.is_array() : !value.is_string())
             return send_error(res, 400, key + ": wrong type; " + shape);
         }
         WebhookRecord w;
         w.url = body.value("url", std::string());
         if (w.url.empty()) return send_error(res, 400, std::string("url: missing; ") + shape);
         for (const auto& e : body.value("events", json::array())) {
           if (!e.is_string())
             return send_error(res, 400, std::string("events: names must be strings; ") + shape);
           w.events.push_back(e.get<std::string>());
         }
         w.secret = body.value("secret", std::string());
         w.ca_file = body.value("ca_file", std::string());
         send(res, service_.create_webhook(std::move(w), caller.actor, now_ms()), webhook_json, 201);
       });
  get("/api/v1/webhooks", ApiRole::kViewer,
      [this](const httplib::Request& req, httplib::Response& res, const ApiCaller&) {
        if (auto st = check_params(req, {"limit", "cursor"}); !st)
          return send_error(res, 400, st.error().message);
        auto limit = limit_param(req);
        if (!limit) return send_error(res, 400, limit.error().message);
        auto after = cursor_param(req, "webhooks");
        if (!after) return send_error(res, 400, after.error().message);
        std::string next;
        auto page = page_of(
            service_.list_webhooks(), [](const WebhookRecord& w) { return w.id; }, *after, *limit, next);
        set_next(req, res, "webhooks", next);
        send_json(res, 200, array_of(page, webhook_json));
      });
  del(R"(/api/v1/webhooks/([^/]+))", ApiRole::kAdmin,
      [this](const httplib::Request& req, httplib::Response& res, const ApiCaller& caller) {
        auto st = service_.delete_webhook(req.matches[1], caller.actor, now_ms());
        if (!st) return send_error(res, http_status(st.error()), st.error().message);
        res.status = 204;
      });
  get(R"(/api/v1/webhooks/([^/]+)/deliveries)", ApiRole::kViewer,
      [this](const httplib::Request& req, httplib::Response& res, const ApiCaller&) {
        if (auto st = check_params(req, {"limit", "state"}); !st)
          return send_error(res, 400, st.error().message);
        auto limit = number_param(req, "limit", 100, 1, kMaxPage);
        if (!limit) return send_error(res, 400, limit.error().message);
        send(res,
             service_.webhook_deliveries(req.matches[1], req.get_param_value("state"),
                                         static_cast<std::size_t>(*limit)),
             [](const std::vector<WebhookDelivery>& list) { return array_of(list, webhook_delivery_json); });
      });

  post("/api/v1/groups", ApiRole::kOperator,
       [this](const httplib::Request& req, httplib::Response& res, const ApiCaller& caller) {
         const json body = json::parse(req.body, nullptr, false);
         if (body.is_discarded() || !body.is_object() || !body.contains("name") ||
             !body["name"].is_string() || (body.contains("selector") && !body["selector"].is_string())) {
           return send_error(res, 400,
                             "the body must be a JSON object like {\"name\": \"canary\"} (static) or "
                             "{\"name\": \"old-lab\", \"selector\": \"tag=lab,version<2.0\"} (dynamic)");
         }
         send(res,
              service_.create_group(body["name"].get<std::string>(), body.value("selector", std::string()),
                                    caller.actor, now_ms()),
              group_json, 201);
       });
  get("/api/v1/groups", ApiRole::kViewer,
      [this](const httplib::Request& req, httplib::Response& res, const ApiCaller&) {
        if (auto st = check_params(req, {"limit", "cursor"}); !st)
          return send_error(res, 400, st.error().message);
        auto limit = limit_param(req);
        if (!limit) return send_error(res, 400, limit.error().message);
        auto after = cursor_param(req, "groups");
        if (!after) return send_error(res, 400, after.error().message);
        std::string next;
        auto page = page_of(
            service_.list_groups(), [](const GroupView& g) { return g.group.name; }, *after, *limit, next);
        set_next(req, res, "groups", next);
        send_json(res, 200, array_of(page, group_json));
      });
  get(R"(/api/v1/groups/([^/]+))", ApiRole::kViewer,
      [this](const httplib::Request& req, httplib::Response& res, const ApiCaller&) {
        send(res, service_.get_group(req.matches[1]), group_json);
      });
  del(R"(/api/v1/groups/([^/]+))", ApiRole::kOperator,
      [this](const httplib::Request& req, httplib::Response& res, const ApiCaller& caller) {
        auto st = service_.delete_group(req.matches[1], caller.actor, now_ms());
        if (!st) return send_error(res, http_status(st.error()), st.error().message);
        res.status = 204;
      });
  put(R"(/api/v1/groups/([^/]+)/members/([^/]+))", ApiRole::kOperator,
      [this](const httplib::Request& req, httplib::Response& res, const ApiCaller& caller) {
        send(res, service_.set_group_member(req.matches[1], req.matches[2], true, caller.actor, now_ms()),
             group_json);
      });
  del(R"(/api/v1/groups/([^/]+)/members/([^/]+))", ApiRole::kOperator,
      [this](const httplib::Request& req, httplib::Response& res, const ApiCaller& caller) {
        send(res, service_.set_group_member(req.matches[1], req.matches[2], false, caller.actor, now_ms()),
             group_json);
      });
  get(R"(/api/v1/devices/([^/]+))", ApiRole::kViewer,
      [this](const httplib::Request& req, httplib::Response& res, const ApiCaller&) {
        send(res, service_.get_device(req.matches[1]), [](const DeviceReport& report) {
          json j = device_json(report.device);
          json events = json::array();
          for (const EventRecord& e : report.recent_events) {
            events.push_back({{"time", format_timestamp(e.time_ms)},
                              {"kind", e.kind},
                              {"rollout", e.rollout_id},
                              {"detail", e.detail}});
          }
          j["recent_events"] = events;
          return j;
        });
      });
  get(R"(/api/v1/devices/([^/]+)/logs)", ApiRole::kViewer,
      [this](const httplib::Request& req, httplib::Response& res, const ApiCaller&) {
        send(res,
             service_.device_logs(req.matches[1], int_param(req, "after", 0),
                                  static_cast<std::size_t>(int_param(req, "limit", 200))),
             [](const std::vector<LogRecord>& logs) { return array_of(logs, log_json); });
      });

  // Certificate lifecycle: admin only (docs/ORCHESTRATOR.md, "Revocation and decommissioning").
  post(R"(/api/v1/devices/([^/]+)/(revoke|decommission))", ApiRole::kAdmin,
       [this](const httplib::Request& req, httplib::Response& res, const ApiCaller& caller) {
         auto reason = reason_of(req);
         if (!reason) return send_error(res, 400, reason.error().message);
         const std::string id = req.matches[1];
         const Millis now = now_ms();
         send(res,
              req.matches[2] == "revoke" ? service_.revoke_device(id, *reason, caller.actor, now)
                                         : service_.decommission_device(id, *reason, caller.actor, now),
              revocation_view_json);
       });
  // A renewal now, whatever the device's renew_before: the operator's (docs/ORCHESTRATOR.md,
  // "Certificate renewal").
  post(R"(/api/v1/devices/([^/]+)/renew-certificate)", ApiRole::kOperator,
       [this](const httplib::Request& req, httplib::Response& res, const ApiCaller& caller) {
         auto reason = reason_of(req);
         if (!reason) return send_error(res, 400, reason.error().message);
         send(res, service_.renew_certificate(req.matches[1], *reason, caller.actor, now_ms()),
              renewal_order_json, 202);
       });
  get("/api/v1/revocations", ApiRole::kViewer,
      [this](const httplib::Request&, httplib::Response& res, const ApiCaller&) {
        send_json(res, 200, array_of(service_.revocations(), revocation_json));
      });

  post("/api/v1/rollouts", ApiRole::kOperator,
       [this](const httplib::Request& req, httplib::Response& res, const ApiCaller& caller) {
         if (req.body.empty()) {
           send_error(res, 400, "empty body: send the rollout spec (YAML or JSON) as the request body");
           return;
         }
         const Millis now = now_ms();
         send(
             res, service_.create_rollout(req.body, caller.actor, now),
             [now](const RolloutView& r) { return rollout_json(r, now); }, 201);
       });
  get("/api/v1/rollouts", ApiRole::kViewer,
      [this](const httplib::Request& req, httplib::Response& res, const ApiCaller&) {
        if (auto st = check_params(req, {"limit", "cursor", "state"}); !st)
          return send_error(res, 400, st.error().message);
        auto limit = limit_param(req);
        if (!limit) return send_error(res, 400, limit.error().message);
        auto after = cursor_param(req, "rollouts");
        if (!after) return send_error(res, 400, after.error().message);
        const std::string state = req.get_param_value("state");
        if (!state.empty() && !parse_rollout_state(state)) {
          return send_error(res, 400,
                            "state: '" + state.substr(0, 40) + "' is not a rollout state; " +
                                parse_rollout_state(state).error().message);
        }
        const Millis now = now_ms();
        std::vector<RolloutView> listed;
        for (RolloutView& r : service_.list_rollouts(now)) {
          if (state.empty() || rollout_state_name(r.state) == state) listed.push_back(std::move(r));
        }
        std::string next;
        auto page = page_of(
            std::move(listed), [](const RolloutView& r) { return r.id; }, *after, *limit, next);
        set_next(req, res, "rollouts", next);
        json out = json::array();
        for (const RolloutView& r : page) out.push_back(rollout_json(r, now));
        send_json(res, 200, out);
      });
  // A rollout's members a page at a time, by device id (a rollout over the fleet has 100,000).
  get(R"(/api/v1/rollouts/([^/]+)/members)", ApiRole::kViewer,
      [this](const httplib::Request& req, httplib::Response& res, const ApiCaller&) {
        if (auto st = check_params(req, {"limit", "cursor", "state", "wave"}); !st)
          return send_error(res, 400, st.error().message);
        auto limit = limit_param(req);
        if (!limit) return send_error(res, 400, limit.error().message);
        auto after = cursor_param(req, "members");
        if (!after) return send_error(res, 400, after.error().message);
        auto wave = number_param(req, "wave", 0, 1, 1000);
        if (!wave) return send_error(res, 400, wave.error().message);
        const std::string state = req.get_param_value("state");
        if (!state.empty() && !parse_member_state(state)) {
          return send_error(res, 400,
                            "state: '" + state.substr(0, 40) + "' is not a member state; " +
                                parse_member_state(state).error().message);
        }
        auto rollout = service_.get_rollout(req.matches[1], now_ms());
        if (!rollout) return send_error(res, http_status(rollout.error()), rollout.error().message);
        std::vector<Member> listed;
        for (Member& m : *rollout->members) {
          if ((state.empty() || member_state_name(m.state) == state) && (*wave == 0 || m.wave + 1 == *wave))
            listed.push_back(std::move(m));
        }
        std::sort(listed.begin(), listed.end(),
                  [](const Member& a, const Member& b) { return a.device_id < b.device_id; });
        std::string next;
        auto page = page_of(
            std::move(listed), [](const Member& m) { return m.device_id; }, *after, *limit, next);
        set_next(req, res, "members", next);
        json out = json::array();
        for (const Member& m : page) out.push_back(member_json(m));
        send_json(res, 200, out);
      });
  get(R"(/api/v1/rollouts/([^/]+))", ApiRole::kViewer,
      [this](const httplib::Request& req, httplib::Response& res, const ApiCaller&) {
        const Millis now = now_ms();
        send(res, service_.get_rollout(req.matches[1], now),
             [now](const RolloutView& r) { return rollout_json(r, now); });
      });
  get(R"(/api/v1/rollouts/([^/]+)/plan)", ApiRole::kViewer,
      [this](const httplib::Request& req, httplib::Response& res, const ApiCaller&) {
        send(res, service_.plan_rollout(req.matches[1], now_ms()), plan_json);
      });
  post(R"(/api/v1/rollouts/([^/]+)/(start|pause|resume|abort|rollback))", ApiRole::kOperator,
       [this](const httplib::Request& req, httplib::Response& res, const ApiCaller& caller) {
         const Millis now = now_ms();
         send(res, service_.rollout_action(req.matches[1], req.matches[2], caller.actor, now),
              [now](const RolloutView& r) { return rollout_json(r, now); });
       });

  // Newest first; the cursor goes on to older events (stable while new ones arrive).
  get("/api/v1/events", ApiRole::kViewer,
      [this](const httplib::Request& req, httplib::Response& res, const ApiCaller&) {
        if (auto st = check_params(req, {"limit", "cursor", "device", "rollout"}); !st)
          return send_error(res, 400, st.error().message);
        auto limit = number_param(req, "limit", 100, 1, 10'000);
        if (!limit) return send_error(res, 400, limit.error().message);
        auto before = cursor_param(req, "events");
        if (!before) return send_error(res, 400, before.error().message);
        auto events = service_.events(req.get_param_value("device"), req.get_param_value("rollout"),
                                      static_cast<std::size_t>(*limit),
                                      before->empty() ? 0 : std::strtoll(before->c_str(), nullptr, 10));
        if (!events) return send_error(res, http_status(events.error()), events.error().message);
        if (events->size() == static_cast<std::size_t>(*limit) && !events->empty() && events->back().id > 1)
          set_next(req, res, "events", std::to_string(events->back().id));
        send_json(res, 200, array_of(*events, event_json));
      });
  // Oldest first from ?after= (a sequence number) or the cursor.
  get("/api/v1/audit", ApiRole::kViewer,
      [this](const httplib::Request& req, httplib::Response& res, const ApiCaller&) {
        if (auto st = check_params(req, {"limit", "cursor", "after"}); !st)
          return send_error(res, 400, st.error().message);
        auto limit = number_param(req, "limit", 100'000, 1, 100'000);
        if (!limit) return send_error(res, 400, limit.error().message);
        auto after = number_param(req, "after", 0, 0, std::numeric_limits<std::int64_t>::max());
        if (!after) return send_error(res, 400, after.error().message);
        auto cursor = cursor_param(req, "audit");
        if (!cursor) return send_error(res, 400, cursor.error().message);
        const std::int64_t from = cursor->empty() ? *after : std::strtoll(cursor->c_str(), nullptr, 10);
        auto entries = service_.audit(from, static_cast<std::size_t>(*limit));
        if (!entries) return send_error(res, http_status(entries.error()), entries.error().message);
        if (entries->size() == static_cast<std::size_t>(*limit) && !entries->empty())
          set_next(req, res, "audit", std::to_string(entries->back().seq));
        send_json(res, 200, array_of(*entries, audit_json));
      });
  get("/api/v1/audit/checkpoints", ApiRole::kViewer,
      [this](const httplib::Request&, httplib::Response& res, const ApiCaller&) {
        if (checkpoint_file_.empty()) {
          return send_error(
              res, 404,
              "this orchestrator signs no audit checkpoints: set audit.checkpoint_key in its config");
        }
        send(res, read_audit_checkpoints(checkpoint_file_),
             [](const std::vector<AuditCheckpoint>& c) { return array_of(c, checkpoint_json); });
      });
}

std::shared_ptr<const LiveSnapshot> HttpApi::live_snapshot(Millis now) {
  std::lock_guard lock(snapshot_mutex_);
  if (snapshot_ && now - snapshot_->taken_ms < kSnapshotMaxAgeMs) return snapshot_;
  auto snapshot = std::make_shared<LiveSnapshot>();
  snapshot->taken_ms = now;
  if (auto events = service_.events("", "", kMaxStreamItems + 1); events)
    snapshot->events = std::move(*events);
  for (const RolloutView& r : service_.list_rollouts(now))
    snapshot->rollouts.emplace_back(r.id, rollout_json(r, now).dump());
  if (snapshot_ && now - snapshot_->fleet_taken_ms < kFleetSummaryMaxAgeMs) {
    snapshot->fleet = snapshot_->fleet;
    snapshot->fleet_taken_ms = snapshot_->fleet_taken_ms;
  } else {
    snapshot->fleet = fleet_summary_json(service_.metrics(now).fleet).dump();
    snapshot->fleet_taken_ms = now;
  }
  snapshot_ = std::move(snapshot);
  return snapshot_;
}

bool HttpApi::stream_step(EventStreamState& state, httplib::DataSink& sink) {
  std::string out;
  if (!state.started) {
    out = "retry: 2000\n\n";
  } else {
    const Millis until = now_ms() + state.interval_ms;
    while (!stopping_ && now_ms() < until) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (stopping_) {
    sink.done();
    return true;
  }
  const Millis now = now_ms();
  // Every stream reads the same snapshot: the service is asked once per kSnapshotMaxAgeMs however
  // many consoles watch.
  const std::shared_ptr<const LiveSnapshot> snapshot = live_snapshot(now);
  bool resync = false;
  // Device and rollout events (registered, failed, breached, ...) since the last step, oldest first.
  const std::vector<EventRecord>& events = snapshot->events;
  if (!state.started) {
    state.last_event_id = events.empty() ? 0 : events.front().id;
  } else {
    std::vector<const EventRecord*> fresh;
    for (const EventRecord& e : events) {
      if (e.id > state.last_event_id) fresh.push_back(&e);
    }
    if (fresh.size() > kMaxStreamItems) {
      resync = true;
    } else {
      for (auto it = fresh.rbegin(); it != fresh.rend(); ++it) out += sse("event", event_json(**it));
    }
    if (!events.empty()) state.last_event_id = std::max(state.last_event_id, events.front().id);
  }
  // Rollouts whose state, counts, progress or ETA changed (a running one's ETA: every step).
  std::size_t changed = 0;
  std::string rollouts;
  for (const auto& [id, text] : snapshot->rollouts) {
    auto& last = state.rollouts[id];
    if (last == text) continue;
    last = text;
    if (!state.started) continue;
    if (++changed > kMaxStreamItems) {
      resync = true;
      break;
    }
    rollouts += "event: rollout\ndata: " + text + "\n\n";
  }
  if (!resync) out += rollouts;
  if (snapshot->fleet != state.fleet) {
    state.fleet = snapshot->fleet;
    out += "event: fleet\ndata: " + state.fleet + "\n\n";
  }
  if (!state.started) out += sse("hello", json{{"interval_ms", state.interval_ms}});
  if (resync)
    out += sse("resync", json{{"reason", "more changed than one step carries: reload what you show"}});
  state.started = true;
  if (out.empty() && now - state.last_write_ms >= kStreamKeepAliveMs) out = ": keep-alive\n\n";
  if (out.empty()) return true;
  state.last_write_ms = now;
  return sink.write(out.data(), out.size());
}

void HttpApi::console_routes() {
  httplib::Server& s = *server_;
  auto redirect = [](const httplib::Request&, httplib::Response& res) { res.set_redirect("/console/"); };
  s.Get("/", redirect);
  s.Get("/console", redirect);
  s.Get(R"(/console/(.*))", [](const httplib::Request& req, httplib::Response& res) {
    std::string name = req.matches[1];
    if (name.empty()) name = "index.html";
    const auto& assets = console_assets();
    auto it = assets.find(name);
    if (it == assets.end()) {
      return send_error(res, 404,
                        "no such console file: " + name.substr(0, 80) + "; the console is at /console/");
    }
    const auto ends = [&name](std::string_view suffix) {
      return name.size() >= suffix.size() &&
             name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    const char* type = ends(".html")  ? "text/html; charset=utf-8"
                       : ends(".js")  ? "text/javascript; charset=utf-8"
                       : ends(".css") ? "text/css; charset=utf-8"
                       : ends(".svg") ? "image/svg+xml"
                                      : "application/octet-stream";
    // Everything from this origin only: no inline script, nothing from another host.
    res.set_header("Content-Security-Policy",
                   "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
                   "form-action 'self'");
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_header("Referrer-Policy", "no-referrer");
    res.set_header("Cache-Control", "no-cache");
    res.set_content(std::string(it->second), type);
  });
}

common::Result<int> HttpApi::start(const std::string& host, int port) {
  if (!server_->is_valid()) {
    return common::Error(
        common::Errc::kCrypto,
        "cannot serve HTTPS: " + (tls_error_.empty() ? std::string("no TLS context") : tls_error_));
  }
  int bound = port;
  if (port == 0) {
    bound = server_->bind_to_any_port(host);
  } else if (!server_->bind_to_port(host, port)) {
    bound = -1;
  }
  if (bound <= 0) {
    return common::Error(common::Errc::kUnavailable,
                         "cannot listen on " + host + ":" + std::to_string(port) +
                             "; is another process using the port? change http.port");
  }
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  return bound;
}

void HttpApi::stop() {
  stopping_ = true;
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace fota::orchestrator
