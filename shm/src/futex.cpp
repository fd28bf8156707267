#include "perfq/shm/futex.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <ctime>

namespace perfq::shm {

void futex_wait(uint32_t* word, uint32_t expected, uint64_t timeout_ns) noexcept {
  timespec ts{static_cast<time_t>(timeout_ns / 1'000'000'000),
              static_cast<long>(timeout_ns % 1'000'000'000)};
  ::syscall(SYS_futex, word, FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void futex_wake_all(uint32_t* word) noexcept {
  ::syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

void notify(WaitWord& w) noexcept {
  // Pairs with the waiter's seq_cst increment of `waiters`: either the
  // waiter's re-check sees what we published, or we see the waiter.
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer does not model fences; a seq_cst RMW on the same word
  // gives the same guarantee in a form it understands.
  if (aref(w.waiters).fetch_add(0, std::memory_order_seq_cst) == 0) return;
#else
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (aref(w.waiters).load(std::memory_order_relaxed) == 0) return;
#endif
  aref(w.seq).fetch_add(1, std::memory_order_release);
  futex_wake_all(&w.seq);
}

}  // namespace perfq::shm
