// SPDX-License-Identifier: Apache-2.0
#include "fota/orchestrator/device_query.hpp"

#include <algorithm>
#include <cctype>

#include "fota/common/crypto.hpp"

namespace fota::orchestrator {

using common::Errc;
using common::Error;

namespace {

constexpr std::string_view kVersionOps[] = {"!=", "<=", ">=", "=", "<", ">"};

VersionOp version_op(std::string_view op) {
  if (op == "!=") return VersionOp::kNe;
  if (op == "<=") return VersionOp::kLe;
  if (op == ">=") return VersionOp::kGe;
  if (op == "<") return VersionOp::kLt;
  if (op == ">") return VersionOp::kGt;
  return VersionOp::kEq;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

bool contains(const std::vector<std::string>& sorted_or_not, const std::string& value) {
  return std::find(sorted_or_not.begin(), sorted_or_not.end(), value) != sorted_or_not.end();
}

}  // namespace

std::string_view version_op_text(VersionOp op) {
  switch (op) {
    case VersionOp::kNe:
      return "!=";
    case VersionOp::kLt:
      return "<";
    case VersionOp::kLe:
      return "<=";
    case VersionOp::kGt:
      return ">";
    case VersionOp::kGe:
      return ">=";
    default:
      return "=";
  }
}

common::Status check_label(std::string_view what, std::string_view name) {
  const auto allowed = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == ':' || c == '-';
  };
  if (name.empty() || name.size() > 64 || !std::isalnum(static_cast<unsigned char>(name.front())) ||
      !std::all_of(name.begin(), name.end(), allowed)) {
    return Error(Errc::kInvalidArgument, std::string(what) + " '" + std::string(name.substr(0, 80)) +
                                             "' is not a valid name: use 1 to 64 characters of "
                                             "[A-Za-z0-9._:-] starting with a letter or digit");
  }
  return common::ok_status();
}

common::Result<DeviceSelector> parse_device_selector(std::string_view text) {
  DeviceSelector out;
  if (trim(text).empty()) {
    return Error(Errc::kInvalidArgument,
                 "empty selector; write terms like hardware=rpi4,tag=lab,version<2.0");
  }
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find(',', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view term = trim(text.substr(start, end - start));
    start = end + 1;
    if (term.empty()) {
      if (end == text.size() && !out.empty()) break;
      return Error(Errc::kInvalidArgument,
                   "selector '" + std::string(text) +
                       "' has an empty term; write terms like hardware=rpi4,tag=lab,version<2.0");
    }
    std::size_t at = term.find_first_of("!=<>");
    if (at == std::string_view::npos || at == 0) {
      return Error(Errc::kInvalidArgument, "selector term '" + std::string(term) +
                                               "' is not KEY=VALUE; write terms like hardware=rpi4, "
                                               "tag=lab, group=canary, online=true or version<2.0");
    }
    const std::string key(trim(term.substr(0, at)));
    std::string_view op;
    for (std::string_view candidate : kVersionOps) {
      if (term.substr(at, candidate.size()) == candidate) {
        op = candidate;
        break;
      }
    }
    const std::string value(trim(term.substr(at + op.size())));
    if (value.find_first_of("!=<>") != std::string::npos) {
      return Error(Errc::kInvalidArgument, "selector term '" + std::string(term) +
                                               "' has more than one operator; write one, like version<2.0");
    }
    if (op.empty() || value.empty()) {
      return Error(Errc::kInvalidArgument, "selector term '" + std::string(term) +
                                               "' has no value; write KEY=VALUE (version also takes "
                                               "!=, <, <=, > and >=)");
    }
    if (key == "version") {
      out.versions.push_back(VersionTerm{version_op(op), value});
      continue;
    }
    if (op != "=") {
      return Error(Errc::kInvalidArgument, "selector term '" + std::string(term) + "': only version takes '" +
                                               std::string(op) + "'; " + key + " takes '='");
    }
    if (key == "hardware") {
      out.hardware.push_back(value);
    } else if (key == "tag") {
      out.tags.push_back(value);
    } else if (key == "group") {
      out.groups.push_back(value);
    } else if (key == "online") {
      if (value != "true" && value != "false") {
        return Error(Errc::kInvalidArgument,
                     "selector term '" + std::string(term) + "': online is true or false");
      }
      out.online = value == "true";
    } else {
      return Error(Errc::kInvalidArgument, "selector term '" + std::string(term) + "': unknown key '" + key +
                                               "'; use hardware, tag, group, online or version");
    }
  }
  if (out.empty()) {
    return Error(Errc::kInvalidArgument,
                 "empty selector; write terms like hardware=rpi4,tag=lab,version<2.0");
  }
  return out;
}

std::string device_selector_text(const DeviceSelector& s) {
  std::string out;
  auto add = [&](std::string_view key, std::string_view op, const std::string& value) {
    out += (out.empty() ? "" : ",") + std::string(key) + std::string(op) + value;
  };
  for (const auto& v : s.hardware) add("hardware", "=", v);
  for (const auto& v : s.tags) add("tag", "=", v);
  for (const auto& v : s.groups) add("group", "=", v);
  if (s.online) add("online", "=", *s.online ? "true" : "false");
  for (const auto& v : s.versions) add("version", version_op_text(v.op), v.version);
  return out;
}

bool device_selector_matches(const DeviceSelector& s, const DeviceFacts& d) {
  if (d.revoked) return false;
  for (const auto& hw : s.hardware) {
    if (hw != d.hardware_type) return false;
  }
  for (const auto& tag : s.tags) {
    if (!contains(d.tags, tag) && !contains(d.operator_tags, tag)) return false;
  }
  for (const auto& group : s.groups) {
    if (group != d.group && !contains(d.static_groups, group)) return false;
  }
  if (s.online && *s.online != d.online) return false;
  if (!s.versions.empty()) {
    const std::string have = version_sort_key(d.version);
    for (const auto& v : s.versions) {
      const int c = have.compare(version_sort_key(v.version));
      bool ok = false;
      switch (v.op) {
        case VersionOp::kEq:
          ok = c == 0;
          break;
        case VersionOp::kNe:
          ok = c != 0;
          break;
        case VersionOp::kLt:
          ok = c < 0;
          break;
        case VersionOp::kLe:
          ok = c <= 0;
          break;
        case VersionOp::kGt:
          ok = c > 0;
          break;
        case VersionOp::kGe:
          ok = c >= 0;
          break;
      }
      if (!ok) return false;
    }
  }
  return true;
}

std::string version_sort_key(std::string_view version) {
  std::string out;
  if (version.empty()) return out;  // before every version (a device that has not reported one)
  std::size_t start = 0;
  while (start <= version.size()) {
    std::size_t end = version.find_first_of(".-+", start);
    if (end == std::string_view::npos) end = version.size();
    std::string_view part = version.substr(start, end - start);
    if (!out.empty()) out += '.';
    const bool numeric = !part.empty() && part.size() <= 10 &&
                         std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (numeric) {
      out += std::string(10 - part.size(), '0');
      out += part;
    } else {
      // After every number of the same position ('~' sorts after the digits): 2.0.rc1 > 2.0.9.
      out += '~';
      out += part;
    }
    if (end == version.size()) break;
    start = end + 1;
  }
  return out;
}

std::string encode_cursor(std::string_view list, std::string_view key) {
  std::string raw(list);
  raw += '\n';
  raw += key;
  return common::to_hex(raw);
}

common::Result<std::string> decode_cursor(std::string_view list, std::string_view cursor) {
  auto raw = common::from_hex(cursor);
  const std::string prefix = std::string(list) + '\n';
  if (!raw || raw->compare(0, prefix.size(), prefix) != 0) {
    return Error(Errc::kInvalidArgument, "cursor: '" + std::string(cursor.substr(0, 40)) +
                                             "' is not a cursor of the " + std::string(list) +
                                             " list; pass the X-Next-Cursor of the previous page unchanged");
  }
  return raw->substr(prefix.size());
}

}  // namespace fota::orchestrator
