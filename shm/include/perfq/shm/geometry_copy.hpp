#pragma once
// The agent's own copy of its segment's shape, kept outside the segment
// (`<data_dir>/segment.geometry`): every member of the segment's group can
// write the segment's header, so the header cannot be the only record of
// how the segment is laid out. An agent that finds the header scribbled on
// when it attaches rebuilds it from this copy instead of refusing the queue
// (docs/PROTOCOL.md §17). Written by the agent after it creates or attaches
// a segment (a temporary file, then rename); read only by the agent.
#include <cstdint>
#include <string>

#include "perfq/core/result.hpp"
#include "perfq/shm/layout.hpp"

namespace perfq::shm {

struct GeometryCopy {
  Shape shape;
  uint64_t total_bytes = 0;
  uint64_t idempotency_seed = 0;  // the keyed tables' hash seeds
  uint64_t rate_seed = 0;
};

[[nodiscard]] Result<void> save_geometry_copy(const std::string& path, const GeometryCopy& copy);
// kNotFound when there is none; kSegmentInvalid when it cannot be read or
// describes no valid shape.
[[nodiscard]] Result<GeometryCopy> load_geometry_copy(const std::string& path);

}  // namespace perfq::shm
