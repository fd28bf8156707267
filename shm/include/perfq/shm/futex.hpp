#pragma once
// Parking on shared words: the OS half of WaitWord (core/wait_word.hpp).
// Shared (not FUTEX_PRIVATE) futexes, since waiter and waker are different
// processes mapping the same segment at different addresses.
#include <cstdint>

#include "perfq/core/wait_word.hpp"

namespace perfq::shm {

// Blocks while *word == expected, at most timeout_ns. Returns on wake-up,
// on a changed value, on timeout, or on a signal; callers re-check.
void futex_wait(uint32_t* word, uint32_t expected, uint64_t timeout_ns) noexcept;
void futex_wake_all(uint32_t* word) noexcept;

// Event count on a WaitWord. `ready` is re-checked after announcing the
// waiter, so a notify between the caller's last check and the park is
// never lost. Returns ready()'s last answer.
template <class Ready>
bool park(WaitWord& w, uint64_t timeout_ns, Ready&& ready) noexcept;

// Notifier side: call after publishing (release) what the waiter checks.
// Costs one fence and one load when nobody waits.
void notify(WaitWord& w) noexcept;

}  // namespace perfq::shm

#include "perfq/core/atomic.hpp"

namespace perfq::shm {

template <class Ready>
bool park(WaitWord& w, uint64_t timeout_ns, Ready&& ready) noexcept {
  // seq_cst: pairs with the fence in notify(); see core/wait_word.hpp.
  aref(w.waiters).fetch_add(1, std::memory_order_seq_cst);
  const uint32_t s = aref(w.seq).load(std::memory_order_seq_cst);
  bool ok = ready();
  if (!ok) {
    futex_wait(&w.seq, s, timeout_ns);
    ok = ready();
  }
  aref(w.waiters).fetch_sub(1, std::memory_order_relaxed);
  return ok;
}

}  // namespace perfq::shm
