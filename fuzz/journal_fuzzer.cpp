// SPDX-License-Identifier: Apache-2.0
// The device's crash-safe journal as a power cut or a bad flash leaves it: the input is
// journal.pb and manifest.pb (a little-endian u16 with journal.pb's length, journal.pb, then
// manifest.pb), loaded by client::FileJournal and handed to an UpdateEngine that starts from it,
// as fota-device does at boot. The last byte says which slot booted and whether on trial.
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string_view>

#include "fota/client/runtime.hpp"
#include "fuzz_support.hpp"

namespace {

void write(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace fota;
  static const client::OpenSslEngineCrypto crypto{fuzz::trust_store(), fuzz::trust_store()};
  static const client::FileJournal journal(fuzz::scratch_dir() / "journal");
  if (size < 3) return 0;
  const std::size_t journal_size = std::min<std::size_t>(data[0] | (data[1] << 8), size - 3);
  const std::uint8_t boot = data[size - 1];
  const std::string_view rest(reinterpret_cast<const char*>(data + 2), size - 3);
  std::filesystem::create_directories(journal.dir());
  write(journal.dir() / "journal.pb", rest.substr(0, journal_size));
  if (boot & 0x80) {
    std::filesystem::remove(journal.dir() / "manifest.pb");
  } else {
    write(journal.dir() / "manifest.pb", rest.substr(journal_size));
  }

  auto loaded = journal.load();
  if (!loaded || !loaded->has_value()) return 0;
  const auto& record = (*loaded)->record;
  client::UpdateEngine engine(fuzz::engine_config(), crypto, &record, (*loaded)->signed_manifest);
  const client::BootStatus status{(boot & 1) ? "b" : "a", (boot & 2) != 0};
  (void)engine.on_started(status, fuzz::kNowMs);
  (void)engine.on_connected(fuzz::kNowMs);
  (void)engine.on_tick(fuzz::kNowMs + 10'000);
  if (boot & 4) (void)engine.on_health_result((boot & 8) != 0, "fuzz", fuzz::kNowMs + 20'000);
  if (boot & 16) {
    (void)engine.on_slot_hash(common::Result<std::string>(std::string(32, '\0')), fuzz::kNowMs + 30'000);
  }
  (void)engine.on_tick(fuzz::kNowMs + 400'000);
  (void)engine.inventory(fuzz::kNowMs + 400'000);
  return 0;
}
