// SPDX-License-Identifier: Apache-2.0
#include "fota/orchestrator/audit.hpp"

#include "fota/common/crypto.hpp"

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

}  // namespace fota::orchestrator
