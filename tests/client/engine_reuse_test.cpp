// SPDX-License-Identifier: Apache-2.0
// The engine's reuse phase (docs/CLIENT.md, "Reuse what the device already has"), sans-IO over
// virtual time: the running slot and the target slot are strings, every action is executed here,
// and a power cut keeps only what the last journal store made durable.
#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "fota/client/chunk_window.hpp"
#include "fota/client/engine.hpp"
#include "fota/client/runtime.hpp"
#include "fota/testing/clock.hpp"
#include "sim_device.hpp"

namespace fota::client {
namespace {

using testing::ArtifactOptions;
using testing::ChunkServer;
using testing::make_artifact;
using testing::make_image;
using testing::TestArtifact;

constexpr std::uint32_t kChunk = 1024;
constexpr std::size_t kChunks = 24;                    // full chunks of v1 (inline hashes: at most 32)
constexpr std::size_t kSize = kChunks * kChunk + 300;  // and a short last chunk

std::string chunk_of(const std::string& image, std::size_t i) { return image.substr(i * kChunk, kChunk); }

// A device without files: the engine, its journal record as last stored, two slots in memory.
class ReuseTest : public ::testing::Test {
 protected:
  ReuseTest()
      : key_(std::move(common::Ed25519PrivateKey::generate()).value()),
        crypto_(trust_with(key_), fota::client::testing::command_keys()),
        v1_(make_image(kSize, 11)) {
    config_ = testing::SimDevice::default_config();
  }

  static common::TrustStore trust_with(const common::Ed25519PrivateKey& key) {
    common::TrustStore trust;
    trust.add(key.public_key());
    return trust;
  }

  // The artifact of version 2.0.0 whose image is `image`.
  TestArtifact artifact_of(const std::string& image) {
    ArtifactOptions options;
    options.image = image;
    options.chunk_size = kChunk;
    return make_artifact(key_, options);
  }

  // Power on: a new engine from the last stored journal and manifest, the target slot as it was
  // at that store (later writes were not synced: a power cut loses them), connected.
  void power_on() {
    target_ = durable_target_;
    engine_ =
        std::make_unique<UpdateEngine>(config_, crypto_, have_journal_ ? &journal_ : nullptr, manifest_);
    running_ = true;
    run(engine_->on_started({"a", false}, clock_.now_ms()));
    if (running_) run(engine_->on_connected(clock_.now_ms()));
  }

  void install(const TestArtifact& artifact) {
    server_ = std::make_unique<ChunkServer>(&artifact);
    power_on();
    run(engine_->on_command(fota::client::testing::signed_command(
                                fota::client::testing::install_command("c1", artifact, clock_.now_ms())),
                            clock_.now_ms()));
    serve();
  }

  // Answers chunk requests until none is left or the engine stopped.
  void serve() {
    while (running_ && !requests_.empty()) {
      const v1::ChunkRequest request = std::move(requests_.front());
      requests_.pop_front();
      for (auto& chunk : server_->answer(request)) {
        if (!running_) return;
        run(engine_->on_chunk(std::move(chunk), clock_.now_ms()));
      }
    }
  }

  // Executes actions in order, feeding answers back first, as DeviceRuntime does.
  void run(Actions actions) {
    std::deque<Action> queue(std::make_move_iterator(actions.begin()),
                             std::make_move_iterator(actions.end()));
    auto feed = [&](Actions more) {
      for (auto it = more.rbegin(); it != more.rend(); ++it) queue.push_front(std::move(*it));
    };
    const std::int64_t now = clock_.now_ms();
    while (running_ && !queue.empty()) {
      Action a = std::move(queue.front());
      queue.pop_front();
      if (auto* p = std::get_if<action::PersistJournal>(&a)) {
        journal_ = p->record;
        have_journal_ = true;
        durable_target_ = target_;
      } else if (auto* m = std::get_if<action::StoreManifest>(&a)) {
        manifest_ = m->signed_manifest;
      } else if (auto* prep = std::get_if<action::PrepareSlot>(&a)) {
        EXPECT_EQ(prep->slot, "b");
        if (!prep->resume) target_.clear();
        target_.resize(prep->image_size);
      } else if (auto* w = std::get_if<action::WriteChunk>(&a)) {
        std::string data = w->data;
        if (corrupt_write) corrupt_write(w->offset, data);
        target_.replace(w->offset, data.size(), data);
        ++writes_;
      } else if (auto* r = std::get_if<action::ReadActiveChunk>(&a)) {
        EXPECT_EQ(r->slot, "a");
        if (cut_after_reads_ == 0) {
          running_ = false;  // power cut before this read
          return;
        }
        if (cut_after_reads_ > 0) --cut_after_reads_;
        ++reads_;
        read_indices_.push_back(r->index);
        common::Result<std::string> data =
            active_readable
                ? common::Result<std::string>(r->offset < active_.size() ? active_.substr(r->offset, r->size)
                                                                         : std::string())
                : common::Result<std::string>(common::Error(common::Errc::kNotFound, "module slot"));
        feed(engine_->on_active_chunk(r->index, data, now));
      } else if (auto* h = std::get_if<action::HashSlot>(&a)) {
        feed(engine_->on_slot_hash(crypto_.sha256(std::string_view(target_).substr(0, h->size)), now));
      } else if (auto* c = std::get_if<action::RequestChunks>(&a)) {
        for (const auto& range : c->request.ranges()) {
          for (std::uint32_t i = range.first(); i < range.first() + range.count(); ++i) requested_.insert(i);
        }
        requests_.push_back(c->request);
      } else if (auto* pr = std::get_if<action::PublishProgress>(&a)) {
        progress_.push_back(pr->progress);
      } else if (std::holds_alternative<action::ActivateSlot>(a)) {
        activated_ = true;
      } else if (std::holds_alternative<action::Reboot>(a)) {
        running_ = false;
      }
    }
  }

  const v1::Progress& last_progress() const { return progress_.back(); }

  common::Ed25519PrivateKey key_;
  OpenSslEngineCrypto crypto_;
  fota::testing::ManualClock clock_;
  EngineConfig config_;
  std::string v1_;
  std::string active_;  // the running slot "a"
  bool active_readable = true;
  std::function<void(std::uint64_t offset, std::string& data)> corrupt_write;

  std::unique_ptr<UpdateEngine> engine_;
  std::unique_ptr<ChunkServer> server_;
  bool running_ = false;
  journal::JournalRecord journal_;
  bool have_journal_ = false;
  std::string manifest_;
  std::string target_;
  std::string durable_target_;
  int cut_after_reads_ = -1;
  std::deque<v1::ChunkRequest> requests_;
  std::set<std::uint32_t> requested_;
  std::vector<v1::Progress> progress_;
  std::vector<std::uint32_t> read_indices_;
  std::size_t reads_ = 0;
  std::size_t writes_ = 0;
  bool activated_ = false;
};

// ---- Table: what the running slot holds -> what is requested -------------------------------
struct ReuseRow {
  const char* name;
  // v2 from v1.
  std::function<std::string(const std::string& v1)> make_v2;
  // The image chunks of v2 expected on the wire.
  std::function<std::set<std::uint32_t>()> requested;
};

class ReuseTableTest : public ReuseTest, public ::testing::WithParamInterface<ReuseRow> {};

TEST_P(ReuseTableTest, RequestsOnlyWhatTheRunningSlotLacks) {
  const ReuseRow& row = GetParam();
  active_ = v1_;
  const std::string v2 = row.make_v2(v1_);
  const TestArtifact artifact = artifact_of(v2);
  install(artifact);
  ASSERT_TRUE(activated_) << last_progress().error_detail();
  EXPECT_EQ(target_.substr(0, v2.size()), v2);
  const std::set<std::uint32_t> expected = row.requested();
  EXPECT_EQ(requested_, expected);
  // Reported: what was copied, of everything verified.
  std::uint64_t downloaded = 0;
  for (std::uint32_t i : expected) downloaded += chunk_of(v2, i).size();
  const v1::Progress* verifying = nullptr;
  for (const auto& p : progress_) {
    if (p.phase() == v1::PHASE_VERIFYING) verifying = &p;
  }
  ASSERT_NE(verifying, nullptr);
  EXPECT_EQ(verifying->bytes_done(), v2.size());
  EXPECT_EQ(verifying->bytes_reused(), v2.size() - downloaded);
  EXPECT_EQ(engine_->stats().chunks_reused * 1, engine_->stats().chunks_verified - expected.size());
}

std::set<std::uint32_t> range(std::uint32_t from, std::uint32_t to) {
  std::set<std::uint32_t> s;
  for (std::uint32_t i = from; i < to; ++i) s.insert(i);
  return s;
}

INSTANTIATE_TEST_SUITE_P(
    Table, ReuseTableTest,
    ::testing::Values(
        ReuseRow{"AllChunksReused", [](const std::string& v1) { return v1; },
                 [] { return std::set<std::uint32_t>{}; }},
        ReuseRow{"NoneReused", [](const std::string&) { return make_image(kSize, 99); },
                 [] { return range(0, kChunks + 1); }},
        ReuseRow{"SomeReused",
                 [](const std::string& v1) {
                   std::string v2 = v1;
                   v2[3 * kChunk + 5] ^= 0x01;
                   v2[17 * kChunk] ^= 0x80;
                   v2[v2.size() - 1] ^= 0x01;  // the short last chunk too
                   return v2;
                 },
                 [] {
                   return std::set<std::uint32_t>{3, 17, kChunks};
                 }},
        ReuseRow{"ShiftedPositions",
                 // A chunk inserted in front: every old chunk moved up by one. The short last chunk
                 // is only looked for at its own position, so it travels.
                 [](const std::string& v1) { return make_image(kChunk, 5) + v1; },
                 [] {
                   return std::set<std::uint32_t>{0, kChunks + 1};
                 }},
        ReuseRow{"RepeatedContentFillsEveryPosition",
                 // One chunk of v1 repeated (zeroed blocks of a file system): one read fills them all.
                 [](const std::string& v1) {
                   std::string v2;
                   for (std::size_t i = 0; i < kChunks; ++i) v2 += chunk_of(v1, 2);
                   return v2;
                 },
                 [] { return std::set<std::uint32_t>{}; }}),
    [](const ::testing::TestParamInfo<ReuseRow>& row_info) { return std::string(row_info.param.name); });

TEST_F(ReuseTest, ACorruptedChunkOfTheRunningSlotIsDownloadedInstead) {
  active_ = v1_;
  active_[6 * kChunk + 100] ^= 0x40;  // bit rot in the running slot
  const TestArtifact artifact = artifact_of(v1_);
  install(artifact);
  ASSERT_TRUE(activated_);
  EXPECT_EQ(requested_, (std::set<std::uint32_t>{6}));
  EXPECT_EQ(target_, v1_);
}

TEST_F(ReuseTest, AReusedChunkCorruptedOnItsWayToTheSlotIsRefusedAndNothingIsActivated) {
  active_ = v1_;
  const TestArtifact artifact = artifact_of(v1_);
  // Storage changes the bytes of chunk 4 as they are written: every chunk matched its signed hash
  // when read, so the read-back of the whole image is what catches it.
  corrupt_write = [](std::uint64_t offset, std::string& data) {
    if (offset == 4 * kChunk) data[10] ^= 0x01;
  };
  install(artifact);
  EXPECT_FALSE(activated_);
  EXPECT_EQ(last_progress().phase(), v1::PHASE_FAILED);
  EXPECT_EQ(last_progress().error(), v1::ERROR_IMAGE_HASH_MISMATCH) << last_progress().error_detail();
  EXPECT_EQ(engine_->state(), EngineState::kIdle);
  // Nothing was downloaded: the refusal is the signed image hash's, not the network's.
  EXPECT_TRUE(requested_.empty());
}

TEST_F(ReuseTest, AnInstallerThatCannotReadItsRunningSlotDownloadsEverything) {
  active_ = v1_;
  active_readable = false;  // an update module's payload, say
  const TestArtifact artifact = artifact_of(v1_);
  install(artifact);
  ASSERT_TRUE(activated_);
  EXPECT_EQ(requested_, range(0, kChunks + 1));
  EXPECT_EQ(reads_, 1U);  // the first read said no: no more were tried
  EXPECT_EQ(target_, v1_);
  EXPECT_EQ(last_progress().bytes_reused(), 0U);
}

TEST_F(ReuseTest, ReuseCanBeSwitchedOff) {
  config_.reuse_active_slot = false;
  active_ = v1_;
  const TestArtifact artifact = artifact_of(v1_);
  install(artifact);
  ASSERT_TRUE(activated_);
  EXPECT_EQ(reads_, 0U);
  EXPECT_EQ(requested_, range(0, kChunks + 1));
}

TEST_F(ReuseTest, EncryptedArtifactsAreNotReused) {
  // Their chunk hashes are of ciphertext, which no running slot holds.
  auto device_key =
      std::make_shared<const common::X25519PrivateKey>(common::X25519PrivateKey::generate().value());
  crypto_ = OpenSslEngineCrypto(trust_with(key_), fota::client::testing::command_keys(), device_key);
  ArtifactOptions options;
  options.image = v1_;
  options.chunk_size = kChunk;
  options.encrypt_for = {device_key->public_key()};
  const TestArtifact artifact = make_artifact(key_, options);
  active_ = v1_;
  install(artifact);
  ASSERT_TRUE(activated_) << last_progress().error_detail();
  EXPECT_EQ(reads_, 0U);
  EXPECT_EQ(requested_.size(), kChunks + 1);
  EXPECT_EQ(target_, v1_);
}

// ---- Power cuts during the copy ---------------------------------------------------------------
class ReusePowerCutTest : public ReuseTest, public ::testing::WithParamInterface<int> {};

TEST_P(ReusePowerCutTest, ResumesFromTheJournalAndLosesNothing) {
  // v2 = v1 with two chunks changed; the cut comes after GetParam() reads of the running slot.
  active_ = v1_;
  std::string v2 = v1_;
  v2[5 * kChunk] ^= 0x01;
  v2[20 * kChunk] ^= 0x01;
  const TestArtifact artifact = artifact_of(v2);
  cut_after_reads_ = GetParam();
  install(artifact);
  ASSERT_FALSE(running_);
  EXPECT_TRUE(requested_.empty());  // the cut came during the reuse phase
  // What the journal says was copied is on the slot (it was synced before the store).
  ASSERT_TRUE(have_journal_);
  const auto& u = journal_.update();
  const std::uint32_t resume_at = u.reuse().next_chunk();
  EXPECT_LE(resume_at, static_cast<std::uint32_t>(GetParam()));
  for (std::uint32_t i = 0; i < u.chunk_count(); ++i) {
    if (chunk_verified(u.verified_bitmap(), i)) {
      EXPECT_EQ(chunk_of(durable_target_, i), chunk_of(v2, i)) << i;
    }
  }
  // Power on again: the reuse phase continues where the journal left it.
  cut_after_reads_ = -1;
  read_indices_.clear();
  power_on();
  serve();
  ASSERT_TRUE(activated_) << last_progress().error_detail();
  EXPECT_EQ(target_, v2);
  ASSERT_FALSE(read_indices_.empty());
  EXPECT_EQ(read_indices_.front(), resume_at);
  EXPECT_EQ(requested_, (std::set<std::uint32_t>{5, 20}));
  EXPECT_EQ(last_progress().bytes_reused(), v2.size() - 2 * kChunk);
}

INSTANTIATE_TEST_SUITE_P(CutAfterReads, ReusePowerCutTest, ::testing::Values(0, 1, 4, 13, 24));

}  // namespace
}  // namespace fota::client
