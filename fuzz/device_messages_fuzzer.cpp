// SPDX-License-Identifier: Apache-2.0
// Device messages as the broker plugin, the orchestrator and the device read them. The first
// byte picks the channel (common::kAllChannels), the rest is the payload:
//  - every channel: common::validate_device_message, the plugin's and orchestrator's gate;
//  - what devices publish (inventory, progress, log, presence, chunk request): decoded and fed
//    to a FleetCore, as the orchestrator does;
//  - what devices receive (command, chunk): through client::dispatch_device_message to an
//    UpdateEngine; a chunk arrives while the engine downloads the fixture artifact.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fota/client/device_messages.hpp"
#include "fota/client/runtime.hpp"
#include "fota/common/codec.hpp"
#include "fota/common/topics.hpp"
#include "fota/orchestrator/fleet_core.hpp"
#include "fuzz_support.hpp"

namespace {

using namespace fota;

class NoArtifacts final : public orchestrator::ArtifactCatalog {
 public:
  common::Result<v1::SignedManifest> signed_manifest(const std::string& artifact_id) const override {
    return common::Error(common::Errc::kNotFound, "no artifact " + artifact_id);
  }
  std::uint64_t image_size(const std::string& /*artifact_id*/) const override { return 0; }
};

struct Fixture {
  common::TopicScheme topics;
  common::DeviceId device = common::DeviceId::parse(fuzz::kDeviceId).value();
  client::OpenSslEngineCrypto crypto{fuzz::trust_store(), fuzz::trust_store()};
  std::string install = fuzz::signed_command(
      fuzz::install_command(fuzz::signed_manifest(fuzz::image_bytes(5000), 1024), "c-install"));
  NoArtifacts artifacts;
};

const Fixture& fixture() {
  static const Fixture f;
  return f;
}

template <typename M>
void to_fleet(const Fixture& f, std::string_view payload, common::Channel channel) {
  auto message = common::decode_device_message<M>(f.device, payload, common::max_message_bytes(channel));
  if (!message) return;
  orchestrator::FleetCoreOptions options;
  options.new_rollout_id = [] { return std::string("r-0000000001"); };
  orchestrator::FleetCore core(options, f.artifacts, fuzz::null_logger());
  core.on_message(f.device, orchestrator::DeviceMessage(std::move(message).value()), fuzz::kNowMs);
  core.tick(fuzz::kNowMs + 1000);
  (void)core.commit([](const orchestrator::StoreBatch&) { return common::ok_status(); });
  (void)core.take_commands();
}

void to_device(const Fixture& f, common::Channel channel, std::string_view payload) {
  client::UpdateEngine engine(fuzz::engine_config(), f.crypto);
  (void)engine.on_started(client::BootStatus{"a", false}, fuzz::kNowMs);
  (void)engine.on_connected(fuzz::kNowMs);
  if (channel == common::Channel::kChunk) (void)engine.on_command(f.install, fuzz::kNowMs);
  (void)client::dispatch_device_message(engine, f.topics, f.device, f.topics.device_topic(f.device, channel),
                                        payload, fuzz::kNowMs + 10);
  (void)engine.on_tick(fuzz::kNowMs + 20'000);
  (void)engine.inventory(fuzz::kNowMs + 20'000);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const Fixture& f = fixture();
  const auto channel = common::kAllChannels[data[0] % std::size(common::kAllChannels)];
  const std::string_view payload(reinterpret_cast<const char*>(data + 1), size - 1);
  (void)common::validate_device_message(channel, f.device, payload);
  switch (channel) {
    case common::Channel::kInventory:
      to_fleet<v1::Inventory>(f, payload, channel);
      break;
    case common::Channel::kProgress:
      to_fleet<v1::Progress>(f, payload, channel);
      break;
    case common::Channel::kLog:
      to_fleet<v1::LogBatch>(f, payload, channel);
      break;
    case common::Channel::kPresence:
      to_fleet<v1::Presence>(f, payload, channel);
      break;
    case common::Channel::kChunkRequest:
      to_fleet<v1::ChunkRequest>(f, payload, channel);
      break;
    case common::Channel::kCertificateRequest:
      // The orchestrator's adapter answers these (signing is I/O), not the fleet core: the gate
      // above is what every request passes first.
      break;
    case common::Channel::kCommand:
    case common::Channel::kChunk:
      to_device(f, channel, payload);
      break;
  }
  return 0;
}
