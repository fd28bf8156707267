#pragma once
// Pending: a request the agent holds, waiting to be dispatched.
//
// Entries are copies the agent made when it took the request: they stay in
// agent memory, and one is dropped when reached if its slot has moved on
// (another generation, or no longer PENDING). `band` is kept here because by
// then the slot may hold another request.
#include <cstdint>

namespace perfq::agent {

struct Pending {
  uint32_t slot;
  uint32_t generation;
  uint64_t eligible_ns;  // dispatchable since (queue timeout and aging count from here)
  uint8_t band;          // < kBandCount: checked when the request was taken
};

}  // namespace perfq::agent
