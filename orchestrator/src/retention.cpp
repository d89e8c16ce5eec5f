// SPDX-License-Identifier: Apache-2.0
#include "fota/orchestrator/retention.hpp"

#include <algorithm>
#include <map>

#include "fota/orchestrator/device_query.hpp"

namespace fota::orchestrator {

namespace {

std::string group_of(const RetentionCandidate& a) {
  std::vector<std::string> hardware = a.hardware;
  std::sort(hardware.begin(), hardware.end());
  std::string key = a.name + " on ";
  for (std::size_t i = 0; i < hardware.size(); ++i) key += (i ? "," : "") + hardware[i];
  return key;
}

std::string days(Millis ms) {
  if (ms % 86'400'000 == 0) return std::to_string(ms / 86'400'000) + " day(s)";
  return std::to_string(ms / 1000) + " s";
}

}  // namespace

std::vector<RetentionDecision> plan_artifact_retention(std::vector<RetentionCandidate> artifacts,
                                                       const RetentionRule& rule, Millis now) {
  std::map<std::string, std::vector<RetentionCandidate>> groups;
  for (auto& a : artifacts) groups[group_of(a)].push_back(std::move(a));
  std::vector<RetentionDecision> out;
  for (auto& [group, list] : groups) {
    std::sort(list.begin(), list.end(), [](const RetentionCandidate& a, const RetentionCandidate& b) {
      if (a.created_ms != b.created_ms) return a.created_ms > b.created_ms;
      const std::string ka = version_sort_key(a.version), kb = version_sort_key(b.version);
      if (ka != kb) return ka > kb;
      return a.artifact_id > b.artifact_id;
    });
    for (std::size_t i = 0; i < list.size(); ++i) {
      RetentionDecision d{list[i], false, ""};
      if (i < rule.keep_last) {
        d.reason = "one of the newest " + std::to_string(rule.keep_last) + " of " + group;
      } else if (now - list[i].created_ms < rule.min_age_ms) {
        d.reason = "younger than " + days(rule.min_age_ms);
      } else if (!list[i].in_use.empty()) {
        d.reason = "in use: " + list[i].in_use;
      } else {
        d.remove = true;
        d.reason = "older than the newest " + std::to_string(rule.keep_last) + " of " + group + " and than " +
                   days(rule.min_age_ms) + ", used by no rollout or device";
      }
      out.push_back(std::move(d));
    }
  }
  return out;
}

}  // namespace fota::orchestrator
