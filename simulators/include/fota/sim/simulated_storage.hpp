// SPDX-License-Identifier: Apache-2.0
// A virtual device's flash and bootloader, in memory: A/B slots plus the fota boot environment
// variables. Implements the client's Installer and BootEnvironment, so the real engine drives it
// exactly as it drives AbSlotInstaller on a device: the agent's side of the boot scheme is the
// client's own BootControl, the client's simulate_bootloader() (the boot scripts' twin) decides
// what boots, and the booted slot reaches the agent on a simulated kernel command line.
//
// Writes are volatile until sync(): a power cut (power_cut()) loses the writes since the last
// sync, as a device's page cache does, so a journal stored before its chunks were synced would
// claim data that is gone. SimulatedJournal is the device's journal in the same memory.
//
// Every device of a run downloads the same image, so slot contents are interned in a ChunkPool:
// 10,000 devices holding a 256 KiB image cost 256 KiB, not 2.5 GB.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "fota/client/installer.hpp"
#include "fota/client/runtime.hpp"

namespace fota::sim {

class ChunkPool {
 public:
  std::shared_ptr<const std::string> intern(std::string_view data);
  std::size_t distinct() const noexcept { return pool_.size(); }

 private:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    std::size_t operator()(const std::shared_ptr<const std::string>& s) const noexcept { return (*this)(*s); }
  };
  struct Equal {
    using is_transparent = void;
    static std::string_view view(std::string_view s) { return s; }
    static std::string_view view(const std::shared_ptr<const std::string>& s) { return *s; }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const noexcept {
      return view(a) == view(b);
    }
  };
  std::unordered_set<std::shared_ptr<const std::string>, Hash, Equal> pool_;
};

struct StorageFaults {
  // Writes fail with "no space left on device" past this many bytes of a slot (0 = never).
  std::uint64_t space_for_bytes = 0;
};

class SimulatedStorage : public client::Installer, public client::BootEnvironment {
 public:
  // Slot "a" holds the factory image of `factory_version` and is committed.
  SimulatedStorage(ChunkPool& pool, std::string factory_version, StorageFaults faults = {});
  // Its BootControl points at itself.
  SimulatedStorage(const SimulatedStorage&) = delete;
  SimulatedStorage& operator=(const SimulatedStorage&) = delete;

  // Installer
  common::Result<client::BootStatus> boot_status() override;
  common::Status prepare(const client::action::PrepareSlot& prepare) override;
  common::Status write(const std::string& slot, std::uint64_t offset, std::string_view data) override;
  common::Status sync() override;
  common::Result<std::string> hash(const std::string& slot, std::uint64_t size) override;
  common::Result<std::string> read(const std::string& slot, std::uint64_t offset,
                                   std::uint32_t size) override;
  common::Status activate(const std::string& slot) override;
  common::Status commit(const std::string& slot) override;
  common::Status revert(const std::string& boot_slot) override;

  // BootEnvironment
  common::Result<std::map<std::string, std::string>> load() override { return env_; }
  common::Status set(const std::map<std::string, std::string>& variables) override;

  // Power-on: the bootloader picks a slot (client::simulate_bootloader) and passes it on the
  // simulated kernel command line. Returns the booted slot.
  common::Result<std::string> boot();
  // Whether the running slot is on trial, without the agent's side effects of boot_status().
  bool on_trial();
  // What a slot holds as the bootloader would find it: the factory version, the version of a
  // complete image with the given hash, or "" (partial or corrupt: booting it bricks the device).
  std::string bootable_version(const std::string& slot, const std::string& image_sha256,
                               const std::string& image_version) const;
  std::uint64_t bytes_written() const noexcept { return bytes_written_; }
  // Power lost: the writes since the last sync() are gone.
  void power_cut();

 private:
  struct Slot {
    std::string factory_version;  // set while the slot still holds the factory image
    std::uint64_t size = 0;
    std::map<std::uint64_t, std::shared_ptr<const std::string>> pieces;  // offset -> bytes
  };
  common::Result<std::string> digest(const Slot& slot, std::uint64_t size) const;
  Slot* find(const std::string& name);

  ChunkPool& pool_;
  StorageFaults faults_;
  std::map<std::string, Slot> slots_;
  std::map<std::string, std::string> env_;
  std::string cmdline_;  // the simulated kernel command line of the current boot
  client::BootControl boot_;
  std::uint64_t bytes_written_ = 0;
  std::vector<std::pair<std::string, std::uint64_t>> unsynced_;  // (slot, offset) written since sync()
};

// A virtual device's journal: the record and manifest it stored last, in memory. A store is
// durable at once (what survives a power cut is decided by SimulatedStorage for slot data).
class SimulatedJournal : public client::Journal {
 public:
  common::Result<std::optional<Loaded>> load() const override { return stored_; }
  common::Status store(const client::journal::JournalRecord& record) override;
  common::Status store_manifest(std::string_view signed_manifest) override;

 private:
  std::optional<Loaded> stored_;
};

}  // namespace fota::sim
