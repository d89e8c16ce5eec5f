// fotactl command groups. Each group registers its subcommands on the root app; main() only
// calls the registrations. Commands return a process exit code; errors go to stderr and say
// what to fix.
#pragma once

#include <CLI/CLI.hpp>

namespace fota::cli {

void register_pki_commands(CLI::App& app);       // pki init | issue-device | issue-orchestrator | ...
void register_key_commands(CLI::App& app);       // keys generate
void register_artifact_commands(CLI::App& app);  // artifact create | inspect | verify (| upload)

}  // namespace fota::cli
