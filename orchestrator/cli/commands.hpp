// SPDX-License-Identifier: Apache-2.0
// fotactl command groups. Each group registers its subcommands on the root app; main() only
// calls the registrations. Commands return a process exit code; errors go to stderr and say
// what to fix.
#pragma once

#include <CLI/CLI.hpp>

namespace fota::cli {

void register_pki_commands(CLI::App& app);       // pki init | issue-device | issue-orchestrator | ...
void register_key_commands(CLI::App& app);       // keys generate
void register_artifact_commands(CLI::App& app);  // artifact create | inspect | verify (| upload)
// The orchestrator API commands (orchestrator/cli/fleet_commands.cpp, deploy_command.cpp).
void register_artifact_upload_commands(
    CLI::App& app);                            // artifact upload | list (after register_artifact_commands)
void register_device_commands(CLI::App& app);  // device list | show | logs
void register_group_commands(CLI::App& app);
void register_webhook_commands(CLI::App& app);  // webhook add | list | rm | deliveries    // group create |
                                                // list | show | add | remove | delete
void register_rollout_commands(CLI::App& app);  // rollout create | plan | start | ... | status | watch
void register_audit_commands(CLI::App& app);    // audit list | verify
void register_deploy_command(CLI::App& app);    // deploy --device ID IMAGE

}  // namespace fota::cli
