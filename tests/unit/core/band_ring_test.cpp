#include "perfq/core/band_ring.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

namespace perfq {
namespace {

using Kind = BandRing::PopKind;
using Push = BandRing::PushResult;

// 4 x 200k values through a 64-cell ring takes ~1 s under ThreadSanitizer on
// 2 cores, so only the thread-per-round race is scaled down there.
constexpr uint32_t kStressValuesPerProducer = 200'000;
#if defined(__SANITIZE_THREAD__)
constexpr int kRaceRounds = 1'000;
#else
constexpr int kRaceRounds = 2'000;
#endif

// Upper bound on any wait for another thread; reaching it is a failure
// (a hang), never an expected outcome.
constexpr auto kWaitBound = std::chrono::seconds(30);

template <class Pred>
[[nodiscard]] bool spin_until(Pred&& pred) {
  const auto deadline = std::chrono::steady_clock::now() + kWaitBound;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

// A ring in ordinary memory, laid out by the same format() the segment uses.
class TestRing {
 public:
  explicit TestRing(uint32_t capacity)
      : header_(std::make_unique<BandRingHeader>()), cells_(capacity) {
    BandRing::format(*header_, cells_.data(), capacity);
    ring_ = BandRing(header_.get(), cells_.data(), capacity);
  }

  // Re-lays out an empty ring whose next position is `start` (for tests of
  // the 32-bit sequence wrap). Same invariant as format(): the cell of every
  // position p in [start, start + capacity) reads {p, kEmpty}.
  void reset_at(uint64_t start) {
    const auto cap = static_cast<uint64_t>(cells_.size());
    header_->tail = start;
    header_->head = start;
    for (uint64_t p = start; p < start + cap; ++p) {
      cells_[p & (cap - 1)] =
          (static_cast<uint64_t>(static_cast<uint32_t>(p)) << 32) | BandRing::kEmpty;
    }
    // The consumer takes its head from the header when the view is made.
    ring_ = BandRing(header_.get(), cells_.data(), static_cast<uint32_t>(cap));
  }

  BandRing& operator*() { return ring_; }
  BandRing* operator->() { return &ring_; }
  BandRingHeader& header() { return *header_; }
  // A consumer that attaches afresh (an agent restart): head from the header.
  void reattach() {
    ring_ = BandRing(header_.get(), cells_.data(), static_cast<uint32_t>(cells_.size()));
  }
  uint64_t& cell_at(uint64_t position) { return cells_[position & (cells_.size() - 1)]; }

 private:
  std::unique_ptr<BandRingHeader> header_;
  std::vector<uint64_t> cells_;
  BandRing ring_;
};

uint64_t raw_cell(uint64_t seq, uint32_t value) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(seq)) << 32) | value;
}

TEST(BandRing, FormatLaysOutAnEmptyRing) {
  TestRing r(8);
  EXPECT_EQ(r->capacity(), 8u);
  EXPECT_EQ(r.header().capacity, 8u);
  EXPECT_EQ(r.header().mask, 7u);
  EXPECT_EQ(r->size_approx(), 0u);
  for (uint64_t p = 0; p < 8; ++p) EXPECT_EQ(r.cell_at(p), raw_cell(p, BandRing::kEmpty));
}

TEST(BandRing, PopOnEmptyRingReportsEmpty) {
  TestRing r(4);
  const auto p = r->try_pop();
  EXPECT_EQ(p.kind, Kind::kEmpty);
  EXPECT_EQ(p.position, 0u);
  // Popping an empty ring changes nothing.
  EXPECT_EQ(r->try_pop().kind, Kind::kEmpty);
  EXPECT_EQ(r.header().head, 0u);
}

TEST(BandRing, ValuesComeOutInPushOrderWithTheirPositions) {
  TestRing r(8);
  for (uint32_t v = 0; v < 5; ++v) ASSERT_EQ(r->try_push(100 + v), Push::kOk);
  EXPECT_EQ(r->size_approx(), 5u);
  for (uint32_t v = 0; v < 5; ++v) {
    const auto p = r->try_pop();
    ASSERT_EQ(p.kind, Kind::kValue);
    EXPECT_EQ(p.value, 100 + v);
    EXPECT_EQ(p.position, v);
  }
  EXPECT_EQ(r->try_pop().kind, Kind::kEmpty);
  EXPECT_EQ(r->size_approx(), 0u);
}

TEST(BandRing, LargestAndSmallestValuesPassThrough) {
  TestRing r(2);
  ASSERT_EQ(r->try_push(0), Push::kOk);
  ASSERT_EQ(r->try_push(BandRing::kMaxValue), Push::kOk);
  auto p = r->try_pop();
  ASSERT_EQ(p.kind, Kind::kValue);
  EXPECT_EQ(p.value, 0u);
  p = r->try_pop();
  ASSERT_EQ(p.kind, Kind::kValue);
  EXPECT_EQ(p.value, BandRing::kMaxValue);
}

TEST(BandRing, FullRingRefusesPushUntilOneIsPopped) {
  TestRing r(4);
  for (uint32_t v = 0; v < 4; ++v) ASSERT_EQ(r->try_push(v), Push::kOk);
  EXPECT_EQ(r->try_push(99), Push::kFull);
  EXPECT_EQ(r->try_push(99), Push::kFull);
  EXPECT_EQ(r.header().tail, 4u) << "a refused push must not claim a position";
  EXPECT_EQ(r->size_approx(), 4u);

  const auto p = r->try_pop();
  ASSERT_EQ(p.kind, Kind::kValue);
  EXPECT_EQ(p.value, 0u);
  ASSERT_EQ(r->try_push(4), Push::kOk);
  EXPECT_EQ(r->try_push(99), Push::kFull);
  for (uint32_t v = 1; v <= 4; ++v) {
    const auto q = r->try_pop();
    ASSERT_EQ(q.kind, Kind::kValue);
    EXPECT_EQ(q.value, v);
  }
  EXPECT_EQ(r->try_pop().kind, Kind::kEmpty);
}

class BandRingCapacity : public ::testing::TestWithParam<uint32_t> {};

TEST_P(BandRingCapacity, WrapsAroundForManyLapsFillingAndDraining) {
  const uint32_t cap = GetParam();
  TestRing r(cap);
  uint32_t next_in = 0;
  uint32_t next_out = 0;
  for (int lap = 0; lap < 1000; ++lap) {
    for (uint32_t i = 0; i < cap; ++i) ASSERT_EQ(r->try_push(next_in++), Push::kOk);
    ASSERT_EQ(r->try_push(12345), Push::kFull) << "lap " << lap;
    for (uint32_t i = 0; i < cap; ++i) {
      const auto p = r->try_pop();
      ASSERT_EQ(p.kind, Kind::kValue) << "lap " << lap;
      ASSERT_EQ(p.value, next_out);
      ASSERT_EQ(p.position, next_out);
      ++next_out;
    }
    ASSERT_EQ(r->try_pop().kind, Kind::kEmpty) << "lap " << lap;
  }
  EXPECT_EQ(r.header().tail, uint64_t{1000} * cap);
  EXPECT_EQ(r.header().head, uint64_t{1000} * cap);
  EXPECT_EQ(r.header().skipped, 0u);
}

TEST_P(BandRingCapacity, WrapsAroundWithConsumerOneBehindProducer) {
  // Head and tail chase each other through every cell offset.
  const uint32_t cap = GetParam();
  TestRing r(cap);
  ASSERT_EQ(r->try_push(0), Push::kOk);
  for (uint32_t v = 1; v < 50 * cap; ++v) {
    ASSERT_EQ(r->try_push(v), Push::kOk);
    const auto p = r->try_pop();
    ASSERT_EQ(p.kind, Kind::kValue);
    ASSERT_EQ(p.value, v - 1);
    ASSERT_EQ(r->size_approx(), 1u);
  }
}

TEST_P(BandRingCapacity, SequenceWrapsPast32BitsWithoutLosingOrder) {
  // Cells carry only the low 32 bits of the position.
  const uint32_t cap = GetParam();
  TestRing r(cap);
  const uint64_t start = (uint64_t{1} << 32) - 3 * cap;
  r.reset_at(start);
  uint32_t next_in = 0;
  uint32_t next_out = 0;
  for (int lap = 0; lap < 6; ++lap) {
    for (uint32_t i = 0; i < cap; ++i) ASSERT_EQ(r->try_push(next_in++), Push::kOk);
    ASSERT_EQ(r->try_push(12345), Push::kFull);
    for (uint32_t i = 0; i < cap; ++i) {
      const auto p = r->try_pop();
      ASSERT_EQ(p.kind, Kind::kValue) << "lap " << lap;
      ASSERT_EQ(p.value, next_out);
      ASSERT_EQ(p.position, start + next_out);
      ++next_out;
    }
    ASSERT_EQ(r->try_pop().kind, Kind::kEmpty);
  }
  EXPECT_GT(r.header().head, uint64_t{1} << 32);
}

INSTANTIATE_TEST_SUITE_P(TinyCapacities, BandRingCapacity, ::testing::Values(2u, 4u, 8u),
                         [](const auto& p) { return "Cap" + std::to_string(p.param); });

TEST(BandRing, StalledClaimIsRevokedAndProducerClaimsAgain) {
  TestRing r(4);
  BandRing& ring = *r;
  int hook_calls = 0;
  uint64_t first_claim = ~uint64_t{0};
  bool skip_won = false;
  BandRing::Pop seen{};

  const auto result = ring.try_push(77, [&](uint64_t pos) {
    if (hook_calls++ != 0) return;
    first_claim = pos;
    // The consumer runs while this producer sits between claim and commit.
    seen = ring.try_pop();
    skip_won = ring.skip(seen.position);
  });

  ASSERT_EQ(result, Push::kOk);
  EXPECT_EQ(first_claim, 0u);
  EXPECT_EQ(seen.kind, Kind::kStalled);
  EXPECT_EQ(seen.position, 0u);
  EXPECT_TRUE(skip_won);
  EXPECT_EQ(hook_calls, 2) << "the revoked producer must claim a second position";
  EXPECT_EQ(r.header().skipped, 1u);

  auto p = ring.try_pop();
  EXPECT_EQ(p.kind, Kind::kSkipped);
  EXPECT_EQ(p.position, 0u);
  p = ring.try_pop();
  ASSERT_EQ(p.kind, Kind::kValue);
  EXPECT_EQ(p.value, 77u);
  EXPECT_EQ(p.position, 1u);
  EXPECT_EQ(ring.try_pop().kind, Kind::kEmpty) << "the value must be delivered exactly once";
}

TEST(BandRing, RevokedClaimOnTheLastCellOfALapReclaimsInTheNextLap) {
  // Capacity 2: the producer's first claim is cell 1; its second claim is
  // position 2, which reuses cell 0 once the consumer has freed it.
  TestRing r(2);
  BandRing& ring = *r;
  ASSERT_EQ(ring.try_push(10), Push::kOk);
  int hook_calls = 0;
  std::vector<uint64_t> claims;
  BandRing::Pop first{};
  BandRing::Pop stalled{};

  const auto result = ring.try_push(11, [&](uint64_t pos) {
    claims.push_back(pos);
    if (hook_calls++ != 0) return;
    first = ring.try_pop();
    stalled = ring.try_pop();
    ASSERT_TRUE(ring.skip(stalled.position));
  });

  ASSERT_EQ(result, Push::kOk);
  ASSERT_EQ(first.kind, Kind::kValue);
  EXPECT_EQ(first.value, 10u);
  EXPECT_EQ(stalled.kind, Kind::kStalled);
  EXPECT_EQ(stalled.position, 1u);
  EXPECT_EQ(claims, (std::vector<uint64_t>{1, 2}));

  EXPECT_EQ(ring.try_pop().kind, Kind::kSkipped);
  const auto p = ring.try_pop();
  ASSERT_EQ(p.kind, Kind::kValue);
  EXPECT_EQ(p.value, 11u);
  EXPECT_EQ(p.position, 2u);
  EXPECT_EQ(ring.try_pop().kind, Kind::kEmpty);
}

TEST(BandRing, RevokedProducerReportsFullWhenTheRingFilledMeanwhile) {
  TestRing r(2);
  BandRing& ring = *r;
  ASSERT_EQ(ring.try_push(10), Push::kOk);
  int hook_calls = 0;
  Push other = Push::kContended;

  const auto result = ring.try_push(11, [&](uint64_t) {
    if (hook_calls++ != 0) return;
    ASSERT_EQ(ring.try_pop().kind, Kind::kValue);
    const auto s = ring.try_pop();
    ASSERT_EQ(s.kind, Kind::kStalled);
    ASSERT_TRUE(ring.skip(s.position));
    // Another producer takes the only free cell before we retry.
    other = ring.try_push(12);
  });

  EXPECT_EQ(other, Push::kOk);
  EXPECT_EQ(result, Push::kFull);
  EXPECT_EQ(hook_calls, 1);
  EXPECT_EQ(ring.try_pop().kind, Kind::kSkipped);
  const auto p = ring.try_pop();
  ASSERT_EQ(p.kind, Kind::kValue);
  EXPECT_EQ(p.value, 12u);
  EXPECT_EQ(ring.try_pop().kind, Kind::kEmpty) << "the refused value must not appear";
}

TEST(BandRing, SkipFailsOnceTheProducerHasPublished) {
  TestRing r(4);
  BandRing& ring = *r;
  uint64_t claimed = 0;
  ASSERT_EQ(ring.try_push(5,
                          [&](uint64_t pos) {
                            claimed = pos;
                            ASSERT_EQ(ring.try_pop().kind, Kind::kStalled);
                          }),
            Push::kOk);
  EXPECT_FALSE(ring.skip(claimed));
  EXPECT_EQ(r.header().skipped, 0u);
  const auto p = ring.try_pop();
  ASSERT_EQ(p.kind, Kind::kValue);
  EXPECT_EQ(p.value, 5u);
}

TEST(BandRing, SkipRacingPublishHasExactlyOneWinner) {
  TestRing r(4);
  BandRing& ring = *r;
  int skip_wins = 0;
  int publish_wins = 0;

  for (int round = 0; round < kRaceRounds; ++round) {
    std::atomic<uint64_t> claimed{~uint64_t{0}};
    std::atomic<bool> go{false};
    Push pushed = Push::kContended;
    const auto value = static_cast<uint32_t>(round);

    std::thread producer([&] {
      bool first = true;
      pushed = ring.try_push(value, [&](uint64_t pos) {
        if (!first) return;
        first = false;
        claimed.store(pos, std::memory_order_release);
        // Tight spin so the commit follows `go` closely; bounded by kWaitBound.
        const auto deadline = std::chrono::steady_clock::now() + kWaitBound;
        for (uint32_t i = 1; !go.load(std::memory_order_acquire); ++i) {
          if (i % 256 != 0) continue;
          if (std::chrono::steady_clock::now() > deadline) break;
          std::this_thread::yield();  // let a consumer sharing our core run
        }
      });
    });

    // On any early return below, release the producer and join it.
    struct Release {
      std::atomic<bool>& go;
      std::thread& t;
      ~Release() {
        go.store(true, std::memory_order_release);
        if (t.joinable()) t.join();
      }
    } release{go, producer};

    ASSERT_TRUE(
        spin_until([&] { return claimed.load(std::memory_order_acquire) != ~uint64_t{0}; }));
    const uint64_t pos = claimed.load(std::memory_order_acquire);
    const auto s = ring.try_pop();
    ASSERT_EQ(s.kind, Kind::kStalled);
    ASSERT_EQ(s.position, pos);
    go.store(true, std::memory_order_release);
    // A varying head start for the producer, so that over the rounds each
    // side wins some races (busy work, not a sleep; no outcome depends on it).
    for (int i = 0; i < (round * 37) % 2000; ++i) (void)claimed.load(std::memory_order_relaxed);
    const bool won = ring.skip(pos);  // races the producer's commit
    producer.join();
    ASSERT_EQ(pushed, Push::kOk);

    if (won) {
      ++skip_wins;
      const auto k = ring.try_pop();
      ASSERT_EQ(k.kind, Kind::kSkipped);
      ASSERT_EQ(k.position, pos);
    } else {
      ++publish_wins;
    }
    const auto p = ring.try_pop();
    ASSERT_EQ(p.kind, Kind::kValue)
        << "round " << round << (won ? " (skip won)" : " (publish won)");
    ASSERT_EQ(p.value, value);
    ASSERT_EQ(p.position, won ? pos + 1 : pos);
    ASSERT_EQ(ring.try_pop().kind, Kind::kEmpty) << "round " << round;
  }
  EXPECT_EQ(skip_wins + publish_wins, kRaceRounds);
  EXPECT_EQ(r.header().skipped, static_cast<uint64_t>(skip_wins));
  RecordProperty("skip_wins", skip_wins);
  RecordProperty("publish_wins", publish_wins);
}

TEST(BandRing, GarbageInAClaimedCellIsCorruptAndDiscardMovesOn) {
  TestRing r(4);
  BandRing& ring = *r;
  ASSERT_EQ(ring.try_push(1), Push::kOk);
  ASSERT_EQ(ring.try_pop().kind, Kind::kValue);
  int hook_calls = 0;
  BandRing::Pop corrupt{};

  const auto result = ring.try_push(2, [&](uint64_t pos) {
    if (hook_calls++ != 0) return;
    // A broken process scribbles on the cell this producer claimed.
    r.cell_at(pos) = raw_cell(pos + 7, 4242);
    corrupt = ring.try_pop();
    if (corrupt.kind == Kind::kCorrupt) ring.discard_corrupt(corrupt);
  });

  EXPECT_EQ(corrupt.kind, Kind::kCorrupt);
  EXPECT_EQ(corrupt.position, 1u);
  ASSERT_EQ(result, Push::kOk) << "the producer whose cell was discarded claims again";
  EXPECT_EQ(hook_calls, 2);
  EXPECT_EQ(r.header().skipped, 1u);
  const auto p = ring.try_pop();
  ASSERT_EQ(p.kind, Kind::kValue);
  EXPECT_EQ(p.value, 2u);
  EXPECT_EQ(p.position, 2u);
  EXPECT_EQ(ring.try_pop().kind, Kind::kEmpty);
}

TEST(BandRing, CellWithRightSequenceButWrongMarkerIsCorrupt) {
  // {pos, not-kEmpty}: no producer writes that (publishing writes pos + 1).
  TestRing r(4);
  BandRing& ring = *r;
  ASSERT_EQ(ring.try_push(1), Push::kOk);
  ASSERT_EQ(ring.try_push(2), Push::kOk);
  r.cell_at(0) = raw_cell(0, 9);
  const auto c = ring.try_pop();
  ASSERT_EQ(c.kind, Kind::kCorrupt);
  EXPECT_EQ(c.position, 0u);
  ring.discard_corrupt(c);
  const auto p = ring.try_pop();
  ASSERT_EQ(p.kind, Kind::kValue);
  EXPECT_EQ(p.value, 2u);
  EXPECT_EQ(ring.try_pop().kind, Kind::kEmpty);
}

TEST(BandRing, PublishedLookingGarbageAtHeadIsDiscardedAndLaterValuesSurvive) {
  TestRing r(4);
  BandRing& ring = *r;
  for (uint32_t v = 1; v <= 3; ++v) ASSERT_EQ(ring.try_push(v), Push::kOk);
  r.cell_at(0) = raw_cell(1234, 1);  // a sequence from no lap of this ring
  const auto c = ring.try_pop();
  ASSERT_EQ(c.kind, Kind::kCorrupt);
  ring.discard_corrupt(c);
  for (uint32_t v = 2; v <= 3; ++v) {
    const auto p = ring.try_pop();
    ASSERT_EQ(p.kind, Kind::kValue);
    EXPECT_EQ(p.value, v);
  }
  EXPECT_EQ(ring.try_pop().kind, Kind::kEmpty);
  // The discarded cell is free for the next lap.
  for (uint32_t v = 10; v < 14; ++v) ASSERT_EQ(ring.try_push(v), Push::kOk);
  for (uint32_t v = 10; v < 14; ++v) {
    const auto p = ring.try_pop();
    ASSERT_EQ(p.kind, Kind::kValue);
    EXPECT_EQ(p.value, v);
  }
}

TEST(BandRing, GarbageInAnUnclaimedCellAtHeadLeavesTheRingUsableAfterDiscard) {
  // A broken process scribbles on the cell at head while no producer holds a
  // claim (tail == head). After the consumer discards it, the band must keep
  // working: producers push, the consumer pops.
  TestRing r(4);
  BandRing& ring = *r;
  ASSERT_EQ(ring.try_push(1), Push::kOk);
  ASSERT_EQ(ring.try_pop().kind, Kind::kValue);
  r.cell_at(1) = raw_cell(99, 4242);

  const auto c = ring.try_pop();
  ASSERT_EQ(c.kind, Kind::kCorrupt);
  ASSERT_EQ(c.position, 1u);
  ring.discard_corrupt(c);

  EXPECT_LE(r.header().head, r.header().tail) << "head must never pass tail";
  EXPECT_EQ(ring.try_push(2), Push::kOk);
  BandRing::Pop p{};
  for (int i = 0; i < 8; ++i) {  // bounded: at most one lap of cells to get past
    p = ring.try_pop();
    if (p.kind == Kind::kCorrupt) ring.discard_corrupt(p);
    if (p.kind != Kind::kCorrupt && p.kind != Kind::kSkipped) break;
  }
  ASSERT_EQ(p.kind, Kind::kValue);
  EXPECT_EQ(p.value, 2u);
}

TEST(BandRing, ForEachPublishedVisitsExactlyTheUnconsumedPublishedValues) {
  TestRing r(8);
  BandRing& ring = *r;
  auto visit = [&] {
    std::vector<uint32_t> seen;
    ring.for_each_published([&](uint32_t v) { seen.push_back(v); });
    return seen;
  };

  EXPECT_TRUE(visit().empty());
  for (uint32_t v = 1; v <= 5; ++v) ASSERT_EQ(ring.try_push(v), Push::kOk);
  ASSERT_EQ(ring.try_pop().value, 1u);
  ASSERT_EQ(ring.try_pop().value, 2u);
  EXPECT_EQ(visit(), (std::vector<uint32_t>{3, 4, 5}));

  // A claim in progress is not published; a revoked cell is not a value.
  int hook_calls = 0;
  std::vector<uint32_t> during_claim;
  ASSERT_EQ(ring.try_push(6,
                          [&](uint64_t) {
                            if (hook_calls++ == 0) during_claim = visit();
                          }),
            Push::kOk);
  EXPECT_EQ(during_claim, (std::vector<uint32_t>{3, 4, 5}));
  EXPECT_EQ(visit(), (std::vector<uint32_t>{3, 4, 5, 6}));

  for (int i = 0; i < 4; ++i) ASSERT_EQ(ring.try_pop().kind, Kind::kValue);
  hook_calls = 0;
  ASSERT_EQ(ring.try_push(7,
                          [&](uint64_t) {
                            if (hook_calls++ != 0) return;
                            const auto s = ring.try_pop();
                            ASSERT_EQ(s.kind, Kind::kStalled);
                            ASSERT_TRUE(ring.skip(s.position));
                          }),
            Push::kOk);
  ASSERT_EQ(ring.try_push(8), Push::kOk);
  EXPECT_EQ(visit(), (std::vector<uint32_t>{7, 8}));
}

TEST(BandRing, ForEachPublishedAfterWrapSeesOnlyTheCurrentLap) {
  TestRing r(2);
  BandRing& ring = *r;
  for (uint32_t lap = 0; lap < 5; ++lap) {
    ASSERT_EQ(ring.try_push(2 * lap), Push::kOk);
    ASSERT_EQ(ring.try_push(2 * lap + 1), Push::kOk);
    ASSERT_EQ(ring.try_pop().kind, Kind::kValue);
    std::vector<uint32_t> seen;
    ring.for_each_published([&](uint32_t v) { seen.push_back(v); });
    EXPECT_EQ(seen, (std::vector<uint32_t>{2 * lap + 1}));
    ASSERT_EQ(ring.try_pop().kind, Kind::kValue);
  }
}

TEST(BandRing, ManyProducersOneConsumerDeliverEveryValueOnceInProducerOrder) {
  constexpr uint32_t kProducers = 4;
  constexpr uint32_t kShift = 24;  // value = producer << 24 | sequence
  static_assert(kStressValuesPerProducer < (1u << kShift));
  TestRing r(64);
  BandRing& ring = *r;
  std::atomic<bool> producer_failed{false};
  std::atomic<bool> stop{false};  // the consumer gave up: producers leave

  std::vector<std::thread> producers;
  for (uint32_t id = 0; id < kProducers; ++id) {
    producers.emplace_back([&, id] {
      for (uint32_t s = 0; s < kStressValuesPerProducer; ++s) {
        const uint32_t v = (id << kShift) | s;
        const bool ok = spin_until(
            [&] { return stop.load(std::memory_order_relaxed) || ring.try_push(v) == Push::kOk; });
        if (!ok) producer_failed.store(true, std::memory_order_relaxed);
        if (!ok || stop.load(std::memory_order_relaxed)) return;
      }
    });
  }

  std::vector<uint32_t> next(kProducers, 0);
  uint64_t received = 0;
  const uint64_t total = uint64_t{kProducers} * kStressValuesPerProducer;
  bool unexpected = false;
  // Bounded by a lack of progress, not the whole run (a busy machine is slow).
  auto deadline = std::chrono::steady_clock::now() + kWaitBound;
  while (received < total && !unexpected && std::chrono::steady_clock::now() < deadline) {
    const auto p = ring.try_pop();
    switch (p.kind) {
      case Kind::kValue: {
        if ((received & 1023) == 0) deadline = std::chrono::steady_clock::now() + kWaitBound;
        const uint32_t id = p.value >> kShift;
        const uint32_t s = p.value & ((1u << kShift) - 1);
        if (id >= kProducers || s != next[id]) {
          ADD_FAILURE() << "producer " << id << " sent " << s << ", expected "
                        << (id < kProducers ? next[id] : 0);
          unexpected = true;
          break;
        }
        ++next[id];
        ++received;
        break;
      }
      case Kind::kEmpty:
      case Kind::kStalled:  // a producer between claim and commit; it will publish
        std::this_thread::yield();
        break;
      case Kind::kSkipped:
      case Kind::kCorrupt:
      case Kind::kDesync:
        ADD_FAILURE() << "unexpected pop kind " << static_cast<int>(p.kind) << " at " << p.position;
        unexpected = true;
        break;
    }
  }
  if (received < total) stop.store(true, std::memory_order_relaxed);
  for (auto& t : producers) t.join();

  EXPECT_FALSE(producer_failed.load());
  EXPECT_EQ(received, total);
  for (uint32_t id = 0; id < kProducers; ++id) EXPECT_EQ(next[id], kStressValuesPerProducer);
  EXPECT_EQ(ring.try_pop().kind, Kind::kEmpty);
  EXPECT_EQ(r.header().skipped, 0u);
}

// Preconditions of the ring's caller: checked where assertions are on
// (debug and the sanitizer trees), compiled out of release.
TEST(BandRingDeathTest, PushingTheRingsOwnMarkerStopsTheProcess) {
#if defined(PERFQ_ASSERTIONS) || !defined(NDEBUG)
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  TestRing r(8);
  EXPECT_DEATH((void)r->try_push(BandRing::kEmpty), "value <= kMaxValue");
  EXPECT_DEATH((void)r->try_push(BandRing::kSkipped), "value <= kMaxValue");
#else
  GTEST_SKIP() << "assertions are compiled out of this build";
#endif
}

// Issue 13, defect 4: one 8-byte write of a cell that looks published for
// the position at head when nobody claimed it ({tail + 1, v}) made the
// consumer take it, move head past tail, and wedge the band for ever.
TEST(BandRing, ForgedPublishedCellAtTailIsCorruptAndHeadNeverPassesTail) {
  TestRing r(4);
  BandRing& ring = *r;
  ASSERT_EQ(ring.try_push(1), Push::kOk);
  ASSERT_EQ(ring.try_pop().kind, Kind::kValue);
  for (const auto claims : {BandRing::Claims::kIgnore, BandRing::Claims::kReport}) {
    r.cell_at(1) = raw_cell(2, 7);  // {tail + 1, 7}: no producer claimed position 1
    const auto c = ring.peek(claims);
    ASSERT_EQ(c.kind, Kind::kCorrupt) << "a cell at or past tail is never taken";
    ring.discard_corrupt(c);
    EXPECT_EQ(r.header().head, 1u);
    EXPECT_LE(r.header().head, r.header().tail);
  }
  for (uint32_t v = 10; v < 18; ++v) {  // two laps: the band works as before
    ASSERT_EQ(ring.try_push(v), Push::kOk);
    const auto p = ring.try_pop();
    ASSERT_EQ(p.kind, Kind::kValue);
    EXPECT_EQ(p.value, v);
  }
}

TEST(BandRing, TailOutOfItsWindowIsReportedAndResyncGivesAnEmptyWorkingRing) {
  for (const uint64_t bad_tail : {uint64_t{1} << 40, uint64_t{0}, uint64_t{3} + 4 + 1}) {
    TestRing r(4);
    BandRing& ring = *r;
    for (uint32_t v = 1; v <= 3; ++v) ASSERT_EQ(ring.try_push(v), Push::kOk);
    ASSERT_EQ(ring.try_pop().value, 1u);  // head 1, tail 3
    r.header().tail = bad_tail;           // below head, or more than a lap ahead
    BandRing::Pop p = ring.try_pop();
    // The published cells below the old tail may still be taken first.
    for (int i = 0; i < 4 && p.kind == Kind::kValue; ++i) p = ring.try_pop();
    ASSERT_EQ(p.kind, Kind::kDesync) << "tail " << bad_tail;
    ring.resync();
    EXPECT_EQ(r.header().tail, r.header().head);
    EXPECT_EQ(ring.try_pop().kind, Kind::kEmpty);
    for (uint32_t v = 20; v < 28; ++v) {
      ASSERT_EQ(ring.try_push(v), Push::kOk);
      ASSERT_EQ(ring.try_pop().value, v);
    }
  }
}

TEST(BandRing, GarbageHeadFoundByANewConsumerIsResynchronised) {
  TestRing r(8);
  BandRing& ring = *r;
  ASSERT_EQ(ring.try_push(1), Push::kOk);
  r.header().head = 0xDEAD'BEEF'0000ull;  // a restarted agent reads this
  r.reattach();
  const auto p = ring.try_pop();
  ASSERT_EQ(p.kind, Kind::kDesync);
  ring.resync();
  ASSERT_EQ(ring.try_push(2), Push::kOk);
  const auto q = ring.try_pop();
  ASSERT_EQ(q.kind, Kind::kValue);
  EXPECT_EQ(q.value, 2u);
}

TEST(BandRing, GarbageInCellsProducersClaimNextIsRepairedAhead) {
  TestRing r(8);
  BandRing& ring = *r;
  ASSERT_EQ(ring.try_push(1), Push::kOk);
  ASSERT_EQ(ring.try_pop().kind, Kind::kValue);
  r.cell_at(1) = raw_cell(0, BandRing::kEmpty);  // an older sequence: "full"
  r.cell_at(2) = raw_cell(77, 5);                // garbage further on
  ASSERT_NE(ring.try_push(2), Push::kOk) << "the scribbled cell refuses producers";

  ASSERT_TRUE(ring.repair_ahead());
  for (uint32_t v = 30; v < 46; ++v) {
    ASSERT_EQ(ring.try_push(v), Push::kOk);
    ASSERT_EQ(ring.try_pop().value, v);
  }
  ASSERT_TRUE(ring.repair_ahead());  // a sound ring: nothing to do
}

// ---------------------------------------------------------------- try_push_n

TEST(BandRing, PushNPublishesEveryValueInOrderWithOneClaim) {
  TestRing r(8);
  BandRing& ring = *r;
  const uint32_t values[] = {10, 11, 12, 13, 14};
  int claims = 0;
  uint64_t first = ~uint64_t{0};
  const uint32_t n = ring.try_push_n(
      values, 5,
      [&](uint64_t pos) {
        ++claims;
        first = pos;
        // All five positions are claimed before any is published.
        EXPECT_EQ(r.header().tail, 5u);
      },
      [&](uint32_t i) { ADD_FAILURE() << "refused " << i; });
  EXPECT_EQ(n, 5u);
  EXPECT_EQ(claims, 1);
  EXPECT_EQ(first, 0u);
  for (uint32_t i = 0; i < 5; ++i) {
    const auto p = ring.try_pop();
    ASSERT_EQ(p.kind, Kind::kValue);
    EXPECT_EQ(p.value, values[i]);
    EXPECT_EQ(p.position, i);
  }
  EXPECT_EQ(ring.try_pop().kind, Kind::kEmpty);
}

TEST_P(BandRingCapacity, PushNWrapsAroundForManyLaps) {
  const uint32_t cap = GetParam();
  TestRing r(cap);
  BandRing& ring = *r;
  std::vector<uint32_t> values(cap);
  uint32_t next = 0;
  for (uint32_t lap = 0; lap < 50; ++lap) {
    const uint32_t n = 1 + lap % cap;  // every size, unaligned to the lap
    for (uint32_t i = 0; i < n; ++i) values[i] = next + i;
    ASSERT_EQ(ring.try_push_n(
                  values.data(), n, [](uint64_t) {}, [](uint32_t) {}),
              n);
    for (uint32_t i = 0; i < n; ++i) {
      const auto p = ring.try_pop();
      ASSERT_EQ(p.kind, Kind::kValue);
      ASSERT_EQ(p.value, next++);
    }
  }
}

TEST(BandRing, PushNWithoutRoomForAllPushesWhatFitsAndRefusesTheRest) {
  TestRing r(4);
  BandRing& ring = *r;
  ASSERT_EQ(ring.try_push(1), Push::kOk);
  const uint32_t values[] = {2, 3, 4, 5, 6};
  std::vector<uint32_t> refused;
  const uint32_t n = ring.try_push_n(
      values, 5, [](uint64_t) {}, [&](uint32_t i) { refused.push_back(i); });
  EXPECT_EQ(n, 3u);
  EXPECT_EQ(refused, (std::vector<uint32_t>{3, 4}));
  for (uint32_t v = 1; v <= 4; ++v) {
    const auto p = ring.try_pop();
    ASSERT_EQ(p.kind, Kind::kValue);
    EXPECT_EQ(p.value, v);
  }
  EXPECT_EQ(ring.try_pop().kind, Kind::kEmpty);
}

// The consumer revokes the first of the claimed cells while the producer
// sits between claim and publish: that value is pushed again at a new
// position, the others where they were claimed, each delivered once.
TEST(BandRing, PushNRepushesAValueWhoseClaimWasRevoked) {
  TestRing r(8);
  BandRing& ring = *r;
  const uint32_t values[] = {20, 21, 22};
  BandRing::Pop seen{};
  bool skip_won = false;
  const uint32_t n = ring.try_push_n(
      values, 3,
      [&](uint64_t) {
        seen = ring.try_pop();
        skip_won = ring.skip(seen.position);
      },
      [&](uint32_t i) { ADD_FAILURE() << "refused " << i; });
  EXPECT_EQ(n, 3u);
  EXPECT_EQ(seen.kind, Kind::kStalled);
  EXPECT_TRUE(skip_won);
  EXPECT_EQ(ring.try_pop().kind, Kind::kSkipped);
  std::vector<uint32_t> got;
  for (int i = 0; i < 3; ++i) {
    const auto p = ring.try_pop();
    ASSERT_EQ(p.kind, Kind::kValue);
    got.push_back(p.value);
  }
  EXPECT_EQ(got, (std::vector<uint32_t>{21, 22, 20}));
  EXPECT_EQ(ring.try_pop().kind, Kind::kEmpty);
}

TEST(BandRing, ManyBatchingProducersDeliverEveryValueOnceInProducerOrder) {
  constexpr uint32_t kProducers = 3;
  constexpr uint32_t kShift = 24;
  constexpr uint32_t kEach = kStressValuesPerProducer / 4;
  TestRing r(64);
  BandRing& ring = *r;
  std::atomic<bool> stop{false};
  std::vector<std::thread> producers;
  for (uint32_t id = 0; id < kProducers; ++id) {
    producers.emplace_back([&, id] {
      uint32_t vals[7];
      for (uint32_t s = 0; s < kEach && !stop.load(std::memory_order_relaxed);) {
        const uint32_t n = std::min<uint32_t>(1 + (s + id) % 7, kEach - s);
        for (uint32_t i = 0; i < n; ++i) vals[i] = (id << kShift) | (s + i);
        // Whatever is refused (ring full) is the tail of the batch: retry it.
        uint32_t refused_from = n;
        (void)ring.try_push_n(
            vals, n, [](uint64_t) {},
            [&](uint32_t i) { refused_from = std::min(refused_from, i); });
        s += refused_from;
        if (refused_from < n) std::this_thread::yield();
      }
    });
  }
  std::vector<uint32_t> next(kProducers, 0);
  uint64_t received = 0;
  const uint64_t total = uint64_t{kProducers} * kEach;
  auto deadline = std::chrono::steady_clock::now() + kWaitBound;
  while (received < total && std::chrono::steady_clock::now() < deadline) {
    const auto p = ring.try_pop();
    if (p.kind == Kind::kEmpty || p.kind == Kind::kStalled) {
      std::this_thread::yield();
      continue;
    }
    const uint32_t id = p.value >> kShift;
    if (p.kind != Kind::kValue || id >= kProducers ||
        (p.value & ((1u << kShift) - 1)) != next[id]) {
      ADD_FAILURE() << "kind " << static_cast<int>(p.kind) << ", value " << p.value << " at "
                    << p.position;
      break;
    }
    ++next[id];
    ++received;
  }
  stop.store(true, std::memory_order_relaxed);
  for (auto& t : producers) t.join();
  EXPECT_EQ(received, total);
}

}  // namespace
}  // namespace perfq
