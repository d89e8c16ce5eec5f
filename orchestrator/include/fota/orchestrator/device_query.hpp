// SPDX-License-Identifier: Apache-2.0
// Choosing devices by what the operator knows of them: the selector text a dynamic group is
// defined by ("hardware=rpi4,tag=lab,version<2.0"), the device list's query (those terms, a page
// size and an opaque keyset cursor), and the operator's groups. Pure: the fleet core matches
// selectors in memory (to resolve a rollout's groups), the store turns the same query into SQL.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fota/common/result.hpp"
#include "fota/orchestrator/rollout_engine.hpp"

namespace fota::orchestrator {

enum class VersionOp { kEq, kNe, kLt, kLe, kGt, kGe };
// "=", "!=", "<", "<=", ">", ">=": the selector's text, also valid SQL on SQLite and PostgreSQL.
std::string_view version_op_text(VersionOp op);

struct VersionTerm {
  VersionOp op = VersionOp::kEq;
  std::string version;
};

// Every term must hold. tag matches a tag the device reports or one an operator set; group
// matches the group the device reports or a static group an operator put it in (not a dynamic
// group: a selector never names another selector).
struct DeviceSelector {
  std::vector<std::string> hardware;
  std::vector<std::string> tags;
  std::vector<std::string> groups;
  std::vector<VersionTerm> versions;
  std::optional<bool> online;
  bool empty() const {
    return hardware.empty() && tags.empty() && groups.empty() && versions.empty() && !online;
  }
};

// "hardware=rpi4,tag=lab,version<2.0": terms joined by commas; keys hardware, tag, group and
// online (=) and version (=, !=, <, <=, >, >=). Errors name the term and say what is accepted.
common::Result<DeviceSelector> parse_device_selector(std::string_view text);
std::string device_selector_text(const DeviceSelector& selector);
bool device_selector_matches(const DeviceSelector& selector, const DeviceFacts& device);

// A version as text that sorts like the version: numeric components zero-padded ("1.10" after
// "1.9"), other components compared as text. The store keeps it beside each device so that
// version<2.0 is a plain SQL comparison.
std::string version_sort_key(std::string_view version);

// A name for an operator tag or group: 1 to 64 of [A-Za-z0-9._:-], starting with a letter or digit.
common::Status check_label(std::string_view what, std::string_view name);

// A group set by an operator: static (a list of devices) or dynamic (a selector, evaluated when it
// is used).
struct GroupRecord {
  std::string name;
  std::string selector;  // empty = static
  Millis created_ms = 0;
  std::string actor;
  std::vector<std::string> members;  // static: the device ids, sorted
  bool dynamic() const { return !selector.empty(); }
};

// One page of the device list: every selector must hold; phase and id_contains when set.
struct DeviceQuery {
  std::vector<DeviceSelector> selectors;
  std::string phase;        // the phase of the device's last report ("committed", "failed", ...)
  std::string id_contains;  // ?q=: a substring of the id
  std::string after_id;     // keyset: ids after this one (from the cursor)
  std::size_t limit = 100;
};

struct DevicePage {
  std::vector<std::string> ids;  // by id
  std::string next_after;        // the last id when more follow; empty at the end
};

// Opaque page cursors: `list` names the list it belongs to (a devices cursor is refused by the
// events list), `key` is where the next page starts. Errors say to pass `next` back unchanged.
std::string encode_cursor(std::string_view list, std::string_view key);
common::Result<std::string> decode_cursor(std::string_view list, std::string_view cursor);

}  // namespace fota::orchestrator
