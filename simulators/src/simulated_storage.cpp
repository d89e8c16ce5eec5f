// SPDX-License-Identifier: Apache-2.0
#include "fota/sim/simulated_storage.hpp"

#include "fota/common/crypto.hpp"

namespace fota::sim {

using common::Errc;
using common::Error;

std::shared_ptr<const std::string> ChunkPool::intern(std::string_view data) {
  if (auto it = pool_.find(data); it != pool_.end()) return *it;
  auto stored = std::make_shared<const std::string>(data);
  pool_.insert(stored);
  return stored;
}

namespace {

// The factory boot scheme of every virtual device: slots a and b, a first, 3 tries each. The
// environment starts empty, as a factory-fresh grubenv does: the boot scripts' defaults apply.
client::BootChooser factory_chooser() { return *client::BootChooser::create(client::BootSchemeConfig{}); }

}  // namespace

SimulatedStorage::SimulatedStorage(ChunkPool& pool, std::string factory_version, StorageFaults faults)
    : pool_(pool), faults_(faults), boot_(*this, factory_chooser(), [this]() -> common::Result<std::string> {
        if (cmdline_.empty()) return Error(Errc::kNotFound, "the simulated boot loader has not run yet");
        return cmdline_;
      }) {
  slots_["a"].factory_version = std::move(factory_version);
  slots_["b"];
}

SimulatedStorage::Slot* SimulatedStorage::find(const std::string& name) {
  auto it = slots_.find(name);
  return it == slots_.end() ? nullptr : &it->second;
}

// The agent's side of the boot scheme is the client's own BootControl, as on a real device.
common::Result<client::BootStatus> SimulatedStorage::boot_status() { return boot_.boot_status(); }

bool SimulatedStorage::on_trial() {
  auto booted = boot_.peek();
  return booted.ok() && booted->status.trial;
}

common::Status SimulatedStorage::prepare(const client::action::PrepareSlot& prepare) {
  Slot* slot = find(prepare.slot);
  if (slot == nullptr) return Error(Errc::kInvalidArgument, "no slot named '" + prepare.slot + "'");
  if (auto s = boot_.overwrite(prepare.slot); !s.ok()) return s;  // as AbSlotInstaller does
  if (!prepare.resume) slot->pieces.clear();
  slot->factory_version.clear();
  slot->size = prepare.image_size;
  return common::ok_status();
}

common::Status SimulatedStorage::write(const std::string& name, std::uint64_t offset, std::string_view data) {
  Slot* slot = find(name);
  if (slot == nullptr) return Error(Errc::kInvalidArgument, "no slot named '" + name + "'");
  if (faults_.space_for_bytes > 0 && offset + data.size() > faults_.space_for_bytes) {
    return Error(Errc::kIo, "cannot write slot '" + name + "': no space left on device");
  }
  slot->factory_version.clear();
  slot->pieces[offset] = pool_.intern(data);
  unsynced_.emplace_back(name, offset);
  bytes_written_ += data.size();
  return common::ok_status();
}

common::Status SimulatedStorage::sync() {
  unsynced_.clear();
  return common::ok_status();
}

void SimulatedStorage::power_cut() {
  for (const auto& [name, offset] : unsynced_) {
    if (Slot* slot = find(name)) slot->pieces.erase(offset);
  }
  unsynced_.clear();
}

common::Result<std::string> SimulatedStorage::digest(const Slot& slot, std::uint64_t size) const {
  common::Sha256 sha;
  std::uint64_t done = 0;
  for (const auto& [offset, piece] : slot.pieces) {
    if (done >= size) break;
    if (offset != done) break;  // a hole: the image is incomplete
    const std::uint64_t take = std::min<std::uint64_t>(piece->size(), size - done);
    sha.update(piece->data(), static_cast<std::size_t>(take));
    done += take;
  }
  if (done < size)
    return Error(Errc::kIo, "slot is shorter than the image (" + std::to_string(done) + " of " +
                                std::to_string(size) + " bytes present)");
  return common::digest_bytes(sha.finish());
}

common::Result<std::string> SimulatedStorage::hash(const std::string& name, std::uint64_t size) {
  Slot* slot = find(name);
  if (slot == nullptr) return Error(Errc::kInvalidArgument, "no slot named '" + name + "'");
  return digest(*slot, size);
}

common::Result<std::string> SimulatedStorage::read(const std::string& name, std::uint64_t offset,
                                                   std::uint32_t size) {
  Slot* slot = find(name);
  if (slot == nullptr) return Error(Errc::kInvalidArgument, "no slot named '" + name + "'");
  // The factory image is a version string here, not bytes: a virtual device reuses what it wrote.
  if (!slot->factory_version.empty()) {
    return Error(Errc::kNotFound,
                 "slot '" + name + "' holds the factory image, which has no bytes in the simulator");
  }
  std::string data;
  std::uint64_t at = offset;
  const std::uint64_t end = offset + size;
  auto it = slot->pieces.upper_bound(at);
  if (it != slot->pieces.begin()) --it;
  for (; it != slot->pieces.end() && at < end; ++it) {
    const auto& [piece_offset, piece] = *it;
    if (piece_offset > at) break;  // a hole
    if (piece_offset + piece->size() <= at) continue;
    const std::uint64_t from = at - piece_offset;
    const std::uint64_t take = std::min<std::uint64_t>(piece->size() - from, end - at);
    data.append(*piece, static_cast<std::size_t>(from), static_cast<std::size_t>(take));
    at += take;
  }
  return data;
}

common::Status SimulatedStorage::activate(const std::string& slot) {
  if (find(slot) == nullptr) return Error(Errc::kInvalidArgument, "no slot named '" + slot + "'");
  return boot_.activate(slot);
}

common::Status SimulatedStorage::commit(const std::string& slot) {
  if (find(slot) == nullptr) return Error(Errc::kInvalidArgument, "no slot named '" + slot + "'");
  return boot_.commit(slot);
}

common::Status SimulatedStorage::revert(const std::string& boot_slot) {
  if (find(boot_slot) == nullptr) return Error(Errc::kInvalidArgument, "no slot named '" + boot_slot + "'");
  return boot_.revert(boot_slot);
}

common::Status SimulatedStorage::set(const std::map<std::string, std::string>& variables) {
  for (const auto& [key, value] : variables) env_[key] = value;
  return common::ok_status();
}

common::Result<std::string> SimulatedStorage::boot() {
  auto slot = client::simulate_bootloader(*this, boot_.chooser());
  if (!slot.ok()) return slot;
  cmdline_ = client::kernel_cmdline_for_slot(*slot);
  return slot;
}

std::string SimulatedStorage::bootable_version(const std::string& name, const std::string& image_sha256,
                                               const std::string& image_version) const {
  auto it = slots_.find(name);
  if (it == slots_.end()) return {};
  const Slot& slot = it->second;
  if (!slot.factory_version.empty()) return slot.factory_version;
  if (slot.size == 0) return {};
  auto d = digest(slot, slot.size);
  return d.ok() && *d == image_sha256 ? image_version : std::string();
}

common::Status SimulatedJournal::store(const client::journal::JournalRecord& record) {
  if (!stored_) stored_.emplace();
  stored_->record = record;
  return common::ok_status();
}

common::Status SimulatedJournal::store_manifest(std::string_view signed_manifest) {
  if (!stored_) stored_.emplace();
  stored_->signed_manifest = std::string(signed_manifest);
  return common::ok_status();
}

}  // namespace fota::sim
