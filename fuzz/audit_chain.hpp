// SPDX-License-Identifier: Apache-2.0
// The audit chain the audit_checkpoints target checks checkpoints against; make_seeds.cpp signs
// checkpoints of the same chain with the fuzz key.
#pragma once

#include <string>
#include <vector>

#include "fota/orchestrator/audit.hpp"

namespace fota::fuzz {

inline std::vector<orchestrator::AuditEntry> audit_chain() {
  std::vector<orchestrator::AuditEntry> entries;
  std::string prev = orchestrator::genesis_hash();
  for (std::int64_t i = 1; i <= 6; ++i) {
    orchestrator::AuditEntry e{
        i, 1'000'000 + i, "token:alice", "rollout.start", "r-" + std::to_string(i), prev, ""};
    e.hash = orchestrator::audit_entry_hash(e);
    prev = e.hash;
    entries.push_back(e);
  }
  return entries;
}

}  // namespace fota::fuzz
