// SPDX-License-Identifier: Apache-2.0
#include "audit_checkpoints.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace fota::orchestrator {

using common::Errc;
using common::Error;

common::Result<std::vector<AuditCheckpoint>> read_audit_checkpoints(const std::filesystem::path& file) {
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) return std::vector<AuditCheckpoint>{};
  auto text = common::read_file(file);
  if (!text) return text.error().with_context("reading the audit checkpoint file");
  return parse_audit_checkpoints(*text);
}

AuditCheckpointer::AuditCheckpointer(common::Ed25519PrivateKey key, std::filesystem::path file,
                                     std::int64_t interval_ms, ReadAuditEntries read,
                                     std::shared_ptr<spdlog::logger> logger)
    : key_(std::move(key)),
      file_(std::move(file)),
      interval_ms_(interval_ms),
      read_(std::move(read)),
      log_(std::move(logger)) {}

common::Result<std::unique_ptr<AuditCheckpointer>> AuditCheckpointer::open(
    common::Ed25519PrivateKey key, std::filesystem::path file, std::int64_t interval_ms,
    ReadAuditEntries read, std::shared_ptr<spdlog::logger> logger) {
  auto existing = read_audit_checkpoints(file);
  if (!existing) return existing.error();
  std::unique_ptr<AuditCheckpointer> c(new AuditCheckpointer(std::move(key), std::move(file), interval_ms,
                                                             std::move(read), std::move(logger)));
  if (!existing->empty()) {
    const AuditCheckpoint& last = existing->back();
    c->last_seq_ = last.seq;
    c->last_time_ms_ = last.time_ms;
    // The chain must still hold the newest signed head; refusing to start would take the
    // operators' view away too, so this is said loudly and `fotactl audit verify` fails.
    auto entry = c->read_(last.seq - 1);
    if (!entry) return entry.error();
    if (entry->empty() || entry->front().seq != last.seq || entry->front().hash != last.head_hash) {
      c->log_->error(
          "audit log does not match its last signed checkpoint (entry {}): the database was "
          "rewritten or restored from an older copy; `fotactl audit verify --checkpoint-key` "
          "names the first checkpoint it contradicts",
          last.seq);
      c->last_seq_ = entry->empty() ? 0 : last.seq;
    }
  }
  return c;
}

common::Status AuditCheckpointer::tick(std::int64_t now_ms, bool force) {
  if (!force && now_ms - last_time_ms_ < interval_ms_) return common::ok_status();
  auto entries = read_(last_seq_);
  if (!entries) return entries.error();
  if (entries->empty()) return common::ok_status();  // nothing new to vouch for
  auto checkpoint = sign_audit_checkpoint(entries->back(), now_ms, key_);
  if (!checkpoint) return checkpoint.error();
  if (auto st = append(*checkpoint); !st) return st;
  last_seq_ = checkpoint->seq;
  last_time_ms_ = now_ms;
  log_->debug("audit checkpoint signed at entry {}", checkpoint->seq);
  return common::ok_status();
}

common::Status AuditCheckpointer::append(const AuditCheckpoint& checkpoint) {
  // O_APPEND: the file may be append-only (chattr +a), which refuses any other write.
  const int fd = ::open(file_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return Error(Errc::kIo,
                 "cannot open the audit checkpoint file " + file_.string() + ": " + std::strerror(errno));
  }
  const std::string line = audit_checkpoint_line(checkpoint);
  const ssize_t written = ::write(fd, line.data(), line.size());
  const int write_errno = errno;
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (written != static_cast<ssize_t>(line.size()) || !synced) {
    return Error(Errc::kIo, "cannot append to the audit checkpoint file " + file_.string() + ": " +
                                std::strerror(written < 0 ? write_errno : errno));
  }
  return common::ok_status();
}

}  // namespace fota::orchestrator
