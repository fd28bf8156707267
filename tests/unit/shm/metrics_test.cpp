#include "perfq/shm/metrics.hpp"

#include <gtest/gtest.h>
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <latch>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "perfq/core/histogram.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq::shm {
namespace {

constexpr uint64_t kNsPerMinute = 60'000'000'000ull;
constexpr uint32_t kTypes = 2;
// A wall-clock minute (since the epoch + 1) in 2025 whose row is 1430: a
// few minutes on, the window wraps past row 0.
constexpr uint64_t kBase = 29'000'150;
static_assert(kBase % kMetricsMinutes == 1430);

// Unix ns inside wall-clock minute m (m >= 1): its first, middle and last ns.
constexpr uint64_t first_ns(uint64_t m) {
  return (m - 1) * kNsPerMinute;
}
constexpr uint64_t at(uint64_t m) {
  return first_ns(m) + kNsPerMinute / 2;
}
constexpr uint64_t last_ns(uint64_t m) {
  return first_ns(m) + kNsPerMinute - 1;
}

// v microseconds, in ns.
constexpr uint64_t us(uint64_t v) {
  return v * 1000;
}

uint64_t submitted(const MetricsTotals& t) {
  return t.count(Outcome::kSubmitted);
}

// The counts of one cell, in Outcome order.
using Counts = std::array<uint64_t, kOutcomeCount>;

// The totals reported for `name`, or nullptr when the snapshot has none.
const MetricsTotals* find_type(const MetricsSnapshot& s, const std::string& name) {
  for (const auto& [n, t] : s.types) {
    if (n == name) return &t;
  }
  return nullptr;
}

std::vector<std::string> type_names(const MetricsSnapshot& s) {
  std::vector<std::string> names;
  for (const auto& [n, t] : s.types) names.push_back(n);
  return names;
}

// A segment of its own per test (metrics_types = kTypes unless a test asks
// for another), removed at the end.
class Metrics : public ::testing::Test {
 protected:
  void SetUp() override { open(kTypes); }

  void open(uint32_t types) {
    seg_.reset();
    opt_.slot_count = 16;
    opt_.slot_payload_bytes = 64;
    opt_.max_clients = 4;
    opt_.metrics_types = types;
    reopen(Segment::Opened::kCreated);
  }
  // An agent restart: the segment is unmapped and mapped again.
  void reopen(Segment::Opened want = Segment::Opened::kReattached) {
    seg_.reset();
    Segment::Opened how{};
    auto r = Segment::open_for_agent(q_.str(), opt_, how);
    ASSERT_TRUE(r) << r.error().message;
    ASSERT_EQ(how, want);
    seg_ = std::move(r).value();
  }

  [[nodiscard]] MetricsSnapshot read(uint64_t now_ns, uint32_t period) const {
    return read_metrics(*seg_, now_ns, period);
  }
  // Row r's minute word, as the layout places it (docs/PROTOCOL.md §15).
  uint64_t& row_minute(uint32_t r) {
    std::byte* rows = seg_->metrics_region() + sizeof(MetricsHeader) +
                      std::size_t{opt_.metrics_types} * sizeof(MetricsTypeName);
    return reinterpret_cast<MetricsRowHeader*>(rows + r * metrics_row_bytes(opt_.metrics_types))
        ->minute;
  }

  test::QueueName q_;
  CreateOptions opt_;
  std::unique_ptr<Segment> seg_;
};

// --- counts by band and by type ---------------------------------------------

TEST_F(Metrics, CountsLandInTheCellOfTheirBandAndOfTheirType) {
  MetricsWriter w(*seg_, at(kBase));
  const uint8_t a = w.column("a");
  const uint8_t b = w.column("b");
  EXPECT_EQ(a, 0);
  EXPECT_EQ(b, 1);
  // band x type x outcome, each cell a distinct number of times.
  w.count(0, a, Outcome::kSubmitted);
  for (int i = 0; i < 2; ++i) w.count(1, b, Outcome::kCompleted);
  for (int i = 0; i < 3; ++i) w.count(2, a, Outcome::kFailed);
  for (int i = 0; i < 4; ++i) w.count(3, b, Outcome::kTimeout);
  for (int i = 0; i < 5; ++i) w.count(3, a, Outcome::kCancelled);
  for (int i = 0; i < 6; ++i) w.count(0, b, Outcome::kRetried);

  const std::array<Counts, kBandCount> want_bands = {{
      {1, 0, 0, 0, 0, 6},
      {0, 2, 0, 0, 0, 0},
      {0, 0, 3, 0, 0, 0},
      {0, 0, 0, 4, 5, 0},
  }};
  const Counts want_a = {1, 0, 3, 0, 5, 0};
  const Counts want_b = {0, 2, 0, 4, 0, 6};
  for (const uint32_t period : {1u, 0u}) {
    SCOPED_TRACE(period);
    const MetricsSnapshot s = read(at(kBase), period);
    for (uint8_t band = 0; band < kBandCount; ++band) {
      EXPECT_EQ(s.bands[band].counts, want_bands[band]) << "band " << int{band};
    }
    ASSERT_EQ(type_names(s), (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(s.types[0].second.counts, want_a);
    EXPECT_EQ(s.types[1].second.counts, want_b);
  }
}

TEST_F(Metrics, TotalSumsTheBands) {
  MetricsWriter w(*seg_, at(kBase));
  const uint8_t a = w.column("a");
  for (uint8_t band = 0; band < kBandCount; ++band) {
    for (int i = 0; i <= band; ++i) w.count(band, a, Outcome::kSubmitted);
    w.count(band, a, Outcome::kCompleted);
    w.waited(band, a, us(10 + band));
    w.processed(band, a, us(1000 * (band + 1)));
  }
  const MetricsTotals t = read(at(kBase), 1).total();
  EXPECT_EQ(t.count(Outcome::kSubmitted), 1u + 2 + 3 + 4);
  EXPECT_EQ(t.count(Outcome::kCompleted), 4u);
  EXPECT_EQ(t.wait_count, 4u);
  EXPECT_EQ(t.wait_sum_us, 10u + 11 + 12 + 13);
  EXPECT_EQ(t.wait_max_us, 13u);
  EXPECT_EQ(t.processing_count, 4u);
  EXPECT_EQ(t.processing_sum_us, 1000u + 2000 + 3000 + 4000);
  EXPECT_EQ(t.processing_max_us, 4000u);
  // The histograms add: each wait has a bucket of its own (below 16 us).
  for (uint64_t v = 10; v <= 13; ++v) EXPECT_EQ(t.wait[MinuteBuckets::index(v)], 1u) << v;
  EXPECT_EQ(t.wait_percentile_us(0.5), 11u);
  EXPECT_EQ(t.processing_percentile_us(1.0), 4000u);
}

TEST_F(Metrics, TypesBeyondMetricsTypesCountAsOther) {
  MetricsWriter w(*seg_, at(kBase));
  EXPECT_EQ(w.column("a"), 0);
  EXPECT_EQ(w.column("b"), 1);
  const uint8_t other = w.other_column();
  EXPECT_EQ(other, kTypes);
  EXPECT_EQ(w.column("c"), other);
  EXPECT_EQ(w.column("d"), other);
  w.count(0, w.column("a"), Outcome::kSubmitted);
  for (int i = 0; i < 2; ++i) w.count(1, w.column("c"), Outcome::kSubmitted);
  for (int i = 0; i < 3; ++i) w.count(2, w.column("d"), Outcome::kSubmitted);
  w.waited(2, w.column("d"), us(7));

  const MetricsSnapshot s = read(at(kBase), 1);
  // "b" took a column without a request counted in it yet: reported, empty.
  ASSERT_EQ(type_names(s), (std::vector<std::string>{"a", "b", "other"}));
  EXPECT_EQ(submitted(s.types[0].second), 1u);
  EXPECT_EQ(submitted(s.types[1].second), 0u);
  EXPECT_EQ(submitted(s.types[2].second), 5u);
  EXPECT_EQ(s.types[2].second.wait_count, 1u);
  EXPECT_EQ(submitted(s.bands[1]), 2u);
  EXPECT_EQ(submitted(s.bands[2]), 3u);
  EXPECT_EQ(submitted(s.total()), 6u);
}

TEST_F(Metrics, OtherIsAbsentWhenNothingWentThere) {
  MetricsWriter w(*seg_, at(kBase));
  const uint8_t a = w.column("a");
  w.count(0, a, Outcome::kSubmitted);
  w.waited(0, a, us(3));
  w.processed(0, a, us(4));
  w.count(0, a, Outcome::kCompleted);
  EXPECT_EQ(type_names(read(at(kBase), 1)), (std::vector<std::string>{"a"}));
  EXPECT_EQ(type_names(read(at(kBase), 0)), (std::vector<std::string>{"a"}));
  // Every column taken, still nothing in "other".
  w.count(1, w.column("b"), Outcome::kSubmitted);
  EXPECT_EQ(type_names(read(at(kBase), 1)), (std::vector<std::string>{"a", "b"}));
}

// A request of an untracked type taken in one minute and cancelled while
// pending in the next (or taken by the previous agent and cancelled after a
// restart) leaves "other" with only a final count in the window: it must
// still be reported, or the types no longer add up to the bands.
TEST_F(Metrics, OtherIsReportedWhenItHoldsOnlyAFinalCount) {
  MetricsWriter w(*seg_, at(kBase));
  (void)w.column("a");
  (void)w.column("b");
  const uint8_t other = w.column("c");
  ASSERT_EQ(other, w.other_column());
  w.count(2, other, Outcome::kSubmitted);
  w.roll(at(kBase + 1));
  w.count(2, other, Outcome::kCancelled);
  w.count(3, other, Outcome::kRetried);

  const MetricsSnapshot s = read(at(kBase + 1), 1);
  EXPECT_EQ(s.bands[2].count(Outcome::kCancelled), 1u);
  const MetricsTotals* o = find_type(s, "other");
  ASSERT_NE(o, nullptr) << "the cancelled and retried counts of 'other' are not reported";
  EXPECT_EQ(o->count(Outcome::kCancelled), 1u);
  EXPECT_EQ(o->count(Outcome::kRetried), 1u);
  EXPECT_EQ(submitted(*o), 0u);
}

TEST_F(Metrics, ATypeKeepsItsColumn) {
  MetricsWriter w(*seg_, at(kBase));
  EXPECT_EQ(w.column("b"), 0);
  EXPECT_EQ(w.column("a"), 1);
  EXPECT_EQ(w.column("c"), w.other_column());
  // Asked again, in another order, after an untracked type: the same columns.
  EXPECT_EQ(w.column("a"), 1);
  EXPECT_EQ(w.column("c"), w.other_column());
  EXPECT_EQ(w.column("b"), 0);
  w.count(0, w.column("a"), Outcome::kSubmitted);
  w.count(1, w.column("a"), Outcome::kSubmitted);
  w.count(0, w.column("b"), Outcome::kSubmitted);

  const MetricsSnapshot s = read(at(kBase), 1);
  ASSERT_EQ(type_names(s), (std::vector<std::string>{"b", "a"}));
  EXPECT_EQ(submitted(s.types[0].second), 1u);
  EXPECT_EQ(submitted(s.types[1].second), 2u);
}

TEST_F(Metrics, ABandOrColumnOutOfRangeCountsInTheLastBandAndInOther) {
  MetricsWriter w(*seg_, at(kBase));
  (void)w.column("a");
  w.count(kBandCount, 200, Outcome::kSubmitted);
  w.count(255, w.other_column() + 1, Outcome::kSubmitted);
  const MetricsSnapshot s = read(at(kBase), 1);
  EXPECT_EQ(submitted(s.bands[kBandCount - 1]), 2u);
  EXPECT_EQ(submitted(s.total()), 2u);
  const MetricsTotals* o = find_type(s, "other");
  ASSERT_NE(o, nullptr);
  EXPECT_EQ(submitted(*o), 2u);
  EXPECT_EQ(submitted(*find_type(s, "a")), 0u);
}

TEST_F(Metrics, ARestartedWriterKeepsColumnsAndMinuteRowsAndStartsSinceStartAfresh) {
  {
    MetricsWriter w(*seg_, at(kBase - 1));
    const uint8_t a = w.column("a");
    const uint8_t b = w.column("b");
    ASSERT_EQ(a, 0);
    ASSERT_EQ(b, 1);
    w.count(0, a, Outcome::kSubmitted);
    w.roll(at(kBase));
    for (int i = 0; i < 2; ++i) w.count(1, b, Outcome::kSubmitted);
    w.count(2, w.column("c"), Outcome::kSubmitted);
    EXPECT_EQ(submitted(read(at(kBase), 0).total()), 4u);
  }
  ASSERT_NO_FATAL_FAILURE(reopen());
  const uint64_t restart_ns = at(kBase + 1) + 123;
  MetricsWriter w(*seg_, restart_ns);
  // Asked in the other order: the names read back keep their columns.
  EXPECT_EQ(w.column("b"), 1);
  EXPECT_EQ(w.column("a"), 0);
  EXPECT_EQ(w.column("c"), w.other_column());
  EXPECT_EQ(w.column("e"), w.other_column());
  w.count(3, w.column("b"), Outcome::kCompleted);

  // The since-start row holds only what this writer counted.
  const MetricsSnapshot life = read(restart_ns, 0);
  EXPECT_EQ(life.minutes, 0u);
  EXPECT_EQ(life.started_unix_ns, restart_ns);
  EXPECT_EQ(submitted(life.total()), 0u);
  EXPECT_EQ(life.total().count(Outcome::kCompleted), 1u);
  ASSERT_EQ(type_names(life), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(life.types[1].second.count(Outcome::kCompleted), 1u);

  // The minute rows survived.
  const MetricsSnapshot s = read(restart_ns, 3);
  EXPECT_EQ(s.minutes, 3u);
  EXPECT_EQ(submitted(s.bands[0]), 1u);
  EXPECT_EQ(submitted(s.bands[1]), 2u);
  EXPECT_EQ(submitted(s.bands[2]), 1u);
  EXPECT_EQ(s.bands[3].count(Outcome::kCompleted), 1u);
  ASSERT_EQ(type_names(s), (std::vector<std::string>{"a", "b", "other"}));
  EXPECT_EQ(submitted(s.types[0].second), 1u);
  EXPECT_EQ(submitted(s.types[1].second), 2u);
  EXPECT_EQ(s.types[1].second.count(Outcome::kCompleted), 1u);
  EXPECT_EQ(submitted(s.types[2].second), 1u);
}

TEST_F(Metrics, AWriterRestartedWithinTheMinuteKeepsItsRow) {
  {
    MetricsWriter w(*seg_, at(kBase));
    for (int i = 0; i < 3; ++i) w.count(0, w.column("a"), Outcome::kSubmitted);
  }
  ASSERT_NO_FATAL_FAILURE(reopen());
  MetricsWriter w(*seg_, last_ns(kBase));
  w.count(0, w.column("a"), Outcome::kSubmitted);
  EXPECT_EQ(submitted(read(last_ns(kBase), 1).bands[0]), 4u);
  EXPECT_EQ(submitted(read(last_ns(kBase), 0).bands[0]), 1u);
}

// An agent that died while a start cleared the since-start row left its word
// odd and the row half cleared: nothing is read from it until the next start
// has cleared it, and that start's word differs from every one before.
TEST_F(Metrics, ASinceStartRowLeftHalfClearedIsNotReadUntilTheNextStart) {
  uint64_t whole = 0;
  {
    MetricsWriter w(*seg_, at(kBase));
    for (int i = 0; i < 3; ++i) w.count(0, w.column("a"), Outcome::kSubmitted);
    EXPECT_EQ(submitted(read(at(kBase), 0).total()), 3u);
    whole = load_relaxed(row_minute(kMetricsMinutes));
    EXPECT_NE(whole, 0u);
    EXPECT_EQ(whole % 2, 0u);
  }
  ASSERT_NO_FATAL_FAILURE(reopen());
  // The dead start: the word made odd, the cells not yet cleared.
  store_relaxed(row_minute(kMetricsMinutes), whole | 1);
  EXPECT_EQ(submitted(read(at(kBase), 0).total()), 0u);
  EXPECT_EQ(submitted(read(at(kBase), 1).total()), 3u);  // the minute rows are not touched

  MetricsWriter w(*seg_, at(kBase + 1));
  w.count(1, w.column("a"), Outcome::kSubmitted);
  const uint64_t next = load_relaxed(row_minute(kMetricsMinutes));
  EXPECT_GT(next, whole);
  EXPECT_EQ(next % 2, 0u);
  const MetricsSnapshot life = read(at(kBase + 1), 0);
  EXPECT_EQ(submitted(life.bands[0]), 0u);
  EXPECT_EQ(submitted(life.bands[1]), 1u);
}

// --- the minute window -------------------------------------------------------

// Minute kBase + i gets i + 1 submitted requests, i < n, in band 0.
void write_minutes(MetricsWriter& w, uint32_t n) {
  const uint8_t a = w.column("a");
  for (uint32_t i = 0; i < n; ++i) {
    w.roll(at(kBase + i));
    for (uint32_t k = 0; k <= i; ++k) w.count(0, a, Outcome::kSubmitted);
  }
}

TEST_F(Metrics, PeriodOneSeesOnlyTheMinuteHoldingNow) {
  MetricsWriter w(*seg_, at(kBase));
  write_minutes(w, 5);
  for (uint32_t i = 0; i < 5; ++i) {
    for (const uint64_t now : {first_ns(kBase + i), at(kBase + i), last_ns(kBase + i)}) {
      const MetricsSnapshot s = read(now, 1);
      EXPECT_EQ(s.minutes, 1u);
      EXPECT_EQ(submitted(s.bands[0]), i + 1) << "minute " << i << " now " << now;
    }
  }
}

TEST_F(Metrics, PeriodNSumsTheLastNMinutes) {
  MetricsWriter w(*seg_, at(kBase));
  write_minutes(w, 20);  // rows 1430 .. 1439, 0 .. 9
  for (uint32_t n = 1; n <= 20; ++n) {
    const MetricsSnapshot s = read(at(kBase + 19), n);
    EXPECT_EQ(s.minutes, n);
    // Minutes 20 - n + 1 .. 20 of 1 .. 20.
    EXPECT_EQ(submitted(s.bands[0]), (20 * 21 - (20 - n) * (21 - n)) / 2) << "period " << n;
  }
  // A window that ends in the past does not see the minutes after it.
  EXPECT_EQ(submitted(read(at(kBase + 9), 3).bands[0]), 8u + 9 + 10);
  // Longer than what was written: the same as everything.
  EXPECT_EQ(submitted(read(at(kBase + 19), 100).bands[0]), 210u);
}

TEST_F(Metrics, AMinuteNotWrittenReadsZero) {
  MetricsWriter w(*seg_, at(kBase));
  const uint8_t a = w.column("a");
  w.count(0, a, Outcome::kSubmitted);
  w.roll(at(kBase + 3));  // kBase + 1 and + 2 skipped
  for (int i = 0; i < 2; ++i) w.count(0, a, Outcome::kSubmitted);

  EXPECT_EQ(submitted(read(at(kBase + 1), 1).total()), 0u);
  EXPECT_EQ(submitted(read(at(kBase + 2), 2).total()), 0u);
  EXPECT_EQ(submitted(read(at(kBase + 2), 3).total()), 1u);
  EXPECT_EQ(submitted(read(at(kBase + 3), 4).total()), 3u);
  // Minutes not come yet.
  EXPECT_EQ(submitted(read(at(kBase + 10), 7).total()), 0u);
  EXPECT_EQ(submitted(read(at(kBase + 10), 8).total()), 2u);
}

TEST_F(Metrics, ASkippedRowStillHoldingADayOldMinuteReadsZero) {
  MetricsWriter w(*seg_, at(kBase + 1 - kMetricsMinutes));
  const uint8_t a = w.column("a");
  for (int i = 0; i < 5; ++i) w.count(0, a, Outcome::kSubmitted);  // the day-old minute
  w.roll(at(kBase));
  w.count(1, a, Outcome::kSubmitted);
  w.roll(at(kBase + 2));  // kBase + 1 skipped: its row still holds the day-old minute
  w.count(2, a, Outcome::kSubmitted);

  EXPECT_EQ(submitted(read(at(kBase + 1), 1).total()), 0u);
  const MetricsSnapshot s = read(at(kBase + 2), 3);
  EXPECT_EQ(submitted(s.bands[0]), 0u);
  EXPECT_EQ(submitted(s.bands[1]), 1u);
  EXPECT_EQ(submitted(s.bands[2]), 1u);
  // The day-old minute is still there for a window that ends on it.
  EXPECT_EQ(submitted(read(at(kBase + 1 - kMetricsMinutes), 1).total()), 5u);
}

TEST_F(Metrics, RollingIntoARowThatHeldTheSameMinuteADayEarlierClearsIt) {
  MetricsWriter w(*seg_, at(kBase));
  const uint8_t a = w.column("a");
  const uint8_t b = w.column("b");
  for (int i = 0; i < 5; ++i) w.count(0, a, Outcome::kSubmitted);
  w.waited(0, a, us(100));
  w.processed(0, a, us(2000));
  w.roll(at(kBase + 1));
  w.count(0, a, Outcome::kSubmitted);
  w.roll(at(kBase + kMetricsMinutes));  // kBase's row
  w.count(1, b, Outcome::kCompleted);
  w.waited(1, b, us(3));

  const MetricsSnapshot s = read(at(kBase + kMetricsMinutes), 1);
  EXPECT_EQ(submitted(s.total()), 0u);
  EXPECT_EQ(s.bands[1].count(Outcome::kCompleted), 1u);
  EXPECT_EQ(submitted(*find_type(s, "a")), 0u);
  const MetricsTotals t = s.total();
  EXPECT_EQ(t.wait_count, 1u);
  EXPECT_EQ(t.wait_sum_us, 3u);
  EXPECT_EQ(t.wait_max_us, 3u);
  EXPECT_EQ(t.wait[MinuteBuckets::index(100)], 0u);
  EXPECT_EQ(t.processing_count, 0u);
  EXPECT_EQ(t.processing_max_us, 0u);
  EXPECT_EQ(t.processing[MinuteBuckets::index(2000)], 0u);
  // kBase's minute is gone; kBase + 1 is still in the day's window.
  EXPECT_EQ(submitted(read(at(kBase), 1).total()), 0u);
  EXPECT_EQ(submitted(read(at(kBase + kMetricsMinutes), kMetricsMinutes).total()), 1u);
  // The since-start row kept everything.
  EXPECT_EQ(submitted(read(at(kBase + kMetricsMinutes), 0).total()), 6u);
}

TEST_F(Metrics, PeriodIsClampedToOneDay) {
  MetricsWriter w(*seg_, at(kBase));
  const uint8_t a = w.column("a");
  w.count(0, a, Outcome::kSubmitted);
  w.roll(at(kBase + kMetricsMinutes - 1));
  for (int i = 0; i < 2; ++i) w.count(0, a, Outcome::kSubmitted);
  for (const uint32_t period :
       {kMetricsMinutes, kMetricsMinutes + 1, 100'000u, std::numeric_limits<uint32_t>::max()}) {
    const MetricsSnapshot s = read(at(kBase + kMetricsMinutes - 1), period);
    EXPECT_EQ(s.minutes, kMetricsMinutes) << period;
    EXPECT_EQ(submitted(s.total()), 3u) << period;
  }
  EXPECT_EQ(submitted(read(at(kBase + kMetricsMinutes - 1), kMetricsMinutes - 1).total()), 2u);
}

// Minute 1 is the first (0 marks a row empty or being cleared): a window
// near the epoch stops there, and never reads a row with a zero minute word
// as if it held "minute 0".
TEST_F(Metrics, MinutesBeforeTheFirstAreNotRead) {
  MetricsWriter w(*seg_, at(kMetricsMinutes));  // minute 1440: row 0
  const uint8_t a = w.column("a");
  for (int i = 0; i < 7; ++i) w.count(0, a, Outcome::kSubmitted);
  w.roll(at(1));
  w.count(0, a, Outcome::kSubmitted);
  w.roll(at(2));
  w.count(1, a, Outcome::kSubmitted);
  // Row 0 caught being cleared: its minute word is 0, its cells not yet.
  store_relaxed(row_minute(0), uint64_t{0});

  for (const uint32_t period : {2u, 3u, kMetricsMinutes}) {
    const MetricsSnapshot s = read(at(2), period);
    EXPECT_EQ(submitted(s.bands[0]), 1u) << period;
    EXPECT_EQ(submitted(s.bands[1]), 1u) << period;
  }
  EXPECT_EQ(submitted(read(0, kMetricsMinutes).total()), 1u);
  EXPECT_EQ(submitted(read(last_ns(1), 5).total()), 1u);
}

// --- percentiles from the minute histograms ----------------------------------

// Order statistic with percentile()'s rank rule: ceil(q * n), 1-based.
uint64_t exact_percentile(const std::vector<uint64_t>& sorted, double q) {
  const auto rank = std::clamp<uint64_t>(
      static_cast<uint64_t>(std::ceil(q * static_cast<double>(sorted.size()))), 1, sorted.size());
  return sorted[rank - 1];
}

// Never below the exact value, and below 9/8 of it (8 buckets per power of two).
void expect_within_an_eighth(uint64_t reported, uint64_t exact, double q) {
  EXPECT_GE(reported, exact) << "q=" << q;
  EXPECT_LT(reported * 8, exact * 9) << "q=" << q << " reported=" << reported << " exact=" << exact;
}

TEST_F(Metrics, PercentilesAreAtLeastTheExactValueAndLessThanAnEighthAbove) {
  MetricsWriter w(*seg_, at(kBase));
  const uint8_t a = w.column("a");
  std::vector<uint64_t> waits, processing;
  // 1..1000 us of wait and 7..7000 us of processing, spread over two
  // minutes, two bands and both types, in a shuffled order.
  std::vector<uint64_t> v(1000);
  for (uint64_t i = 0; i < v.size(); ++i) v[i] = i + 1;
  std::shuffle(v.begin(), v.end(), std::mt19937_64(11));
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i == v.size() / 2) w.roll(at(kBase + 1));
    const auto band = static_cast<uint8_t>(i % 2);
    const uint8_t col = i % 3 == 0 ? a : w.column("b");
    w.waited(band, col, us(v[i]) + 999);  // the sub-microsecond part is dropped
    w.processed(band, col, us(7 * v[i]));
    waits.push_back(v[i]);
    processing.push_back(7 * v[i]);
  }
  std::sort(waits.begin(), waits.end());
  std::sort(processing.begin(), processing.end());

  const MetricsTotals t = read(at(kBase + 1), 2).total();
  ASSERT_EQ(t.wait_count, 1000u);
  ASSERT_EQ(t.processing_count, 1000u);
  EXPECT_EQ(t.wait_sum_us, 500'500u);
  EXPECT_EQ(t.processing_sum_us, 7u * 500'500);
  // Ranks q * 1000 whole and not (0.0015: the 2nd smallest, not the 1st).
  for (const double q : {0.001, 0.0015, 0.01, 0.0125, 0.1, 0.25, 0.333, 0.5, 0.6667, 0.75, 0.9,
                         0.95, 0.99, 0.9985, 0.999}) {
    expect_within_an_eighth(t.wait_percentile_us(q), exact_percentile(waits, q), q);
    expect_within_an_eighth(t.processing_percentile_us(q), exact_percentile(processing, q), q);
  }
  EXPECT_EQ(t.wait_percentile_us(1.0), 1000u);
  EXPECT_EQ(t.processing_percentile_us(1.0), 7000u);
  // Values below 16 us have a bucket each: exact.
  EXPECT_EQ(t.wait_percentile_us(0.005), 5u);
  EXPECT_EQ(t.wait_percentile_us(0.015), 15u);
}

TEST_F(Metrics, PercentilesOfNothingAreZero) {
  MetricsWriter w(*seg_, at(kBase));
  w.count(0, w.column("a"), Outcome::kSubmitted);
  const MetricsTotals t = read(at(kBase), 1).total();
  for (const double q : {0.001, 0.5, 0.99, 1.0}) {
    EXPECT_EQ(t.wait_percentile_us(q), 0u) << q;
    EXPECT_EQ(t.processing_percentile_us(q), 0u) << q;
  }
}

// The cells keep microseconds in u32: 2^32 - 1 us (71 minutes) and below are
// kept exactly in max and sum; anything longer is recorded as 2^32 - 1 us,
// in the last bucket, the max and the sum alike.
TEST_F(Metrics, ValuesBeyondTwoToTheThirtyTwoMicrosecondsSaturateInTheLastBucket) {
  constexpr uint64_t kMaxUs = std::numeric_limits<uint32_t>::max();
  constexpr std::size_t kLast = kMinuteBuckets - 1;
  MetricsWriter w(*seg_, at(kBase));
  const uint8_t a = w.column("a");
  w.waited(0, a, us(3'000'000'000));  // 50 minutes: tracked, exact max
  EXPECT_EQ(read(at(kBase), 1).total().wait_max_us, 3'000'000'000u);
  EXPECT_EQ(read(at(kBase), 1).total().wait_percentile_us(1.0), 3'000'000'000u);

  w.roll(at(kBase + 1));
  w.waited(0, a, us(kMaxUs));
  w.processed(0, a, us(kMaxUs + 1));
  w.processed(0, a, us(uint64_t{1} << 40));
  w.processed(0, a, std::numeric_limits<uint64_t>::max());
  const MetricsTotals t = read(at(kBase + 1), 1).total();
  EXPECT_EQ(t.wait[kLast], 1u);
  EXPECT_EQ(t.wait_max_us, kMaxUs);
  EXPECT_EQ(t.processing[kLast], 3u);
  EXPECT_EQ(t.processing_count, 3u);
  EXPECT_EQ(t.processing_max_us, kMaxUs);
  EXPECT_EQ(t.processing_sum_us, 3 * kMaxUs);
  EXPECT_EQ(t.processing_percentile_us(0.5), kMaxUs);
  EXPECT_EQ(t.processing_percentile_us(1.0), kMaxUs);
}

// --- LogLinearBuckets<3, 32> --------------------------------------------------

static_assert(MinuteBuckets::kBucketCount == 240);
static_assert(kMinuteBuckets == 240);
static_assert(MinuteBuckets::index(MinuteBuckets::kTrackableMax) == 239);
static_assert(MinuteBuckets::upper(239) == (uint64_t{1} << 32) - 1);
static_assert(MinuteBuckets::index(uint64_t{1} << 40) == 239);

void expect_bucket_holds(uint64_t v) {
  const std::size_t i = MinuteBuckets::index(v);
  ASSERT_LT(i, kMinuteBuckets) << v;
  EXPECT_LE(MinuteBuckets::lower(i), v) << v;
  EXPECT_GE(MinuteBuckets::upper(i), v) << v;
  // The upper edge overstates v by less than an eighth of it.
  EXPECT_LT((MinuteBuckets::upper(i) - v) * 8, std::max<uint64_t>(v, 1)) << v;
}

TEST(MinuteBuckets, EveryBucketIsContiguousWithTheNextAndMapsBackToItself) {
  EXPECT_EQ(MinuteBuckets::lower(0), 0u);
  for (std::size_t i = 0; i < kMinuteBuckets; ++i) {
    EXPECT_EQ(MinuteBuckets::index(MinuteBuckets::lower(i)), i);
    EXPECT_EQ(MinuteBuckets::index(MinuteBuckets::upper(i)), i);
    if (i + 1 < kMinuteBuckets) {
      EXPECT_EQ(MinuteBuckets::upper(i) + 1, MinuteBuckets::lower(i + 1)) << i;
    }
  }
  // Below 16 a bucket per value, then 8 per power of two.
  for (uint64_t v = 0; v < 16; ++v) EXPECT_EQ(MinuteBuckets::index(v), v);
  EXPECT_EQ(MinuteBuckets::index(16), 16u);
  EXPECT_EQ(MinuteBuckets::index(17), 16u);
  EXPECT_EQ(MinuteBuckets::index(31), 23u);
  EXPECT_EQ(MinuteBuckets::index(32), 24u);
}

TEST(MinuteBuckets, EveryValueLiesWithinItsBucket) {
  for (uint64_t v = 0; v < 70'000; ++v) expect_bucket_holds(v);
  for (uint32_t k = 1; k < 32; ++k) {
    const uint64_t p = uint64_t{1} << k;
    for (const uint64_t v : {p - 1, p, p + 1, p + p / 2, 2 * p - 1}) expect_bucket_holds(v);
  }
  std::mt19937_64 rng(5);
  for (int i = 0; i < 100'000; ++i) expect_bucket_holds((rng() >> 32) >> (rng() % 32));
  // Beyond the range: the last bucket.
  EXPECT_EQ(MinuteBuckets::index(uint64_t{1} << 32), kMinuteBuckets - 1);
  EXPECT_EQ(MinuteBuckets::index(std::numeric_limits<uint64_t>::max()), kMinuteBuckets - 1);
}

// --- a reader racing the writer ----------------------------------------------

// What a reader saw, checked after the threads are joined.
struct Findings {
  uint64_t reads = 0;
  uint64_t violations = 0;
  std::string first;
  void fail(const std::string& what) {
    if (violations++ == 0) first = what;
  }
};

// The reader's side of pace(): up to kReadsPerStep reads per writer step,
// then it yields until the writer moves (on a busy machine the two may
// share a core).
class ReadTurns {
 public:
  // Whether to read now, with `step` the writer's last published step.
  bool begin(uint64_t step) {
    if (step != step_) {
      step_ = step;
      same_ = 0;
    }
    if (++same_ <= kReadsPerStep) return true;
    std::this_thread::yield();
    return false;
  }

 private:
  static constexpr uint32_t kReadsPerStep = 256;
  uint64_t step_ = 0;
  uint32_t same_ = 0;
};

// Times the writer's next step against the reader without a clock: waits
// (bounded) until the reader announces a read that begins after `step`,
// then spins a number of turns that differs from step to step (1 to 2^16),
// so that over a run the step lands on every part of a read.
void pace(const std::atomic<uint64_t>& reading, uint64_t step) {
  for (uint32_t spin = 0; spin < 1'000'000; ++spin) {  // bound: the reader announces each turn
    if (reading.load(std::memory_order_acquire) >= step) break;
    std::this_thread::yield();
  }
  const uint64_t span = uint64_t{1} << (step % 16);
  const uint64_t turns = span + step * 7919 % span;
  for (uint64_t k = 0; k < turns; ++k) (void)reading.load(std::memory_order_relaxed);
}

// read_metrics allocates its buffers on each call. With glibc's defaults
// each call hands them back to the kernel and faults them in again, which
// takes far longer than the copy of the rows: a writer's step would seldom
// land on the copy. Keeping the heap makes the copy most of a read.
void keep_heap() {
  (void)mallopt(M_TRIM_THRESHOLD, 64 << 20);
  (void)mallopt(M_MMAP_THRESHOLD, 16 << 20);
}

// The writer fills a day of minutes, then, racing a reader, rolls through
// kRaceMinutes more, each into a row that holds the minute a day before.
// Minute m gets exactly per_minute(m) submitted and as many completed
// requests, all of type "a", all in band band_of(m): the band changes with
// the day, so a row that mixed a minute with the one a day later would show
// counts in two bands. The reader checks every snapshot against what whole
// rows could give: never more than was written for a minute, nothing in a
// band that no minute of the window wrote to, and for minutes finished
// before the read, counts that agree across cells (a row half cleared would
// not).
constexpr uint64_t kRaceStart = kBase;
constexpr uint32_t kRaceMinutes = 600;
constexpr uint64_t kRaceEnd = kRaceStart + kMetricsMinutes + kRaceMinutes;  // past the last

uint32_t per_minute(uint64_t m) {
  return 1 + static_cast<uint32_t>(m % 3);
}
uint8_t band_of(uint64_t m) {
  return static_cast<uint8_t>((m - kRaceStart) / kMetricsMinutes % kBandCount);
}
bool race_written(uint64_t m) {
  return m >= kRaceStart && m < kRaceEnd;
}

class MetricsRace : public Metrics {
 protected:
  void SetUp() override { open(1); }
};

TEST_F(MetricsRace, AConcurrentReaderNeverAddsATornRow) {
  keep_heap();
  // cum[i]: submitted over the first i minutes.
  std::vector<uint64_t> cum(kRaceEnd - kRaceStart + 1, 0);
  for (uint64_t i = 0; i + 1 < cum.size(); ++i) cum[i + 1] = cum[i] + per_minute(kRaceStart + i);

  MetricsWriter w(*seg_, at(kRaceStart));
  const uint8_t a = w.column("a");
  auto write_minute = [&](uint64_t m) {
    w.roll(at(m));
    for (uint32_t k = 0; k < per_minute(m); ++k) {
      w.count(band_of(m), a, Outcome::kSubmitted);
      w.count(band_of(m), a, Outcome::kCompleted);
    }
  };
  const uint64_t first_racing = kRaceStart + kMetricsMinutes;
  for (uint64_t m = kRaceStart; m < first_racing; ++m) write_minute(m);

  // The last minute whose counts are all written.
  std::atomic<uint64_t> done{first_racing - 1};
  // The `done` the reader's current read began from.
  std::atomic<uint64_t> reading{0};
  std::atomic<bool> finished{false};
  std::latch start(2);
  std::thread writer([&] {
    start.arrive_and_wait();
    for (uint64_t m = first_racing; m < kRaceEnd; ++m) {
      pace(reading, m - 1);
      write_minute(m);
      done.store(m, std::memory_order_release);  // acquire: the reader's loads of `done`
    }
    finished.store(true, std::memory_order_release);
  });

  // {lag behind the last finished minute, period}: mostly the row the
  // writer recycles next (lag kMetricsMinutes), and the live minute, a
  // finished one, and the since-start row (period 0).
  struct Read {
    uint64_t lag;
    uint32_t period;
  };
  constexpr Read kReads[] = {{kMetricsMinutes, 1},     {kMetricsMinutes - 1, 2},
                             {kMetricsMinutes, 1},     {0, 1},
                             {kMetricsMinutes, 1},     {1, 2},
                             {kMetricsMinutes + 1, 1}, {0, 0}};
  Findings f;
  ReadTurns reader;
  start.arrive_and_wait();
  bool last = false;
  // Bound: the writer's kRaceMinutes minutes, and at most 10'000'000 turns.
  for (uint64_t i = 0; i < 10'000'000 && !last; ++i) {
    last = finished.load(std::memory_order_acquire);
    const uint64_t d = done.load(std::memory_order_acquire);
    if (!reader.begin(d)) continue;
    reading.store(d, std::memory_order_release);  // acquire: pace()
    const Read r = kReads[i % std::size(kReads)];
    const uint64_t now_m = d + 1 - r.lag;
    const MetricsSnapshot s = read_metrics(*seg_, at(now_m), r.period);
    const uint64_t d2 = done.load(std::memory_order_acquire);
    ++f.reads;
    const std::string where = "minute " + std::to_string(now_m) + " period " +
                              std::to_string(r.period) + " done " + std::to_string(d) + ".." +
                              std::to_string(d2) + ": ";
    if (r.period == 0) {
      // The since-start row: between what was written before the read and
      // what could be written by its end.
      const uint64_t lo = cum[d - kRaceStart + 1];
      const uint64_t hi = cum[std::min<uint64_t>(d2 + 2, kRaceEnd) - kRaceStart];
      const MetricsTotals t = s.total();
      if (submitted(t) < lo || submitted(t) > hi || t.count(Outcome::kCompleted) > hi) {
        f.fail(where + std::to_string(submitted(t)) + " submitted, " +
               std::to_string(t.count(Outcome::kCompleted)) + " completed, expected " +
               std::to_string(lo) + ".." + std::to_string(hi));
      }
      continue;
    }
    if (s.types.size() != 1 || s.types[0].first != "a") {
      f.fail(where + "types other than 'a'");
      continue;
    }
    const MetricsTotals& ta = s.types[0].second;
    // Whether every minute of the window was finished before the read, and
    // what each band may hold.
    bool finished_window = true;
    std::array<uint64_t, kBandCount> bound{};
    uint64_t window_bound = 0;
    for (uint64_t m = now_m + 1 - r.period; m <= now_m; ++m) {
      if (m > d) finished_window = false;
      // Not written, or recycled by a roll finished before the read began.
      if (!race_written(m) || m + kMetricsMinutes <= d) continue;
      bound[band_of(m)] += per_minute(m);
      window_bound += per_minute(m);
    }
    uint64_t sum_sub = 0, sum_comp = 0;
    for (uint8_t b = 0; b < kBandCount; ++b) {
      const MetricsTotals& t = s.bands[b];
      const uint64_t sub = submitted(t), comp = t.count(Outcome::kCompleted);
      sum_sub += sub;
      sum_comp += comp;
      if (sub > bound[b] || comp > bound[b]) {
        f.fail(where + "band " + std::to_string(b) + " has " + std::to_string(sub) +
               " submitted, " + std::to_string(comp) + " completed, at most " +
               std::to_string(bound[b]) + " written");
      }
      if (finished_window && sub != comp) {
        f.fail(where + "band " + std::to_string(b) + " of finished minutes has " +
               std::to_string(sub) + " submitted but " + std::to_string(comp) + " completed");
      }
      for (const Outcome o :
           {Outcome::kFailed, Outcome::kTimeout, Outcome::kCancelled, Outcome::kRetried}) {
        if (t.count(o) != 0) f.fail(where + "an outcome never written");
      }
    }
    if (submitted(ta) > window_bound || ta.count(Outcome::kCompleted) > window_bound) {
      f.fail(where + "type 'a' has more than was written");
    }
    if (finished_window &&
        (submitted(ta) != sum_sub || ta.count(Outcome::kCompleted) != sum_comp)) {
      f.fail(where + "type 'a' has " + std::to_string(submitted(ta)) + " submitted, the bands " +
             std::to_string(sum_sub));
    }
    // A finished minute whose row no roll could have reached by the end of
    // the read is there whole.
    if (r.period == 1 && finished_window && race_written(now_m) &&
        now_m + kMetricsMinutes > d2 + 1 && sum_sub != per_minute(now_m)) {
      f.fail(where + "a finished minute reads " + std::to_string(sum_sub) + " instead of " +
             std::to_string(per_minute(now_m)));
    }
  }
  reading.store(UINT64_MAX, std::memory_order_release);  // pace() waits no more
  writer.join();
  EXPECT_EQ(f.violations, 0u) << "first of " << f.violations << " in " << f.reads
                              << " reads: " << f.first;
  // After the writer: the last day, whole, and everything since the start.
  const uint64_t n = kRaceEnd - kRaceStart;
  EXPECT_EQ(submitted(read(at(kRaceEnd - 1), kMetricsMinutes).total()),
            cum[n] - cum[n - kMetricsMinutes]);
  EXPECT_EQ(submitted(read(at(kRaceEnd - 1), 0).total()), cum[n]);
}

// An agent restart while a reader copies the since-start row. Generation g
// (one writer's life, g >= 1) counts gen_count(g) requests of outcome g % 6
// in band g % 4 and in one of the last two type columns, then publishes g.
// A whole row of one generation has its band cell and its type cell equal
// and nothing in the cells of other generations; a row whose copy a
// restart's clear overtook would keep the band cell (copied before the
// clear) and lose the type cell (copied after).
constexpr uint32_t kRestarts = 600;
constexpr uint32_t kRestartTypes = 16;
// Generations whose cells are c1's too: its type cell comes back after
// lcm(2 columns, 6 outcomes) = 6, its band cell after lcm(4, 6) = 12.
constexpr uint32_t kRestartAlias = 6;

uint32_t gen_count(uint64_t g) {
  return 10 + static_cast<uint32_t>(g % 5);
}
uint8_t gen_band(uint64_t g) {
  return static_cast<uint8_t>(g % kBandCount);
}
uint8_t gen_outcome(uint64_t g) {
  return static_cast<uint8_t>(g % kOutcomeCount);
}
// A column far from the bands, so that the copy spends long between the two.
uint8_t gen_column(uint64_t g) {
  return static_cast<uint8_t>(kRestartTypes - 1 - g % 2);
}

class MetricsRestartRace : public Metrics {
 protected:
  void SetUp() override { open(kRestartTypes); }
};

TEST_F(MetricsRestartRace, ARestartWhileReadingNeverMixesTwoLifetimes) {
  keep_heap();
  {
    MetricsWriter w(*seg_, at(kBase));
    for (uint32_t c = 0; c < kRestartTypes; ++c) {
      std::string name = std::to_string(c);  // not "t" + ...: GCC 12's -Wrestrict misfires
      name.insert(0, 1, 't');
      ASSERT_EQ(w.column(name), c);
    }
  }
  // The last generation whose counts are all written.
  std::atomic<uint64_t> counted{0};
  // The `counted` the reader's current read began from.
  std::atomic<uint64_t> reading{0};
  std::atomic<bool> finished{false};
  std::latch start(2);
  std::thread writer([&] {
    start.arrive_and_wait();
    for (uint64_t g = 1; g <= kRestarts; ++g) {
      MetricsWriter w(*seg_, at(kBase) + g);
      for (uint32_t k = 0; k < gen_count(g); ++k) {
        w.count(gen_band(g), gen_column(g), static_cast<Outcome>(gen_outcome(g)));
      }
      counted.store(g, std::memory_order_release);  // acquire: the reader's loads of `counted`
      pace(reading, g);
    }
    finished.store(true, std::memory_order_release);
  });

  Findings f;
  ReadTurns reader;
  uint64_t checked = 0;
  start.arrive_and_wait();
  bool last = false;
  // Bound: the writer's kRestarts generations, and at most 10'000'000 turns.
  for (uint32_t i = 0; i < 10'000'000 && !last; ++i) {
    last = finished.load(std::memory_order_acquire);
    const uint64_t c1 = counted.load(std::memory_order_acquire);
    if (!reader.begin(c1)) continue;
    reading.store(c1, std::memory_order_release);  // acquire: pace()
    const MetricsSnapshot s = read_metrics(*seg_, at(kBase), 0);
    const uint64_t c2 = counted.load(std::memory_order_acquire);
    ++f.reads;
    const std::string where =
        "generations " + std::to_string(c1) + ".." + std::to_string(c2 + 1) + ": ";
    if (s.types.size() != kRestartTypes) {
      f.fail(where + std::to_string(s.types.size()) + " types");
      continue;
    }
    // The row is one of generations c1 .. c2 + 1; a cell holds at most what
    // one of them wrote there.
    const uint64_t hi = std::min<uint64_t>(c2 + 1, kRestarts);
    auto may_hold = [&](bool band_cell, uint8_t cell, uint8_t o, uint64_t v) {
      if (v == 0) return true;
      for (uint64_t g = std::max<uint64_t>(c1, 1); g <= hi; ++g) {
        const bool mine = band_cell ? gen_band(g) == cell : gen_column(g) == cell;
        if (mine && gen_outcome(g) == o && v <= gen_count(g)) return true;
      }
      return false;
    };
    for (uint8_t o = 0; o < kOutcomeCount; ++o) {
      for (uint8_t b = 0; b < kBandCount; ++b) {
        if (!may_hold(true, b, o, s.bands[b].counts[o])) {
          f.fail(where + "band " + std::to_string(b) + " outcome " + std::to_string(o) + " = " +
                 std::to_string(s.bands[b].counts[o]));
        }
      }
      for (uint8_t c = 0; c < kRestartTypes; ++c) {
        if (!may_hold(false, c, o, s.types[c].second.counts[o])) {
          f.fail(where + "type " + std::to_string(c) + " outcome " + std::to_string(o) + " = " +
                 std::to_string(s.types[c].second.counts[o]));
        }
      }
    }
    // Generation c1 was whole before the read began: its two cells read
    // gen_count(c1) both (the row was c1's) or 0 both (a later one's),
    // unless a later generation within the read shares one of them.
    if (c1 == 0 || c2 + 1 >= c1 + kRestartAlias) continue;
    ++checked;
    const uint64_t band = s.bands[gen_band(c1)].counts[gen_outcome(c1)];
    const uint64_t type = s.types[gen_column(c1)].second.counts[gen_outcome(c1)];
    if (band != type) {
      f.fail(where + "generation " + std::to_string(c1) + " has " + std::to_string(band) +
             " in its band and " + std::to_string(type) + " in its type");
    }
  }
  reading.store(UINT64_MAX, std::memory_order_release);  // pace() waits no more
  writer.join();
  EXPECT_EQ(f.violations, 0u) << "first of " << f.violations << " in " << f.reads << " reads ("
                              << checked << " checked whole): " << f.first;
  const MetricsSnapshot s = read_metrics(*seg_, at(kBase), 0);
  EXPECT_EQ(s.total().counts[gen_outcome(kRestarts)], gen_count(kRestarts));
  EXPECT_EQ(s.started_unix_ns, at(kBase) + kRestarts);
}

}  // namespace
}  // namespace perfq::shm
