// SPDX-License-Identifier: Apache-2.0
// The audit log: every operator action and automatic decision, appended in a hash chain so that
// an edited or deleted entry is detected by re-computing the chain.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fota/common/result.hpp"

namespace fota::orchestrator {

struct AuditEntry {
  std::int64_t seq = 0;  // 1, 2, 3, ... without gaps
  std::int64_t time_ms = 0;
  std::string actor;   // "operator:<token name>" or "engine"
  std::string action;  // "rollout.create", "wave.gate", ...
  std::string detail;
  std::string prev_hash;  // hex; 64 zeros for the first entry
  std::string hash;       // hex SHA-256 over seq, time, actor, action, detail and prev_hash
};

std::string genesis_hash();
// The hash an entry must carry given its fields and prev_hash.
std::string audit_entry_hash(const AuditEntry& entry);

struct AuditVerification {
  std::int64_t entries = 0;
  std::string head_hash;  // hash of the last entry: record it elsewhere to detect truncation
};

// Checks the whole chain from the first entry. kIntegrity naming the first bad entry: an edited
// entry (hash mismatch), a deleted one (sequence gap or prev_hash mismatch), or, when
// `expected_head` is given and not found in the chain, entries removed from the end.
common::Result<AuditVerification> verify_audit_chain(const std::vector<AuditEntry>& entries,
                                                     const std::string& expected_head = {});

}  // namespace fota::orchestrator
