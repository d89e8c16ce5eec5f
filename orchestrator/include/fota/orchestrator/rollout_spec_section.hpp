// SPDX-License-Identifier: Apache-2.0
// A rollout spec that is one section of a larger YAML document: fota-sim's scenario `rollout:`
// (docs/SIMULATOR.md). Separate from rollout_spec.hpp because it speaks yaml-cpp's node type.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

#include "fota/common/result.hpp"
#include "fota/orchestrator/rollout_spec.hpp"

namespace fota::orchestrator {

// Where the section sits. The program that reads the document supplies what the document cannot
// say: the artifact (the program uploads it) and the target (its own devices), so a section must
// not give them; its name may be left out (the spec's name is then empty).
struct RolloutSpecSection {
  std::string document;                    // errors start "<document>:<line>:<column>: "
  std::string path;                        // the section's path: fields are "<path>.waves[0].size"
  std::vector<std::string> document_keys;  // keys of the section the document reads itself
};

// The same parser and checks as parse_rollout_spec(). Errors (kInvalidArgument) name the document,
// the line and column of the field, its path and what is accepted, e.g.
// "happy.yaml:14:13: rollout.waves[1].size: 150 is out of range; allowed 0.001 to 100".
common::Result<RolloutSpec> parse_rollout_spec_section(const YAML::Node& section,
                                                       const RolloutSpecSection& where);

}  // namespace fota::orchestrator
