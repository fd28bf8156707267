// Log-linear latency histogram with fixed memory (HdrHistogram-like).
//
// Contract:
//   * One writer at a time; no internal synchronisation. Callers that share a
//     histogram between threads or processes own the exclusion, or give each
//     writer its own histogram and merge() them afterwards.
//   * Never allocates and never throws; every method is bounded by
//     kBucketCount.
//   * Trivially copyable and standard-layout with fixed-width fields, so a
//     snapshot may be memcpy'd into or out of shared memory.
//
// Bucket layout (kSubBucketBits = 5, so 32 sub-buckets per power of two):
//
//   value v          shift s = max(0, bit_width(v) - 6)   index = 32*s + (v >> s)
//   [0, 64)          0                                     [0, 64)      width 1
//   [64, 128)        1                                     [64, 96)     width 2
//   [128, 256)       2                                     [96, 128)    width 4
//   ...
//   [2^39, 2^40)     34                                    [1120, 1152) width 2^34
//
// Within [2^k, 2^(k+1)) every bucket is 2^(k-5) wide, so the upper bound of the
// bucket holding v overstates v by less than v/32. Values >= 2^40 are clamped
// into the last bucket; min()/max() still report them exactly.
#ifndef PERFQ_CORE_HISTOGRAM_HPP
#define PERFQ_CORE_HISTOGRAM_HPP

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "perfq/core/assert.hpp"

namespace perfq {

// The bucket arithmetic of a log-linear histogram with 2^SubBits buckets per
// power of two over [0, 2^ValueBits): shared by LogLinearHistogram and by the
// compact per-minute histograms the agent keeps in shared memory
// (shm/metrics.hpp), so both read percentiles the same way.
template <uint32_t SubBits, uint32_t ValueBits>
struct LogLinearBuckets {
  static_assert(SubBits >= 1 && ValueBits > SubBits + 1 && ValueBits <= 63);
  static constexpr uint32_t kSubBucketBits = SubBits;
  static constexpr uint32_t kSubBucketCount = uint32_t{1} << SubBits;
  static constexpr uint64_t kTrackableMax = (uint64_t{1} << ValueBits) - 1;
  static constexpr std::size_t kBucketCount =
      std::size_t{kSubBucketCount} * (ValueBits - SubBits + 1);

  // Index of the bucket that holds v; values above kTrackableMax share the last one.
  [[nodiscard]] static constexpr std::size_t index(uint64_t v) noexcept {
    const uint64_t clamped = std::min(v, kTrackableMax);
    // Values below 2 * kSubBucketCount are their own bucket (shift 0).
    const auto width_bits = static_cast<uint32_t>(std::bit_width(clamped));
    const uint32_t shift = width_bits > SubBits + 1 ? width_bits - SubBits - 1 : 0;
    return std::size_t{kSubBucketCount} * shift + static_cast<std::size_t>(clamped >> shift);
  }
  // Smallest and largest value that index() maps to i.
  [[nodiscard]] static constexpr uint64_t lower(std::size_t i) noexcept {
    PERFQ_ASSERT(i < kBucketCount);
    const std::size_t shift = i < 2 * kSubBucketCount ? 0 : i / kSubBucketCount - 1;
    const uint64_t mantissa = i - shift * kSubBucketCount;
    return mantissa << shift;
  }
  [[nodiscard]] static constexpr uint64_t upper(std::size_t i) noexcept {
    PERFQ_ASSERT(i < kBucketCount);
    const std::size_t shift = i < 2 * kSubBucketCount ? 0 : i / kSubBucketCount - 1;
    return lower(i) + (uint64_t{1} << shift) - 1;
  }
  // Value at quantile q in (0, 1) of `count` samples spread over `counts`:
  // the upper bound of the bucket holding the ceil(q * count)-th smallest
  // sample, capped at max. Never below the exact order statistic, and above
  // it by less than 1/kSubBucketCount of it. 0 when empty.
  template <class Counts>
  [[nodiscard]] static uint64_t percentile(const Counts& counts, uint64_t count, uint64_t max,
                                           double q) noexcept {
    if (count == 0) return 0;
    if (q >= 1.0) return max;
    const double rank_real = std::ceil(q * static_cast<double>(count));
    const uint64_t rank = std::clamp<uint64_t>(static_cast<uint64_t>(rank_real), 1, count);
    uint64_t seen = 0;
    for (std::size_t i = 0; i < kBucketCount; ++i) {
      seen += counts[i];
      if (seen >= rank) return std::min(upper(i), max);
    }
    // Unreachable while counts sums to count; max is the honest fallback.
    return max;
  }
};

class LogLinearHistogram {
 public:
  using Buckets = LogLinearBuckets<5, 40>;
  static constexpr uint32_t kSubBucketBits = Buckets::kSubBucketBits;
  static constexpr uint32_t kSubBucketCount = Buckets::kSubBucketCount;
  static constexpr uint32_t kValueBitsMax = 40;
  // Largest value recorded without clamping: 2^40 - 1 ns is about 18 minutes.
  static constexpr uint64_t kTrackableMax = Buckets::kTrackableMax;
  static constexpr std::size_t kBucketCount = Buckets::kBucketCount;

  LogLinearHistogram() noexcept = default;

  [[nodiscard]] static constexpr std::size_t bucket_index(uint64_t v) noexcept {
    return Buckets::index(v);
  }
  [[nodiscard]] static constexpr uint64_t bucket_lower(std::size_t index) noexcept {
    return Buckets::lower(index);
  }
  [[nodiscard]] static constexpr uint64_t bucket_upper(std::size_t index) noexcept {
    return Buckets::upper(index);
  }

  void record(uint64_t v) noexcept {
    ++counts_[bucket_index(v)];
    ++count_;
    min_ = std::min(min_, v);
    max_ = std::max(max_, v);
    sum_ += static_cast<double>(v);
  }

  void merge(const LogLinearHistogram& other) noexcept {
    for (std::size_t i = 0; i < kBucketCount; ++i) counts_[i] += other.counts_[i];
    count_ += other.count_;
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
    sum_ += other.sum_;
  }

  void reset() noexcept { *this = LogLinearHistogram{}; }

  [[nodiscard]] uint64_t count() const noexcept { return count_; }
  // 0 when empty, so an empty summary reads as all zeros.
  [[nodiscard]] uint64_t min() const noexcept { return count_ == 0 ? 0 : min_; }
  [[nodiscard]] uint64_t max() const noexcept { return max_; }
  [[nodiscard]] double mean() const noexcept {
    return count_ == 0 ? 0.0 : sum_ / static_cast<double>(count_);
  }

  // Value at quantile q in [0, 1]: the upper bound of the bucket holding the
  // ceil(q * count)-th smallest sample, capped at max(). So the result is never
  // below the exact order statistic and exceeds it by less than 1/32 of it.
  // q == 1 gives the exact max(), q == 0 the exact min(); 0 when empty.
  [[nodiscard]] uint64_t percentile(double q) const noexcept {
    PERFQ_ASSERT(q >= 0.0 && q <= 1.0);
    if (count_ == 0) return 0;
    if (!(q > 0.0)) return min();  // also catches NaN in release builds
    return Buckets::percentile(counts_, count_, max_, q);
  }

 private:
  std::array<uint64_t, kBucketCount> counts_{};
  uint64_t count_ = 0;
  // Sentinel so the first record()/merge() wins std::min without a branch.
  uint64_t min_ = std::numeric_limits<uint64_t>::max();
  uint64_t max_ = 0;
  // double, not uint64: clamped huge values would overflow an integer sum and a
  // mean needs only ~15 significant digits.
  double sum_ = 0.0;
};

static_assert(LogLinearHistogram::kBucketCount == 1152);
static_assert(LogLinearHistogram::bucket_index(LogLinearHistogram::kTrackableMax) ==
              LogLinearHistogram::kBucketCount - 1);
static_assert(LogLinearHistogram::bucket_upper(LogLinearHistogram::kBucketCount - 1) ==
              LogLinearHistogram::kTrackableMax);
static_assert(std::is_trivially_copyable_v<LogLinearHistogram>);
static_assert(std::is_standard_layout_v<LogLinearHistogram>);
static_assert(std::numeric_limits<double>::is_iec559, "sum_ is an IEEE-754 binary64 on the wire");
static_assert(sizeof(LogLinearHistogram) == LogLinearHistogram::kBucketCount * 8 + 4 * 8);

}  // namespace perfq

#endif  // PERFQ_CORE_HISTOGRAM_HPP
