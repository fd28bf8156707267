#include "perfq/core/histogram.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

namespace perfq {
namespace {

using H = LogLinearHistogram;

// Order statistic with the same rank rule as percentile(): ceil(q * n), 1-based.
uint64_t exact_percentile(const std::vector<uint64_t>& sorted, double q) {
  const auto n = static_cast<double>(sorted.size());
  const auto rank = std::clamp<uint64_t>(static_cast<uint64_t>(std::ceil(q * n)), 1, sorted.size());
  return sorted[rank - 1];
}

// percentile() reports a bucket's upper bound: never below the true value, and
// above it by less than 1/32 of it.
void expect_within_precision(uint64_t reported, uint64_t exact) {
  EXPECT_GE(reported, exact);
  EXPECT_LE(static_cast<double>(reported - exact), static_cast<double>(exact) / 32.0)
      << "reported=" << reported << " exact=" << exact;
}

TEST(LogLinearHistogram, EmptyHistogramReportsZeros) {
  const H h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.mean(), 0.0);
  EXPECT_EQ(h.percentile(0.0), 0u);
  EXPECT_EQ(h.percentile(0.5), 0u);
  EXPECT_EQ(h.percentile(1.0), 0u);
}

TEST(LogLinearHistogram, SmallValuesAreRecordedExactly) {
  H h;
  for (uint64_t v = 0; v < 64; ++v) h.record(v);
  EXPECT_EQ(h.count(), 64u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.max(), 63u);
  EXPECT_DOUBLE_EQ(h.mean(), 31.5);
  // 64 distinct values, one per exact bucket: the k-th of 64 is k-1.
  EXPECT_EQ(h.percentile(1.0 / 64.0), 0u);
  EXPECT_EQ(h.percentile(0.5), 31u);
  EXPECT_EQ(h.percentile(63.0 / 64.0), 62u);
}

TEST(LogLinearHistogram, EveryValueFallsInsideItsBucketBounds) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 200000; ++i) {
    const uint64_t v = rng() >> (rng() % 64);
    const std::size_t idx = H::bucket_index(v);
    ASSERT_LT(idx, H::kBucketCount);
    if (v <= H::kTrackableMax) {
      ASSERT_LE(H::bucket_lower(idx), v);
      ASSERT_GE(H::bucket_upper(idx), v);
      ASSERT_LE(static_cast<double>(H::bucket_upper(idx) - v), static_cast<double>(v) / 32.0);
    }
  }
}

TEST(LogLinearHistogram, BucketsTileTheRangeWithoutGapsOrOverlap) {
  EXPECT_EQ(H::bucket_lower(0), 0u);
  for (std::size_t i = 1; i < H::kBucketCount; ++i) {
    ASSERT_EQ(H::bucket_lower(i), H::bucket_upper(i - 1) + 1) << "index " << i;
    ASSERT_EQ(H::bucket_index(H::bucket_lower(i)), i);
    ASSERT_EQ(H::bucket_index(H::bucket_upper(i)), i);
  }
  EXPECT_EQ(H::bucket_upper(H::kBucketCount - 1), H::kTrackableMax);
}

TEST(LogLinearHistogram, PercentilesMatchSortedValuesWithinOneThirtySecond) {
  std::mt19937_64 rng(42);
  // Log-uniform over 1 ns .. ~1 s, the shape latency data usually has.
  std::uniform_real_distribution<double> exponent(0.0, 30.0);
  std::vector<uint64_t> values;
  H h;
  for (int i = 0; i < 100000; ++i) {
    const auto v = static_cast<uint64_t>(std::exp2(exponent(rng)));
    values.push_back(v);
    h.record(v);
  }
  std::sort(values.begin(), values.end());
  for (double q : {0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999}) {
    SCOPED_TRACE(q);
    expect_within_precision(h.percentile(q), exact_percentile(values, q));
  }
  EXPECT_EQ(h.percentile(1.0), values.back());
  EXPECT_EQ(h.percentile(0.0), values.front());
  EXPECT_EQ(h.min(), values.front());
  EXPECT_EQ(h.max(), values.back());
  EXPECT_EQ(h.count(), values.size());
}

TEST(LogLinearHistogram, PercentileNeverExceedsMax) {
  H h;
  h.record(1000);  // bucket [992, 1023]
  h.record(1001);
  EXPECT_EQ(h.percentile(0.5), 1001u);
  EXPECT_EQ(h.percentile(0.99), 1001u);
}

TEST(LogLinearHistogram, MeanIsExactForModestValues) {
  H h;
  h.record(100);
  h.record(200);
  h.record(600);
  EXPECT_DOUBLE_EQ(h.mean(), 300.0);
}

TEST(LogLinearHistogram, MergeEqualsRecordingEverythingInOne) {
  std::mt19937_64 rng(3);
  H a, b, all;
  for (int i = 0; i < 5000; ++i) {
    const uint64_t v = rng() % 1'000'000;
    (i % 3 == 0 ? a : b).record(v);
    all.record(v);
  }
  H merged = a;
  merged.merge(b);
  EXPECT_EQ(merged.count(), all.count());
  EXPECT_EQ(merged.min(), all.min());
  EXPECT_EQ(merged.max(), all.max());
  EXPECT_NEAR(merged.mean(), all.mean(), 1e-6 * all.mean());
  for (double q : {0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0}) {
    EXPECT_EQ(merged.percentile(q), all.percentile(q)) << q;
  }
}

TEST(LogLinearHistogram, MergingAnEmptyHistogramChangesNothing) {
  H h;
  h.record(5);
  h.record(500);
  const H before = h;
  h.merge(H{});
  EXPECT_EQ(h.count(), before.count());
  EXPECT_EQ(h.min(), 5u);
  EXPECT_EQ(h.max(), 500u);

  H empty;
  empty.merge(before);
  EXPECT_EQ(empty.min(), 5u);
  EXPECT_EQ(empty.percentile(1.0), 500u);
}

TEST(LogLinearHistogram, HugeValuesClampIntoLastBucketButMaxStaysExact) {
  H h;
  const uint64_t huge = std::numeric_limits<uint64_t>::max();
  h.record(huge);
  h.record(H::kTrackableMax + 1);
  h.record(10);
  EXPECT_EQ(H::bucket_index(huge), H::kBucketCount - 1);
  EXPECT_EQ(h.count(), 3u);
  EXPECT_EQ(h.max(), huge);
  EXPECT_EQ(h.min(), 10u);
  EXPECT_EQ(h.percentile(1.0), huge);
  // Below q == 1 a clamped sample reports the last bucket's upper bound.
  EXPECT_EQ(h.percentile(0.5), H::kTrackableMax);
  EXPECT_EQ(h.percentile(0.1), 10u);
  EXPECT_GT(h.mean(), 0.0);
}

TEST(LogLinearHistogram, ResetReturnsToEmpty) {
  H h;
  h.record(123);
  h.reset();
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.percentile(0.5), 0u);
  h.record(7);
  EXPECT_EQ(h.min(), 7u);
}

TEST(LogLinearHistogram, CopiesByteForByte) {
  H h;
  h.record(42);
  h.record(4242);
  alignas(H) unsigned char raw[sizeof(H)];
  std::memcpy(raw, &h, sizeof(H));
  H copy;
  std::memcpy(&copy, raw, sizeof(H));
  EXPECT_EQ(copy.count(), 2u);
  EXPECT_EQ(copy.percentile(1.0), 4242u);
}

}  // namespace
}  // namespace perfq
