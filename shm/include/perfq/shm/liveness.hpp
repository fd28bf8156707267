#pragma once
// Process liveness, two ways.
//
// Liveness locks (the rule, across PID namespaces): each party holds an
// open-file-description lock (F_OFD_SETLK, write, one byte) on the segment's
// file for as long as it is attached: the agent byte 0, client record i byte
// 1 + i. The kernel drops an OFD lock when the last descriptor of its open
// file description closes, so when its process dies however it dies; and a
// lock lives on the file's inode, so a process in another PID namespace that
// shares the /dev/shm mount sees it. A stopped (SIGSTOP) process keeps its
// locks: it is not dead. Probing (F_OFD_GETLK) takes nothing.
//
// The /proc check (a backstop within one PID namespace): is the process that
// registered as (pid, start ticks) still running? The start time from
// /proc/<pid>/stat guards against pid reuse; a zombie counts as dead. It
// catches a lock inherited by a forked child that outlives its parent.
#include <sys/types.h>

#include <cstdint>

namespace perfq::shm {

// Start time of `pid` in clock ticks since boot, or 0 if it does not exist.
[[nodiscard]] uint64_t process_start_ticks(pid_t pid) noexcept;
[[nodiscard]] uint64_t self_start_ticks() noexcept;
[[nodiscard]] bool process_alive(uint32_t pid, uint64_t start_ticks) noexcept;

// The identity of this process's PID namespace (the inode of
// /proc/self/ns/pid), or 0 when it cannot be read. Two processes whose
// values are equal and non-zero see each other's pids.
[[nodiscard]] uint64_t self_pid_ns() noexcept;

// The liveness lock bytes of the segment's file.
inline constexpr uint64_t kAgentLockByte = 0;
[[nodiscard]] constexpr uint64_t client_lock_byte(uint32_t id) noexcept {
  return uint64_t{1} + id;
}

// Takes the write lock on one byte through `fd` (its open file
// description). False if another open file description holds it, or on
// error.
[[nodiscard]] bool hold_lock_byte(int fd, uint64_t offset) noexcept;
void release_lock_byte(int fd, uint64_t offset) noexcept;

enum class LockProbe : uint8_t { kHeld, kFree, kUnknown };
// Whether an open file description other than `fd`'s holds the byte. Takes
// nothing. kUnknown when the kernel cannot say (the caller falls back to
// the /proc check).
[[nodiscard]] LockProbe probe_lock_byte(int fd, uint64_t offset) noexcept;

}  // namespace perfq::shm
