#pragma once
// FutureStatePool: the outcome states a producer hands to its Futures,
// allocated once (one per slot of the segment) and reused, so a submit
// allocates nothing.
//
// A state is shared by a Future and the producer (refs = 2 when handed
// out); whoever lets go last returns it:
//
//            acquire()             unref() x2 (Future dropped, outcome
//   [free] ------------> [refs 2] ----------------------------------> [free]
//     ^    (submit)                 drained or producer closed)         |
//     +-----------------------------------------------------------------+
//
// Sizing: a request in flight holds a slot of the segment, so at most
// capacity() states are held by requests in flight. Only a caller that keeps
// settled Futures beyond that (never collecting nor dropping them) runs the
// pool dry; then acquire() falls back to the heap and counts it in
// overflowed(), and such a state is freed, not pooled, when let go.
//
// Lifetime: Futures may outlive their producer. The pool counts its holders
// (the owner, plus every state handed out) and deletes itself when the last
// one lets go after the owner called retire().
//
// Thread-safe: any thread may acquire, and any thread may let go of a state.
// The free list is a lock-free stack of indices; a tag in the head word
// guards against ABA.
#include <atomic>
#include <cstdint>
#include <memory>

#include "perfq/client/outcome.hpp"

namespace perfq::detail {

class FutureStatePool;

struct FutureState {
  std::atomic<uint32_t> refs{0};
  std::atomic<uint32_t> ready{0};  // 1 once `outcome` is settled
  Outcome outcome;

  // Drops one reference; the last one returns the state to its pool.
  void unref() noexcept;

 private:
  friend class FutureStatePool;
  static constexpr uint32_t kHeap = UINT32_MAX;  // `index` of an overflow state
  FutureStatePool* pool_ = nullptr;
  uint32_t index_ = kHeap;
  std::atomic<uint32_t> next_free_{0};  // free-list link, while free
  std::atomic<uint8_t> free_{0};        // 1 while in the free list
};

class FutureStatePool {
 public:
  // The owner holds the result until it calls retire().
  [[nodiscard]] static FutureStatePool* create(uint32_t capacity);
  FutureStatePool(const FutureStatePool&) = delete;
  FutureStatePool& operator=(const FutureStatePool&) = delete;

  // A state for request `request_id` with two references and an unsettled
  // outcome (its result buffer keeps the capacity it had). Never blocks;
  // allocates only when every pooled state is held (see overflowed()).
  [[nodiscard]] FutureState* acquire(uint64_t request_id);
  // Returns a state nobody was handed yet (both references still the
  // caller's), e.g. when the request it was for was not accepted.
  void discard(FutureState* st) noexcept;
  // The owner lets go of the pool: it deletes itself now, or when the last
  // state held elsewhere is let go. The owner must not use it afterwards.
  void retire() noexcept;

  [[nodiscard]] uint32_t capacity() const noexcept { return capacity_; }
  // States in the free list now (a snapshot while others acquire and let go).
  [[nodiscard]] uint32_t available() const noexcept {
    return available_.load(std::memory_order_relaxed);
  }
  // States ever taken from the heap because the pool was empty.
  [[nodiscard]] uint64_t overflowed() const noexcept {
    return overflowed_.load(std::memory_order_relaxed);
  }

 private:
  friend struct FutureState;
  static constexpr uint32_t kNone = UINT32_MAX;  // end of the free list

  explicit FutureStatePool(uint32_t capacity);
  ~FutureStatePool() = default;
  // FutureState::unref, for the last reference.
  void release(FutureState* st) noexcept;
  void push(uint32_t index) noexcept;
  [[nodiscard]] uint32_t pop() noexcept;  // kNone when empty
  void drop_holder() noexcept;

  const uint32_t capacity_;
  std::unique_ptr<FutureState[]> states_;
  // Free-list head: tag (bumped by every pop and push) << 32 | index.
  std::atomic<uint64_t> head_{kNone};
  std::atomic<uint32_t> available_{0};
  std::atomic<uint64_t> overflowed_{0};
  std::atomic<uint64_t> holders_{1};  // the owner, and each state handed out
};

}  // namespace perfq::detail
