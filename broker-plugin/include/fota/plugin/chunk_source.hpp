// Where the plugin reads the chunks it serves. The policy sees only this interface; the
// plugin uses the orchestrator's read-only ArtifactStore.
#pragma once

#include <cstdint>
#include <string>

#include "fota/common/artifact.hpp"
#include "fota/common/result.hpp"

namespace fota::plugin {

class ChunkSource {
 public:
  virtual ~ChunkSource() = default;
  virtual bool has_artifact(const std::string& artifact_id) const = 0;
  // kInvalidArgument for an index past the end, other errors when the read failed.
  virtual common::Status read_chunk(const std::string& artifact_id, std::uint32_t index,
                                    std::string& out) const = 0;
};

class ArtifactStoreChunkSource final : public ChunkSource {
 public:
  explicit ArtifactStoreChunkSource(const common::ArtifactStore& store) : store_(store) {}
  bool has_artifact(const std::string& artifact_id) const override { return store_.contains(artifact_id); }
  common::Status read_chunk(const std::string& artifact_id, std::uint32_t index,
                            std::string& out) const override {
    return store_.read_chunk(artifact_id, index, out);
  }

 private:
  const common::ArtifactStore& store_;
};

}  // namespace fota::plugin
