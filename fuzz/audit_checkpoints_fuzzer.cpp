// SPDX-License-Identifier: Apache-2.0
// The audit checkpoint file (docs/ORCHESTRATOR.md, "Audit log"): one signed JSON line per
// checkpoint, appended by the orchestrator and read back at its start, by
// GET /api/v1/audit/checkpoints and by `fotactl audit verify --checkpoint-key`. Anyone who can
// write the file can put anything in it. The input is the file's text:
//  - parse_audit_checkpoints, then verify_audit_checkpoints against a real chain of six entries
//    and the fuzz key (the seeds are checkpoints of that chain signed with it);
//  - written to a file and opened as the orchestrator opens it at start
//    (AuditCheckpointer::open: read_audit_checkpoints, then the newest against the chain).
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "audit_chain.hpp"
#include "audit_checkpoints.hpp"
#include "fota/orchestrator/audit.hpp"
#include "fuzz_support.hpp"

using namespace fota;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::vector<orchestrator::AuditEntry> chain = fuzz::audit_chain();
  static const common::Ed25519PublicKey key = fuzz::signing_key().public_key();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto checkpoints = orchestrator::parse_audit_checkpoints(text)) {
    (void)orchestrator::verify_audit_checkpoints(chain, *checkpoints, key);
  }

  const auto path = fuzz::scratch_dir() / "checkpoints.jsonl";
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(text.data(), static_cast<std::streamsize>(size));
  auto read = [](std::int64_t after_seq) -> common::Result<std::vector<orchestrator::AuditEntry>> {
    std::vector<orchestrator::AuditEntry> after;
    for (const auto& entry : chain) {
      if (entry.seq > after_seq) after.push_back(entry);
    }
    return after;
  };
  (void)orchestrator::AuditCheckpointer::open(fuzz::signing_key(), path, 60'000, read, fuzz::null_logger());
  return 0;
}
