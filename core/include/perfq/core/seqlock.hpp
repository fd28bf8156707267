#pragma once
// The sequence lock: one u64 word in shared memory guarding the words next to
// it, with one writer at a time and any number of readers in any process.
// Readers never block the writer, and never trust what they copied until the
// word says it was whole.
//
// Counter form (AdmissionView, status entries, keyed-table entries, the
// metrics since-start row): odd while written, even when whole, and it only
// grows, so a reader whose copy overlapped a write always sees it change.
//
//   writer:  odd = begin_write(w)  ->  store fields  ->  end_write(w, odd)
//              w: e  ----------------> e+1 (odd) ------> e+2 (even)
//   reader:  s1 = w (even, acquire); copy; s2 = recheck(w); whole iff s1 == s2
//
// Marked form (event ring entries, metrics minute rows): the stable value
// carries information (a position + 1, a minute), so its parity says
// nothing; the writer stores a caller-chosen `marker` that no stable value
// equals, then the stable value. A reader wants one exact value
// (read_exact).
//
//   writer:  begin_write_marked(w, marker) -> store fields -> end_write_marked(w, marker, v)
//   reader:  s1 = w == want (acquire); copy; recheck(w) == want
//
// Repair: the single writer, restarted (the agent after taking over a
// segment a dead agent left), turns a counter word a dead writer left odd
// into the next even value, so readers are not turned away forever; what it
// guards may be half old, half new, so `invalidate` runs first, while the
// word is still odd, to make the fields something readers refuse or can
// live with. A keyed-table way's new owner needs no separate step:
// begin_write starts from the next odd value after whatever it finds.
//
// Copies are relaxed (or stronger) atomic loads, never plain reads, so a
// torn copy is detected and never a data race. Nothing copied is trusted:
// the caller validates it after read() returns true.
#include <atomic>
#include <cstdint>
#include <thread>

#include "perfq/core/assert.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/core/clock.hpp"

namespace perfq::seqlock {

// --- Writers. One at a time per word; the caller guarantees it.

// Counter form: stores the next odd value after the word's and returns it.
// `order` is acq_rel or seq_cst, at the caller's choice: both keep the
// stores that follow from moving before the odd value; seq_cst also orders
// it against the caller's later seq_cst loads (the rate limiter's Dekker
// pair). A word a dead writer left odd goes on to the next odd value.
[[nodiscard]] inline uint64_t begin_write(uint64_t& word, std::memory_order order) noexcept {
  PERFQ_ASSERT(order == std::memory_order_acq_rel || order == std::memory_order_seq_cst);
  // relaxed: only this writer stores the word; the exchange orders.
  const uint64_t odd = (aref(word).load(std::memory_order_relaxed) + 1) | 1;
  // acq_rel or seq_cst (above); partner: the reader's recheck().
  (void)aref(word).exchange(odd, order);
  return odd;
}

// Counter form: the guarded words are whole. Precondition: the word holds
// the odd value begin_write returned (this writer's, unchanged).
inline void end_write(uint64_t& word, uint64_t odd) noexcept {
  PERFQ_ASSERT((odd & 1) != 0);
  PERFQ_ASSERT(aref(word).load(std::memory_order_relaxed) == odd);
  // release: pairs with the reader's acquire load of the word.
  aref(word).store(odd + 1, std::memory_order_release);
}

// Marked form: stores `marker` (a value no stable value of this word equals).
// `order` as for begin_write.
inline void begin_write_marked(uint64_t& word, uint64_t marker, std::memory_order order) noexcept {
  PERFQ_ASSERT(order == std::memory_order_acq_rel || order == std::memory_order_seq_cst);
  // acq_rel or seq_cst: the stores that follow cannot move before the
  // marker; partner: the reader's recheck().
  (void)aref(word).exchange(marker, order);
}

// Marked form: stores the stable value. Precondition: the word holds this
// writer's marker, and `stable` is not the marker.
inline void end_write_marked(uint64_t& word, uint64_t marker, uint64_t stable) noexcept {
  PERFQ_ASSERT(stable != marker);
  PERFQ_ASSERT(aref(word).load(std::memory_order_relaxed) == marker);
  // release: pairs with the reader's acquire load of the word.
  aref(word).store(stable, std::memory_order_release);
}

// --- Repair. The word's only writer, before it writes again.

// Counter form: if the word is odd, runs `invalidate` (relaxed stores to the
// guarded words), then stores the next even value. True if it was odd.
template <class Invalidate>
bool repair(uint64_t& word, Invalidate&& invalidate) noexcept {
  // relaxed: only this writer stores the word.
  const uint64_t s = aref(word).load(std::memory_order_relaxed);
  if ((s & 1) == 0) return false;
  invalidate();
  // release: pairs with the reader's acquire load; readers that see the even
  // value see what `invalidate` stored.
  aref(word).store(s + 1, std::memory_order_release);
  return true;
}

inline bool repair(uint64_t& word) noexcept {
  return repair(word, [] {});
}

// --- Readers. Any process.

// The word again, after the copy's relaxed loads and ordered after them (an
// acquire load alone would let the earlier loads move after it).
[[nodiscard]] inline uint64_t recheck(const uint64_t& word) noexcept {
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer does not model fences; an RMW with release ordering
  // keeps the copy's loads before it in a form it understands.
  return std::atomic_ref<uint64_t>(const_cast<uint64_t&>(word))
      .fetch_add(0, std::memory_order_acq_rel);
#else
  // acquire: the copy's loads are ordered before the re-check; partners:
  // the writer's begin_write exchange (a write that started during the
  // copy is seen here) and end_write's release store.
  std::atomic_thread_fence(std::memory_order_acquire);
  return load_relaxed(word);
#endif
}

// How long read() keeps trying: `tries` attempts spinning, then (if
// yield_ns > 0) attempts with a yield between them until yield_ns have
// passed, for a writer that may have been preempted mid-write.
struct ReadBound {
  uint32_t tries = 8;
  uint64_t yield_ns = 0;
};

// Counter form: runs `copy` between an acquire load of the word that reads
// even and a recheck() that reads the same. True, with `seen` the even value
// copied under; false once the bound is spent (the writer is slow or died
// holding the word odd), with `seen` the last value read.
template <class Copy>
[[nodiscard]] bool read(const uint64_t& word, ReadBound bound, uint64_t& seen,
                        Copy&& copy) noexcept {
  uint64_t give_up_ns = 0;
  for (uint32_t i = 0;; ++i) {  // bound: bound.tries, then bound.yield_ns
    if (i >= bound.tries) {
      if (bound.yield_ns == 0) return false;
      const uint64_t now = mono_now_ns();
      if (give_up_ns == 0) give_up_ns = now + bound.yield_ns;
      if (now >= give_up_ns) return false;
      std::this_thread::yield();
    }
    // acquire: pairs with end_write's (or repair's) release store.
    seen = load_acquire(word);
    if ((seen & 1) != 0) continue;
    copy();
    if (recheck(word) == seen) return true;
  }
}

template <class Copy>
[[nodiscard]] bool read(const uint64_t& word, ReadBound bound, Copy&& copy) noexcept {
  uint64_t seen = 0;
  return read(word, bound, seen, static_cast<Copy&&>(copy));
}

// Marked form, one try: runs `copy` if the word reads `want`, and is true if
// it still does after. `seen` is the first value read (== want and false:
// the copy was torn by a write).
template <class Copy>
[[nodiscard]] bool read_exact(const uint64_t& word, uint64_t want, uint64_t& seen,
                              Copy&& copy) noexcept {
  // acquire: pairs with end_write_marked's release store.
  seen = load_acquire(word);
  if (seen != want) return false;
  copy();
  return recheck(word) == want;
}

}  // namespace perfq::seqlock
