// fota-device's update-module keys (docs/CLIENT.md, "fota-device"): module_user, module_group,
// module_timeout_ms, module_kill_grace_ms and the module_limits map.
#pragma once

#include <yaml-cpp/yaml.h>

#include "fota/client/installer.hpp"

namespace fota::device {

// The sandbox the config asks for, the defaults of ModuleSandbox for what it leaves out. Throws
// std::runtime_error naming the key for a value that is not a positive whole number (or
// "unlimited" where a resource limit allows it) and for an unknown module_limits key.
client::ModuleSandbox module_sandbox_from_config(const YAML::Node& config);

}  // namespace fota::device
