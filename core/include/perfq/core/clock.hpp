#pragma once
// Time sources. The agent's time rules take a Clock so tests can drive them
// without waiting (SPEC §7: no test waits on the wall clock).
#include <cstdint>

namespace perfq {

class Clock {
 public:
  virtual ~Clock() = default;
  // CLOCK_MONOTONIC nanoseconds: comparable across processes of one host.
  [[nodiscard]] virtual uint64_t now_mono_ns() const noexcept = 0;
  [[nodiscard]] virtual uint64_t now_unix_ns() const noexcept = 0;
};

// The system clocks (defined in shm/, which may make OS calls).
[[nodiscard]] const Clock& system_clock() noexcept;
[[nodiscard]] uint64_t mono_now_ns() noexcept;
[[nodiscard]] uint64_t unix_now_ns() noexcept;

}  // namespace perfq
