// SPDX-License-Identifier: Apache-2.0
// The artifact retention rule (docs/ORCHESTRATOR.md, "Artifact retention"): which uploaded
// artifacts may go. Pure: the service says what each artifact is used by and deletes.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "fota/orchestrator/rollout_engine.hpp"

namespace fota::orchestrator {

// orchestrator.yaml `artifacts.retention`: keep the newest keep_last of each name and hardware,
// and nothing younger than min_age; look every `interval`. keep_last 0 = no rule.
struct RetentionRule {
  std::size_t keep_last = 0;
  Millis min_age_ms = 0;
  Millis interval_ms = 3'600'000;
  bool enabled() const { return keep_last > 0; }
};

struct RetentionCandidate {
  std::string artifact_id;
  std::string name;
  std::string version;
  std::vector<std::string> hardware;  // compatible hardware
  Millis created_ms = 0;
  std::string in_use;  // why it must stay whatever its age ("rollout r-1 (running) installs it"), or empty
};

struct RetentionDecision {
  RetentionCandidate artifact;
  bool remove = false;
  std::string reason;  // why it stays or goes
};

// One decision per artifact, grouped by name and hardware, newest first in each group (by
// created time, then version). An artifact goes only when it is not among its group's newest
// keep_last, is at least min_age old, and nothing uses it.
std::vector<RetentionDecision> plan_artifact_retention(std::vector<RetentionCandidate> artifacts,
                                                       const RetentionRule& rule, Millis now);

}  // namespace fota::orchestrator
