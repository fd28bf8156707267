#pragma once
// SlotPool: the fixed pool of request slots and who owns each one.
//
// Ownership lives in one 64-bit control word per slot (a dense array, apart
// from the slots themselves so scans touch few cache lines):
//
//   63            32 31     24 23     16 15            0
//   +---------------+---------+---------+---------------+
//   |  generation   |  state  | attempt |     owner     |
//   +---------------+---------+---------+---------------+
//
// Every change of owner is one CAS on this word, so a process that dies at
// any instruction leaves the slot either with its old owner or with itself
// named as owner: the agent can always tell a dead owner's slots and reclaim
// them. The generation grows on every claim; ring entries carry it, so a
// stale or duplicated entry can never act on a slot that has been reused.
//
// The free list is a bitmap of "probably free" hints (1 bit per slot) beside
// the control words. A claim scans hint words from a per-caller cursor and
// CASes the control word of a candidate; the hint bit is cleared after the
// claim and set after a release. A hint that is wrong only costs a probe:
// the control word decides. A claimer dying between its CAS and clearing the
// hint leaves a stale set bit (skipped by the next probe); a releaser dying
// between its store and setting the hint leaves a free slot without a bit,
// which the agent's periodic repair_hints() restores.
#include <cstddef>
#include <cstdint>
#include <optional>

#include "perfq/core/assert.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/core/cache_line.hpp"

namespace perfq {

enum class SlotState : uint8_t {
  kFree = 0,
  kClaimed = 1,     // a producer is writing the request (owner = producer)
  kQueued = 2,      // published to a band ring (owner = producer)
  kPending = 3,     // in the agent's scheduler (owner = kOwnerAgent)
  kAssigned = 4,    // in a worker's dispatch ring (owner = worker)
  kProcessing = 5,  // the worker started the processor (owner = worker)
  kReporting = 6,   // the worker is writing the result (owner = worker)
  kReported = 7,    // the result is written; the agent will settle it
  kDone = 8,        // final status written; owner = producer, to collect
  kCancelling = 9,  // cancelled while pending/queued; the agent finishes it (owner = agent)
  kSealing = 10,    // failed or timed out; waits for its DLQ record to be durable (owner = agent)
};
inline constexpr uint8_t kSlotStateCount = 11;

inline constexpr uint16_t kOwnerAgent = 0xFFFE;
inline constexpr uint16_t kOwnerNone = 0xFFFF;

struct SlotCtl {
  uint32_t generation = 0;
  SlotState state = SlotState::kFree;
  uint8_t attempt = 0;
  uint16_t owner = kOwnerNone;

  [[nodiscard]] constexpr uint64_t pack() const noexcept {
    return (uint64_t{generation} << 32) | (uint64_t{static_cast<uint8_t>(state)} << 24) |
           (uint64_t{attempt} << 16) | owner;
  }
  [[nodiscard]] static constexpr SlotCtl unpack(uint64_t w) noexcept {
    return SlotCtl{static_cast<uint32_t>(w >> 32), static_cast<SlotState>((w >> 24) & 0xff),
                   static_cast<uint8_t>((w >> 16) & 0xff), static_cast<uint16_t>(w & 0xffff)};
  }
  [[nodiscard]] constexpr bool state_valid() const noexcept {
    return static_cast<uint8_t>(state) < kSlotStateCount;
  }
  friend constexpr bool operator==(const SlotCtl&, const SlotCtl&) = default;
};

// A ring entry naming a slot: {generation:32 | index:32}.
[[nodiscard]] constexpr uint64_t slot_ref(uint32_t index, uint32_t generation) noexcept {
  return (uint64_t{generation} << 32) | index;
}
[[nodiscard]] constexpr uint32_t slot_ref_index(uint64_t ref) noexcept {
  return static_cast<uint32_t>(ref);
}
[[nodiscard]] constexpr uint32_t slot_ref_generation(uint64_t ref) noexcept {
  return static_cast<uint32_t>(ref >> 32);
}

// A dispatch-ring entry that opens a batch: the next `count` entries are
// the slot refs of one batch dispatch, pushed together (SpscRing::try_push_n).
// Its index is never a slot's.
inline constexpr uint32_t kBatchHeaderIndex = 0xFFFF'FFFFu;
[[nodiscard]] constexpr uint64_t batch_header(uint32_t count) noexcept {
  return slot_ref(kBatchHeaderIndex, count);
}

class SlotPool {
 public:
  [[nodiscard]] static constexpr std::size_t ctl_bytes(uint32_t count) noexcept {
    return align_up(std::size_t{count} * sizeof(uint64_t), kCacheLine);
  }
  [[nodiscard]] static constexpr std::size_t hint_bytes(uint32_t count) noexcept {
    return align_up((std::size_t{count} + 63) / 64 * sizeof(uint64_t), kCacheLine);
  }

  static void format(uint64_t* ctl, uint64_t* hints, uint32_t count) noexcept {
    PERFQ_ASSERT(count > 0);
    for (uint32_t i = 0; i < count; ++i) ctl[i] = SlotCtl{}.pack();
    const uint32_t words = (count + 63) / 64;
    for (uint32_t w = 0; w < words; ++w) {
      const uint32_t bits = count - w * 64 >= 64 ? 64 : count - w * 64;
      hints[w] = bits == 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1;
    }
  }

  SlotPool() = default;
  SlotPool(uint64_t* ctl, uint64_t* hints, uint32_t count) noexcept
      : ctl_(ctl), hints_(hints), count_(count), words_((count + 63) / 64) {}

  struct Claim {
    uint32_t index;
    uint32_t generation;
  };

  // Any process. Lock-free; bounded by one pass over the hints plus, when
  // every hint is stale, one pass over the control words. `cursor` is the
  // caller's private scan position (spreads callers over the pool).
  [[nodiscard]] std::optional<Claim> try_claim(uint16_t owner, uint32_t& cursor) noexcept;

  // Owner only: give the slot back. `expected` is the control word the owner
  // holds; returns false if it no longer holds it (e.g. the agent reclaimed).
  [[nodiscard]] bool release(uint32_t index, uint64_t expected) noexcept;

  // CAS of a control word. Every ownership change other than claim and
  // release goes through here. acq_rel: the new owner sees everything the
  // previous owner wrote to the slot before handing it over.
  [[nodiscard]] bool transition(uint32_t index, uint64_t& expected, SlotCtl next) noexcept {
    // Indexes from the segment are checked against count() by the caller
    // before they reach the pool.
    PERFQ_ASSERT(index < count_);
    PERFQ_ASSERT(next.state_valid());
    return aref(ctl_[index])
        .compare_exchange_strong(expected, next.pack(), std::memory_order_acq_rel,
                                 std::memory_order_acquire);
  }

  // acquire: pairs with the release half of the transition that set it.
  [[nodiscard]] uint64_t load(uint32_t index) const noexcept {
    PERFQ_ASSERT(index < count_);
    return aref(ctl_[index]).load(std::memory_order_acquire);
  }

  // Agent only: set the hint of every free slot. Safe at any time: a set hint
  // is only ever a suggestion.
  uint32_t repair_hints() noexcept;

  [[nodiscard]] uint32_t count() const noexcept { return count_; }
  [[nodiscard]] uint32_t count_free_approx() const noexcept;

 private:
  void set_hint(uint32_t index) noexcept {
    PERFQ_ASSERT(index < count_);
    // release: a claimer that sees the bit also sees the FREE control word.
    aref(hints_[index / 64]).fetch_or(uint64_t{1} << (index % 64), std::memory_order_release);
  }
  void clear_hint(uint32_t index) noexcept {
    aref(hints_[index / 64]).fetch_and(~(uint64_t{1} << (index % 64)), std::memory_order_relaxed);
  }
  [[nodiscard]] bool try_claim_index(uint32_t index, uint16_t owner, Claim& out) noexcept;

  uint64_t* ctl_ = nullptr;
  uint64_t* hints_ = nullptr;
  uint32_t count_ = 0;
  uint32_t words_ = 0;
};

inline bool SlotPool::try_claim_index(uint32_t index, uint16_t owner, Claim& out) noexcept {
  uint64_t cur = aref(ctl_[index]).load(std::memory_order_relaxed);
  const SlotCtl c = SlotCtl::unpack(cur);
  if (c.state != SlotState::kFree) return false;
  const SlotCtl next{c.generation + 1, SlotState::kClaimed, 0, owner};
  // acquire on success: pairs with the release of whoever freed the slot, so
  // our writes to the slot come after its last reads.
  if (!aref(ctl_[index])
           .compare_exchange_strong(cur, next.pack(), std::memory_order_acquire,
                                    std::memory_order_relaxed)) {
    return false;
  }
  clear_hint(index);
  out = Claim{index, next.generation};
  return true;
}

inline std::optional<SlotPool::Claim> SlotPool::try_claim(uint16_t owner,
                                                          uint32_t& cursor) noexcept {
  Claim out{};
  const uint32_t start = cursor % words_;
  for (uint32_t i = 0; i < words_; ++i) {
    const uint32_t w = (start + i) % words_;
    // acquire: pairs with set_hint's release.
    uint64_t bits = aref(hints_[w]).load(std::memory_order_acquire);
    while (bits != 0) {
      const auto b = static_cast<uint32_t>(__builtin_ctzll(bits));
      bits &= bits - 1;
      const uint32_t index = w * 64 + b;
      if (index < count_ && try_claim_index(index, owner, out)) {
        cursor = w;
        return out;
      }
    }
  }
  // Every hint was stale: look at the control words themselves.
  for (uint32_t i = 0; i < count_; ++i) {
    if (try_claim_index(i, owner, out)) return out;
  }
  return std::nullopt;
}

inline bool SlotPool::release(uint32_t index, uint64_t expected) noexcept {
  PERFQ_ASSERT(index < count_);
  const SlotCtl c = SlotCtl::unpack(expected);
  // release: pairs with the next claimer's acquire CAS.
  if (!aref(ctl_[index])
           .compare_exchange_strong(expected,
                                    SlotCtl{c.generation, SlotState::kFree, 0, kOwnerNone}.pack(),
                                    std::memory_order_release, std::memory_order_relaxed)) {
    return false;
  }
  set_hint(index);
  return true;
}

inline uint32_t SlotPool::repair_hints() noexcept {
  uint32_t repaired = 0;
  for (uint32_t i = 0; i < count_; ++i) {
    if (SlotCtl::unpack(load(i)).state != SlotState::kFree) continue;
    const uint64_t bit = uint64_t{1} << (i % 64);
    if ((aref(hints_[i / 64]).load(std::memory_order_relaxed) & bit) == 0) {
      set_hint(i);
      ++repaired;
    }
  }
  return repaired;
}

inline uint32_t SlotPool::count_free_approx() const noexcept {
  uint32_t n = 0;
  for (uint32_t i = 0; i < count_; ++i) {
    if (SlotCtl::unpack(aref(ctl_[i]).load(std::memory_order_relaxed)).state == SlotState::kFree)
      ++n;
  }
  return n;
}

}  // namespace perfq
