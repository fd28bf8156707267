#include "perfq/core/seqlock.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

#include "spin_barrier.hpp"

namespace perfq {
namespace {

// A word and the fields it guards, as a shared struct would hold them.
struct Guarded {
  uint64_t word = 0;
  uint64_t fields[7] = {};
};

// Writer: every field holds `v` once the write ends.
void write_all(Guarded& g, uint64_t v) {
  const uint64_t odd = seqlock::begin_write(g.word, std::memory_order_acq_rel);
  for (uint64_t& f : g.fields) aref(f).store(v, std::memory_order_relaxed);
  seqlock::end_write(g.word, odd);
}

void copy_all(const Guarded& g, uint64_t (&out)[7]) {
  for (int i = 0; i < 7; ++i) out[i] = load_relaxed(g.fields[i]);
}

// A torn copy is one whose fields differ.
bool uniform(const uint64_t (&v)[7]) {
  for (const uint64_t x : v) {
    if (x != v[0]) return false;
  }
  return true;
}

#if defined(__SANITIZE_THREAD__)
constexpr uint64_t kRaceWrites = 20'000;
#else
constexpr uint64_t kRaceWrites = 200'000;
#endif

TEST(SeqLock, WriteMakesTheWordOddThenEven) {
  Guarded g;
  const uint64_t odd = seqlock::begin_write(g.word, std::memory_order_seq_cst);
  EXPECT_EQ(odd, 1u);
  EXPECT_EQ(g.word, 1u);
  seqlock::end_write(g.word, odd);
  EXPECT_EQ(g.word, 2u);
}

TEST(SeqLock, BeginWriteOnAWordLeftOddGoesOnToTheNextOdd) {
  Guarded g;
  g.word = 3;  // a writer died holding it
  const uint64_t odd = seqlock::begin_write(g.word, std::memory_order_acq_rel);
  EXPECT_EQ(odd, 5u);
  seqlock::end_write(g.word, odd);
  EXPECT_EQ(g.word, 6u);
}

TEST(SeqLock, ReadCopiesAWholeValueAndSaysUnderWhichWord) {
  Guarded g;
  write_all(g, 42);
  uint64_t out[7] = {};
  uint64_t seen = 0;
  ASSERT_TRUE(seqlock::read(g.word, {.tries = 1}, seen, [&] { copy_all(g, out); }));
  EXPECT_EQ(seen, 2u);
  EXPECT_EQ(out[0], 42u);
  EXPECT_TRUE(uniform(out));
}

TEST(SeqLock, OddWordMakesABoundedReadGiveUp) {
  Guarded g;
  g.word = 7;  // a writer died holding it
  int copies = 0;
  uint64_t seen = 0;
  EXPECT_FALSE(seqlock::read(g.word, {.tries = 64}, seen, [&] { ++copies; }));
  EXPECT_EQ(copies, 0);
  EXPECT_EQ(seen, 7u);
  // With a yielding phase: gives up once the time bound has passed.
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(seqlock::read(g.word, {.tries = 4, .yield_ns = 2'000'000}, [&] { ++copies; }));
  EXPECT_EQ(copies, 0);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(2));
}

TEST(SeqLock, RepairMakesAWordLeftOddReadable) {
  Guarded g;
  write_all(g, 5);
  (void)seqlock::begin_write(g.word, std::memory_order_acq_rel);  // and the writer dies
  aref(g.fields[0]).store(6, std::memory_order_relaxed);
  ASSERT_FALSE(seqlock::read(g.word, {.tries = 8}, [] {}));
  int invalidated = 0;
  EXPECT_TRUE(seqlock::repair(g.word, [&] {
    ++invalidated;
    for (uint64_t& f : g.fields) aref(f).store(0, std::memory_order_relaxed);
  }));
  EXPECT_EQ(invalidated, 1);
  EXPECT_EQ(g.word, 4u);
  uint64_t out[7] = {1};
  EXPECT_TRUE(seqlock::read(g.word, {.tries = 1}, [&] { copy_all(g, out); }));
  EXPECT_EQ(out[0], 0u);
  EXPECT_TRUE(uniform(out));
  // The next write goes on from the repaired value.
  write_all(g, 9);
  EXPECT_EQ(g.word, 6u);
}

TEST(SeqLock, RepairLeavesAnEvenWordAlone) {
  Guarded g;
  write_all(g, 5);
  int invalidated = 0;
  EXPECT_FALSE(seqlock::repair(g.word, [&] { ++invalidated; }));
  EXPECT_FALSE(seqlock::repair(g.word));
  EXPECT_EQ(invalidated, 0);
  EXPECT_EQ(g.word, 2u);
  EXPECT_EQ(g.fields[3], 5u);
}

TEST(SeqLock, ReadExactTakesOnlyTheWantedValue) {
  constexpr uint64_t kMarker = ~uint64_t{0};
  Guarded g;
  seqlock::begin_write_marked(g.word, kMarker, std::memory_order_acq_rel);
  for (uint64_t& f : g.fields) aref(f).store(11, std::memory_order_relaxed);
  uint64_t seen = 0;
  int copies = 0;
  EXPECT_FALSE(seqlock::read_exact(g.word, 11, seen, [&] { ++copies; }));
  EXPECT_EQ(seen, kMarker);
  seqlock::end_write_marked(g.word, kMarker, 11);  // odd, yet stable: a position
  uint64_t out[7] = {};
  EXPECT_TRUE(seqlock::read_exact(g.word, 11, seen, [&] { copy_all(g, out); }));
  EXPECT_EQ(out[6], 11u);
  EXPECT_FALSE(seqlock::read_exact(g.word, 12, seen, [&] { ++copies; }));
  EXPECT_EQ(seen, 11u);
  EXPECT_EQ(copies, 0);
}

// One writer rewrites the fields as fast as it can; a reader copies them as
// fast as it can. Every copy read() accepts is whole, and reads do succeed.
TEST(SeqLock, ConcurrentReaderNeverAcceptsATornCopy) {
  Guarded g;
  std::atomic<bool> done{false};
  test::SpinBarrier start(2);
  std::thread writer([&] {
    ASSERT_TRUE(start.arrive_and_wait());
    for (uint64_t v = 1; v <= kRaceWrites; ++v) write_all(g, v);
    done.store(true, std::memory_order_release);
  });
  ASSERT_TRUE(start.arrive_and_wait());
  uint64_t whole = 0;
  uint64_t torn = 0;
  uint64_t last = 0;
  // Bound: the writer's kRaceWrites writes, and a last read after them.
  for (bool last_round = false; !last_round;) {
    last_round = done.load(std::memory_order_acquire);
    uint64_t out[7] = {};
    uint64_t seen = 0;
    if (!seqlock::read(g.word, {.tries = 64}, seen, [&] { copy_all(g, out); })) continue;
    ++whole;
    if (!uniform(out)) ++torn;
    // The word only grows, and it says which write the copy is: the v-th
    // write ends at 2 v.
    EXPECT_EQ(out[0], seen / 2);
    EXPECT_GE(seen, last);
    last = seen;
  }
  writer.join();
  EXPECT_EQ(torn, 0u);
  EXPECT_GT(whole, 0u);
  EXPECT_EQ(last, 2 * kRaceWrites);
}

// The same with the marked form: the stable value is a position, any parity.
TEST(SeqLock, ConcurrentMarkedReaderNeverAcceptsATornCopy) {
  constexpr uint64_t kMarker = ~uint64_t{0};
  Guarded g;
  std::atomic<bool> done{false};
  test::SpinBarrier start(2);
  std::thread writer([&] {
    ASSERT_TRUE(start.arrive_and_wait());
    for (uint64_t v = 1; v <= kRaceWrites; ++v) {
      seqlock::begin_write_marked(g.word, kMarker, std::memory_order_acq_rel);
      for (uint64_t& f : g.fields) aref(f).store(v, std::memory_order_relaxed);
      seqlock::end_write_marked(g.word, kMarker, v);
    }
    done.store(true, std::memory_order_release);
  });
  ASSERT_TRUE(start.arrive_and_wait());
  uint64_t whole = 0;
  for (bool last_round = false; !last_round;) {
    last_round = done.load(std::memory_order_acquire);
    const uint64_t want = load_acquire(g.word);
    if (want == kMarker || want == 0) continue;
    uint64_t out[7] = {};
    uint64_t seen = 0;
    if (!seqlock::read_exact(g.word, want, seen, [&] { copy_all(g, out); })) continue;
    ++whole;
    EXPECT_TRUE(uniform(out));
    EXPECT_EQ(out[0], want);
  }
  writer.join();
  EXPECT_GT(whole, 0u);
}

}  // namespace
}  // namespace perfq
