#include "perfq/core/spsc_ring.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

namespace perfq {
namespace {

#if defined(__SANITIZE_THREAD__)
constexpr uint64_t kStressValues = 500'000;
#else
constexpr uint64_t kStressValues = 2'000'000;
#endif

constexpr auto kWaitBound = std::chrono::seconds(30);

// A ring in ordinary memory, laid out by the same format() the segment uses.
class TestRing {
 public:
  explicit TestRing(uint32_t capacity)
      : header_(std::make_unique<SpscRingHeader>()), entries_(capacity) {
    SpscRing::format(*header_, entries_.data(), capacity);
    ring_ = SpscRing(header_.get(), entries_.data(), capacity);
  }
  SpscRing& operator*() { return ring_; }
  SpscRing* operator->() { return &ring_; }
  SpscRingHeader& header() { return *header_; }

 private:
  std::unique_ptr<SpscRingHeader> header_;
  std::vector<uint64_t> entries_;
  SpscRing ring_;
};

TEST(SpscRing, DefaultConstructedRingIsNotValid) {
  const SpscRing r;
  EXPECT_FALSE(r.valid());
  TestRing t(4);
  EXPECT_TRUE(t->valid());
  EXPECT_EQ(t->capacity(), 4u);
}

TEST(SpscRing, PopOnEmptyRingReturnsFalseAndLeavesOutputAlone) {
  TestRing r(4);
  uint64_t out = 777;
  EXPECT_FALSE(r->try_pop(out));
  EXPECT_EQ(out, 777u);
  EXPECT_EQ(r->size_approx(), 0u);
}

TEST(SpscRing, EntriesComeOutInPushOrder) {
  TestRing r(8);
  for (uint64_t v = 1; v <= 6; ++v) ASSERT_TRUE(r->try_push(v * 1000));
  EXPECT_EQ(r->size_approx(), 6u);
  for (uint64_t v = 1; v <= 6; ++v) {
    uint64_t out = 0;
    ASSERT_TRUE(r->try_pop(out));
    EXPECT_EQ(out, v * 1000);
  }
  uint64_t out = 0;
  EXPECT_FALSE(r->try_pop(out));
}

TEST(SpscRing, FullRingRefusesPushUntilTheReaderTakesOne) {
  TestRing r(4);
  for (uint64_t v = 0; v < 4; ++v) ASSERT_TRUE(r->try_push(v));
  EXPECT_FALSE(r->try_push(99));
  EXPECT_EQ(r->size_approx(), 4u);
  uint64_t out = 0;
  ASSERT_TRUE(r->try_pop(out));
  EXPECT_EQ(out, 0u);
  // The writer's cached head says full; it must reload and see the room.
  EXPECT_TRUE(r->try_push(4));
  EXPECT_FALSE(r->try_push(99));
  for (uint64_t v = 1; v <= 4; ++v) {
    ASSERT_TRUE(r->try_pop(out));
    EXPECT_EQ(out, v);
  }
  EXPECT_FALSE(r->try_pop(out));
}

TEST(SpscRing, ReaderSeesEntriesPushedAfterItsCachedTailSaidEmpty) {
  TestRing r(4);
  uint64_t out = 0;
  EXPECT_FALSE(r->try_pop(out));  // caches tail == head
  ASSERT_TRUE(r->try_push(5));
  ASSERT_TRUE(r->try_pop(out));
  EXPECT_EQ(out, 5u);
}

TEST(SpscRing, ZeroAndAllOnesAreOrdinaryEntries) {
  TestRing r(2);
  ASSERT_TRUE(r->try_push(0));
  ASSERT_TRUE(r->try_push(~uint64_t{0}));
  uint64_t out = 1;
  ASSERT_TRUE(r->try_pop(out));
  EXPECT_EQ(out, 0u);
  ASSERT_TRUE(r->try_pop(out));
  EXPECT_EQ(out, ~uint64_t{0});
}

class SpscRingCapacity : public ::testing::TestWithParam<uint32_t> {};

TEST_P(SpscRingCapacity, WrapsAroundForManyLapsFillingAndDraining) {
  const uint32_t cap = GetParam();
  TestRing r(cap);
  uint64_t next_in = 0;
  uint64_t next_out = 0;
  for (int lap = 0; lap < 1000; ++lap) {
    for (uint32_t i = 0; i < cap; ++i) ASSERT_TRUE(r->try_push(next_in++));
    ASSERT_FALSE(r->try_push(12345)) << "lap " << lap;
    for (uint32_t i = 0; i < cap; ++i) {
      uint64_t out = 0;
      ASSERT_TRUE(r->try_pop(out));
      ASSERT_EQ(out, next_out++);
    }
    uint64_t out = 0;
    ASSERT_FALSE(r->try_pop(out));
  }
  EXPECT_EQ(r.header().tail, uint64_t{1000} * cap);
  EXPECT_EQ(r.header().head, uint64_t{1000} * cap);
}

TEST_P(SpscRingCapacity, WrapsAroundWithReaderFollowingANearlyFullRing) {
  // The writer keeps cap - 1 entries ahead; head and tail pass every cell.
  const uint32_t cap = GetParam();
  TestRing r(cap);
  for (uint64_t v = 0; v + 1 < cap; ++v) ASSERT_TRUE(r->try_push(v));
  for (uint64_t v = cap - 1; v < 50 * uint64_t{cap} + cap; ++v) {
    ASSERT_TRUE(r->try_push(v));
    ASSERT_FALSE(r->try_push(12345)) << "full at " << v;
    uint64_t out = 0;
    ASSERT_TRUE(r->try_pop(out));
    ASSERT_EQ(out, v - (cap - 1));
  }
}

INSTANTIATE_TEST_SUITE_P(TinyCapacities, SpscRingCapacity, ::testing::Values(1u, 2u, 4u),
                         [](const auto& p) { return "Cap" + std::to_string(p.param); });

TEST(SpscRing, ContainsUnreadSeesOnlyEntriesNotYetRead) {
  TestRing r(4);
  EXPECT_FALSE(r->contains_unread(0)) << "a formatted ring is full of zeros, none unread";
  ASSERT_TRUE(r->try_push(10));
  ASSERT_TRUE(r->try_push(11));
  ASSERT_TRUE(r->try_push(12));
  EXPECT_TRUE(r->contains_unread(10));
  EXPECT_TRUE(r->contains_unread(12));
  EXPECT_FALSE(r->contains_unread(13));

  uint64_t out = 0;
  ASSERT_TRUE(r->try_pop(out));
  EXPECT_FALSE(r->contains_unread(10)) << "a read entry still sits in its cell but is not unread";
  EXPECT_TRUE(r->contains_unread(11));
}

TEST(SpscRing, ContainsUnreadAfterWrapIgnoresStaleCells) {
  TestRing r(2);
  uint64_t out = 0;
  for (uint64_t v = 0; v < 7; ++v) {
    ASSERT_TRUE(r->try_push(v));
    ASSERT_TRUE(r->try_pop(out));
  }
  // Cells still hold 5 and 6; none is unread.
  EXPECT_FALSE(r->contains_unread(5));
  EXPECT_FALSE(r->contains_unread(6));
  ASSERT_TRUE(r->try_push(20));
  ASSERT_TRUE(r->try_push(21));
  EXPECT_TRUE(r->contains_unread(20));
  EXPECT_TRUE(r->contains_unread(21));
  EXPECT_FALSE(r->contains_unread(6));
}

TEST(SpscRing, ContainsUnreadIsBoundedByTheCapacityOnACorruptIndex) {
  // A broken reader could leave head far behind tail; the scan must stay
  // within one lap of cells.
  TestRing r(4);
  for (uint64_t v = 0; v < 4; ++v) ASSERT_TRUE(r->try_push(v + 1));
  r.header().tail = 1'000'000;
  EXPECT_TRUE(r->contains_unread(4));
  EXPECT_FALSE(r->contains_unread(5));
}

TEST(SpscRing, WriterAndReaderThreadsPassEveryEntryInOrder) {
  TestRing r(8);
  SpscRing& ring = *r;
  std::atomic<bool> stop{false};
  std::atomic<bool> writer_stuck{false};

  // The bounds are on a lack of progress, not on the whole run: a busy
  // machine may be slow, a stuck ring makes no progress at all.
  std::thread writer([&] {
    for (uint64_t v = 1; v <= kStressValues; ++v) {
      const auto deadline = std::chrono::steady_clock::now() + kWaitBound;
      while (!ring.try_push(v)) {
        if (stop.load(std::memory_order_relaxed)) return;
        if (std::chrono::steady_clock::now() > deadline) {
          writer_stuck.store(true, std::memory_order_relaxed);
          return;
        }
        std::this_thread::yield();
      }
    }
  });

  uint64_t expected = 1;
  auto deadline = std::chrono::steady_clock::now() + kWaitBound;
  while (expected <= kStressValues && std::chrono::steady_clock::now() < deadline) {
    uint64_t out = 0;
    if (!ring.try_pop(out)) {
      std::this_thread::yield();
      continue;
    }
    deadline = std::chrono::steady_clock::now() + kWaitBound;
    if (out != expected) {
      ADD_FAILURE() << "read " << out << ", expected " << expected;
      break;
    }
    ++expected;
  }
  stop.store(true, std::memory_order_relaxed);
  writer.join();

  EXPECT_FALSE(writer_stuck.load());
  EXPECT_EQ(expected, kStressValues + 1);
  uint64_t out = 0;
  EXPECT_FALSE(ring.try_pop(out));
}

// Preconditions of the ring's caller: checked where assertions are on
// (debug and the sanitizer trees), compiled out of release.
TEST(SpscRingDeathTest, AGroupLargerThanTheRingStopsTheProcess) {
#if defined(PERFQ_ASSERTIONS) || !defined(NDEBUG)
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  TestRing r(4);
  const uint64_t group[5] = {1, 2, 3, 4, 5};
  EXPECT_DEATH((void)r->try_push_n(group, 5), "n <= capacity_");
#else
  GTEST_SKIP() << "assertions are compiled out of this build";
#endif
}

}  // namespace
}  // namespace perfq
