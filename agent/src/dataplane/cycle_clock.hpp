#pragma once
// CycleClock: the duty cycle's notion of now.
//
// The conductor reads CLOCK_MONOTONIC once at the start of each cycle and
// every collaborator measures its time rules against that one reading, so
// the steps of a cycle agree on the time. The wall clock is read only where
// a timestamp leaves the agent (records, events, status entries).
#include <algorithm>
#include <cstdint>

#include "perfq/core/clock.hpp"

namespace perfq::agent {

struct CycleClock {
  explicit CycleClock(const Clock& c) noexcept : clock(c) {}

  // How long ago `t_ns` was, by the cycle's clock; 0 for a time in the
  // future (a record written by another agent's clock).
  [[nodiscard]] uint64_t since(uint64_t t_ns) const noexcept {
    return now_ns - std::min(t_ns, now_ns);
  }
  [[nodiscard]] uint64_t unix_now_ns() const noexcept { return clock.now_unix_ns(); }

  const Clock& clock;
  uint64_t now_ns = 0;  // monotonic, set by the conductor at the start of each cycle
};

}  // namespace perfq::agent
