// Micro benchmarks of perfq::SlotPool: claim one slot and release one, at a
// given occupancy of the pool.
//
//   scenario                                   threads     one iteration
//   -----------------------------------------  ----------  --------------------
//   slot_pool/claim_release/occupancy_pct:N    1, CPU 0    try_claim + release
//
// N% of the pool's slots are held throughout. Each iteration claims a free
// slot and then releases one held slot picked at random (possibly the one
// just claimed), so occupancy stays at N% and the free slots drift through
// the pool the way out-of-order completions scatter them:
//
//   hints  |1011 0000 0100 0001|0000 0000 0000 0000|0010 ...   (1 = probably free)
//           ^ cursor: the claim scans from here to the first set bit
//
// At low occupancy every claim is satisfied by the first hint word; at 99%
// most words are all zero and the claim walks several of them. N = 0 is the
// plain claim+release pair on an otherwise empty pool.
//
// The pool has the segment's default slot count (20000). Its control words
// and hint words are ordinary process memory, 128-byte aligned as in the
// segment, set up by SlotPool::format(). Timed in thread CPU time (the
// default), so preemption by unrelated load does not inflate it. The random
// pick (xorshift and a multiply-shift) costs about a nanosecond and is
// included at every N.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "harness.hpp"
#include "perfq/core/cache_line.hpp"
#include "perfq/core/slot_pool.hpp"

namespace perfq::bench::micro {
namespace {

inline constexpr uint32_t kSlotCount = 20000;
inline constexpr uint16_t kOwner = 1;

struct SlotPoolStorage {
  alignas(kCacheLine) uint64_t ctl[SlotPool::ctl_bytes(kSlotCount) / sizeof(uint64_t)];
  alignas(kCacheLine) uint64_t hints[SlotPool::hint_bytes(kSlotCount) / sizeof(uint64_t)];
};

// xorshift32: cheap, deterministic, good enough to pick a victim.
class Rng {
 public:
  // Uniform in [0, n) (Lemire's multiply-shift; the tiny bias is irrelevant).
  [[nodiscard]] uint32_t below(uint32_t n) noexcept {
    s_ ^= s_ << 13;
    s_ ^= s_ >> 17;
    s_ ^= s_ << 5;
    return static_cast<uint32_t>((uint64_t{s_} * n) >> 32);
  }

 private:
  uint32_t s_ = 0x9E37'79B9u;
};

// One claim and one release; `held` has one spare entry at the back for the
// new claim. False if the pool refused either (it must not: the pool is never
// full and this thread owns what it releases).
[[nodiscard]] bool churn(SlotPool& pool, std::span<SlotPool::Claim> held, uint32_t& cursor,
                         Rng& rng) noexcept {
  const std::optional<SlotPool::Claim> c = pool.try_claim(kOwner, cursor);
  if (!c) return false;
  const auto last = static_cast<uint32_t>(held.size() - 1);
  held[last] = *c;
  const uint32_t r = rng.below(last + 1);
  const SlotPool::Claim victim = held[r];
  held[r] = held[last];
  return pool.release(victim.index,
                      SlotCtl{victim.generation, SlotState::kClaimed, 0, kOwner}.pack());
}

void bm_claim_release(benchmark::State& state) {
  const ScopedPin pin(kSoloCpu);
  if (!pin.pinned()) {
    state.SkipWithError("cannot pin to CPU 0");
    return;
  }
  const auto occupancy_pct = static_cast<uint32_t>(state.range(0));
  const uint32_t held_count = kSlotCount / 100 * occupancy_pct;

  auto storage = std::make_unique<SlotPoolStorage>();
  SlotPool::format(storage->ctl, storage->hints, kSlotCount);
  SlotPool pool(storage->ctl, storage->hints, kSlotCount);

  std::vector<SlotPool::Claim> held(held_count + 1);
  uint32_t cursor = 0;
  for (uint32_t i = 0; i < held_count; ++i) {
    const std::optional<SlotPool::Claim> c = pool.try_claim(kOwner, cursor);
    if (!c) {
      state.SkipWithError("pre-claim failed on a pool that is not full");
      return;
    }
    held[i] = *c;
  }
  // Untimed churn: scatter the free slots as a long-running pool has them,
  // instead of leaving them packed at the end of the pool.
  Rng rng;
  for (uint32_t i = 0; i < 4 * kSlotCount; ++i) {
    if (!churn(pool, held, cursor, rng)) {
      state.SkipWithError("claim or release refused during warm-up");
      return;
    }
  }

  for (auto _ : state) {
    if (!churn(pool, held, cursor, rng)) {
      state.SkipWithError("claim or release refused");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["free_slots"] = static_cast<double>(kSlotCount - held_count);
}

[[maybe_unused]] const bool kRegistered = [] {
  benchmark::RegisterBenchmark("slot_pool/claim_release", bm_claim_release)
      ->ArgName("occupancy_pct")
      ->Arg(0)
      ->Arg(50)
      ->Arg(90)
      ->Arg(99);
  return true;
}();

}  // namespace
}  // namespace perfq::bench::micro
