// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "fota/common/codec.hpp"

namespace fota::common {
namespace {

template <typename M>
void expect_round_trip(const M& message) {
  const std::string bytes = encode(message);
  auto decoded = decode<M>(bytes, bytes.size());
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  EXPECT_EQ(decoded->SerializeAsString(), bytes) << message.GetTypeName();
}

v1::Manifest sample_manifest() {
  v1::Manifest m;
  m.set_artifact_id("0123456789abcdef0123456789abcdef");
  m.set_name("rootfs");
  m.set_version("1.2.3");
  m.set_security_counter(7);
  m.add_compatible_hardware("gw-v2");
  m.set_payload_type(v1::PAYLOAD_TYPE_AB_IMAGE);
  m.set_image_size(5000);
  m.set_image_sha256(std::string(32, 'i'));
  m.set_chunk_size(2048);
  for (int i = 0; i < 3; ++i) m.add_chunk_sha256(std::string(32, static_cast<char>('a' + i)));
  m.set_created_at_ms(1700000000000);
  return m;
}

TEST(Codec, RoundTripsEveryMessage) {
  v1::SignedManifest sm;
  sm.set_manifest(sample_manifest().SerializeAsString());
  sm.set_signature(std::string(64, 's'));
  sm.set_key_id("0011223344556677");
  expect_round_trip(sample_manifest());
  expect_round_trip(sm);

  v1::Command cmd;
  cmd.set_command_id("c1");
  cmd.set_deployment_id("r1");
  cmd.set_device_id("dev-1");
  cmd.set_issued_at_ms(1);
  cmd.set_expires_at_ms(2);
  *cmd.mutable_install()->mutable_manifest() = sm;
  cmd.mutable_install()->set_max_inflight_chunks(8);
  expect_round_trip(cmd);
  for (auto fill : std::initializer_list<void (*)(v1::Command&)>{
           [](v1::Command& c) { c.mutable_cancel(); },
           [](v1::Command& c) { c.mutable_rollback()->mutable_manifest()->set_key_id("k"); },
           [](v1::Command& c) { c.mutable_report_inventory(); },
           [](v1::Command& c) { c.mutable_set_log_level()->set_level(v1::LOG_LEVEL_DEBUG); }}) {
    v1::Command c;
    c.set_command_id("x");
    fill(c);
    expect_round_trip(c);
  }

  v1::Inventory inv;
  inv.set_device_id("dev-1");
  inv.set_hardware_type("gw-v2");
  inv.set_version("1.0.0");
  inv.set_time_zone("Europe/Berlin");
  auto* slot = inv.add_slots();
  slot->set_name("a");
  slot->set_bootable(true);
  inv.add_capabilities(v1::PAYLOAD_TYPE_AB_IMAGE);
  (*inv.mutable_attributes())["site"] = "north";
  expect_round_trip(inv);

  v1::Progress p;
  p.set_device_id("dev-1");
  p.set_phase(v1::PHASE_DOWNLOADING);
  p.set_bytes_done(10);
  p.set_bytes_total(20);
  p.set_error(v1::ERROR_CHUNK_HASH_MISMATCH);
  p.mutable_link()->set_reconnects(2);
  expect_round_trip(p);

  v1::LogBatch logs;
  logs.set_device_id("dev-1");
  auto* e = logs.add_entries();
  e->set_level(v1::LOG_LEVEL_WARN);
  e->set_message("disk at 91%");
  expect_round_trip(logs);

  v1::Presence presence;
  presence.set_device_id("dev-1");
  presence.set_online(true);
  expect_round_trip(presence);

  v1::ChunkRequest req;
  req.set_device_id("dev-1");
  req.set_artifact_id("0123456789abcdef0123456789abcdef");
  req.set_request_id(9);
  auto* r = req.add_ranges();
  r->set_first(3);
  r->set_count(4);
  req.set_bitmap(std::string("\x0f", 1));
  expect_round_trip(req);

  v1::ChunkData data;
  data.set_artifact_id("0123456789abcdef0123456789abcdef");
  data.set_index(3);
  data.set_data(std::string(2048, 'd'));
  data.set_status(v1::CHUNK_STATUS_OK);
  expect_round_trip(data);

  v1::BrokerStats stats;
  stats.set_acl_denials(5);
  expect_round_trip(stats);
}

TEST(Codec, RefusesMalformedInput) {
  for (std::string_view junk : {std::string_view("\xff\xff\xff", 3),
                                std::string_view("\x0a\x05"
                                                 "ab",
                                                 4),
                                std::string_view("\x08", 1)}) {
    auto decoded = decode<v1::Progress>(junk, 4096);
    ASSERT_FALSE(decoded.ok());
    EXPECT_EQ(decoded.error().code, Errc::kMalformed);
  }
}

TEST(Codec, RefusesOversizedInput) {
  v1::LogBatch logs;
  logs.set_device_id("d");
  logs.add_entries()->set_message(std::string(kMaxLogBatchBytes, 'x'));
  auto decoded = decode<v1::LogBatch>(encode(logs), kMaxLogBatchBytes);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.error().code, Errc::kTooLarge);
  EXPECT_NE(decoded.error().message.find("exceeds the limit"), std::string::npos);
}

TEST(Codec, ValidateDeviceMessageChecksTypeSizeAndDevice) {
  auto dev = DeviceId::parse("dev-1").value();
  v1::Progress p;
  p.set_device_id("dev-1");
  EXPECT_TRUE(validate_device_message(Channel::kProgress, dev, encode(p)).ok());

  p.set_device_id("dev-2");
  auto other = validate_device_message(Channel::kProgress, dev, encode(p));
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().code, Errc::kPermissionDenied);

  EXPECT_EQ(validate_device_message(Channel::kProgress, dev, "\xff\xff").error().code, Errc::kMalformed);
  p.set_device_id("dev-1");
  p.set_error_detail(std::string(kMaxProgressBytes, 'x'));
  EXPECT_EQ(validate_device_message(Channel::kProgress, dev, encode(p)).error().code, Errc::kTooLarge);
}

TEST(Codec, ManifestStructure) {
  EXPECT_TRUE(check_manifest_structure(sample_manifest()).ok());
  auto m = sample_manifest();
  m.add_chunk_sha256(std::string(32, 'z'));
  EXPECT_FALSE(check_manifest_structure(m).ok());
  m = sample_manifest();
  m.set_chunk_size(100);
  EXPECT_FALSE(check_manifest_structure(m).ok());
  m = sample_manifest();
  m.set_artifact_id("XYZ");
  EXPECT_FALSE(check_manifest_structure(m).ok());
  m = sample_manifest();
  m.clear_compatible_hardware();
  EXPECT_FALSE(check_manifest_structure(m).ok());
  m = sample_manifest();
  EXPECT_EQ(chunk_count(m.image_size(), m.chunk_size()), 3u);
  EXPECT_EQ(chunk_length(m, 0), 2048u);
  EXPECT_EQ(chunk_length(m, 2), 5000u - 4096u);
  EXPECT_EQ(chunk_length(m, 3), 0u);
}

// 100 chunks of 1 KiB: 32 hashes per hash chunk, so hash chunks 0-3 (32, 32, 32, 4 hashes) are
// chunk indices 100-103.
v1::Manifest hash_table_manifest() {
  v1::Manifest m = sample_manifest();
  m.clear_chunk_sha256();
  m.set_image_size(100 * 1024 - 24);
  m.set_chunk_size(1024);
  for (int j = 0; j < 4; ++j) m.add_hash_table_sha256(std::string(32, static_cast<char>('p' + j)));
  return m;
}

TEST(Codec, ManifestStructureWithHashTable) {
  EXPECT_TRUE(check_manifest_structure(hash_table_manifest()).ok());
  auto m = hash_table_manifest();
  m.add_chunk_sha256(std::string(32, 'a'));  // both forms
  EXPECT_FALSE(check_manifest_structure(m).ok());
  m = hash_table_manifest();
  m.add_hash_table_sha256(std::string(32, 'z'));  // one hash too many
  EXPECT_FALSE(check_manifest_structure(m).ok());
  m = hash_table_manifest();
  m.mutable_hash_table_sha256()->RemoveLast();  // one too few
  EXPECT_FALSE(check_manifest_structure(m).ok());
  m = hash_table_manifest();
  m.set_hash_table_sha256(1, std::string(31, 'x'));
  auto short_hash = check_manifest_structure(m);
  ASSERT_FALSE(short_hash.ok());
  EXPECT_NE(short_hash.error().message.find("hash-table hash 1"), std::string::npos)
      << short_hash.error().message;
  m = hash_table_manifest();
  m.set_image_size(std::uint64_t{1} << 62);  // more chunks than a chunk index can address
  EXPECT_FALSE(check_manifest_structure(m).ok());
  m = hash_table_manifest();
  m.clear_hash_table_sha256();  // neither form
  EXPECT_FALSE(check_manifest_structure(m).ok());
}

TEST(Codec, ChunkSpaceAddressesImageThenHashChunks) {
  const ChunkSpace inline_space = ChunkSpace::of(sample_manifest());
  EXPECT_FALSE(inline_space.has_hash_table());
  EXPECT_EQ(inline_space.total(), 3u);
  EXPECT_FALSE(inline_space.is_hash_chunk(3));

  const v1::Manifest m = hash_table_manifest();
  const ChunkSpace space = ChunkSpace::of(m);
  EXPECT_TRUE(space.has_hash_table());
  EXPECT_EQ(space.image_chunks(), 100u);
  EXPECT_EQ(space.hashes_per_hash_chunk(), 32u);
  EXPECT_EQ(space.hash_chunks(), 4u);
  EXPECT_EQ(space.total(), 104u);
  EXPECT_EQ(space.length(99), 1000u);  // the image's last chunk
  EXPECT_EQ(space.offset(99), 99u * 1024);
  EXPECT_FALSE(space.is_hash_chunk(99));
  EXPECT_TRUE(space.is_hash_chunk(100));
  EXPECT_EQ(space.offset(100), 0u);
  EXPECT_EQ(space.length(100), 32u * 32);
  EXPECT_EQ(space.offset(103), 3u * 32 * 32);
  EXPECT_EQ(space.length(103), 4u * 32);  // hashes of chunks 96-99
  EXPECT_EQ(space.length(104), 0u);
  EXPECT_FALSE(space.is_hash_chunk(104));
  EXPECT_EQ(chunk_length(m, 103), 128u);
  EXPECT_EQ(space.hash_chunk_index(31), 0u);
  EXPECT_EQ(space.hash_chunk_index(32), 1u);
  EXPECT_EQ(space.hash_offset(33), 32u);
  // A chunk size that is not a multiple of 32: a hash never straddles two hash chunks.
  const ChunkSpace odd(5000 * 1030, 1030, true);
  EXPECT_EQ(odd.hashes_per_hash_chunk(), 32u);
  EXPECT_EQ(odd.length(odd.image_chunks()), 32u * 32);
}

TEST(Codec, HashTableIsChosenOnlyWhenInlineHashesWouldNotFitOneHashChunkOr16KiB) {
  EXPECT_FALSE(ChunkSpace::wants_hash_table(32 * 1024, 1024));     // 32 chunks: fit one 1 KiB hash chunk
  EXPECT_TRUE(ChunkSpace::wants_hash_table(32 * 1024 + 1, 1024));  // 33
  EXPECT_FALSE(ChunkSpace::wants_hash_table(std::uint64_t{8} << 20, 16 * 1024));  // 512 chunks
  EXPECT_TRUE(ChunkSpace::wants_hash_table((std::uint64_t{8} << 20) + 1, 16 * 1024));
  EXPECT_FALSE(ChunkSpace::wants_hash_table(std::uint64_t{128} << 20, 256 * 1024));  // 512 chunks
  EXPECT_TRUE(ChunkSpace::wants_hash_table(std::uint64_t{1} << 30, 256 * 1024));     // 4096 chunks
}

}  // namespace
}  // namespace fota::common
