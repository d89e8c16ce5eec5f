// SPDX-License-Identifier: Apache-2.0
// How the stores' rows map to records, shared by SqliteStore and PostgresStore so both read and
// write the same columns the same way. `Row` is a back end's current result row with text(i) and
// integer(i).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <variant>
#include <vector>

#include "fota/common/result.hpp"
#include "fota/orchestrator/device_query.hpp"
#include "fota/orchestrator/records.hpp"

namespace fota::orchestrator::store_rows {

// Tags are stored as one comma-separated column.
std::string join_tags(const std::vector<std::string>& tags);
std::vector<std::string> split_tags(const std::string& text);

// Wave state is stored as JSON in the rollout row.
std::string waves_json(const std::vector<WaveState>& waves);
common::Status parse_waves(const std::string& text, Rollout& rollout);

// One page of the device list as SQL both back ends run (docs/ORCHESTRATOR.md, "Paging and
// filters"): `placeholder(n)` spells the n-th parameter (1-based: "?" for SQLite, "$n" for
// PostgreSQL); `like` is the operator that matches ASCII letters of either case, as SQLite's LIKE
// does ("LIKE" there, "ILIKE" on PostgreSQL, whose LIKE tells cases apart). Every value is bound, never
// spliced; keyset paging on the primary key so that a page is an index range scan whatever page it is; one
// row more than the limit tells whether a next page follows (finish_page trims it).
struct DeviceQuerySql {
  std::string sql;
  std::vector<std::variant<std::string, std::int64_t>> args;
};
DeviceQuerySql device_query_sql(const DeviceQuery& query,
                                const std::function<std::string(std::size_t)>& placeholder,
                                const std::string& like);
void finish_page(DevicePage& page, std::size_t limit);

// Column lists the readers below expect, in order.
inline constexpr const char* kDeviceColumns =
    "id, hardware, time_zone, artifact_id, version, tags, grp, online, last_seen_ms, client_version, "
    "security_counter, free_bytes, pending_deployment_id, registered_ms, last_phase, last_error, "
    "certificate_not_after, decryption_key_id, measured_download_rate, measured_verify_rate, "
    "measured_reboot_ms, measured_health_check_ms";
inline constexpr const char* kRolloutColumns =
    "id, spec, state, created_ms, started_ms, finished_ms, targets_resolved, reason, waves";
inline constexpr const char* kMemberColumns =
    "device_id, wave, state, phase, since_ms, attempt, command_seq, command_id, retry_at_ms, "
    "previous_artifact_id, last_error, bytes_done, bytes_total, last_sequence, started_ms, finished_ms, "
    "late_joiner, bytes_reused";

// A macro so that SQLite's statement constants can splice it into a literal.
#define FOTA_WEBHOOK_DELIVERY_COLUMNS                                                                    \
  "id, webhook_id, event, body, created_ms, state, attempts, next_attempt_ms, last_status, last_error, " \
  "finished_ms"

template <typename Row>
WebhookDelivery read_webhook_delivery(const Row& s) {
  WebhookDelivery d;
  d.id = s.text(0);
  d.webhook_id = s.text(1);
  d.event = s.text(2);
  d.body = s.text(3);
  d.created_ms = s.integer(4);
  d.state = s.text(5);
  d.attempts = static_cast<int>(s.integer(6));
  d.next_attempt_ms = s.integer(7);
  d.last_status = static_cast<int>(s.integer(8));
  d.last_error = s.text(9);
  d.finished_ms = s.integer(10);
  return d;
}

template <typename Row>
DeviceRecord read_device(const Row& s) {
  DeviceRecord d;
  d.facts.id = s.text(0);
  d.facts.hardware_type = s.text(1);
  d.facts.time_zone = s.text(2);
  d.facts.artifact_id = s.text(3);
  d.facts.version = s.text(4);
  d.facts.tags = split_tags(s.text(5));
  d.facts.group = s.text(6);
  d.facts.online = s.integer(7) != 0;
  d.facts.last_seen_ms = s.integer(8);
  d.client_version = s.text(9);
  d.security_counter = static_cast<std::uint64_t>(s.integer(10));
  d.free_bytes = static_cast<std::uint64_t>(s.integer(11));
  d.pending_deployment_id = s.text(12);
  d.registered_ms = s.integer(13);
  d.last_phase = s.text(14);
  d.last_error = s.text(15);
  d.certificate_not_after = s.integer(16);
  d.facts.decryption_key_id = s.text(17);
  d.measured.download_bytes_per_second = static_cast<std::uint64_t>(s.integer(18));
  d.measured.verify_bytes_per_second = static_cast<std::uint64_t>(s.integer(19));
  d.measured.reboot_ms = s.integer(20);
  d.measured.health_check_ms = s.integer(21);
  return d;
}

// A rollout row without its members (read_member adds them).
template <typename Row>
common::Result<Rollout> read_rollout(const Row& s) {
  Rollout r;
  r.id = s.text(0);
  auto spec = parse_rollout_spec(s.text(1));
  if (!spec) return spec.error().with_context("stored rollout " + r.id);
  r.spec = std::move(spec).value();
  auto state = parse_rollout_state(s.text(2));
  if (!state) return state.error().with_context("stored rollout " + r.id);
  r.state = *state;
  r.created_ms = s.integer(3);
  r.started_ms = s.integer(4);
  r.finished_ms = s.integer(5);
  r.targets_resolved = s.integer(6) != 0;
  r.reason = s.text(7);
  if (auto w = parse_waves(s.text(8), r); !w) return w.error().with_context("stored rollout " + r.id);
  if (r.waves.size() != r.spec.waves.size()) r.waves.resize(r.spec.waves.size());
  r.dirty = false;
  return r;
}

template <typename Row>
common::Result<Member> read_member(const Row& m, const std::string& rollout_id) {
  Member x;
  x.device_id = m.text(0);
  x.wave = static_cast<int>(m.integer(1));
  auto state = parse_member_state(m.text(2));
  if (!state) return state.error().with_context("stored member " + x.device_id + " of rollout " + rollout_id);
  x.state = *state;
  x.phase = static_cast<v1::Phase>(m.integer(3));
  x.since_ms = m.integer(4);
  x.attempt = static_cast<std::uint32_t>(m.integer(5));
  x.command_seq = static_cast<std::uint32_t>(m.integer(6));
  x.command_id = m.text(7);
  x.retry_at_ms = m.integer(8);
  x.previous_artifact_id = m.text(9);
  x.last_error = m.text(10);
  x.bytes_done = static_cast<std::uint64_t>(m.integer(11));
  x.bytes_total = static_cast<std::uint64_t>(m.integer(12));
  x.last_sequence = static_cast<std::uint64_t>(m.integer(13));
  x.started_ms = m.integer(14);
  x.finished_ms = m.integer(15);
  x.late_joiner = m.integer(16) != 0;
  x.bytes_reused = static_cast<std::uint64_t>(m.integer(17));
  x.dirty = false;
  return x;
}

}  // namespace fota::orchestrator::store_rows
