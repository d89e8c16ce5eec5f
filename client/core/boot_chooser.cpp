// SPDX-License-Identifier: Apache-2.0
// The fota boot scheme (boot_chooser.hpp): the agent's side and the boot scripts' C++ twin.
#include "fota/client/boot_chooser.hpp"

#include <algorithm>
#include <cctype>
#include <set>

namespace fota::client {
namespace {

using common::Errc;
using common::Error;

std::string get(const BootVariables& vars, std::string_view key) {
  auto it = vars.find(std::string(key));
  return it == vars.end() ? std::string() : it->second;
}

std::vector<std::string> split_words(std::string_view text) {
  std::vector<std::string> words;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    const std::size_t start = i;
    while (i < text.size() && !std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    if (i > start) words.emplace_back(text.substr(start, i - start));
  }
  return words;
}

std::string join_words(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : " ") + w;
  return out;
}

bool valid_slot_name(const std::string& name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
  });
}

}  // namespace

common::Result<BootChooser> BootChooser::create(BootSchemeConfig config) {
  if (config.slots.empty()) return Error(Errc::kInvalidArgument, "the boot scheme needs at least one slot");
  std::set<std::string> seen;
  for (const auto& slot : config.slots) {
    if (!valid_slot_name(slot)) {
      return Error(Errc::kInvalidArgument, "slot name '" + slot +
                                               "' is not usable in boot-loader variables; use lower-case "
                                               "letters and digits (e.g. 'a', 'b')");
    }
    if (!seen.insert(slot).second)
      return Error(Errc::kInvalidArgument, "slot '" + slot + "' is listed twice");
  }
  if (config.tries < 1 || config.tries > kMaxBootTries) {
    return Error(Errc::kInvalidArgument, "boot tries " + std::to_string(config.tries) + " is outside 1.." +
                                             std::to_string(kMaxBootTries) +
                                             " (the GRUB script counts down with a fixed chain of digits)");
  }
  return BootChooser(std::move(config));
}

bool BootChooser::has_slot(const std::string& slot) const {
  return std::find(config_.slots.begin(), config_.slots.end(), slot) != config_.slots.end();
}

std::string BootChooser::tries_variable(const std::string& slot) {
  std::string upper;
  for (char c : slot) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return "FOTA_" + upper + "_LEFT";
}

std::vector<std::string> BootChooser::order(const BootVariables& vars) const {
  auto it = vars.find(std::string(kBootOrderVariable));
  if (it == vars.end()) return config_.slots;
  std::vector<std::string> out;
  for (auto& word : split_words(it->second)) {
    if (has_slot(word) && std::find(out.begin(), out.end(), word) == out.end()) out.push_back(word);
  }
  return out;
}

int BootChooser::tries_left(const BootVariables& vars, const std::string& slot, int unset_default) {
  auto it = vars.find(tries_variable(slot));
  if (it == vars.end()) return unset_default;
  const std::string& v = it->second;
  if (v.size() == 1 && v[0] >= '1' && v[0] <= static_cast<char>('0' + kMaxBootTries)) return v[0] - '0';
  return 0;
}

common::Status BootChooser::check_slot(const std::string& slot) const {
  if (has_slot(slot)) return common::ok_status();
  std::string known;
  for (const auto& s : config_.slots) known += (known.empty() ? "'" : ", '") + s + "'";
  return Error(Errc::kInvalidArgument, "no slot named '" + slot + "' (the slots are " + known + ")");
}

std::string BootChooser::order_with_first(const BootVariables& vars, const std::string& slot) const {
  std::vector<std::string> out{slot};
  for (const auto& s : order(vars)) {
    if (s != slot) out.push_back(s);
  }
  // Slots missing from FOTA_ORDER go last, so the loader can still fall back to them.
  for (const auto& s : config_.slots) {
    if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
  }
  return join_words(out);
}

common::Result<BootedSlot> BootChooser::booted(const BootVariables& vars,
                                               const std::string& booted_slot) const {
  if (!has_slot(booted_slot)) {
    auto s = check_slot(booted_slot);
    return Error(Errc::kNotFound, "the boot loader booted an unknown slot: " + s.error().message);
  }
  BootedSlot out;
  out.status.booted_slot = booted_slot;
  const std::string trial = get(vars, kBootTrialVariable);
  out.status.trial = trial == booted_slot;
  if (out.status.trial) return out;  // its tries keep counting until commit
  const std::string n = std::to_string(config_.tries);
  if (get(vars, tries_variable(booted_slot)) != n) out.updates[tries_variable(booted_slot)] = n;
  if (trial.empty() || !has_slot(trial)) {
    // The committed slot came up: it is the one to boot first (the loader may have fallen back
    // to it because the slot before it ran out of tries).
    const std::string first = order_with_first(vars, booted_slot);
    if (get(vars, kBootOrderVariable) != first) out.updates[std::string(kBootOrderVariable)] = first;
  } else if (tries_left(vars, trial, config_.tries) == 0) {
    out.abandoned_trial = trial;
  }
  // Otherwise the trial is activated and the reboot into it has not happened yet: the order
  // stays as activate() left it.
  return out;
}

common::Result<BootVariables> BootChooser::activate(const BootVariables& vars,
                                                    const std::string& slot) const {
  if (auto s = check_slot(slot); !s.ok()) return s.error();
  return BootVariables{{std::string(kBootOrderVariable), order_with_first(vars, slot)},
                       {tries_variable(slot), std::to_string(config_.tries)},
                       {std::string(kBootTrialVariable), slot}};
}

common::Result<BootVariables> BootChooser::commit(const BootVariables& vars, const std::string& slot) const {
  if (auto s = check_slot(slot); !s.ok()) return s.error();
  return BootVariables{{std::string(kBootOrderVariable), order_with_first(vars, slot)},
                       {tries_variable(slot), std::to_string(config_.tries)},
                       {std::string(kBootTrialVariable), ""}};
}

common::Result<BootVariables> BootChooser::revert(const BootVariables& vars, const std::string& slot) const {
  if (auto s = check_slot(slot); !s.ok()) return s.error();
  BootVariables out{{std::string(kBootOrderVariable), order_with_first(vars, slot)},
                    {tries_variable(slot), std::to_string(config_.tries)},
                    {std::string(kBootTrialVariable), ""}};
  const std::string trial = get(vars, kBootTrialVariable);
  if (!trial.empty() && trial != slot && has_slot(trial)) out[tries_variable(trial)] = "0";
  return out;
}

common::Result<BootVariables> BootChooser::overwrite(const std::string& slot,
                                                     const std::string& booted_slot) const {
  if (auto s = check_slot(slot); !s.ok()) return s.error();
  if (slot == booted_slot) {
    return Error(Errc::kInvalidArgument,
                 "slot '" + slot + "' is the one running; an update is written into the other slot");
  }
  return BootVariables{{tries_variable(slot), "0"}};
}

BootChoice BootChooser::choose(const BootVariables& vars) const {
  BootChoice choice;
  BootVariables seen = vars;
  for (int pass = 0; pass < 2; ++pass) {
    for (const auto& slot : order(seen)) {
      const int left = tries_left(seen, slot, config_.tries);
      if (left == 0) continue;
      choice.slot = slot;
      choice.updates[tries_variable(slot)] = std::to_string(left - 1);
      return choice;
    }
    // No slot has tries left: all get the default again (see the header for why).
    choice.reset = true;
    for (const auto& slot : config_.slots) {
      seen[tries_variable(slot)] = std::to_string(config_.tries);
      choice.updates[tries_variable(slot)] = std::to_string(config_.tries);
    }
  }
  // FOTA_ORDER names no slot at all: boot the first one, as the scripts' defaults do.
  choice.slot = config_.slots.front();
  return choice;
}

common::Result<std::string> slot_from_kernel_cmdline(std::string_view cmdline) {
  const std::string prefix = std::string(kCmdlineSlotParameter) + "=";
  std::string slot;
  bool found = false;
  for (const auto& word : split_words(cmdline)) {
    if (word.compare(0, prefix.size(), prefix) == 0) {
      slot = word.substr(prefix.size());
      found = true;
    }
  }
  if (!found) {
    return Error(Errc::kNotFound, "the kernel command line has no " + prefix +
                                      "<slot>; the boot script must pass it (client/boot/, docs/CLIENT.md)");
  }
  if (slot.empty()) return Error(Errc::kMalformed, "the kernel command line has an empty " + prefix);
  return slot;
}

std::string kernel_cmdline_for_slot(const std::string& slot) {
  return std::string(kCmdlineSlotParameter) + "=" + slot;
}

}  // namespace fota::client
