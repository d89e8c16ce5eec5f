// SPDX-License-Identifier: Apache-2.0
#include "fota/common/result.hpp"

namespace fota::common {

const char* errc_name(Errc code) noexcept {
  switch (code) {
    case Errc::kInvalidArgument:
      return "invalid argument";
    case Errc::kMalformed:
      return "malformed";
    case Errc::kTooLarge:
      return "too large";
    case Errc::kNotFound:
      return "not found";
    case Errc::kAlreadyExists:
      return "already exists";
    case Errc::kPermissionDenied:
      return "permission denied";
    case Errc::kBadSignature:
      return "bad signature";
    case Errc::kUntrustedKey:
      return "untrusted key";
    case Errc::kIntegrity:
      return "integrity";
    case Errc::kIo:
      return "i/o";
    case Errc::kCrypto:
      return "crypto";
    case Errc::kUnavailable:
      return "unavailable";
    case Errc::kConflict:
      return "conflict";
    case Errc::kInternal:
      return "internal";
  }
  return "unknown";
}

}  // namespace fota::common
