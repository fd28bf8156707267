#include "perfq/core/slot_pool.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <thread>
#include <vector>

namespace perfq {
namespace {

#if defined(__SANITIZE_THREAD__)
constexpr uint32_t kStressRoundsPerThread = 100'000;
#else
constexpr uint32_t kStressRoundsPerThread = 200'000;
#endif

// A pool in ordinary memory, laid out by the same format() the segment uses.
class TestPool {
 public:
  explicit TestPool(uint32_t count)
      : ctl_(SlotPool::ctl_bytes(count) / sizeof(uint64_t)),
        hints_(SlotPool::hint_bytes(count) / sizeof(uint64_t)) {
    SlotPool::format(ctl_.data(), hints_.data(), count);
    pool_ = SlotPool(ctl_.data(), hints_.data(), count);
  }
  SlotPool& operator*() { return pool_; }
  SlotPool* operator->() { return &pool_; }
  uint64_t& hint_word(uint32_t w) { return hints_[w]; }
  uint64_t& ctl(uint32_t i) { return ctl_[i]; }
  [[nodiscard]] bool hinted(uint32_t i) const { return (hints_[i / 64] >> (i % 64)) & 1; }

 private:
  std::vector<uint64_t> ctl_;
  std::vector<uint64_t> hints_;
  SlotPool pool_;
};

SlotCtl claimed_by(uint16_t owner, uint32_t generation) {
  return SlotCtl{generation, SlotState::kClaimed, 0, owner};
}

TEST(SlotCtl, PackAndUnpackRoundTripEveryField) {
  const SlotCtl cases[] = {
      SlotCtl{},
      SlotCtl{1, SlotState::kClaimed, 0, 0},
      SlotCtl{0xFFFF'FFFFu, SlotState::kDone, 0xFF, 0xFFFF},
      SlotCtl{0x1234'5678u, SlotState::kProcessing, 3, kOwnerAgent},
      SlotCtl{7, SlotState::kReported, 200, 1023},
  };
  for (const SlotCtl& c : cases) {
    EXPECT_EQ(SlotCtl::unpack(c.pack()), c);
  }
  for (uint8_t s = 0; s < kSlotStateCount; ++s) {
    const SlotCtl c{42, static_cast<SlotState>(s), 9, 17};
    EXPECT_EQ(SlotCtl::unpack(c.pack()), c);
    EXPECT_TRUE(SlotCtl::unpack(c.pack()).state_valid());
  }
}

TEST(SlotCtl, FieldsSitWhereTheLayoutDiagramSays) {
  const uint64_t w = SlotCtl{0xAABBCCDDu, SlotState::kAssigned, 0x11, 0x2233}.pack();
  EXPECT_EQ(w, 0xAABBCCDD'04'11'2233ull);
  const SlotCtl free_word{};
  EXPECT_EQ(free_word.pack(), 0x0000'0000'00'00'FFFFull);
}

TEST(SlotCtl, UnpackedGarbageStateIsReportedInvalid) {
  EXPECT_FALSE(SlotCtl::unpack(uint64_t{kSlotStateCount} << 24).state_valid());
  EXPECT_FALSE(SlotCtl::unpack(uint64_t{0xFF} << 24).state_valid());
}

TEST(SlotRef, PacksIndexAndGeneration) {
  const uint64_t r = slot_ref(12345, 0xDEADBEEF);
  EXPECT_EQ(slot_ref_index(r), 12345u);
  EXPECT_EQ(slot_ref_generation(r), 0xDEADBEEFu);
}

TEST(SlotPool, FormatMarksEverySlotFreeAndHinted) {
  TestPool p(130);  // three hint words, the last one partial
  EXPECT_EQ(p->count(), 130u);
  EXPECT_EQ(p->count_free_approx(), 130u);
  for (uint32_t i = 0; i < 130; ++i) {
    EXPECT_EQ(SlotCtl::unpack(p->load(i)), SlotCtl{}) << i;
    EXPECT_TRUE(p.hinted(i)) << i;
  }
  EXPECT_EQ(p.hint_word(2), 0b11u) << "no hint bit past the last slot";
  EXPECT_EQ(p->repair_hints(), 0u);
}

TEST(SlotPool, ClaimingEverySlotThenReportsNone) {
  TestPool p(70);
  uint32_t cursor = 0;
  std::set<uint32_t> got;
  for (uint32_t i = 0; i < 70; ++i) {
    const auto c = p->try_claim(3, cursor);
    ASSERT_TRUE(c.has_value()) << i;
    EXPECT_LT(c->index, 70u);
    EXPECT_EQ(c->generation, 1u);
    EXPECT_TRUE(got.insert(c->index).second) << "slot " << c->index << " claimed twice";
    EXPECT_EQ(SlotCtl::unpack(p->load(c->index)), claimed_by(3, 1));
    EXPECT_FALSE(p.hinted(c->index)) << "a claim clears its hint";
  }
  EXPECT_FALSE(p->try_claim(3, cursor).has_value());
  EXPECT_FALSE(p->try_claim(4, cursor).has_value());
  EXPECT_EQ(p->count_free_approx(), 0u);
}

TEST(SlotPool, ReleaseThenClaimAgainBumpsTheGeneration) {
  TestPool p(1);
  uint32_t cursor = 0;
  for (uint32_t gen = 1; gen <= 5; ++gen) {
    const auto c = p->try_claim(9, cursor);
    ASSERT_TRUE(c.has_value());
    EXPECT_EQ(c->index, 0u);
    EXPECT_EQ(c->generation, gen);
    ASSERT_FALSE(p->try_claim(9, cursor).has_value());
    ASSERT_TRUE(p->release(0, claimed_by(9, gen).pack()));
    const SlotCtl freed = SlotCtl::unpack(p->load(0));
    EXPECT_EQ(freed.state, SlotState::kFree);
    EXPECT_EQ(freed.owner, kOwnerNone);
    EXPECT_EQ(freed.generation, gen) << "release keeps the generation; the next claim bumps it";
    EXPECT_TRUE(p.hinted(0)) << "a release sets the hint";
  }
}

TEST(SlotPool, ReleaseWithStaleExpectedWordFails) {
  TestPool p(2);
  uint32_t cursor = 0;
  const auto c = p->try_claim(1, cursor);
  ASSERT_TRUE(c.has_value());
  const uint64_t held = claimed_by(1, c->generation).pack();

  // Someone else (the agent) moved the slot on.
  uint64_t expected = held;
  ASSERT_TRUE(p->transition(c->index, expected,
                            SlotCtl{c->generation, SlotState::kPending, 0, kOwnerAgent}));
  EXPECT_FALSE(p->release(c->index, held));
  EXPECT_EQ(SlotCtl::unpack(p->load(c->index)).state, SlotState::kPending);

  // An older generation of the same owner and state is stale as well.
  TestPool q(1);
  const auto first = q->try_claim(1, cursor);
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(q->release(0, claimed_by(1, 1).pack()));
  ASSERT_TRUE(q->try_claim(1, cursor).has_value());
  EXPECT_FALSE(q->release(0, claimed_by(1, 1).pack()));
  EXPECT_EQ(SlotCtl::unpack(q->load(0)), claimed_by(1, 2));
  EXPECT_FALSE(q.hinted(0)) << "a failed release must not hint a claimed slot";
}

TEST(SlotPool, TransitionSucceedsOnlyFromTheExpectedWord) {
  TestPool p(4);
  uint32_t cursor = 0;
  const auto c = p->try_claim(5, cursor);
  ASSERT_TRUE(c.has_value());
  const SlotCtl queued{c->generation, SlotState::kQueued, 0, 5};
  const SlotCtl pending{c->generation, SlotState::kPending, 0, kOwnerAgent};

  uint64_t expected = claimed_by(5, c->generation).pack();
  ASSERT_TRUE(p->transition(c->index, expected, queued));
  EXPECT_EQ(p->load(c->index), queued.pack());

  // Stale expectation: fails, writes nothing, and reports the current word.
  expected = claimed_by(5, c->generation).pack();
  EXPECT_FALSE(p->transition(c->index, expected, pending));
  EXPECT_EQ(expected, queued.pack());
  EXPECT_EQ(p->load(c->index), queued.pack());

  // With the reported word the same transition now succeeds.
  EXPECT_TRUE(p->transition(c->index, expected, pending));
  EXPECT_EQ(SlotCtl::unpack(p->load(c->index)), pending);
}

TEST(SlotPool, ClaimFindsAFreeSlotWhoseHintWasLost) {
  // A releaser died between freeing the control word and setting the hint.
  TestPool p(130);
  uint32_t cursor = 0;
  for (uint32_t i = 0; i < 130; ++i) ASSERT_TRUE(p->try_claim(1, cursor).has_value());
  ASSERT_TRUE(p->release(77, claimed_by(1, 1).pack()));
  p.hint_word(77 / 64) &= ~(uint64_t{1} << (77 % 64));
  ASSERT_FALSE(p.hinted(77));

  const auto c = p->try_claim(2, cursor);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->index, 77u);
  EXPECT_EQ(c->generation, 2u);
  EXPECT_FALSE(p->try_claim(2, cursor).has_value());
}

TEST(SlotPool, ClaimFindsFreeSlotsWhenNoHintIsSet) {
  TestPool p(100);
  for (uint32_t w = 0; w < 2; ++w) p.hint_word(w) = 0;
  uint32_t cursor = 0;
  std::set<uint32_t> got;
  for (uint32_t i = 0; i < 100; ++i) {
    const auto c = p->try_claim(1, cursor);
    ASSERT_TRUE(c.has_value()) << i;
    EXPECT_TRUE(got.insert(c->index).second);
  }
  EXPECT_FALSE(p->try_claim(1, cursor).has_value());
}

TEST(SlotPool, ClaimSkipsStaleHintsOfClaimedSlots) {
  // A claimer died between its CAS and clearing the hint: set bits of
  // claimed slots only cost a probe.
  TestPool p(130);
  uint32_t cursor = 0;
  for (uint32_t i = 0; i < 130; ++i) ASSERT_TRUE(p->try_claim(1, cursor).has_value());
  ASSERT_TRUE(p->release(129, claimed_by(1, 1).pack()));
  for (uint32_t w = 0; w < 3; ++w) p.hint_word(w) = ~uint64_t{0};

  for (uint32_t start = 0; start < 3; ++start) {
    uint32_t cur = start;
    const auto c = p->try_claim(2, cur);
    ASSERT_TRUE(c.has_value()) << "cursor " << start;
    EXPECT_EQ(c->index, 129u);
    ASSERT_TRUE(p->release(129, claimed_by(2, c->generation).pack()));
  }
  for (uint32_t i = 0; i < 129; ++i) {
    EXPECT_EQ(SlotCtl::unpack(p->load(i)), claimed_by(1, 1)) << "slot " << i << " was stolen";
  }
}

TEST(SlotPool, HintBitsPastTheLastSlotAreIgnored) {
  TestPool p(3);
  p.hint_word(0) = ~uint64_t{0};
  uint32_t cursor = 0;
  for (uint32_t i = 0; i < 3; ++i) {
    const auto c = p->try_claim(1, cursor);
    ASSERT_TRUE(c.has_value());
    EXPECT_LT(c->index, 3u);
  }
  EXPECT_FALSE(p->try_claim(1, cursor).has_value());
}

TEST(SlotPool, ClaimStartsAtTheCallersCursorWord) {
  TestPool p(192);
  uint32_t cursor = 2;
  const auto c = p->try_claim(1, cursor);
  ASSERT_TRUE(c.has_value());
  EXPECT_GE(c->index, 128u);
  EXPECT_EQ(cursor, 2u);
  cursor = 5;  // any value: taken modulo the hint words
  const auto d = p->try_claim(1, cursor);
  ASSERT_TRUE(d.has_value());
  EXPECT_GE(d->index, 128u);
  EXPECT_LT(d->index, 192u);
}

TEST(SlotPool, RepairHintsRestoresLostHintsOfFreeSlotsOnly) {
  TestPool p(130);
  uint32_t cursor = 0;
  std::vector<uint32_t> claimed;
  for (uint32_t i = 0; i < 10; ++i) claimed.push_back(p->try_claim(1, cursor)->index);
  for (uint32_t w = 0; w < 3; ++w) p.hint_word(w) = 0;

  EXPECT_EQ(p->repair_hints(), 120u);
  for (uint32_t i = 0; i < 130; ++i) {
    const bool is_claimed = std::find(claimed.begin(), claimed.end(), i) != claimed.end();
    EXPECT_EQ(p.hinted(i), !is_claimed) << "slot " << i;
  }
  EXPECT_EQ(p->repair_hints(), 0u) << "a second pass finds nothing to repair";
  EXPECT_EQ(p->count_free_approx(), 120u);
}

TEST(SlotPool, CountFreeFollowsClaimsAndReleases) {
  TestPool p(8);
  uint32_t cursor = 0;
  EXPECT_EQ(p->count_free_approx(), 8u);
  const auto a = p->try_claim(1, cursor);
  const auto b = p->try_claim(1, cursor);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(p->count_free_approx(), 6u);
  ASSERT_TRUE(p->release(a->index, claimed_by(1, a->generation).pack()));
  EXPECT_EQ(p->count_free_approx(), 7u);
}

TEST(SlotPool, ConcurrentClaimersNeverOwnTheSameSlotTwice) {
  // Few slots, more would-be holders than slots: claims collide, fail and
  // retry on every hint word and in the fallback scan.
  constexpr uint32_t kSlots = 70;
  constexpr uint16_t kThreads = 4;
  constexpr uint32_t kHoldMax = 24;  // 4 x 24 > 70: the pool runs dry
  TestPool p(kSlots);
  SlotPool& pool = *p;
  std::vector<std::atomic<uint32_t>> owner_of(kSlots);
  std::vector<std::atomic<uint32_t>> last_generation(kSlots);
  for (auto& o : owner_of) o.store(kOwnerNone);
  for (auto& g : last_generation) g.store(0);
  std::atomic<uint64_t> violations{0};
  std::atomic<uint64_t> empty_claims{0};

  std::vector<std::thread> threads;
  for (uint16_t id = 0; id < kThreads; ++id) {
    threads.emplace_back([&, id] {
      std::vector<SlotPool::Claim> held;
      uint32_t cursor = id;
      uint32_t rng = 0x9E37'79B9u * (id + 1u);
      auto next_rand = [&] {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        return rng;
      };
      auto release_one = [&](std::size_t k) {
        const SlotPool::Claim c = held[k];
        held[k] = held.back();
        held.pop_back();
        uint32_t me = id;
        if (!owner_of[c.index].compare_exchange_strong(me, kOwnerNone)) {
          violations.fetch_add(1);
        }
        if (!pool.release(c.index, claimed_by(id, c.generation).pack())) violations.fetch_add(1);
      };
      for (uint32_t round = 0; round < kStressRoundsPerThread; ++round) {
        if (held.size() < kHoldMax && (held.empty() || next_rand() % 2 == 0)) {
          const auto c = pool.try_claim(id, cursor);
          if (!c) {
            empty_claims.fetch_add(1, std::memory_order_relaxed);
            continue;
          }
          uint32_t none = kOwnerNone;
          if (c->index >= kSlots || !owner_of[c->index].compare_exchange_strong(none, id)) {
            violations.fetch_add(1);
            continue;
          }
          // We own the slot: nobody else touches its generation record.
          const uint32_t prev = last_generation[c->index].load(std::memory_order_relaxed);
          if (c->generation != prev + 1) violations.fetch_add(1);
          last_generation[c->index].store(c->generation, std::memory_order_relaxed);
          if (SlotCtl::unpack(pool.load(c->index)) != claimed_by(id, c->generation)) {
            violations.fetch_add(1);
          }
          held.push_back(*c);
        } else {
          release_one(next_rand() % held.size());
        }
      }
      while (!held.empty()) release_one(held.size() - 1);
    });
  }
  for (auto& t : threads) t.join();

  EXPECT_EQ(violations.load(), 0u);
  EXPECT_EQ(pool.count_free_approx(), kSlots);
  EXPECT_EQ(pool.repair_hints(), 0u) << "every released slot ends up hinted";
  uint64_t claims = 0;
  for (uint32_t i = 0; i < kSlots; ++i) {
    const SlotCtl c = SlotCtl::unpack(pool.load(i));
    EXPECT_EQ(c.state, SlotState::kFree);
    EXPECT_EQ(c.generation, last_generation[i].load());
    claims += c.generation;
  }
  EXPECT_GT(claims, 0u);
  RecordProperty("empty_claims", static_cast<int>(empty_claims.load()));
}

// Preconditions of the pool's caller: an index from the segment is checked
// against count() before it reaches the pool. Checked where assertions are
// on (debug and the sanitizer trees), compiled out of release.
TEST(SlotPoolDeathTest, AnIndexPastTheEndStopsTheProcess) {
#if defined(PERFQ_ASSERTIONS) || !defined(NDEBUG)
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  TestPool pool(64);
  uint64_t expected = SlotCtl{}.pack();
  EXPECT_DEATH((void)pool->load(64), "index < count_");
  EXPECT_DEATH((void)pool->transition(64, expected, claimed_by(1, 1)), "index < count_");
  EXPECT_DEATH((void)pool->release(64, expected), "index < count_");
#else
  GTEST_SKIP() << "assertions are compiled out of this build";
#endif
}

}  // namespace
}  // namespace perfq
