// SPDX-License-Identifier: Apache-2.0
// The fota boot scheme: one set of boot-loader variables that GRUB (client/boot/grub/grub.cfg),
// U-Boot (client/boot/u-boot/boot.cmd) and the simulator (simulate_bootloader) all follow, and
// the agent's side of it. Pure logic: variables in, variable updates out. C++17.
//
// Variables (docs/CLIENT.md, "The boot scheme"):
//   FOTA_ORDER        slots in boot priority, separated by spaces ("a b")
//   FOTA_<SLOT>_LEFT  tries left for that slot ("FOTA_A_LEFT"): a single digit 0..kMaxBootTries
//   FOTA_TRIAL        the slot the agent activated and has not committed yet ("" = none).
//                     Written and read by the agent only; the boot scripts never look at it.
//
// Boot loader (every power-on): take the first slot in FOTA_ORDER whose tries left are 1..9,
// decrement them, save, and boot it with `fota.slot=<slot>` on the kernel command line. When no
// slot has tries left, set every slot's tries back to the default and choose again: a device
// in the field has nobody at its console, so it keeps alternating between its slots (each
// gets its tries) rather than stopping in the boot loader, and a transient failure heals.
//
// Agent: reads the booted slot from the kernel command line, never from its own bookkeeping.
//   activate(s): s first in FOTA_ORDER with N tries, FOTA_TRIAL=s.
//   booted(s):   on trial when FOTA_TRIAL == s. Otherwise s is the committed slot and its tries
//                are reset (the agent came up, so this boot is good); a FOTA_TRIAL naming another
//                slot means that trial did not come up (tries ran out, the loader fell back).
//   commit(s):   s first with N tries, FOTA_TRIAL="".
//   revert(s):   s first with N tries, FOTA_TRIAL=""; the abandoned trial slot gets 0 tries, so
//                the loader never falls back onto an image that was rejected.
//   overwrite(s): before the first byte of a new image goes into s, s gets 0 tries: a slot
//                half written is never booted, even when the running slot stops booting (it
//                stays first in FOTA_ORDER, so the reset when no slot has tries picks it).
// A boot that never reaches the agent is undone by the boot loader alone: the trial slot's
// tries run out and the next slot in FOTA_ORDER boots.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "fota/client/engine.hpp"
#include "fota/common/result.hpp"

namespace fota::client {

using BootVariables = std::map<std::string, std::string>;

inline constexpr std::string_view kBootOrderVariable = "FOTA_ORDER";
inline constexpr std::string_view kBootTrialVariable = "FOTA_TRIAL";
// GRUB script has no arithmetic: it decrements with an if/elif chain over 1..kMaxBootTries, so
// tries are a single digit everywhere.
inline constexpr int kMaxBootTries = 9;
// The kernel command-line parameter the boot scripts pass: "fota.slot=<slot>".
inline constexpr std::string_view kCmdlineSlotParameter = "fota.slot";

struct BootSchemeConfig {
  // Slot names in factory order: lower-case letters and digits (they become variable names).
  std::vector<std::string> slots{"a", "b"};
  // Tries a slot gets when activated, committed, or confirmed by a boot (1..kMaxBootTries).
  int tries = 3;
};

// What the agent learns at start-up.
struct BootedSlot {
  BootStatus status;
  // The slot that was on trial and did not come up ("" = none): the loader fell back from it.
  std::string abandoned_trial;
  // Variables to set now (empty = nothing to change).
  BootVariables updates;
};

// The boot loader's decision for one power-on.
struct BootChoice {
  std::string slot;
  BootVariables updates;  // what the boot script saves before booting
  bool reset = false;     // no slot had tries left; all were given the default again
};

class BootChooser {
 public:
  // Errors: kInvalidArgument (no slots, a bad or repeated slot name, tries outside 1..9).
  static common::Result<BootChooser> create(BootSchemeConfig config);

  const BootSchemeConfig& config() const noexcept { return config_; }
  bool has_slot(const std::string& slot) const;
  // "FOTA_A_LEFT" for slot "a".
  static std::string tries_variable(const std::string& slot);
  // FOTA_ORDER as a list; the factory order when unset. Names that are not slots are dropped,
  // as the boot scripts ignore them.
  std::vector<std::string> order(const BootVariables& vars) const;
  // A slot's tries left as the boot scripts read them: 1..9, anything else (missing, 0,
  // garbage) is 0. `unset_default` is used when the variable is missing.
  static int tries_left(const BootVariables& vars, const std::string& slot, int unset_default);

  // ---- The agent's side ----
  // Errors: kNotFound (booted_slot is not one of the slots).
  common::Result<BootedSlot> booted(const BootVariables& vars, const std::string& booted_slot) const;
  // Each returns the variables to set. Errors: kInvalidArgument (not a slot).
  common::Result<BootVariables> activate(const BootVariables& vars, const std::string& slot) const;
  common::Result<BootVariables> commit(const BootVariables& vars, const std::string& slot) const;
  common::Result<BootVariables> revert(const BootVariables& vars, const std::string& slot) const;
  // Slot `slot` is about to be written while `booted_slot` runs. Errors: kInvalidArgument (not a
  // slot, or the running slot itself).
  common::Result<BootVariables> overwrite(const std::string& slot, const std::string& booted_slot) const;

  // ---- The boot loader's side: what the boot scripts do, for the simulator and tests ----
  BootChoice choose(const BootVariables& vars) const;

 private:
  explicit BootChooser(BootSchemeConfig config) : config_(std::move(config)) {}
  // `slot` first, the others after it in their current order.
  std::string order_with_first(const BootVariables& vars, const std::string& slot) const;
  common::Status check_slot(const std::string& slot) const;
  BootSchemeConfig config_;
};

// The slot in a kernel command line ("... fota.slot=b ..."; the last one wins, as for the
// kernel's own parameters). Errors: kNotFound (no fota.slot= parameter), kMalformed (empty).
common::Result<std::string> slot_from_kernel_cmdline(std::string_view cmdline);
// The command-line parameter a boot script passes for `slot`: "fota.slot=<slot>".
std::string kernel_cmdline_for_slot(const std::string& slot);

}  // namespace fota::client
