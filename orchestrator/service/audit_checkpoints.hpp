// SPDX-License-Identifier: Apache-2.0
// Signs checkpoints of the audit chain's head with the audit key (a file given in the config,
// never in the database) and appends them to the checkpoint file, one JSON line each
// (docs/ORCHESTRATOR.md "Audit log"). `fotactl audit verify --checkpoint-key` checks the chain
// against them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "fota/common/crypto.hpp"
#include "fota/orchestrator/audit.hpp"

namespace fota::orchestrator {

// The audit entries after a sequence number, oldest first (OrchestratorService::audit).
using ReadAuditEntries = std::function<common::Result<std::vector<AuditEntry>>(std::int64_t after_seq)>;

class AuditCheckpointer {
 public:
  // Reads the checkpoints already in `file` (created when missing) and checks the newest against
  // the chain: a mismatch is logged as an error (the database was rewritten or restored from an
  // older copy) and the checkpointer carries on from the chain as it is. Errors: the key or the
  // file cannot be read, or the file does not parse.
  static common::Result<std::unique_ptr<AuditCheckpointer>> open(common::Ed25519PrivateKey key,
                                                                 std::filesystem::path file,
                                                                 std::int64_t interval_ms,
                                                                 ReadAuditEntries read,
                                                                 std::shared_ptr<spdlog::logger> logger);

  // Signs and appends a checkpoint of the current head when the chain grew since the last one
  // and `interval_ms` has passed (always, with `force`: at shutdown). The line is fsynced
  // before it counts.
  common::Status tick(std::int64_t now_ms, bool force = false);

 private:
  AuditCheckpointer(common::Ed25519PrivateKey key, std::filesystem::path file, std::int64_t interval_ms,
                    ReadAuditEntries read, std::shared_ptr<spdlog::logger> logger);
  common::Status append(const AuditCheckpoint& checkpoint);

  common::Ed25519PrivateKey key_;
  std::filesystem::path file_;
  std::int64_t interval_ms_;
  ReadAuditEntries read_;
  std::shared_ptr<spdlog::logger> log_;
  std::int64_t last_seq_ = 0;
  std::int64_t last_time_ms_ = 0;
};

// The checkpoints in a checkpoint file (for GET /api/v1/audit/checkpoints).
common::Result<std::vector<AuditCheckpoint>> read_audit_checkpoints(const std::filesystem::path& file);

}  // namespace fota::orchestrator
