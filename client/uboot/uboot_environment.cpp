// SPDX-License-Identifier: Apache-2.0
// UBootEnvironment over libubootenv: open the environment its fw_env.config describes, read or
// change it, store, close. The library reports errors as negative errno values.
#include "fota/client/uboot_environment.hpp"

#include <libuboot.h>

#include <cstring>
#include <memory>

namespace fota::client {
namespace {

using common::Errc;
using common::Error;

struct ContextDeleter {
  void operator()(uboot_ctx* ctx) const { libuboot_exit(ctx); }
};
using Context = std::unique_ptr<uboot_ctx, ContextDeleter>;

// An open environment: closed (not stored) when it goes.
class OpenEnvironment {
 public:
  static common::Result<OpenEnvironment> open(const std::filesystem::path& config) {
    std::error_code ec;
    if (!std::filesystem::exists(config, ec)) {
      return Error(Errc::kNotFound, "fw_env.config " + config.string() +
                                        " does not exist; it says where U-Boot keeps its environment "
                                        "(docs/CLIENT.md, \"U-Boot\")");
    }
    uboot_ctx* raw = nullptr;
    if (int rc = libuboot_initialize(&raw, nullptr); rc < 0) {
      return Error(Errc::kInternal, std::string("libubootenv cannot start: ") + std::strerror(-rc));
    }
    Context ctx(raw);
    if (int rc = libuboot_read_config(ctx.get(), config.c_str()); rc < 0) {
      return Error(
          Errc::kInvalidArgument,
          "fw_env.config " + config.string() +
              " is not usable: it needs one or two lines \"device offset size [sector-size [sectors]]\" "
              "naming devices or files that exist: " +
              std::strerror(-rc));
    }
    if (int rc = libuboot_open(ctx.get()); rc < 0) {
      // libuboot_open keeps its lock file locked when it fails; without the close every later
      // open in this process would wait for that lock forever.
      libuboot_close(ctx.get());
      return Error(Errc::kIo,
                   "cannot read the U-Boot environment that " + config.string() +
                       " describes (missing device, or no copy with a valid CRC): " + std::strerror(-rc));
    }
    return OpenEnvironment(std::move(ctx));
  }
  OpenEnvironment(OpenEnvironment&&) = default;
  OpenEnvironment& operator=(OpenEnvironment&&) = default;
  ~OpenEnvironment() {
    if (ctx_) libuboot_close(ctx_.get());
  }
  uboot_ctx* get() const { return ctx_.get(); }

 private:
  explicit OpenEnvironment(Context ctx) : ctx_(std::move(ctx)) {}
  Context ctx_;
};

}  // namespace

UBootEnvironment::UBootEnvironment(std::filesystem::path fw_env_config) : config_(std::move(fw_env_config)) {}

common::Result<std::map<std::string, std::string>> UBootEnvironment::load() {
  auto env = OpenEnvironment::open(config_);
  if (!env.ok()) return env.error();
  std::map<std::string, std::string> vars;
  for (void* entry = libuboot_iterator(env->get(), nullptr); entry != nullptr;
       entry = libuboot_iterator(env->get(), entry)) {
    const char* name = libuboot_getname(entry);
    const char* value = libuboot_getvalue(entry);
    if (name != nullptr) vars[name] = value != nullptr ? value : "";
  }
  return vars;
}

common::Status UBootEnvironment::set(const std::map<std::string, std::string>& variables) {
  auto env = OpenEnvironment::open(config_);
  if (!env.ok()) return env.error();
  for (const auto& [name, value] : variables) {
    if (name.empty() || name.find_first_of("=\n") != std::string::npos) {
      return Error(Errc::kInvalidArgument, "'" + name + "' cannot be a U-Boot variable name");
    }
    if (int rc = libuboot_set_env(env->get(), name.c_str(), value.empty() ? nullptr : value.c_str());
        rc < 0) {
      return Error(Errc::kIo, "cannot set U-Boot variable " + name + ": " + std::strerror(-rc));
    }
  }
  if (int rc = libuboot_env_store(env->get()); rc < 0) {
    return Error(Errc::kIo, "cannot store the U-Boot environment that " + config_.string() +
                                " describes: " + std::strerror(-rc));
  }
  return common::ok_status();
}

}  // namespace fota::client
