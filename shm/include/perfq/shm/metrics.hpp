#pragma once
// Per-minute metrics history (SPEC §5 Metrics, Health), kept in the segment
// so that it outlives an agent restart and any process may read it.
//
// The region (docs/PROTOCOL.md §15) is a MetricsHeader, the names of the
// tracked types, then kMetricsMinutes + 1 rows. Row m % kMetricsMinutes holds
// wall-clock minute m; the last row holds everything since the agent started
// (for Prometheus counters, which must never go down). A row is one
// MetricsCell per band, one per tracked type, and one for the types beyond
// those (reported as "other").
//
// A cell counts outcomes and keeps two compact log-linear histograms in
// microseconds (wait: eligible -> dispatch of each attempt; processing:
// dispatch -> result of each attempt), with 8 buckets per power of two, so
// a percentile read from them is never below the true value and above it by
// less than an eighth of it.
//
// The agent's scheduler thread is the only writer: every word is stored with
// a relaxed atomic store. A row is a sequence lock on its `minute` word: the
// writer zeroes it, clears the row, then stores the new minute with release;
// readers check the word before (acquire) and after their copy (behind an
// acquire fence) and drop a row that changed. The since-start row's word
// counts agent starts instead (odd while a start clears the row, even after),
// so that a restart during a copy always changes it. Counters within a live
// row may be read mid-update; a reader sees each word either before or after
// the request that changes it.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "perfq/core/cache_line.hpp"
#include "perfq/core/histogram.hpp"
#include "perfq/core/request.hpp"

namespace perfq::shm {

class Segment;

inline constexpr uint32_t kMetricsMinutes = 1440;
inline constexpr uint32_t kMetricsTypesMax = 64;
// Microseconds, 8 buckets per power of two, up to 2^32 us (71 minutes).
using MinuteBuckets = LogLinearBuckets<3, 32>;
inline constexpr std::size_t kMinuteBuckets = MinuteBuckets::kBucketCount;

enum class Outcome : uint8_t {
  kSubmitted = 0,
  kCompleted = 1,
  kFailed = 2,
  kTimeout = 3,
  kCancelled = 4,
  kRetried = 5,
};
inline constexpr uint8_t kOutcomeCount = 6;

struct MetricsCell {
  uint32_t counts[kOutcomeCount];  // by Outcome
  uint32_t wait_count;
  uint32_t processing_count;
  uint64_t wait_sum_us;
  uint64_t processing_sum_us;
  uint32_t wait_max_us;
  uint32_t processing_max_us;
  uint32_t reserved[2];
  uint32_t wait[kMinuteBuckets];
  uint32_t processing[kMinuteBuckets];
};
static_assert(std::is_trivially_copyable_v<MetricsCell>);
static_assert(offsetof(MetricsCell, wait) == 64);
static_assert(sizeof(MetricsCell) == 1984);  // a multiple of 64: every u64 stays aligned

struct MetricsRowHeader {
  // Wall-clock minute since the epoch + 1; 0: empty or being cleared. The
  // since-start row: odd while an agent start clears it, then the next even.
  uint64_t minute;
  uint64_t reserved[7];
};
static_assert(sizeof(MetricsRowHeader) == 64);

struct MetricsTypeName {
  uint32_t len;
  uint32_t reserved0;
  char text[kTypeMaxBytes];  // 8-byte aligned: copied as words (store_shared_text)
  uint8_t reserved[56];
};
static_assert(offsetof(MetricsTypeName, text) == 8);
static_assert(sizeof(MetricsTypeName) == 128);

struct MetricsHeader {
  uint32_t minutes;  // kMetricsMinutes
  uint32_t types;    // tracked type columns
  uint64_t row_bytes;
  uint64_t agent_started_unix_ns;  // the lifetime row counts from here
  uint32_t type_count;             // names assigned so far (release)
  uint32_t reserved[9];
};
static_assert(sizeof(MetricsHeader) == 64);

[[nodiscard]] constexpr uint32_t metrics_cells_per_row(uint32_t types) noexcept {
  return kBandCount + types + 1;
}
[[nodiscard]] constexpr uint64_t metrics_row_bytes(uint32_t types) noexcept {
  return sizeof(MetricsRowHeader) + uint64_t{metrics_cells_per_row(types)} * sizeof(MetricsCell);
}
[[nodiscard]] constexpr uint64_t metrics_region_bytes(uint32_t types) noexcept {
  return sizeof(MetricsHeader) + uint64_t{types} * sizeof(MetricsTypeName) +
         uint64_t{kMetricsMinutes + 1} * metrics_row_bytes(types);
}

// The agent's side. Not thread-safe: the scheduler thread only.
class MetricsWriter {
 public:
  MetricsWriter() = default;
  // Binds to the segment's region and takes back the type names a previous
  // agent assigned; the lifetime row starts afresh at `now_unix_ns`.
  explicit MetricsWriter(Segment& seg, uint64_t now_unix_ns);

  // Moves to the row of the minute holding `now_unix_ns` (clearing it when it
  // last held an older minute). Called once per duty cycle.
  void roll(uint64_t now_unix_ns) noexcept;
  // The column of a type: a tracked one, assigned on first sight, or "other".
  [[nodiscard]] uint8_t column(std::string_view type);
  [[nodiscard]] uint8_t other_column() const noexcept { return static_cast<uint8_t>(types_); }

  void count(uint8_t band, uint8_t column, Outcome o) noexcept;
  void waited(uint8_t band, uint8_t column, uint64_t ns) noexcept;
  void processed(uint8_t band, uint8_t column, uint64_t ns) noexcept;

 private:
  MetricsCell* cell(std::byte* row, uint32_t index) const noexcept;
  template <class F>
  void each(uint8_t band, uint8_t column, F&& f) noexcept;

  MetricsHeader* h_ = nullptr;
  MetricsTypeName* names_ = nullptr;
  std::byte* rows_ = nullptr;
  std::byte* current_ = nullptr;
  std::byte* lifetime_ = nullptr;
  uint64_t current_minute_ = 0;
  uint32_t types_ = 0;      // from the geometry
  uint64_t row_bytes_ = 0;  // from the geometry
  uint32_t assigned_ = 0;   // type columns named so far
  std::unordered_map<std::string, uint8_t> columns_;
};

// A cell summed over rows, in plain memory.
struct MetricsTotals {
  std::array<uint64_t, kOutcomeCount> counts{};
  uint64_t wait_count = 0, processing_count = 0;
  uint64_t wait_sum_us = 0, processing_sum_us = 0;
  uint64_t wait_max_us = 0, processing_max_us = 0;
  std::array<uint64_t, kMinuteBuckets> wait{};
  std::array<uint64_t, kMinuteBuckets> processing{};

  [[nodiscard]] uint64_t count(Outcome o) const noexcept { return counts[static_cast<uint8_t>(o)]; }
  void add(const MetricsTotals& o) noexcept;
  // Percentile q in (0, 1], microseconds; q == 1 is the max.
  [[nodiscard]] uint64_t wait_percentile_us(double q) const noexcept {
    return MinuteBuckets::percentile(wait, wait_count, wait_max_us, q);
  }
  [[nodiscard]] uint64_t processing_percentile_us(double q) const noexcept {
    return MinuteBuckets::percentile(processing, processing_count, processing_max_us, q);
  }
};

struct MetricsSnapshot {
  std::array<MetricsTotals, kBandCount> bands;
  std::vector<std::pair<std::string, MetricsTotals>> types;  // tracked types seen, then "other"
  uint32_t minutes = 0;          // rows the window covered (0: the lifetime row)
  uint64_t started_unix_ns = 0;  // lifetime: the agent's start
  [[nodiscard]] MetricsTotals total() const noexcept;
};

// The last `period_minutes` minutes up to and including the one holding
// `now_unix_ns` (1..kMetricsMinutes), or, with period 0, everything since the
// agent started.
[[nodiscard]] MetricsSnapshot read_metrics(const Segment& seg, uint64_t now_unix_ns,
                                           uint32_t period_minutes);

}  // namespace perfq::shm
