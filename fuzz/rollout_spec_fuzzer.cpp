// SPDX-License-Identifier: Apache-2.0
// Rollout specs as the operator API and `fotactl deploy` hand them over (YAML or JSON). A spec
// that parses must survive its own round trip (rollout_spec.hpp: parse_rollout_spec reads the
// canonical JSON back to an equal spec), and its waves must cover any fleet size.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string_view>

#include "fota/orchestrator/rollout_spec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace fota::orchestrator;
  auto spec = parse_rollout_spec(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!spec) return 0;
  const std::string json = rollout_spec_to_json(*spec);
  auto again = parse_rollout_spec(json);
  if (!again || rollout_spec_to_json(*again) != json) {
    std::fprintf(stderr, "canonical JSON does not read back: %s\n%s\n", json.c_str(),
                 again ? rollout_spec_to_json(*again).c_str() : again.error().to_string().c_str());
    std::abort();
  }
  for (std::size_t fleet : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{10'000}}) {
    const auto waves = wave_sizes(*spec, fleet);
    if (std::accumulate(waves.begin(), waves.end(), std::size_t{0}) != fleet) {
      std::fprintf(stderr, "waves of %s do not cover a fleet of %zu\n", json.c_str(), fleet);
      std::abort();
    }
  }
  return 0;
}
