// SPDX-License-Identifier: Apache-2.0
// fotactl pki ...: the fleet CA and certificates for devices, orchestrators, observers,
// operators and brokers.
#include <iostream>
#include <stdexcept>

#include "commands.hpp"
#include "fota/common/crypto.hpp"
#include "fota/common/pki.hpp"
#include "fota/orchestrator/api_role.hpp"

namespace fota::cli {
namespace {

using common::Role;

struct IssueArgs {
  std::string name;
  std::string dir = "pki";
  int days = 825;
  std::vector<std::string> dns;
  std::vector<std::string> ips;
  std::string api_role;  // operators: their role on the orchestrator's API
};

void issue(Role role, const IssueArgs& args) {
  auto ca = common::CertificateAuthority::open(args.dir);
  if (!ca) throw std::runtime_error(ca.error().message);
  if (args.days <= 0) throw std::runtime_error("--days must be positive");
  common::IssueOptions options;
  options.role = role;
  options.common_name = args.name;
  options.not_after = std::chrono::hours(24) * args.days;
  options.dns_names = args.dns;
  options.ip_addresses = args.ips;
  if (!args.api_role.empty()) {
    auto api_role = orchestrator::parse_api_role(args.api_role);
    if (!api_role) throw std::runtime_error("--api-role: " + api_role.error().message);
    options.title = args.api_role;
  }
  auto files = ca->issue_to_files(options);
  if (!files) throw std::runtime_error(files.error().message);
  std::cout << "issued " << common::role_name(role) << " certificate for \"" << args.name << "\""
            << (args.api_role.empty() ? "" : " (API role " + args.api_role + ")") << "\n"
            << "  certificate: " << files->cert.string() << "\n"
            << "  key:         " << files->key.string() << " (mode 0600)\n";
}

void add_issue_command(CLI::App& pki, const std::string& verb, Role role, const std::string& what,
                       const std::string& name_help, bool san, const std::string& san_what = "the broker") {
  auto args = std::make_shared<IssueArgs>();
  auto* cmd = pki.add_subcommand(verb, "Issue a certificate for " + what);
  cmd->add_option("name", args->name, name_help)->required();
  cmd->add_option("--dir", args->dir, "PKI directory made by `fotactl pki init`")->capture_default_str();
  cmd->add_option("--days", args->days, "Validity in days")->capture_default_str();
  if (san) {
    cmd->add_option("--dns", args->dns, "DNS name " + san_what + " is reached by (repeatable)");
    cmd->add_option("--ip", args->ips, "IP address " + san_what + " is reached by (repeatable)");
  }
  if (role == Role::kOperator) {
    args->api_role = "operator";
    cmd->add_option("--api-role", args->api_role,
                    "Role on the orchestrator's API, in the subject title: viewer (read), operator (also "
                    "rollouts) or admin (also artifacts, keys, tokens, revocation)")
        ->capture_default_str();
  }
  cmd->callback([args, role] { issue(role, *args); });
}

}  // namespace

void register_pki_commands(CLI::App& app) {
  auto* pki =
      app.add_subcommand("pki", "Fleet PKI: one ECDSA P-256 CA; certificate CN = identity, OU = role");
  pki->require_subcommand(1);

  auto dir = std::make_shared<std::string>("pki");
  auto name = std::make_shared<std::string>("fota fleet CA");
  auto* init = pki->add_subcommand("init", "Create a new fleet CA (ca.crt, ca.key mode 0600)");
  init->add_option("--dir", *dir, "Directory for the CA and issued certificates")->capture_default_str();
  init->add_option("--name", *name, "CA common name")->capture_default_str();
  init->callback([dir, name] {
    auto ca = common::CertificateAuthority::init(*dir, *name);
    if (!ca) throw std::runtime_error(ca.error().message);
    std::cout << "created fleet CA in " << *dir << "\n  certificate: " << ca->ca_cert_path().string()
              << "\n  key:         " << (ca->dir() / "ca.key").string() << " (mode 0600; keep it offline)\n";
  });

  auto ca_dir = std::make_shared<std::string>("pki");
  auto ca_name = std::make_shared<std::string>();
  auto ca_days = std::make_shared<int>(365 * 3);
  auto* issue_ca = pki->add_subcommand("issue-ca",
                                       "Create an issuing CA signed by the root (pathlen 0) in "
                                       "DIR/issuing/NAME/: the orchestrator holds it to "
                                       "renew device certificates; the root's key can then stay offline");
  issue_ca->add_option("name", *ca_name, "Issuing CA name (1-64 of [A-Za-z0-9._-])")->required();
  issue_ca->add_option("--dir", *ca_dir, "The root CA's directory (`fotactl pki init`)")
      ->capture_default_str();
  issue_ca->add_option("--days", *ca_days, "Validity in days")->capture_default_str();
  issue_ca->callback([ca_dir, ca_name, ca_days] {
    auto root = common::CertificateAuthority::open(*ca_dir);
    if (!root) throw std::runtime_error(root.error().message);
    if (*ca_days <= 0) throw std::runtime_error("--days must be positive");
    auto made = root->create_issuing_ca(*ca_name, std::chrono::hours(24) * *ca_days);
    if (!made) throw std::runtime_error(made.error().message);
    const std::filesystem::path& issuing_dir = *made;
    std::cout << "created issuing CA \"" << *ca_name << "\" in " << issuing_dir.string() << "\n"
              << "  certificate: " << (issuing_dir / "ca.crt").string() << "\n"
              << "  key:         " << (issuing_dir / "ca.key").string()
              << " (mode 0600; only where device certificates are signed)\n"
              << "  trust:       " << (issuing_dir / "root.crt").string()
              << " (the root: what brokers and devices keep as their CA)\n"
              << "  issue with:  fotactl pki issue-device ID --dir " << issuing_dir.string() << "\n";
  });

  struct SignArgs {
    std::string csr;
    std::string name;
    std::string role = "device";
    std::string dir = "pki";
    std::string out;
    int days = 825;
  };
  auto sign = std::make_shared<SignArgs>();
  auto* sign_request = pki->add_subcommand(
      "sign-request",
      "Sign a certificate request (PEM CSR, e.g. from `openssl req -new`) for a known identity: a device "
      "renewing its key keeps its CN and role, anything else is refused");
  sign_request->add_option("csr", sign->csr, "The certificate request (PEM)")
      ->required()
      ->check(CLI::ExistingFile);
  sign_request->add_option("--name", sign->name, "The identity it must be for (device id = CN)")->required();
  sign_request->add_option("--role", sign->role, "The role it must ask for (subject OU)")
      ->capture_default_str();
  sign_request->add_option("--dir", sign->dir, "The signing CA's directory (an issuing CA, or the root)")
      ->capture_default_str();
  sign_request->add_option("--days", sign->days, "Validity in days")->capture_default_str();
  sign_request
      ->add_option("-o,--out", sign->out, "Where to write the certificate chain (refuses to overwrite)")
      ->required();
  sign_request->callback([sign] {
    auto ca = common::CertificateAuthority::open(sign->dir);
    if (!ca) throw std::runtime_error(ca.error().message);
    auto role = common::parse_role(sign->role);
    if (!role) throw std::runtime_error("--role: " + role.error().message);
    if (sign->days <= 0) throw std::runtime_error("--days must be positive");
    auto csr = common::read_file(sign->csr, 64 * 1024);
    if (!csr) throw std::runtime_error(csr.error().message);
    auto issued = ca->sign_request(*csr, sign->name, *role, std::chrono::hours(24) * sign->days);
    if (!issued) throw std::runtime_error("refused: " + issued.error().message);
    if (auto st = common::write_new_file(sign->out, issued->cert_pem, 0644); !st)
      throw std::runtime_error(st.error().message);
    std::cout << "signed " << sign->role << " certificate for \"" << sign->name << "\" (serial "
              << issued->serial_hex << ")\n  chain: " << sign->out
              << (ca->is_issuing() ? " (leaf, then the issuing CA)" : "") << "\n";
  });

  add_issue_command(*pki, "issue-device", Role::kDevice, "a device (CN = device id = MQTT client id)",
                    "Device id: 1-64 of [A-Za-z0-9._-]", false);
  add_issue_command(*pki, "issue-orchestrator", Role::kOrchestrator,
                    "an orchestrator instance (MQTT client; with --ip/--dns also its HTTPS API's server)",
                    "Orchestrator name (its MQTT client id)", true, "the orchestrator's API");
  add_issue_command(*pki, "issue-observer", Role::kObserver, "a read-only observer", "Observer name", false);
  add_issue_command(*pki, "issue-operator", Role::kOperator, "an operator of the HTTP API", "Operator name",
                    false);
  add_issue_command(*pki, "issue-broker", Role::kBroker, "an MQTT broker (server certificate)", "Broker name",
                    true);

  auto key_dir = std::make_shared<std::string>("pki");
  auto key_name = std::make_shared<std::string>("command");
  auto* command_key = pki->add_subcommand(
      "command-key",
      "Create the orchestrator's command key (Ed25519): DIR/command/NAME.key (0600) and NAME.pub");
  command_key->add_option("--dir", *key_dir, "PKI directory made by `fotactl pki init`")
      ->capture_default_str();
  command_key->add_option("--name", *key_name, "Key name; a new one per rotation (docs/SECURITY.md)")
      ->capture_default_str();
  command_key->callback([key_dir, key_name] {
    auto files = common::create_command_key(*key_dir, *key_name);
    if (!files) throw std::runtime_error(files.error().message);
    std::cout << "created command key " << files->key_id << "\n"
              << "  private: " << files->private_key.string()
              << " (mode 0600; the orchestrator's command_key, nowhere else)\n"
              << "  public:  " << files->public_key.string()
              << " (add to every device's command_keys before the orchestrator uses it)\n";
  });
}

}  // namespace fota::cli
