#pragma once
// BandRing: bounded lock-free multi-producer / single-consumer ring of slot
// indices, one per priority band.
//
// Each cell is one 64-bit word, {seq:32 | value:32}. For position p (cell
// p & mask) the cell moves through
//
//   {p, kEmpty} --producer CAS--> {p+1, slot}    --consumer--> {p+cap, kEmpty}
//               \--consumer CAS-> {p+1, kSkipped} --consumer--> {p+cap, kEmpty}
//
// A producer first claims p by advancing `tail`, then publishes by CAS on the
// cell. A producer that dies (or stalls) between the two leaves the cell
// {p, kEmpty} with tail > p: the consumer sees the stall, and after its bound
// skips the cell with a CAS of its own. Exactly one of the two CASes wins; a
// producer that loses learns its claim was revoked and claims again, so
// nothing is lost and nobody waits on a dead process. (Aeron's try_claim /
// unblock, with the unblock made race-free by the single-word cell.)
//
// A producer with several values claims n consecutive positions with one
// CAS on `tail` (try_push_n), when the cell of the last of them is free for
// its lap: the consumer empties cells in order, so every cell before it is
// free too. It then publishes each cell with its own CAS, as above; the
// consumer revokes such claims one cell at a time, each on its own merit.
//
// Producers never read `head`: the cell's seq says whether it is free.
// The consumer reads `tail` only when the cell at head is not published.
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "perfq/core/assert.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/core/cache_line.hpp"

namespace perfq {

struct BandRingHeader {
  alignas(kCacheLine) uint64_t tail;      // next position producers claim
  alignas(kCacheLine) uint64_t head;      // next position the consumer reads
  uint64_t skipped;                       // cells the consumer revoked (diagnostic)
  alignas(kCacheLine) uint32_t capacity;  // power of two, set once at format
  uint32_t mask;
};
static_assert(std::is_standard_layout_v<BandRingHeader>);
static_assert(std::is_trivially_copyable_v<BandRingHeader>);
static_assert(offsetof(BandRingHeader, tail) == 0);
static_assert(offsetof(BandRingHeader, head) == kCacheLine);
static_assert(offsetof(BandRingHeader, skipped) == kCacheLine + 8);
static_assert(offsetof(BandRingHeader, capacity) == 2 * kCacheLine);
static_assert(sizeof(BandRingHeader) == 3 * kCacheLine);

class BandRing {
 public:
  static constexpr uint32_t kEmpty = 0xFFFF'FFFEu;
  static constexpr uint32_t kSkipped = 0xFFFF'FFFFu;
  static constexpr uint32_t kMaxValue = 0xFFFF'FFFDu;

  [[nodiscard]] static constexpr std::size_t cells_bytes(uint32_t capacity) noexcept {
    return align_up(std::size_t{capacity} * sizeof(uint64_t), kCacheLine);
  }

  // Lays out an empty ring. Only the segment's creator calls it, before any
  // other process can map the memory.
  static void format(BandRingHeader& h, uint64_t* cells, uint32_t capacity) noexcept;

  BandRing() = default;
  // A consumer's view keeps its own head: a copy would fork it. Views move
  // (into the segment's array) and are otherwise used by reference.
  BandRing(const BandRing&) = delete;
  BandRing& operator=(const BandRing&) = delete;
  BandRing(BandRing&&) noexcept = default;
  BandRing& operator=(BandRing&&) noexcept = default;
  // `capacity` comes from the geometry the process computed, never from the
  // header: a ring never reads its size from shared memory. The consumer's
  // head is taken from the header once, here, and kept privately after.
  BandRing(BandRingHeader* header, uint64_t* cells, uint32_t capacity) noexcept
      : h_(header), cells_(cells), capacity_(capacity), mask_(capacity - 1) {
    PERFQ_ASSERT(capacity > 0 && (capacity & (capacity - 1)) == 0);
    head_ = load_relaxed(h_->head);
    tail_seen_ = head_;
  }

  enum class PushResult : uint8_t { kOk, kFull, kContended };

  // Any producer. Never blocks. `on_claimed` runs between claim and commit
  // (a test seam for crash tests; production passes nothing).
  template <class OnClaimed>
  [[nodiscard]] PushResult try_push(uint32_t value, OnClaimed&& on_claimed) noexcept;
  [[nodiscard]] PushResult try_push(uint32_t value) noexcept {
    return try_push(value, [](uint64_t) {});
  }

  // Any producer. Never blocks. Publishes values[0..n) in that order: claims
  // n consecutive positions with one CAS on `tail`, runs `on_claimed(first
  // position)` once (the test seam), then publishes each cell by its CAS.
  // A value whose claim the consumer revoked meanwhile, and every value when
  // the ring has no room for all n at once (or n > capacity), is pushed on
  // its own (try_push); `refused(i)` is called for each values[i] that
  // could not be published (ring full, or contention past the bound), and
  // for every value after the first refused, so order is kept.
  // Returns how many were published.
  template <class OnClaimed, class Refused>
  uint32_t try_push_n(const uint32_t* values, uint32_t n, OnClaimed&& on_claimed,
                      Refused&& refused) noexcept;

  enum class PopKind : uint8_t {
    kValue,    // `value` holds a slot index (unvalidated: the caller checks it)
    kEmpty,    // nothing claimed
    kStalled,  // a producer claimed `position` but has not published it
    kSkipped,  // a revoked cell was consumed
    kCorrupt,  // the cell at head holds a sequence no valid producer writes
    kDesync,   // `tail` is outside [head, head + capacity]: call resync()
  };
  struct Pop {
    PopKind kind;
    uint32_t value;
    uint64_t position;
    uint64_t cell;  // the cell as read (kCorrupt: what discard_corrupt replaces)
  };

  // Whether an empty head also looks at `tail` to report a claimed but
  // unpublished cell (kStalled). Reading `tail` pulls the line producers
  // are updating, so the agent asks only on its liveness timer.
  enum class Claims : uint8_t { kIgnore, kReport };

  // Consumer only: peek() then, for kValue and kSkipped, consume().
  [[nodiscard]] Pop try_pop(Claims claims = Claims::kReport) noexcept;

  // Consumer only: the cell at head, left in place. A consumer that must
  // record what it took before the cell disappears (the agent, so a crash
  // between the two loses nothing) peeks, records, then consumes. A cell
  // that looks published is taken only at a position below `tail` (read
  // again when the consumer reaches the tail it last saw), so a forged
  // cell can never move head past tail.
  [[nodiscard]] Pop peek(Claims claims = Claims::kReport) noexcept;
  // Consumer only: release the published or skipped cell at `position`
  // (the current head) to the next lap.
  void consume(uint64_t position) noexcept;

  // Consumer only: revoke the unpublished claim at `position` (the current
  // head). Returns false if the producer published in the meantime.
  [[nodiscard]] bool skip(uint64_t position) noexcept;

  // Consumer only: overwrite the corrupt cell `p` (from peek) at head so
  // the ring moves on (or, when nobody claimed it, so it can be claimed
  // again).
  void discard_corrupt(const Pop& p) noexcept;

  // Consumer only: rebuild a ring whose `tail` is out of its window (kDesync)
  // as an empty ring at the consumer's head. Cells published and not yet
  // consumed are dropped: their slots are still QUEUED, and the consumer
  // takes them from the slot states (the agent's queued sweep). Bounded by
  // the capacity.
  void resync() noexcept;

  // Consumer only: the cells producers will claim next must be empty for
  // their position; one a scribbler changed would answer every producer
  // "full". Checks the cell at tail and, when it is wrong, repairs every
  // cell from tail to the end of the lap. False when `tail` itself is out
  // of its window (call resync()). One cell read when the ring is sound.
  [[nodiscard]] bool repair_ahead() noexcept;

  // Consumer only: call `fn(value)` for every published, unconsumed cell.
  // Bounded by the capacity. Used to tell whether an orphaned slot was
  // accepted into the ring before its producer died.
  template <class Fn>
  void for_each_published(Fn&& fn) const noexcept;

  // Consumer only: cells claimed and not yet consumed (0 when `tail` is out
  // of its window: the next peek reports kDesync).
  [[nodiscard]] uint64_t backlog() const noexcept {
    const uint64_t t = aref(h_->tail).load(std::memory_order_acquire);
    return t > head_ && t - head_ <= capacity_ ? t - head_ : (t == head_ ? 0 : 1);
  }

  [[nodiscard]] uint64_t size_approx() const noexcept {
    const uint64_t t = aref(h_->tail).load(std::memory_order_relaxed);
    const uint64_t hd = aref(h_->head).load(std::memory_order_relaxed);
    return t >= hd ? t - hd : 0;
  }
  [[nodiscard]] uint32_t capacity() const noexcept { return capacity_; }
  // Positions for accounting (any process; acquire: they count published work).
  [[nodiscard]] uint64_t tail_position() const noexcept {
    return aref(h_->tail).load(std::memory_order_acquire);
  }
  [[nodiscard]] uint64_t head_position() const noexcept {
    return aref(h_->head).load(std::memory_order_acquire);
  }

 private:
  [[nodiscard]] static constexpr uint64_t cell(uint64_t seq, uint32_t value) noexcept {
    return (static_cast<uint64_t>(static_cast<uint32_t>(seq)) << 32) | value;
  }
  [[nodiscard]] static constexpr uint32_t seq_of(uint64_t c) noexcept {
    return static_cast<uint32_t>(c >> 32);
  }
  [[nodiscard]] static constexpr uint32_t value_of(uint64_t c) noexcept {
    return static_cast<uint32_t>(c);
  }

  // try_push_n's claim of [pos, pos + n); false when the last cell is not
  // free for this lap (no room for all n) or the CAS kept losing.
  [[nodiscard]] bool claim_n(uint32_t n, uint64_t& pos) noexcept;

  // Loads `tail` into tail_seen_; false when it is outside the window
  // [head, head + capacity] no sequence of claims can leave it in.
  [[nodiscard]] bool refresh_tail() noexcept {
    const uint64_t t = aref(h_->tail).load(std::memory_order_acquire);
    if (t < head_ || t - head_ > capacity_) return false;
    tail_seen_ = t;
    return true;
  }

  BandRingHeader* h_ = nullptr;
  uint64_t* cells_ = nullptr;
  uint32_t capacity_ = 0;
  uint32_t mask_ = 0;
  // The consumer's own: head as it last moved it (the header's copy is for
  // readers), and the last tail it read.
  uint64_t head_ = 0;
  uint64_t tail_seen_ = 0;
};

inline void BandRing::format(BandRingHeader& h, uint64_t* cells, uint32_t capacity) noexcept {
  PERFQ_ASSERT(capacity > 0 && (capacity & (capacity - 1)) == 0);
  h.tail = 0;
  h.head = 0;
  h.skipped = 0;
  h.capacity = capacity;
  h.mask = capacity - 1;
  for (uint32_t i = 0; i < capacity; ++i) cells[i] = cell(i, kEmpty);
}

template <class OnClaimed>
BandRing::PushResult BandRing::try_push(uint32_t value, OnClaimed&& on_claimed) noexcept {
  // Bound: each failed tail CAS means another producer claimed a position;
  // each revoked claim means the consumer moved on. Either way the ring made
  // progress, so a producer that keeps losing for a whole lap reports
  // contention instead of looping on shared data without a limit.
  PERFQ_ASSERT(h_ != nullptr);
  PERFQ_ASSERT(value <= kMaxValue);  // kEmpty and kSkipped are the ring's own
  auto tail = aref(h_->tail);
  for (uint32_t round = 0; round < 4 * capacity_ + 64; ++round) {
    uint64_t pos = tail.load(std::memory_order_relaxed);
    // acquire: pairs with the consumer's release store that emptied the cell,
    // so our publish below is ordered after its read of the previous lap.
    const uint64_t c = aref(cells_[pos & mask_]).load(std::memory_order_acquire);
    const auto dif = static_cast<int32_t>(seq_of(c) - static_cast<uint32_t>(pos));
    if (dif < 0) return PushResult::kFull;  // previous lap not consumed yet
    if (dif > 0) continue;                  // another producer took pos
    if (!tail.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed,
                                    std::memory_order_relaxed)) {
      continue;
    }
    on_claimed(pos);
    uint64_t expected = cell(pos, kEmpty);
    // release: pairs with the consumer's acquire load in try_pop; the slot
    // contents written before this CAS are visible to the consumer.
    if (aref(cells_[pos & mask_])
            .compare_exchange_strong(expected, cell(pos + 1, value), std::memory_order_release,
                                     std::memory_order_relaxed)) {
      return PushResult::kOk;
    }
    // The consumer revoked our claim (we stalled past its bound). Claim anew.
  }
  return PushResult::kContended;
}

inline bool BandRing::claim_n(uint32_t n, uint64_t& pos) noexcept {
  PERFQ_ASSERT(n >= 1 && n <= capacity_);
  auto tail = aref(h_->tail);
  // Bound: as try_push's; each lost CAS means another producer claimed.
  for (uint32_t round = 0; round < 4 * capacity_ + 64; ++round) {
    uint64_t p = tail.load(std::memory_order_relaxed);
    const uint64_t last = p + n - 1;
    // acquire: pairs with the consumer's release store that emptied the
    // last cell; it emptied the cells before it earlier (in order), so our
    // publishes below are ordered after its reads of all their past laps.
    const uint64_t c = aref(cells_[last & mask_]).load(std::memory_order_acquire);
    const auto dif = static_cast<int32_t>(seq_of(c) - static_cast<uint32_t>(last));
    if (dif < 0) return false;  // the consumer has not reached it yet
    if (dif > 0) continue;      // another producer took positions up to last
    // Positions below p + n are unclaimed while tail is still p.
    if (tail.compare_exchange_weak(p, p + n, std::memory_order_relaxed,
                                   std::memory_order_relaxed)) {
      pos = p;
      return true;
    }
  }
  return false;
}

template <class OnClaimed, class Refused>
uint32_t BandRing::try_push_n(const uint32_t* values, uint32_t n, OnClaimed&& on_claimed,
                              Refused&& refused) noexcept {
  PERFQ_ASSERT(h_ != nullptr);
  uint32_t published = 0;
  bool refusing = false;  // once the ring refused one, the rest are refused too
  auto one = [&](uint32_t i) {
    if (!refusing && try_push(values[i]) == PushResult::kOk) {
      ++published;
    } else {
      refusing = true;
      refused(i);
    }
  };
  uint64_t pos = 0;
  if (n == 0) return 0;
  if (n > capacity_ || !claim_n(n, pos)) {
    for (uint32_t i = 0; i < n; ++i) one(i);
    return published;
  }
  on_claimed(pos);
  for (uint32_t i = 0; i < n; ++i) {
    PERFQ_ASSERT(values[i] <= kMaxValue);  // kEmpty and kSkipped are the ring's own
    uint64_t expected = cell(pos + i, kEmpty);
    // release: pairs with the consumer's acquire load in peek; the slot
    // contents written before this CAS are visible to the consumer.
    if (aref(cells_[(pos + i) & mask_])
            .compare_exchange_strong(expected, cell(pos + i + 1, values[i]),
                                     std::memory_order_release, std::memory_order_relaxed)) {
      ++published;
    } else {
      one(i);  // the consumer revoked this claim (we stalled): a new position
    }
  }
  return published;
}

inline BandRing::Pop BandRing::peek(Claims claims) noexcept {
  const uint64_t pos = head_;
  // acquire: pairs with the producer's release CAS that published the cell.
  const uint64_t c = aref(cells_[pos & mask_]).load(std::memory_order_acquire);
  const uint32_t seq = seq_of(c);
  if (seq == static_cast<uint32_t>(pos + 1)) {
    // A producer claims (tail) before it publishes (release CAS above), so
    // a real cell at pos is always below the tail read after it.
    if (pos >= tail_seen_ && !refresh_tail()) return {PopKind::kDesync, 0, pos, c};
    if (pos >= tail_seen_) return {PopKind::kCorrupt, 0, pos, c};  // forged: nobody claimed pos
    const uint32_t v = value_of(c);
    if (v == kSkipped) return {PopKind::kSkipped, 0, pos, c};
    return {PopKind::kValue, v, pos, c};
  }
  if (seq == static_cast<uint32_t>(pos) && value_of(c) == kEmpty) {
    if (claims == Claims::kIgnore) return {PopKind::kEmpty, 0, pos, c};
    if (!refresh_tail()) return {PopKind::kDesync, 0, pos, c};
    if (tail_seen_ == pos) return {PopKind::kEmpty, 0, pos, c};
    return {PopKind::kStalled, 0, pos, c};
  }
  if (!refresh_tail()) return {PopKind::kDesync, 0, pos, c};
  return {PopKind::kCorrupt, 0, pos, c};
}

inline void BandRing::consume(uint64_t position) noexcept {
  PERFQ_ASSERT(position == head_);
  // release: pairs with the producers' acquire load of the cell in try_push
  // (the next lap may be written only after we have read this one).
  aref(cells_[position & mask_])
      .store(cell(position + capacity_, kEmpty), std::memory_order_release);
  head_ = position + 1;
  aref(h_->head).store(head_, std::memory_order_release);
}

inline BandRing::Pop BandRing::try_pop(Claims claims) noexcept {
  const Pop p = peek(claims);
  if (p.kind == PopKind::kValue || p.kind == PopKind::kSkipped) consume(p.position);
  return p;
}

inline bool BandRing::skip(uint64_t position) noexcept {
  uint64_t expected = cell(position, kEmpty);
  // acq_rel: the revocation must be ordered before our consume of the cell;
  // a producer whose CAS fails observes it (its failure load is relaxed, it
  // only needs to know it lost).
  const bool won =
      aref(cells_[position & mask_])
          .compare_exchange_strong(expected, cell(position + 1, kSkipped),
                                   std::memory_order_acq_rel, std::memory_order_acquire);
  if (won) aref(h_->skipped).fetch_add(1, std::memory_order_relaxed);
  return won;
}

inline void BandRing::discard_corrupt(const Pop& p) noexcept {
  PERFQ_ASSERT(p.position == head_);
  aref(h_->skipped).fetch_add(1, std::memory_order_relaxed);
  uint64_t seen = p.cell;
  if (tail_seen_ <= p.position) {
    // Nobody claimed the position: restore the cell so it can be claimed,
    // and leave head where it is (head never passes tail). A CAS from what
    // we read: a producer's claim and publish that came meanwhile stands.
    (void)aref(cells_[p.position & mask_])
        .compare_exchange_strong(seen, cell(p.position, kEmpty), std::memory_order_release,
                                 std::memory_order_relaxed);
    return;
  }
  // A producer claimed it; its publish CAS fails and it claims anew.
  aref(cells_[p.position & mask_])
      .store(cell(p.position + capacity_, kEmpty), std::memory_order_release);
  head_ = p.position + 1;
  aref(h_->head).store(head_, std::memory_order_release);
}

inline void BandRing::resync() noexcept {
  // Cells first, tail last: until tail is back in its window every claim
  // lands on a cell whose sequence refuses it, so no producer publishes
  // into a cell being rewritten.
  for (uint64_t p = head_; p < head_ + capacity_; ++p) {
    aref(cells_[p & mask_]).store(cell(p, kEmpty), std::memory_order_release);
  }
  aref(h_->skipped).fetch_add(1, std::memory_order_relaxed);
  aref(h_->head).store(head_, std::memory_order_release);
  aref(h_->tail).store(head_, std::memory_order_release);
  tail_seen_ = head_;
}

inline bool BandRing::repair_ahead() noexcept {
  if (!refresh_tail()) return false;
  const uint64_t t = tail_seen_;
  auto wrong = [](uint64_t p, uint64_t c) {
    // Empty for p, or published by a producer that claimed p since.
    return !(seq_of(c) == static_cast<uint32_t>(p) && value_of(c) == kEmpty) &&
           seq_of(c) != static_cast<uint32_t>(p + 1);
  };
  if (t == head_ + capacity_ || !wrong(t, aref(cells_[t & mask_]).load(std::memory_order_acquire)))
    return true;
  for (uint64_t p = t; p < head_ + capacity_; ++p) {
    uint64_t c = aref(cells_[p & mask_]).load(std::memory_order_acquire);
    if (!wrong(p, c)) continue;
    // A CAS: a claim published meanwhile stands.
    if (aref(cells_[p & mask_])
            .compare_exchange_strong(c, cell(p, kEmpty), std::memory_order_release,
                                     std::memory_order_relaxed)) {
      aref(h_->skipped).fetch_add(1, std::memory_order_relaxed);
    }
  }
  return true;
}

template <class Fn>
void BandRing::for_each_published(Fn&& fn) const noexcept {
  const uint64_t hd = head_;
  const uint64_t t = aref(h_->tail).load(std::memory_order_acquire);
  const uint64_t n = t > hd ? (t - hd > capacity_ ? capacity_ : t - hd) : 0;
  for (uint64_t p = hd; p < hd + n; ++p) {
    const uint64_t c = aref(cells_[p & mask_]).load(std::memory_order_acquire);
    if (seq_of(c) == static_cast<uint32_t>(p + 1) && value_of(c) <= kMaxValue) fn(value_of(c));
  }
}

}  // namespace perfq
