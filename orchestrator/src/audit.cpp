// SPDX-License-Identifier: Apache-2.0
#include "fota/orchestrator/audit.hpp"

#include <nlohmann/json.hpp>

#include "fota/common/crypto.hpp"
#include "fota/orchestrator/rollout_spec.hpp"

namespace fota::orchestrator {

using common::Errc;
using common::Error;

std::string genesis_hash() { return std::string(64, '0'); }

std::string audit_entry_hash(const AuditEntry& e) {
  // Length-prefixed fields: no two different entries serialize to the same bytes.
  std::string data;
  auto field = [&data](const std::string& value) {
    data += std::to_string(value.size());
    data += ':';
    data += value;
    data += ';';
  };
  field(std::to_string(e.seq));
  field(std::to_string(e.time_ms));
  field(e.actor);
  field(e.action);
  field(e.detail);
  field(e.prev_hash);
  return common::to_hex(common::digest_bytes(common::Sha256::digest(data)));
}

common::Result<AuditVerification> verify_audit_chain(const std::vector<AuditEntry>& entries,
                                                     const std::string& expected_head) {
  std::string prev = genesis_hash();
  std::int64_t expected_seq = 1;
  bool head_seen = expected_head.empty();
  for (const AuditEntry& e : entries) {
    if (e.seq != expected_seq) {
      return Error(Errc::kIntegrity, "audit entry " + std::to_string(expected_seq) +
                                         " is missing (the next entry has sequence " + std::to_string(e.seq) +
                                         "): entries were deleted");
    }
    if (e.prev_hash != prev) {
      return Error(Errc::kIntegrity,
                   "audit entry " + std::to_string(e.seq) +
                       " does not link to the entry before it: entries were deleted or replaced");
    }
    if (audit_entry_hash(e) != e.hash) {
      return Error(Errc::kIntegrity, "audit entry " + std::to_string(e.seq) + " (" + e.action +
                                         ") was modified: its content does not match its hash");
    }
    if (e.hash == expected_head) head_seen = true;
    prev = e.hash;
    ++expected_seq;
  }
  if (!head_seen) {
    return Error(Errc::kIntegrity, "the recorded head hash " + expected_head +
                                       " is not in the chain: entries were removed from the end");
  }
  AuditVerification v;
  v.entries = expected_seq - 1;
  v.head_hash = prev;
  return v;
}

std::string audit_checkpoint_message(const AuditCheckpoint& c) {
  return "fota-audit-checkpoint-v1\n" + std::to_string(c.seq) + "\n" + c.head_hash + "\n" +
         std::to_string(c.time_ms) + "\n";
}

common::Result<AuditCheckpoint> sign_audit_checkpoint(const AuditEntry& head, std::int64_t now_ms,
                                                      const common::Ed25519PrivateKey& key) {
  AuditCheckpoint c;
  c.seq = head.seq;
  c.head_hash = head.hash;
  c.time_ms = now_ms;
  c.key_id = key.public_key().key_id();
  auto signature = key.sign(audit_checkpoint_message(c));
  if (!signature) return signature.error().with_context("signing an audit checkpoint");
  c.signature = common::to_hex(*signature);
  return c;
}

std::string audit_checkpoint_line(const AuditCheckpoint& c) {
  return nlohmann::json{{"seq", c.seq},         {"head_hash", c.head_hash},
                        {"time_ms", c.time_ms}, {"time", format_timestamp(c.time_ms)},
                        {"key_id", c.key_id},   {"signature", c.signature}}
             .dump() +
         "\n";
}

common::Result<std::vector<AuditCheckpoint>> parse_audit_checkpoints(std::string_view text) {
  std::vector<AuditCheckpoint> out;
  std::size_t line_no = 0;
  while (!text.empty()) {
    const std::size_t end = text.find('\n');
    const std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    ++line_no;
    if (line.empty()) continue;
    const auto bad = [line_no](const std::string& why) {
      return Error(Errc::kMalformed, "audit checkpoint file, line " + std::to_string(line_no) + ": " + why +
                                         "; every line is one JSON checkpoint written by fota-orchestrator");
    };
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
    try {
      AuditCheckpoint c;
      c.seq = j.at("seq").get<std::int64_t>();
      c.head_hash = j.at("head_hash").get<std::string>();
      c.time_ms = j.at("time_ms").get<std::int64_t>();
      c.key_id = j.at("key_id").get<std::string>();
      c.signature = j.at("signature").get<std::string>();
      out.push_back(std::move(c));
    } catch (const nlohmann::json::exception&) {
      return bad("needs seq, head_hash, time_ms, key_id and signature");
    }
  }
  return out;
}

common::Result<AuditCheckpointVerification> verify_audit_checkpoints(
    const std::vector<AuditEntry>& entries, const std::vector<AuditCheckpoint>& checkpoints,
    const common::Ed25519PublicKey& key) {
  if (checkpoints.empty()) {
    return Error(Errc::kNotFound,
                 "there are no signed audit checkpoints: the orchestrator signs them only with "
                 "audit.checkpoint_key set, and someone may have emptied the checkpoint file");
  }
  AuditCheckpointVerification v;
  for (std::size_t i = 0; i < checkpoints.size(); ++i) {
    const AuditCheckpoint& c = checkpoints[i];
    const std::string name = "checkpoint " + std::to_string(i + 1) + " (entry " + std::to_string(c.seq) +
                             ", signed " + format_timestamp(c.time_ms) + ")";
    auto signature = common::from_hex(c.signature);
    if (!signature || c.key_id != key.key_id() || !key.verify(audit_checkpoint_message(c), *signature)) {
      return Error(Errc::kBadSignature, name + " does not verify with the audit key " + key.key_id() +
                                            " (it names key " + c.key_id +
                                            "): the checkpoint was edited or signed with another key");
    }
    if (c.seq < v.last_seq || c.time_ms < v.last_time_ms) {
      return Error(Errc::kIntegrity,
                   name + " is older than the checkpoint before it: the checkpoint file was reordered");
    }
    // Entries are 1, 2, 3, ... (verify_audit_chain checks that): entry n is at index n - 1.
    if (c.seq < 1 || c.seq > static_cast<std::int64_t>(entries.size())) {
      return Error(Errc::kIntegrity, name + " covers entry " + std::to_string(c.seq) + " but the chain has " +
                                         std::to_string(entries.size()) +
                                         " entries: entries signed for were removed from the audit log");
    }
    const AuditEntry& e = entries[static_cast<std::size_t>(c.seq - 1)];
    if (e.seq != c.seq || e.hash != c.head_hash) {
      return Error(Errc::kIntegrity, name + " does not match the chain: entry " + std::to_string(c.seq) +
                                         " has the hash " + e.hash + ", the signed head is " + c.head_hash +
                                         ": the audit log was rewritten after this checkpoint was signed");
    }
    v.checkpoints = i + 1;
    v.last_seq = c.seq;
    v.last_time_ms = c.time_ms;
  }
  return v;
}

}  // namespace fota::orchestrator
