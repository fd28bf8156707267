#pragma once
// Process liveness: is the process that registered as (pid, start ticks)
// still running? The start time from /proc/<pid>/stat guards against pid
// reuse; a zombie counts as dead (it will never touch the segment again).
#include <sys/types.h>

#include <cstdint>

namespace perfq::shm {

// Start time of `pid` in clock ticks since boot, or 0 if it does not exist.
[[nodiscard]] uint64_t process_start_ticks(pid_t pid) noexcept;
[[nodiscard]] uint64_t self_start_ticks() noexcept;
[[nodiscard]] bool process_alive(uint32_t pid, uint64_t start_ticks) noexcept;

}  // namespace perfq::shm
