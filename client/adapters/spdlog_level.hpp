// SPDX-License-Identifier: Apache-2.0
// The engine's log levels as spdlog levels, for the adapters that log through spdlog (Paho and
// libmosquitto). Private to client/.
#pragma once

#include <spdlog/common.h>

#include "fota/v1/fota.pb.h"

namespace fota::client {

inline spdlog::level::level_enum to_spdlog(v1::LogLevel level) {
  switch (level) {
    case v1::LOG_LEVEL_TRACE:
      return spdlog::level::trace;
    case v1::LOG_LEVEL_DEBUG:
      return spdlog::level::debug;
    case v1::LOG_LEVEL_WARN:
      return spdlog::level::warn;
    case v1::LOG_LEVEL_ERROR:
      return spdlog::level::err;
    default:
      return spdlog::level::info;
  }
}

}  // namespace fota::client
