// SPDX-License-Identifier: Apache-2.0
// fotactl: the operator's command line for fota.
#include <cstdio>
#include <exception>

#include <CLI/CLI.hpp>

#include "commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"fotactl - operate a fota fleet: PKI, signing keys, artifacts, devices and rollouts"};
  app.set_version_flag("--version", std::string("fotactl ") + FOTA_VERSION);
  app.require_subcommand(1);
  fota::cli::register_pki_commands(app);
  fota::cli::register_key_commands(app);
  fota::cli::register_artifact_commands(app);
  fota::cli::register_artifact_upload_commands(app);
  fota::cli::register_device_commands(app);
  fota::cli::register_group_commands(app);
  fota::cli::register_webhook_commands(app);
  fota::cli::register_rollout_commands(app);
  fota::cli::register_audit_commands(app);
  fota::cli::register_deploy_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fotactl: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
