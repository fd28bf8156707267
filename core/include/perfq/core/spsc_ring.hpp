#pragma once
// SpscRing: bounded single-producer / single-consumer ring of 64-bit entries.
//
// Used for the point-to-point rings of the segment: agent -> worker dispatch,
// worker -> agent results, agent -> producer completions. Lamport ring with
// each side caching the other side's index and reloading it only when the
// cache says full (writer) or empty (reader), as rigtorp's SPSCQueue does.
//
//   entries:  [ ... consumed ... | head .. readable .. tail | ... free ... ]
//
// A writer that dies abandons the ring; nothing else ever waits on it. The
// reader validates every entry it takes (the writer may be broken).
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "perfq/core/assert.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/core/cache_line.hpp"

namespace perfq {

struct SpscRingHeader {
  alignas(kCacheLine) uint64_t tail;      // writer
  uint64_t head_cache;                    // writer's copy of head
  alignas(kCacheLine) uint64_t head;      // reader
  uint64_t tail_cache;                    // reader's copy of tail
  alignas(kCacheLine) uint32_t capacity;  // power of two, set once at format
  uint32_t mask;
};
static_assert(std::is_standard_layout_v<SpscRingHeader>);
static_assert(std::is_trivially_copyable_v<SpscRingHeader>);
static_assert(offsetof(SpscRingHeader, tail) == 0);
static_assert(offsetof(SpscRingHeader, head_cache) == 8);
static_assert(offsetof(SpscRingHeader, head) == kCacheLine);
static_assert(offsetof(SpscRingHeader, tail_cache) == kCacheLine + 8);
static_assert(offsetof(SpscRingHeader, capacity) == 2 * kCacheLine);
static_assert(sizeof(SpscRingHeader) == 3 * kCacheLine);

class SpscRing {
 public:
  [[nodiscard]] static constexpr std::size_t entries_bytes(uint32_t capacity) noexcept {
    return align_up(std::size_t{capacity} * sizeof(uint64_t), kCacheLine);
  }

  static void format(SpscRingHeader& h, uint64_t* entries, uint32_t capacity) noexcept {
    PERFQ_ASSERT(capacity > 0 && (capacity & (capacity - 1)) == 0);
    h.tail = h.head_cache = h.head = h.tail_cache = 0;
    h.capacity = capacity;
    h.mask = capacity - 1;
    for (uint32_t i = 0; i < capacity; ++i) entries[i] = 0;
  }

  SpscRing() = default;
  SpscRing(SpscRingHeader* h, uint64_t* entries, uint32_t capacity) noexcept
      : h_(h), e_(entries), capacity_(capacity), mask_(capacity - 1) {
    // The caller passes the capacity from the validated geometry, never a
    // value read back from the ring header.
    PERFQ_ASSERT(capacity > 0 && (capacity & (capacity - 1)) == 0);
  }

  [[nodiscard]] bool valid() const noexcept { return h_ != nullptr; }

  // Writer only.
  [[nodiscard]] bool try_push(uint64_t v) noexcept {
    const uint64_t t = aref(h_->tail).load(std::memory_order_relaxed);
    if (t - h_->head_cache >= capacity_) {
      // acquire: pairs with the reader's release store of head, so the entry
      // we overwrite has been read.
      h_->head_cache = aref(h_->head).load(std::memory_order_acquire);
      if (t - h_->head_cache >= capacity_) return false;
    }
    aref(e_[t & mask_]).store(v, std::memory_order_relaxed);
    // release: pairs with the reader's acquire load of tail.
    aref(h_->tail).store(t + 1, std::memory_order_release);
    return true;
  }

  // Writer only: all of `v` or nothing, made visible to the reader at once
  // (one release store of tail), so a reader never sees part of a group.
  [[nodiscard]] bool try_push_n(const uint64_t* v, uint32_t n) noexcept {
    PERFQ_ASSERT(n <= capacity_);  // a larger group could never fit
    const uint64_t t = aref(h_->tail).load(std::memory_order_relaxed);
    if (t + n - h_->head_cache > capacity_) {
      // acquire: as in try_push.
      h_->head_cache = aref(h_->head).load(std::memory_order_acquire);
      if (t + n - h_->head_cache > capacity_) return false;
    }
    for (uint32_t i = 0; i < n; ++i)
      aref(e_[(t + i) & mask_]).store(v[i], std::memory_order_relaxed);
    // release: pairs with the reader's acquire load of tail.
    aref(h_->tail).store(t + n, std::memory_order_release);
    return true;
  }

  // Reader only.
  [[nodiscard]] bool try_pop(uint64_t& out) noexcept {
    const uint64_t hd = aref(h_->head).load(std::memory_order_relaxed);
    if (hd == h_->tail_cache) {
      // acquire: pairs with the writer's release store of tail.
      h_->tail_cache = aref(h_->tail).load(std::memory_order_acquire);
      if (hd == h_->tail_cache) return false;
    }
    out = aref(e_[hd & mask_]).load(std::memory_order_relaxed);
    // release: pairs with the writer's acquire reload of head.
    aref(h_->head).store(hd + 1, std::memory_order_release);
    return true;
  }

  // Any side: approximate number of readable entries.
  [[nodiscard]] uint64_t size_approx() const noexcept {
    const uint64_t t = aref(h_->tail).load(std::memory_order_acquire);
    const uint64_t hd = aref(h_->head).load(std::memory_order_acquire);
    return t > hd ? t - hd : 0;
  }

  // Writer only (the writer is the agent for the rings that need it): does
  // the unread part of the ring hold `v`? Bounded by the capacity.
  [[nodiscard]] bool contains_unread(uint64_t v) const noexcept {
    const uint64_t hd = aref(h_->head).load(std::memory_order_acquire);
    const uint64_t t = aref(h_->tail).load(std::memory_order_relaxed);
    for (uint64_t p = hd; p < t && p - hd < capacity_; ++p) {
      if (aref(e_[p & mask_]).load(std::memory_order_relaxed) == v) return true;
    }
    return false;
  }

  [[nodiscard]] uint32_t capacity() const noexcept { return capacity_; }

 private:
  SpscRingHeader* h_ = nullptr;
  uint64_t* e_ = nullptr;
  uint32_t capacity_ = 0;
  uint64_t mask_ = 0;
};

}  // namespace perfq
