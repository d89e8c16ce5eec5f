// SPDX-License-Identifier: Apache-2.0
// fotactl keys ...: Ed25519 artifact-signing keys and X25519 artifact-decryption keys.
#include <iostream>
#include <stdexcept>

#include "commands.hpp"
#include "fota/common/crypto.hpp"
#include "fota/common/encryption.hpp"

namespace fota::cli {

void register_key_commands(CLI::App& app) {
  auto* keys = app.add_subcommand("keys", "Artifact signing keys (Ed25519) and decryption keys (X25519)");
  keys->require_subcommand(1);
  auto out = std::make_shared<std::string>("signing");
  auto x25519 = std::make_shared<bool>(false);
  auto* generate =
      keys->add_subcommand("generate", "Generate a signing key pair: PREFIX.key (0600) and PREFIX.pub");
  generate->add_option("-o,--out", *out, "Path prefix of the two files")->capture_default_str();
  generate->add_flag("--x25519", *x25519,
                     "Generate a decryption key pair instead (a device's or a hardware group's): the "
                     "device keeps PREFIX.key, `artifact create --encrypt-for PREFIX.pub` encrypts for it");
  generate->callback([out, x25519] {
    if (*x25519) {
      auto key = common::X25519PrivateKey::generate();
      if (!key) throw std::runtime_error(key.error().message);
      const std::string priv = *out + ".key";
      const std::string pub = *out + ".pub";
      if (auto st = common::save_key_pair(*key, priv, pub); !st) throw std::runtime_error(st.error().message);
      std::cout << "generated X25519 decryption key " << key->public_key().key_id() << "\n"
                << "  private: " << priv << " (mode 0600; install on the device(s) as decryption_key)\n"
                << "  public:  " << pub << " (for `fotactl artifact create --encrypt-for`)\n";
      return;
    }
    auto key = common::Ed25519PrivateKey::generate();
    if (!key) throw std::runtime_error(key.error().message);
    const std::string priv = *out + ".key";
    const std::string pub = *out + ".pub";
    if (auto st = common::save_key_pair(*key, priv, pub); !st) throw std::runtime_error(st.error().message);
    std::cout << "generated Ed25519 signing key " << key->public_key().key_id() << "\n"
              << "  private: " << priv << " (mode 0600; keep it off the orchestrator)\n"
              << "  public:  " << pub << " (give to devices and the orchestrator as a trusted key)\n";
  });
}

}  // namespace fota::cli
