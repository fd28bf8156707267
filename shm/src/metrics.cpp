#include "perfq/shm/metrics.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "perfq/core/atomic.hpp"
#include "perfq/core/seqlock.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq::shm {

namespace {

constexpr uint64_t kNsPerMinute = 60'000'000'000ull;
// A minute row's word while it is cleared (and while it is empty): no
// minute is 0, minutes being counted from 1.
constexpr uint64_t kRowClearing = 0;
// Rows are read once: a row being rewritten is for another minute.
constexpr seqlock::ReadBound kOneTry{.tries = 1, .yield_ns = 0};

template <class T>
void add_relaxed(T& field, T v) noexcept {
  // One writer: a load and a store, not a read-modify-write.
  store_relaxed(field, static_cast<T>(load_relaxed(field) + v));
}

template <class T>
void max_relaxed(T& field, T v) noexcept {
  if (v > load_relaxed(field)) store_relaxed(field, v);
}

uint32_t clamp_us(uint64_t ns) noexcept {
  return static_cast<uint32_t>(std::min<uint64_t>(ns / 1000, UINT32_MAX));
}

// Stores zero in every word of a row's cells (relaxed, word by word, so a
// reader racing with the clear reads words, not torn bytes).
void clear_cells(std::byte* row, uint64_t row_bytes) noexcept {
  auto* w = reinterpret_cast<uint64_t*>(row + sizeof(MetricsRowHeader));
  const uint64_t n = (row_bytes - sizeof(MetricsRowHeader)) / sizeof(uint64_t);
  for (uint64_t i = 0; i < n; ++i) store_relaxed(w[i], uint64_t{0});
}

// Reads a cell word by word with relaxed loads into plain memory, adding.
void accumulate(const MetricsCell& c, MetricsTotals& t) noexcept {
  for (uint8_t o = 0; o < kOutcomeCount; ++o) t.counts[o] += load_relaxed(c.counts[o]);
  t.wait_count += load_relaxed(c.wait_count);
  t.processing_count += load_relaxed(c.processing_count);
  t.wait_sum_us += load_relaxed(c.wait_sum_us);
  t.processing_sum_us += load_relaxed(c.processing_sum_us);
  t.wait_max_us = std::max<uint64_t>(t.wait_max_us, load_relaxed(c.wait_max_us));
  t.processing_max_us = std::max<uint64_t>(t.processing_max_us, load_relaxed(c.processing_max_us));
  for (std::size_t i = 0; i < kMinuteBuckets; ++i) {
    t.wait[i] += load_relaxed(c.wait[i]);
    t.processing[i] += load_relaxed(c.processing[i]);
  }
}

// Whether anything was counted in a cell: "other" is reported only then.
bool counted_anything(const MetricsTotals& t) noexcept {
  for (const uint64_t c : t.counts) {
    if (c != 0) return true;
  }
  return t.wait_count != 0 || t.processing_count != 0;
}

}  // namespace

void MetricsTotals::add(const MetricsTotals& o) noexcept {
  for (uint8_t i = 0; i < kOutcomeCount; ++i) counts[i] += o.counts[i];
  wait_count += o.wait_count;
  processing_count += o.processing_count;
  wait_sum_us += o.wait_sum_us;
  processing_sum_us += o.processing_sum_us;
  wait_max_us = std::max(wait_max_us, o.wait_max_us);
  processing_max_us = std::max(processing_max_us, o.processing_max_us);
  for (std::size_t i = 0; i < kMinuteBuckets; ++i) {
    wait[i] += o.wait[i];
    processing[i] += o.processing[i];
  }
}

MetricsTotals MetricsSnapshot::total() const noexcept {
  MetricsTotals t;
  for (const MetricsTotals& b : bands) t.add(b);
  return t;
}

MetricsWriter::MetricsWriter(Segment& seg, uint64_t now_unix_ns) {
  std::byte* base = seg.metrics_region();
  // Sizes come from the geometry, never from the region's header, which any
  // member of the group can write: the header is rewritten from them.
  types_ = seg.geometry().metrics_types;
  row_bytes_ = metrics_row_bytes(types_);
  h_ = reinterpret_cast<MetricsHeader*>(base);
  store_relaxed(h_->minutes, kMetricsMinutes);
  store_relaxed(h_->types, types_);
  store_relaxed(h_->row_bytes, row_bytes_);
  names_ = reinterpret_cast<MetricsTypeName*>(base + sizeof(MetricsHeader));
  rows_ = base + sizeof(MetricsHeader) + std::size_t{types_} * sizeof(MetricsTypeName);
  lifetime_ = rows_ + std::size_t{kMetricsMinutes} * row_bytes_;
  // A previous agent's columns keep their places, those that name a type.
  const uint32_t known = std::min(load_acquire(h_->type_count), types_);
  for (uint32_t i = 0; i < known; ++i) {
    const uint32_t len = std::min<uint32_t>(load_relaxed(names_[i].len), kTypeMaxBytes);
    char text[kTypeMaxBytes];
    load_shared_text(names_[i].text, len, text);
    const std::string name(text, len);
    if (valid_type(name)) columns_.emplace(name, static_cast<uint8_t>(i));
  }
  assigned_ = known;
  store_relaxed(h_->type_count, assigned_);
  store_relaxed(h_->agent_started_unix_ns, now_unix_ns);
  // The since-start row's word counts agent starts, as a status entry's seq
  // counts writes (core/seqlock.hpp, counter form): odd while a start clears
  // the row, even after, and it only grows (a start that died mid-clear left
  // it odd: the next goes on from there, which is its repair). So a reader
  // whose copy overlapped a restart sees it change even though the row was
  // whole when the copy began and when it ended.
  auto& word = reinterpret_cast<MetricsRowHeader*>(lifetime_)->minute;
  // acq_rel: as in roll(), the clear cannot move before the odd word.
  const uint64_t clearing = seqlock::begin_write(word, std::memory_order_acq_rel);
  clear_cells(lifetime_, row_bytes_);
  // release (in end_write): pairs with read_metrics' acquire load of the word.
  seqlock::end_write(word, clearing);
  roll(now_unix_ns);
}

void MetricsWriter::roll(uint64_t now_unix_ns) noexcept {
  const uint64_t minute = now_unix_ns / kNsPerMinute + 1;
  if (minute == current_minute_ || h_ == nullptr) return;
  current_minute_ = minute;
  std::byte* row = rows_ + std::size_t{minute % kMetricsMinutes} * row_bytes_;
  auto& stamp = reinterpret_cast<MetricsRowHeader*>(row)->minute;
  current_ = row;
  if (load_relaxed(stamp) == minute) return;  // an agent restarted within the minute
  // Sequence lock (core/seqlock.hpp, marked form; the marker 0 also means
  // "empty", so a clear a dead agent left half done needs no repair: no
  // reader wants minute 0, and the row is cleared again when next rolled
  // into). Readers that saw the old minute see it change and drop what they
  // copied. acq_rel: the clear cannot move before the zero stamp.
  seqlock::begin_write_marked(stamp, kRowClearing, std::memory_order_acq_rel);
  clear_cells(row, row_bytes_);
  // release (in end_write_marked): pairs with read_metrics' acquire load.
  seqlock::end_write_marked(stamp, kRowClearing, minute);
}

uint8_t MetricsWriter::column(std::string_view type) {
  if (h_ == nullptr) return 0;
  if (auto it = columns_.find(std::string(type)); it != columns_.end()) return it->second;
  // The count is the writer's own: the header's copy is for readers.
  const uint32_t n = assigned_;
  if (n >= types_) return static_cast<uint8_t>(types_);  // "other"
  MetricsTypeName& name = names_[n];
  const auto len = static_cast<uint32_t>(std::min<std::size_t>(type.size(), kTypeMaxBytes));
  store_shared_text(name.text, type.data(), len);
  store_relaxed(name.len, len);
  // release: a reader that sees the count sees the name.
  assigned_ = n + 1;
  aref(h_->type_count).store(assigned_, std::memory_order_release);
  columns_.emplace(std::string(type), static_cast<uint8_t>(n));
  return static_cast<uint8_t>(n);
}

MetricsCell* MetricsWriter::cell(std::byte* row, uint32_t index) const noexcept {
  return reinterpret_cast<MetricsCell*>(row + sizeof(MetricsRowHeader)) + index;
}

template <class F>
void MetricsWriter::each(uint8_t band, uint8_t column, F&& f) noexcept {
  if (h_ == nullptr || current_ == nullptr) return;
  const uint32_t b = std::min<uint32_t>(band, kBandCount - 1);
  const uint32_t t = kBandCount + std::min<uint32_t>(column, types_);
  for (std::byte* row : {current_, lifetime_}) {
    f(*cell(row, b));
    f(*cell(row, t));
  }
}

void MetricsWriter::count(uint8_t band, uint8_t column, Outcome o) noexcept {
  each(band, column, [o](MetricsCell& c) { add_relaxed(c.counts[static_cast<uint8_t>(o)], 1u); });
}

// waited() and processed() fill the two series of a cell the same way. They
// stay two plain functions: one path through pointers to the fields measured
// 35-47 ns per request against 29 ns (perfq-micro metrics/*), on the duty
// cycle's path.
void MetricsWriter::waited(uint8_t band, uint8_t column, uint64_t ns) noexcept {
  const uint32_t us = clamp_us(ns);
  const std::size_t i = MinuteBuckets::index(us);
  each(band, column, [us, i](MetricsCell& c) {
    add_relaxed(c.wait_count, 1u);
    add_relaxed(c.wait_sum_us, uint64_t{us});
    max_relaxed(c.wait_max_us, us);
    add_relaxed(c.wait[i], 1u);
  });
}

void MetricsWriter::processed(uint8_t band, uint8_t column, uint64_t ns) noexcept {
  const uint32_t us = clamp_us(ns);
  const std::size_t i = MinuteBuckets::index(us);
  each(band, column, [us, i](MetricsCell& c) {
    add_relaxed(c.processing_count, 1u);
    add_relaxed(c.processing_sum_us, uint64_t{us});
    max_relaxed(c.processing_max_us, us);
    add_relaxed(c.processing[i], 1u);
  });
}

MetricsSnapshot read_metrics(const Segment& seg, uint64_t now_unix_ns, uint32_t period_minutes) {
  const std::byte* base = seg.metrics_region();
  const auto* h = reinterpret_cast<const MetricsHeader*>(base);
  const auto* names = reinterpret_cast<const MetricsTypeName*>(base + sizeof(MetricsHeader));
  // Sizes come from the geometry, never from the region: a scribbled header
  // cannot send a reader out of bounds.
  const uint32_t types = seg.geometry().metrics_types;
  const uint64_t row_bytes = metrics_row_bytes(types);
  const std::byte* rows =
      base + sizeof(MetricsHeader) + std::size_t{types} * sizeof(MetricsTypeName);
  MetricsSnapshot snap;
  snap.started_unix_ns = load_relaxed(h->agent_started_unix_ns);
  const uint32_t named = std::min(load_acquire(h->type_count), types);
  std::vector<MetricsTotals> cols(types + 1);
  // One row's copy, checked before it is added (made once, cleared per row).
  std::array<MetricsTotals, kBandCount> b{};
  std::vector<MetricsTotals> t(types + 1);
  // Copies a row whose word reads `want` before and after the copy; want 0:
  // the since-start row, whose word is any even value but 0 when whole. The
  // copy is dropped unless the row was whole throughout (a row cleared
  // meanwhile is dropped).
  auto read_row = [&](const std::byte* row, uint64_t want) {
    const auto& word = reinterpret_cast<const MetricsRowHeader*>(row)->minute;
    auto copy = [&] {
      b.fill(MetricsTotals{});
      std::fill(t.begin(), t.end(), MetricsTotals{});
      const auto* cells = reinterpret_cast<const MetricsCell*>(row + sizeof(MetricsRowHeader));
      for (uint32_t i = 0; i < kBandCount; ++i) accumulate(cells[i], b[i]);
      for (uint32_t i = 0; i <= types; ++i) accumulate(cells[kBandCount + i], t[i]);
    };
    uint64_t seen = 0;
    const bool whole = want != 0 ? seqlock::read_exact(word, want, seen, copy)
                                 : seqlock::read(word, kOneTry, seen, copy) && seen != 0;
    if (!whole) return false;
    for (uint32_t i = 0; i < kBandCount; ++i) snap.bands[i].add(b[i]);
    for (uint32_t i = 0; i <= types; ++i) cols[i].add(t[i]);
    return true;
  };
  if (period_minutes == 0) {
    snap.minutes = 0;
    (void)read_row(rows + std::size_t{kMetricsMinutes} * row_bytes, 0);
  } else {
    const uint32_t period = std::min(period_minutes, kMetricsMinutes);
    snap.minutes = period;
    const uint64_t now_minute = now_unix_ns / kNsPerMinute + 1;
    for (uint32_t k = 0; k < period && k < now_minute; ++k) {
      const uint64_t m = now_minute - k;
      (void)read_row(rows + std::size_t{m % kMetricsMinutes} * row_bytes, m);
    }
  }
  for (uint32_t i = 0; i < named; ++i) {
    const uint32_t len = std::min<uint32_t>(load_relaxed(names[i].len), kTypeMaxBytes);
    char text[kTypeMaxBytes];
    load_shared_text(names[i].text, len, text);
    std::string name(text, len);
    // A name a scribbler wrote is no type: its counts go to "other".
    if (valid_type(name)) {
      snap.types.emplace_back(std::move(name), cols[i]);
    } else {
      cols[types].add(cols[i]);
    }
  }
  // Any count, not only submitted: a request of an untracked type taken in
  // an earlier minute (or by the previous agent) and cancelled, failed or
  // retried in the window counts there and nowhere else among the types.
  const MetricsTotals& other = cols[types];
  if (counted_anything(other)) snap.types.emplace_back("other", other);
  return snap;
}

}  // namespace perfq::shm
