// SPDX-License-Identifier: Apache-2.0
// fotactl's foundation commands, run as the real binary: success paths and bad-input errors.
#include <sys/stat.h>
#include <sys/wait.h>

#include <httplib.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "fota/common/crypto.hpp"
#include "fota/testing/broker.hpp"
#include "fota/testing/command.hpp"

namespace fota::testing {
namespace {
namespace fs = std::filesystem;

class FotactlTest : public ::testing::Test {
 protected:
  CommandRun run(const std::string& args) {
    return run_command("cd '" + dir_.path().string() + "' && '" FOTACTL_PATH "' " + args);
  }
  CommandRun ok(const std::string& args) {
    CommandRun r = run(args);
    EXPECT_EQ(r.exit_code, 0) << args << "\n" << r.output;
    return r;
  }
  CommandRun fails(const std::string& args, const std::string& expected_text) {
    CommandRun r = run(args);
    EXPECT_NE(r.exit_code, 0) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(expected_text), std::string::npos) << args << "\n" << r.output;
    return r;
  }
  static unsigned mode_of(const fs::path& p) {
    struct stat st {};
    ::stat(p.c_str(), &st);
    return st.st_mode & 0777;
  }
  void write_image(const std::string& name, std::size_t size) {
    std::ofstream out(dir_.path() / name, std::ios::binary);
    for (std::size_t i = 0; i < size; ++i) out.put(static_cast<char>(i * 31 + 7));
  }

  TempDir dir_;
};

TEST_F(FotactlTest, PkiInitAndIssueEveryRole) {
  ok("pki init --dir pki");
  EXPECT_EQ(mode_of(dir_.path() / "pki/ca.key"), 0600u);
  ok("pki issue-device dev-1 --dir pki");
  ok("pki issue-orchestrator orch-1 --dir pki");
  ok("pki issue-observer watcher --dir pki");
  ok("pki issue-broker broker --dir pki --dns localhost --ip 127.0.0.1");
  EXPECT_EQ(mode_of(dir_.path() / "pki/device/dev-1.key"), 0600u);
  EXPECT_TRUE(fs::exists(dir_.path() / "pki/orchestrator/orch-1.crt"));
  EXPECT_TRUE(fs::exists(dir_.path() / "pki/observer/watcher.crt"));
}

TEST_F(FotactlTest, PkiBadInput) {
  fails("pki issue-device dev-1 --dir pki", "fotactl pki init");
  ok("pki init --dir pki");
  fails("pki init --dir pki", "already exists");
  ok("pki issue-device dev-1 --dir pki");
  fails("pki issue-device dev-1 --dir pki", "already exists");
  fails("pki issue-device 'a/b' --dir pki", "device id");
  fails("pki issue-device '#' --dir pki", "device id");
  fails("pki issue-device", "name is required");
}

// The orchestrator's command key sits beside the fleet CA; a rotation adds one under a new name.
TEST_F(FotactlTest, PkiCommandKeyMakesAKeyPairAndRefusesOverwrite) {
  ok("pki init --dir pki");
  const CommandRun made = ok("pki command-key --dir pki");
  EXPECT_NE(made.output.find("created command key "), std::string::npos) << made.output;
  EXPECT_EQ(mode_of(dir_.path() / "pki/command/command.key"), 0600u);
  auto key = common::Ed25519PrivateKey::load(dir_.path() / "pki/command/command.key");
  ASSERT_TRUE(key.ok());
  auto pub = common::Ed25519PublicKey::load(dir_.path() / "pki/command/command.pub");
  ASSERT_TRUE(pub.ok());
  EXPECT_EQ(pub->key_id(), key->public_key().key_id());
  EXPECT_NE(made.output.find(pub->key_id()), std::string::npos) << made.output;
  fails("pki command-key --dir pki", "already exists");
  ok("pki command-key --dir pki --name command-2");
  EXPECT_TRUE(fs::exists(dir_.path() / "pki/command/command-2.pub"));
  fails("pki command-key --dir pki --name 'a/b'", "command key name");
}

// The root stays offline: an issuing CA under it signs device certificates, and what it signs
// verifies against the root with openssl (the chain travels with the leaf). A certificate
// request made with openssl for another identity or role is refused.
TEST_F(FotactlTest, PkiIssuingCaAndSignRequestCheckedWithOpenssl) {
  ok("pki init --dir pki");
  CommandRun r = ok("pki issue-ca issuing-1 --dir pki --days 365");
  EXPECT_NE(r.output.find("pki/issuing/issuing-1"), std::string::npos) << r.output;
  EXPECT_EQ(mode_of(dir_.path() / "pki/issuing/issuing-1/ca.key"), 0600u);
  fails("pki issue-ca issuing-1 --dir pki", "already exists");
  fails("pki issue-ca deeper --dir pki/issuing/issuing-1", "is an issuing CA");
  ok("pki issue-device dev-1 --dir pki/issuing/issuing-1");
  // openssl verifies the leaf against the root alone, given the chain the file carries.
  r = run_command("cd '" + dir_.path().string() +
                  "' && openssl verify -CAfile pki/ca.crt -untrusted pki/issuing/issuing-1/device/dev-1.crt "
                  "pki/issuing/issuing-1/device/dev-1.crt 2>&1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = run_command("cd '" + dir_.path().string() +
                  "' && openssl x509 -in pki/ca.crt -noout -text | grep -A1 'Basic Constraints'");
  EXPECT_NE(r.output.find("pathlen:1"), std::string::npos) << r.output;
  r = run_command(
      "cd '" + dir_.path().string() +
      "' && openssl x509 -in pki/issuing/issuing-1/ca.crt -noout -text | grep -A1 'Basic Constraints'");
  EXPECT_NE(r.output.find("pathlen:0"), std::string::npos) << r.output;

  // A device's own renewal request (openssl, P-256, CN = its id, OU = device) is signed.
  const std::string req = "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ";
  r = run_command("cd '" + dir_.path().string() + "' && " + req +
                  "new.key -out new.csr -subj '/O=fota/OU=device/CN=dev-1' 2>&1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ok("pki sign-request new.csr --name dev-1 --dir pki/issuing/issuing-1 --days 30 -o dev-1-renewed.crt");
  r = run_command("cd '" + dir_.path().string() +
                  "' && openssl verify -CAfile pki/ca.crt -untrusted dev-1-renewed.crt dev-1-renewed.crt 2>&1"
                  " && openssl x509 -in dev-1-renewed.crt -noout -pubkey > a.pub && openssl pkey -in new.key "
                  "-pubout > b.pub && cmp a.pub b.pub");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  fails("pki sign-request new.csr --name dev-1 --dir pki/issuing/issuing-1 -o dev-1-renewed.crt",
        "already exists");
  // Someone else's identity, another role, an RSA key: refused, nothing written.
  fails("pki sign-request new.csr --name dev-2 --dir pki/issuing/issuing-1 -o x.crt", "refused");
  r = run_command("cd '" + dir_.path().string() + "' && " + req +
                  "o.key -out orch.csr -subj '/O=fota/OU=orchestrator/CN=dev-1' 2>&1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  fails("pki sign-request orch.csr --name dev-1 --dir pki/issuing/issuing-1 -o x.crt", "role (OU)");
  r = run_command("cd '" + dir_.path().string() +
                  "' && openssl req -new -newkey rsa:2048 -nodes -keyout r.key -out rsa.csr "
                  "-subj '/O=fota/OU=device/CN=dev-1' 2>&1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  fails("pki sign-request rsa.csr --name dev-1 --dir pki/issuing/issuing-1 -o x.crt", "not ECDSA P-256");
  EXPECT_FALSE(fs::exists(dir_.path() / "x.crt"));
}

TEST_F(FotactlTest, KeysGenerateRefusesOverwrite) {
  ok("keys generate -o sk");
  EXPECT_EQ(mode_of(dir_.path() / "sk.key"), 0600u);
  EXPECT_TRUE(fs::exists(dir_.path() / "sk.pub"));
  fails("keys generate -o sk", "already exists");
}

TEST_F(FotactlTest, ArtifactCreateInspectVerify) {
  ok("keys generate -o sk");
  write_image("img", 70000);
  CommandRun created =
      ok("artifact create --image img --version 2.1.0 --hardware gw-v2,gw-v3 --security-counter 5 "
         "--chunk-size 4096 --key sk.key -o a.fota");
  EXPECT_NE(created.output.find("artifact_id"), std::string::npos);
  CommandRun inspected = ok("artifact inspect a.fota --json");
  EXPECT_NE(inspected.output.find("\"version\": \"2.1.0\""), std::string::npos) << inspected.output;
  EXPECT_NE(inspected.output.find("\"chunks\": 18"), std::string::npos) << inspected.output;
  ok("artifact verify a.fota --trust sk.pub");
}

// docs/SECURITY.md, "Encrypted artifacts": the release engineer's commands, and what they refuse.
TEST_F(FotactlTest, EncryptedArtifactCreateInspectVerify) {
  ok("keys generate -o sk");
  const CommandRun made = ok("keys generate --x25519 -o dev");
  EXPECT_NE(made.output.find("X25519"), std::string::npos) << made.output;
  EXPECT_EQ(mode_of(dir_.path() / "dev.key"), 0600u);
  ok("keys generate --x25519 -o group");
  write_image("img", 70000);
  ok("artifact create --image img --version 2.1.0 --hardware gw-v2 --security-counter 5 --chunk-size 4096 "
     "--key sk.key --encrypt-for dev.pub,group.pub -o e.fota");
  EXPECT_FALSE(fs::exists(dir_.path() / "e.fota.ciphertext")) << "the staged ciphertext is removed";
  const CommandRun inspected = ok("artifact inspect e.fota --json");
  EXPECT_NE(inspected.output.find("ENCRYPTION_SCHEME_X25519_AES256GCM_V1"), std::string::npos)
      << inspected.output;
  const CommandRun verified = ok("artifact verify e.fota --trust sk.pub");
  EXPECT_NE(verified.output.find("encrypted"), std::string::npos) << verified.output;
  // 18 chunks of 4 KiB, each 16 bytes longer: the bundle holds the ciphertext.
  EXPECT_NE(inspected.output.find("\"bundle_image_bytes\": " + std::to_string(70000 + 18 * 16)),
            std::string::npos)
      << inspected.output;
  fails(
      "artifact create --image img --version 2 --hardware h --security-counter 5 --key sk.key "
      "--encrypt-for sk.pub -o x.fota",
      "not an X25519 key");
  fails(
      "artifact create --image img --version 2 --hardware h --security-counter 5 --key sk.key "
      "--encrypt-for dev.pub,dev.pub -o y.fota",
      "given twice");
  fails("artifact create --image img --version 2 --hardware h --security-counter 5 --key dev.key -o z.fota",
        "not an Ed25519 key");
}

// docs/PROTOCOL.md, "Delta artifacts": fotactl artifact delta makes a normal signed bundle whose
// manifest names its base and target; what it refuses.
TEST_F(FotactlTest, ArtifactDeltaMakesASignedDeltaAndRefusesBadInputs) {
  ok("keys generate -o sk");
  write_image("v1.img", 200000);
  {
    std::string v2(200000, '\0');
    std::ifstream(dir_.path() / "v1.img", std::ios::binary).read(v2.data(), 200000);
    for (std::size_t i = 50000; i < 53000; ++i) v2[i] = static_cast<char>(i % 251);
    std::ofstream(dir_.path() / "v2.img", std::ios::binary) << v2 << "appended";
  }
  ok("artifact create --image v1.img --version 1.0 --hardware gw-v2 --security-counter 1 --chunk-size 4096 "
     "--key sk.key -o v1.fota");
  ok("artifact create --image v2.img --version 2.0 --hardware gw-v2 --security-counter 2 --chunk-size 4096 "
     "--key sk.key -o v2.fota");
  const CommandRun made = ok("artifact delta --from v1.fota --to v2.fota --key sk.key -o v1-v2.fota");
  EXPECT_NE(made.output.find("DELTA_CODEC_ZSTD_PATCH_FROM"), std::string::npos) << made.output;
  EXPECT_LT(fs::file_size(dir_.path() / "v1-v2.fota"), 20000u) << "the unchanged bytes are not sent";
  const CommandRun inspected = ok("artifact inspect v1-v2.fota --json");
  const CommandRun base = ok("artifact inspect v1.fota --json");
  const auto id_of = [](const std::string& json) {
    const auto at = json.find("\"artifact_id\": \"");
    return json.substr(at + 16, 32);
  };
  EXPECT_NE(inspected.output.find("\"base_artifact_id\": \"" + id_of(base.output) + "\""), std::string::npos)
      << inspected.output;
  EXPECT_NE(inspected.output.find("\"base_version\": \"1.0\""), std::string::npos) << inspected.output;
  EXPECT_NE(inspected.output.find("\"target_image_size\": 200008"), std::string::npos) << inspected.output;
  EXPECT_NE(inspected.output.find("\"version\": \"2.0\""), std::string::npos) << inspected.output;
  ok("artifact verify v1-v2.fota --trust sk.pub");

  fails("artifact delta --from v1.fota --to v2.fota --key sk.key -o v1-v2.fota", "already exists");
  fails("artifact delta --from v1-v2.fota --to v2.fota --key sk.key -o x.fota", "itself a delta");
  ok("artifact create --image v2.img --version 2.0 --hardware gw-v9 --security-counter 2 --key sk.key -o "
     "hw.fota");
  fails("artifact delta --from v1.fota --to hw.fota --key sk.key -o y.fota", "different hardware");
  fails("artifact delta --from v1.fota --to v1.fota --key sk.key -o z.fota", "same image");
  fails("artifact delta --from v1.fota --to v2.fota --key sk.pub -o w.fota", "private key");
  fails("artifact delta --from v1.img --to v2.fota --key sk.key -o w.fota", "not a fota bundle");
  EXPECT_FALSE(fs::exists(dir_.path() / "w.fota"));
}

TEST_F(FotactlTest, ArtifactBadInput) {
  ok("keys generate -o sk");
  ok("keys generate -o other");
  write_image("img", 5000);
  fails(
      "artifact create --image missing --version 1 --hardware h --security-counter 1 --key sk.key -o a.fota",
      "missing");
  fails("artifact create --image img --version 1 --hardware h --security-counter 1 --key nokey.key -o a.fota",
        "nokey.key");
  fails("artifact create --image img --version 1 --hardware h --security-counter 1 --key sk.pub -o a.fota",
        "private key");
  fails(
      "artifact create --image img --version 1 --hardware h --security-counter 1 --chunk-size 10 --key "
      "sk.key "
      "-o a.fota",
      "chunk size");
  ok("artifact create --image img --version 1 --hardware h --security-counter 1 --key sk.key -o a.fota");
  fails("artifact create --image img --version 1 --hardware h --security-counter 1 --key sk.key -o a.fota",
        "already exists");
  fails("artifact verify a.fota --trust other.pub", "not among the trusted keys");
  fails("artifact verify missing.fota --trust sk.pub", "cannot open bundle");
  fails("artifact inspect img", "not a fota bundle");
  // One flipped image byte: verify names the chunk.
  {
    std::fstream f(dir_.path() / "a.fota", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-10, std::ios::end);
    f.put('\x55');
  }
  fails("artifact verify a.fota --trust sk.pub", "chunk 0");
}

// Issue 14: fotactl used an error response's body as the message, and printed "fotactl: error: "
// alone when the body was empty. An orchestrator that answers every request 404 with no body:
TEST_F(FotactlTest, AnEmptyErrorBodyStillSaysWhatFailed) {
  httplib::Server server;
  const int port = server.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  std::thread serving([&] { server.listen_after_bind(); });
  const std::string at = "http://127.0.0.1:" + std::to_string(port);
  CommandRun r = fails("device list --token t0123456789abcdef --server " + at, "GET /api/v1/devices");
  EXPECT_NE(r.output.find("HTTP 404 from " + at), std::string::npos) << r.output;
  r = fails("rollout start r-1 --token t0123456789abcdef --server " + at, "POST /api/v1/rollouts/r-1/start");
  EXPECT_NE(r.output.find("HTTP 404"), std::string::npos) << r.output;
  server.stop();
  serving.join();
}

}  // namespace
}  // namespace fota::testing
