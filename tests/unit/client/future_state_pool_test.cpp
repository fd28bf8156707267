// The producer's outcome states on their own: handed out once, reused after
// both owners let go, the heap only when the pool is dry, and the pool
// outliving its owner while a state is out.
#include "future_state_pool.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <set>
#include <thread>
#include <vector>

namespace perfq::detail {
namespace {

// Owns a pool the way a producer does: retire() when the test ends.
struct PoolOwner {
  explicit PoolOwner(uint32_t capacity) : pool(FutureStatePool::create(capacity)) {}
  ~PoolOwner() { pool->retire(); }
  PoolOwner(const PoolOwner&) = delete;
  PoolOwner& operator=(const PoolOwner&) = delete;
  FutureStatePool* pool;
};

void let_go(FutureState* st) {
  st->unref();  // the Future's
  st->unref();  // the producer's
}

TEST(FutureStatePool, HandsOutEveryPooledStateOnceBeforeTheHeap) {
  PoolOwner o(4);
  std::set<FutureState*> out;
  for (uint64_t id = 1; id <= 4; ++id) {
    FutureState* st = o.pool->acquire(id);
    EXPECT_TRUE(out.insert(st).second);
    EXPECT_EQ(st->refs.load(), 2u);
    EXPECT_EQ(st->ready.load(), 0u);
    EXPECT_EQ(st->outcome.request_id, id);
  }
  EXPECT_EQ(o.pool->available(), 0u);
  EXPECT_EQ(o.pool->overflowed(), 0u);
  FutureState* extra = o.pool->acquire(5);  // dry: from the heap
  EXPECT_EQ(out.count(extra), 0u);
  EXPECT_EQ(o.pool->overflowed(), 1u);
  let_go(extra);
  EXPECT_EQ(o.pool->available(), 0u);  // a heap state is freed, not pooled
  for (FutureState* st : out) let_go(st);
  EXPECT_EQ(o.pool->available(), 4u);
}

TEST(FutureStatePool, AStateComesBackOnlyWhenBothOwnersLetGo) {
  PoolOwner o(2);
  FutureState* st = o.pool->acquire(1);
  EXPECT_EQ(o.pool->available(), 1u);
  st->unref();
  EXPECT_EQ(o.pool->available(), 1u);
  st->unref();
  EXPECT_EQ(o.pool->available(), 2u);
}

TEST(FutureStatePool, AReusedStateHasACleanOutcomeAndKeepsItsResultBuffer) {
  PoolOwner o(1);
  FutureState* st = o.pool->acquire(1);
  st->outcome.status = Status::kFailed;
  st->outcome.error = Errc::kQueueTimeout;
  st->outcome.attempts = 3;
  st->outcome.result.assign(100, std::byte{'x'});
  st->outcome.wait_ns = 7;
  st->outcome.processing_ns = 8;
  st->ready.store(1);
  let_go(st);
  FutureState* again = o.pool->acquire(2);
  ASSERT_EQ(again, st);  // the only one
  EXPECT_EQ(again->ready.load(), 0u);
  EXPECT_EQ(again->refs.load(), 2u);
  EXPECT_EQ(again->outcome.request_id, 2u);
  EXPECT_EQ(again->outcome.status, Status::kPending);
  EXPECT_EQ(again->outcome.error, Errc::kOk);
  EXPECT_EQ(again->outcome.attempts, 0);
  EXPECT_TRUE(again->outcome.result.empty());
  EXPECT_GE(again->outcome.result.capacity(), 100u);  // the next result allocates nothing
  EXPECT_EQ(again->outcome.wait_ns, 0u);
  EXPECT_EQ(again->outcome.processing_ns, 0u);
  let_go(again);
}

TEST(FutureStatePool, DiscardReturnsAStateNobodyWasHanded) {
  PoolOwner o(2);
  FutureState* st = o.pool->acquire(1);
  o.pool->discard(st);
  EXPECT_EQ(o.pool->available(), 2u);
  FutureState* heap[3];
  for (auto*& h : heap) h = o.pool->acquire(2);
  o.pool->discard(heap[2]);  // the heap one: freed
  let_go(heap[0]);
  let_go(heap[1]);
  EXPECT_EQ(o.pool->available(), 2u);
}

// A Future may outlive its producer: the pool goes with its last state.
// (The sanitizer trees catch a pool freed too early, or never.)
TEST(FutureStatePool, OutlivesItsOwnerUntilTheLastStateIsLetGo) {
  FutureStatePool* pool = FutureStatePool::create(1);
  FutureState* pooled = pool->acquire(1);
  FutureState* heap = pool->acquire(2);  // the pool is dry
  pool->retire();                        // the producer closes
  pooled->ready.store(1);
  let_go(pooled);
  let_go(heap);  // the last one: the pool is freed here
}

TEST(FutureStatePool, ThreadsAcquiringAndLettingGoNeverShareAState) {
  constexpr uint32_t kThreads = 4;
  constexpr uint32_t kEach = 2;  // held at once per thread: kThreads * kEach = capacity
  constexpr int kRounds = 20000;
  PoolOwner o(kThreads * kEach);
  std::vector<std::thread> threads;
  std::atomic<uint64_t> shared{0};
  for (uint32_t t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRounds; ++i) {
        FutureState* held[kEach];
        for (uint32_t k = 0; k < kEach; ++k) {
          held[k] = o.pool->acquire(uint64_t{t} << 32 | static_cast<uint64_t>(i));
          // A state nobody else holds: we are its first owner since acquire.
          if (held[k]->refs.load(std::memory_order_relaxed) != 2) shared.fetch_add(1);
          held[k]->outcome.attempts = static_cast<uint8_t>(t);
        }
        for (uint32_t k = 0; k < kEach; ++k) {
          if (held[k]->outcome.attempts != t) shared.fetch_add(1);
          let_go(held[k]);
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(shared.load(), 0u);
  EXPECT_EQ(o.pool->overflowed(), 0u);  // never more held than the capacity
  EXPECT_EQ(o.pool->available(), kThreads * kEach);
}

// ---------------------------------------------------------------- assertions
#if defined(PERFQ_ASSERTIONS) || !defined(NDEBUG)
TEST(FutureStatePoolDeathTest, LettingGoOnceTooOftenIsCaught) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  PoolOwner o(2);
  FutureState* st = o.pool->acquire(1);
  let_go(st);
  EXPECT_DEATH(st->unref(), "assertion failed: before != 0");
}

TEST(FutureStatePoolDeathTest, DiscardingAStateHandedOutIsCaught) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  PoolOwner o(2);
  FutureState* st = o.pool->acquire(1);
  st->unref();  // a Future was made and dropped
  EXPECT_DEATH(o.pool->discard(st), "assertion failed: st->refs");
  st->unref();
}

TEST(FutureStatePoolDeathTest, AStateReturnedToAnotherPoolIsCaught) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  PoolOwner a(2);
  PoolOwner b(2);
  FutureState* st = a.pool->acquire(1);
  EXPECT_DEATH(b.pool->discard(st), "assertion failed: st->pool_ == this");
  a.pool->discard(st);
}
#endif

}  // namespace
}  // namespace perfq::detail
