#pragma once
// WaitWord: the shared-memory half of an event count that a process parks on.
//
// Protocol (the futex calls live in shm/, this is only the layout):
//   waiter:   waiters += 1 (seq_cst); s = seq; re-check the condition;
//             futex_wait(&seq, s, bound); waiters -= 1
//   notifier: publish (release); fence (seq_cst); if waiters > 0:
//             seq += 1; futex_wake(&seq)
// The two seq_cst steps make it impossible for a waiter to park after the
// notifier decided nobody was waiting. A waiter that dies parked leaves
// `waiters` high; that only costs notifiers a spare wake syscall.
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "perfq/core/cache_line.hpp"

namespace perfq {

struct alignas(kCacheLine) WaitWord {
  uint32_t seq;
  uint32_t waiters;
};
static_assert(std::is_standard_layout_v<WaitWord>);
static_assert(std::is_trivially_copyable_v<WaitWord>);
static_assert(offsetof(WaitWord, waiters) == 4);
static_assert(sizeof(WaitWord) == kCacheLine);

}  // namespace perfq
