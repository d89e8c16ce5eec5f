// SPDX-License-Identifier: Apache-2.0
// The audit log: every operator action and automatic decision, appended in a hash chain so that
// an edited or deleted entry is detected by re-computing the chain.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fota/common/crypto.hpp"
#include "fota/common/result.hpp"

namespace fota::orchestrator {

struct AuditEntry {
  std::int64_t seq = 0;  // 1, 2, 3, ... without gaps
  std::int64_t time_ms = 0;
  std::string actor;   // "token:<name>", "cert:<common name>" (the API caller) or "engine"
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

// A signed statement that the chain's entry `seq` had the hash `head_hash` when it was signed.
// The key is the orchestrator's audit key (a file, never in the database), so someone who can
// write the database can rewrite the chain and recompute every hash but cannot make the
// checkpoints agree with it. Kept one JSON object a line in an append-only file.
struct AuditCheckpoint {
  std::int64_t seq = 0;
  std::string head_hash;  // hex, the hash of entry `seq`
  std::int64_t time_ms = 0;
  std::string key_id;     // Ed25519PublicKey::key_id of the signing key
  std::string signature;  // hex Ed25519 signature over audit_checkpoint_message
};

// The bytes signed: a domain tag, then seq, head hash and time, one a line.
std::string audit_checkpoint_message(const AuditCheckpoint& checkpoint);
common::Result<AuditCheckpoint> sign_audit_checkpoint(const AuditEntry& head, std::int64_t now_ms,
                                                      const common::Ed25519PrivateKey& key);
std::string audit_checkpoint_line(const AuditCheckpoint& checkpoint);  // one JSON line, with '\n'
// Parses the checkpoint file's text; kMalformed naming the line that does not parse (a line
// cut short by a crash while writing is one too: nothing after it can be trusted blindly).
common::Result<std::vector<AuditCheckpoint>> parse_audit_checkpoints(std::string_view text);

struct AuditCheckpointVerification {
  std::size_t checkpoints = 0;
  std::int64_t last_seq = 0;      // the last entry a signed checkpoint covers
  std::int64_t last_time_ms = 0;  // when it was signed
};

// Checks every checkpoint (1-based in errors) against `key` and the chain: its signature, that
// the chain still has its entry, and that the entry's hash is the signed one. kIntegrity naming
// the checkpoint, the entry and what that means; kBadSignature for a checkpoint signed by another
// key or edited; kNotFound when there is no checkpoint at all.
common::Result<AuditCheckpointVerification> verify_audit_checkpoints(
    const std::vector<AuditEntry>& entries, const std::vector<AuditCheckpoint>& checkpoints,
    const common::Ed25519PublicKey& key);

}  // namespace fota::orchestrator
