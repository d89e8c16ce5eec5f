// SPDX-License-Identifier: Apache-2.0
// Errors as values at module boundaries. C++17: the client's public headers include this.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace fota::common {

// Broad error categories shared by every module. Detail goes into Error::message.
enum class Errc {
  kInvalidArgument,  // caller passed something malformed
  kMalformed,        // bytes from outside did not parse
  kTooLarge,         // input over a size cap
  kNotFound,
  kAlreadyExists,
  kPermissionDenied,
  kBadSignature,
  kUntrustedKey,
  kIntegrity,  // a hash did not match
  kIo,
  kCrypto,       // OpenSSL failed for a reason other than a bad signature
  kUnavailable,  // try again later
  kConflict,
  kInternal,
};

const char* errc_name(Errc code) noexcept;

struct Error {
  Errc code = Errc::kInternal;
  std::string message;  // says what was wrong and, where possible, what to do

  Error() = default;
  Error(Errc c, std::string msg) : code(c), message(std::move(msg)) {}

  // Prepends context: "loading bundle x: <message>".
  Error with_context(const std::string& context) const { return Error(code, context + ": " + message); }
  std::string to_string() const { return std::string(errc_name(code)) + ": " + message; }
};

// A value or an Error. Minimal on purpose (std::expected is C++23).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT(google-explicit-constructor)

  bool ok() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  const Error& error() const& { return error_; }
  Error&& error() && { return std::move(error_); }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

inline Status ok_status() { return Status(); }

}  // namespace fota::common
