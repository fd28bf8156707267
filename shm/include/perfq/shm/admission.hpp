#pragma once
// Admission (SPEC §5): how full the queue is, as a producer can tell from the
// segment, and how many requests will be served before a new one.
#include <cstdint>

#include "perfq/core/request.hpp"
#include "perfq/shm/layout.hpp"

namespace perfq::shm {

class Segment;

struct Occupancy {
  uint64_t depth = 0;               // accepted, not yet final (never undercounted)
  uint64_t ahead[kBandCount] = {};  // per band: requests a new one would queue behind
  bool known = false;               // false: the view could not be read (counted as full)
};

// Any process. Reads the agent's AdmissionView under its sequence lock (a
// bounded number of tries) and adds what the band rings hold beyond it.
[[nodiscard]] Occupancy occupancy(Segment& seg) noexcept;

// Agent only: publish its view. Single writer.
void publish_admission(Segment& seg, uint64_t depth,
                       const uint64_t band_depth[kBandCount]) noexcept;
// Agent only, on taking over a segment: a view a dead agent left mid-write
// (sequence lock odd) becomes readable again (seqlock::repair).
void repair_admission(Segment& seg) noexcept;

}  // namespace perfq::shm
