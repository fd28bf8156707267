#include "perfq/shm/tables/rate_limit.hpp"

#include <limits>
#include <string>
#include <utility>

#include "perfq/core/assert.hpp"
#include "perfq/core/clock.hpp"

namespace perfq::shm {

namespace {

// Scans, claims and waits before acquire() gives up. Each round follows
// another process's completed change to the bucket or entry, or parks.
constexpr uint32_t kRounds = 256;
// Accept attempts on one entry. A cell or count CAS fails only because
// another submit took or helped an index meanwhile.
constexpr uint32_t kTakeTries = 1024;
// CAS-max attempts; each failure means the value grew.
constexpr uint32_t kRaiseTries = 64;

constexpr uint64_t kSeqMask = (uint64_t{1} << 24) - 1;
constexpr uint64_t kTimeMax = (uint64_t{1} << 40) - 1;

constexpr uint64_t cell_of(uint64_t seq, uint64_t time_ms) noexcept {
  return (time_ms << 24) | (seq & kSeqMask);
}
constexpr uint64_t cell_seq(uint64_t c) noexcept {
  return c & kSeqMask;
}
constexpr uint64_t cell_time(uint64_t c) noexcept {
  return c >> 24;
}
static_assert(cell_seq(cell_of(uint64_t{0} - 60, 0)) == (uint64_t{1} << 24) - 60);
static_assert(cell_time(cell_of(5, kTimeMax)) == kTimeMax);

constexpr uint64_t floor_ms(uint64_t ns) noexcept {
  return ns / 1'000'000;
}
// Rounded up, and never 0 (0 is "never").
constexpr uint64_t ceil_ms(uint64_t ns) noexcept {
  const uint64_t ms = ns / 1'000'000 + (ns % 1'000'000 != 0 ? 1 : 0);
  return ms == 0 ? 1 : (ms > kTimeMax ? kTimeMax : ms);
}

RateEntry& at(std::byte* e) noexcept {
  return *reinterpret_cast<RateEntry*>(e);
}
const RateEntry& at(const std::byte* e) noexcept {
  return *reinterpret_cast<const RateEntry*>(e);
}

// field = max(field, v). seq_cst: last_ms is one side of the Dekker pair
// between an acceptor and a claimer evicting its entry (see take()).
void raise_to(uint64_t& field, uint64_t v) noexcept {
  uint64_t cur = aref(field).load(std::memory_order_seq_cst);
  for (uint32_t i = 0; i < kRaiseTries && cur < v; ++i) {  // bound: kRaiseTries
    if (aref(field).compare_exchange_strong(cur, v, std::memory_order_seq_cst,
                                            std::memory_order_seq_cst)) {
      return;
    }
  }
}

// A user with no accept in the window (0: never accepted).
constexpr bool idle(uint64_t last_ms, uint64_t now_ms, uint64_t window_ms) noexcept {
  return last_ms == 0 || last_ms + window_ms <= now_ms;
}

// For an absent user: an EMPTY way, else the READY way idle the longest;
// -1 when none is, with retry_after_ms lowered to when the first goes idle.
template <class Snap>
int choose_way(const BucketScan<Snap>& s, uint64_t now_ms, uint64_t W,
               uint64_t& retry_after_ms) noexcept {
  int way = -1;
  uint64_t oldest = std::numeric_limits<uint64_t>::max();
  for (uint32_t w = 0; w < kKeyedWays; ++w) {
    const WayState st = field_state(way_field(s.word, w));
    if (st == WayState::kEmpty) return static_cast<int>(w);
    if (st != WayState::kReady || (s.stable & (1u << w)) == 0) continue;
    const uint64_t last = s.snap[w].last_ms;
    if (idle(last, now_ms, W)) {
      if (last < oldest) {
        oldest = last;
        way = static_cast<int>(w);
      }
    } else if (last + W - now_ms < retry_after_ms) {
      retry_after_ms = last + W - now_ms;
    }
  }
  return way;
}

Error refused(uint64_t retry_after_ms, std::string message) {
  return Error{Errc::kRateLimitExceeded, std::move(message),
               retry_after_ms == 0 ? 1 : retry_after_ms};
}

}  // namespace

void RateLimiter::format(void* mem, uint32_t entries, uint32_t limit, uint64_t window_ms) noexcept {
  PERFQ_ASSERT(limit >= 1 && limit <= kMaxLimit);
  PERFQ_ASSERT(window_ms >= 1 && window_ms <= kMaxWindowMs);
  KeyedTable::format(mem, entries, entry_stride(limit), TableKind::kRateLimit, limit, window_ms);
  auto t = KeyedTable::attach(mem, bytes_for(entries, limit), TableKind::kRateLimit);
  PERFQ_ASSERT(t);
  if (!t) return;
  // Cell i holds accept index i - limit, long ago.
  for (uint32_t b = 0; b < t->buckets(); ++b) {
    for (uint32_t w = 0; w < kKeyedWays; ++w) {
      auto* c = reinterpret_cast<uint64_t*>(t->entry(b, w) + kCellsOffset);
      for (uint32_t i = 0; i < limit; ++i) c[i] = cell_of(uint64_t{i} - limit, 0);
    }
  }
}

Result<RateLimiter> RateLimiter::attach(void* mem, uint64_t bytes) {
  auto t = KeyedTable::attach(mem, bytes, TableKind::kRateLimit);
  if (!t) return t.error();
  const uint64_t limit = t->param0();
  const uint64_t window_ms = t->param1();
  if (limit < 1 || limit > kMaxLimit) {
    return Error{Errc::kSegmentInvalid,
                 "rate limiter: limit " + std::to_string(limit) + " is not in [1, 65536]"};
  }
  if (window_ms < 1 || window_ms > kMaxWindowMs) {
    return Error{Errc::kSegmentInvalid,
                 "rate limiter: window " + std::to_string(window_ms) + " ms is out of range"};
  }
  if (load_relaxed(t->header().entry_stride) != entry_stride(static_cast<uint32_t>(limit))) {
    return Error{Errc::kSegmentInvalid, "rate limiter: entry stride does not match the limit"};
  }
  return RateLimiter(*t, static_cast<uint32_t>(limit), window_ms);
}

Result<RateTicket> RateLimiter::acquire(std::string_view user, uint64_t now_mono_ns,
                                        uint32_t client_id) {
  PERFQ_ASSERT(client_id < kKeyedMaxClients);
  if (user.size() > kUserIdMaxBytes || client_id >= kKeyedMaxClients) {
    return Error{Errc::kInvalidRequest, "rate limit: user or client id out of range"};
  }
  const uint64_t hash = t_.hash(user, {});
  const uint32_t b = t_.bucket_of(hash);
  const uint64_t now_ms = floor_ms(now_mono_ns);
  const uint64_t W = window_ms_;
  auto read = [&](const std::byte* raw, bool compare, Snap& out) {
    const RateEntry& e = at(raw);
    out.last_ms = load_relaxed(e.last_ms);
    return compare && load_relaxed(e.user_len) == user.size() && text_equals(e.user, user);
  };

  // The end of the wait for a claim in progress: real time, set at its start.
  uint64_t deadline = 0;

  for (uint32_t round = 0; round < kRounds; ++round) {  // bound: kRounds
    const BucketScan<Snap> s = t_.scan<Snap>(b, hash, read);
    if (s.pending >= 0) {
      // Another process is adding this user (or may be): wait for it.
      const uint64_t real_ns = mono_now_ns();
      if (deadline == 0) deadline = real_ns + kClaimWaitNs;
      if (real_ns >= deadline) {
        return refused(1, "another submit is adding this user to the rate-limit table");
      }
      (void)t_.wait_change(b, s.word, s.pending, s.version[s.pending], deadline);
      continue;
    }
    if (s.found >= 0) {
      RateTicket ticket;
      uint64_t retry_after_ms = 0;
      switch (take(b, static_cast<uint32_t>(s.found), s.version[s.found], now_mono_ns, ticket,
                   retry_after_ms)) {
        case Take::kAccepted:
          return ticket;
        case Take::kRefused:
          return refused(retry_after_ms,
                         "over max_requests_per_user_per_minute; see retry_after_ms");
        case Take::kMoved:
          continue;  // the entry changed hands meanwhile: look again
      }
      continue;
    }
    uint64_t retry_after_ms = W;
    const int way = choose_way(s, now_ms, W, retry_after_ms);
    if (way < 0) {
      return refused(retry_after_ms, "the rate-limit table has no room for another user now");
    }
    // The next round finds the entry and takes an accept in it.
    (void)insert(b, static_cast<uint32_t>(way), s, hash, user, now_mono_ns, client_id);
  }
  return refused(1, "the rate-limit table kept changing; retry");
}

bool RateLimiter::insert(uint32_t b, uint32_t w, const BucketScan<Snap>& s, uint64_t hash,
                         std::string_view user, uint64_t now_mono_ns, uint32_t client_id) {
  const uint16_t fp = fingerprint(hash);
  const uint64_t now_ms = floor_ms(now_mono_ns);
  const bool evicting = field_state(way_field(s.word, w)) == WayState::kReady;
  if (!t_.claim(s, b, w, client_id, fp)) return false;
  const bool ok = t_.mark_claimed(
      b, w, client_id, hash,
      [&](std::byte* raw) {
        if (!evicting) return true;
        // Dekker with take(): begin_write (seq_cst) made the version odd
        // before this seq_cst load. Either we see an accept that raced
        // our claim, and give the entry back, or its version re-check
        // sees ours and it refunds.
        const uint64_t last = aref(at(raw).last_ms).load(std::memory_order_seq_cst);
        if (!idle(last, now_ms, window_ms_)) return false;
        raise_to(t_.line(b).aux, last);  // the evicted user's horizon
        return true;
      },
      [&](std::byte* raw) {
        RateEntry& e = at(raw);
        aref(e.user_len).store(static_cast<uint8_t>(user.size()), std::memory_order_relaxed);
        store_text(e.user, user);
        // Looks busy from now on, so no other new user evicts it before
        // this user's first accept.
        raise_to(e.last_ms, ceil_ms(now_mono_ns));
      });
  if (!ok) return false;
  return t_.publish(b, w, client_id, fp, [](std::byte*) {});
}

// One take's fixed inputs.
struct RateLimiter::TakeCtx {
  RateEntry& e;
  uint64_t* c;  // the entry's cells
  uint32_t b;
  uint32_t way;
  uint64_t version;  // the entry's, when the scan found the user in it
  uint64_t L;        // limit
  uint64_t W;        // window, ms
  uint64_t now_ms;
  uint64_t stamp;  // now, rounded up: the time an accept is stamped with
  // The accept in `cell` is out of the window.
  [[nodiscard]] bool gone(uint64_t cell) const noexcept {
    const uint64_t t = cell_time(cell);
    return t == 0 || t + W <= now_ms;
  }
};

RateLimiter::Take RateLimiter::take(uint32_t b, uint32_t way, uint64_t version,
                                    uint64_t now_mono_ns, RateTicket& ticket,
                                    uint64_t& retry_after_ms) noexcept {
  const TakeCtx x{.e = at(t_.entry(b, way)),
                  .c = cells(b, way),
                  .b = b,
                  .way = way,
                  .version = version,
                  .L = limit_,
                  .W = window_ms_,
                  .now_ms = floor_ms(now_mono_ns),
                  .stamp = ceil_ms(now_mono_ns)};
  const uint64_t L = x.L;
  // acquire: pairs with the release in the evicting claim's publish.
  const uint64_t horizon = load_acquire(t_.line(b).aux);
  if (horizon != 0 && horizon + x.W > x.now_ms) {
    retry_after_ms = horizon + x.W - x.now_ms;
    return Take::kRefused;
  }
  for (uint32_t i = 0; i < kTakeTries; ++i) {  // bound: kTakeTries
    // acquire: pairs with every count CAS (a release sequence); cell n - L
    // was written before count passed it.
    uint64_t n = aref(x.e.count).load(std::memory_order_acquire);
    const uint64_t slot = n % L;
    uint64_t cell = aref(x.c[slot]).load(std::memory_order_acquire);
    if (cell_seq(cell) == (n & kSeqMask)) {
      // Someone took index n and has not advanced count yet: help.
      (void)aref(x.e.count).compare_exchange_strong(n, n + 1, std::memory_order_acq_rel,
                                                    std::memory_order_relaxed);
      continue;
    }
    if (cell_seq(cell) != ((n - L) & kSeqMask)) continue;  // count moved on: re-read
    if (!x.gone(cell)) return take_other_cell(x, n, slot, cell, ticket, retry_after_ms);
    // The ring's oldest accept (n - L) has left the window: take index n.
    const uint64_t mine = cell_of(n, x.stamp);
    if (!aref(x.c[slot]).compare_exchange_strong(cell, mine, std::memory_order_seq_cst,
                                                 std::memory_order_relaxed)) {
      continue;
    }
    uint64_t expect = n;
    (void)aref(x.e.count).compare_exchange_strong(expect, n + 1, std::memory_order_acq_rel,
                                                  std::memory_order_relaxed);
    return commit(x, slot, n, mine, cell, ticket);
  }
  retry_after_ms = 1;
  return Take::kRefused;
}

// The oldest index (n - L, in `cell` at `slot`) is in the window, but a
// refund (or callers whose clocks arrived out of order) may have left
// another cell out of it. Each cell is a chain of accepts a window apart, so
// taking over any such cell (same seq, new time) keeps the bound; the ring
// and count are untouched. One pass, bound: L.
RateLimiter::Take RateLimiter::take_other_cell(const TakeCtx& x, uint64_t n, uint64_t slot,
                                               uint64_t cell, RateTicket& ticket,
                                               uint64_t& retry_after_ms) noexcept {
  const uint64_t L = x.L;
  uint64_t first_out_ms = cell_time(cell) + x.W;  // when the first accept leaves
  for (uint64_t j = 0; j < L; ++j) {
    uint64_t other = aref(x.c[j]).load(std::memory_order_acquire);
    // Cell j holds the index s = j (mod L) of the ring's last lap.
    const uint64_t s = n - L + (j + L - slot) % L;
    if (cell_seq(other) != (s & kSeqMask)) continue;  // moved meanwhile
    if (!x.gone(other)) {
      if (cell_time(other) + x.W < first_out_ms) first_out_ms = cell_time(other) + x.W;
      continue;
    }
    const uint64_t mine = cell_of(s, x.stamp);
    if (aref(x.c[j]).compare_exchange_strong(other, mine, std::memory_order_seq_cst,
                                             std::memory_order_relaxed)) {
      return commit(x, j, s, mine, other, ticket);
    }
  }
  // The cells were this user's only if the entry still is.
  // acquire: pairs with end_write's release store of the version.
  if (load_acquire(x.e.head.version) != x.version) return Take::kMoved;
  retry_after_ms = first_out_ms - x.now_ms;
  return Take::kRefused;
}

// The accept is ours; is the entry still this user's? seq_cst: with the
// cell CAS and raise_to(last_ms), one side of the Dekker pair with an
// evicting claimer (see insert()).
RateLimiter::Take RateLimiter::commit(const TakeCtx& x, uint64_t slot_at, uint64_t index,
                                      uint64_t mine, uint64_t replaced,
                                      RateTicket& ticket) noexcept {
  raise_to(x.e.last_ms, x.stamp);
  ticket =
      RateTicket{x.b * kKeyedWays + x.way, static_cast<uint32_t>(slot_at), index, mine, replaced};
  // seq_cst: partner of the claimer's begin_write (seq_cst) and its load of
  // last_ms (Dekker).
  if (aref(x.e.head.version).load(std::memory_order_seq_cst) != x.version) {
    refund(ticket);  // the entry was taken for another user meanwhile
    return Take::kMoved;
  }
  return Take::kAccepted;
}

void RateLimiter::refund(const RateTicket& ticket) noexcept {
  PERFQ_ASSERT(ticket.entry < t_.entries() && ticket.slot < limit_);
  if (ticket.entry >= t_.entries() || ticket.slot >= limit_) return;
  uint64_t* c = cells(ticket.entry / kKeyedWays, ticket.entry % kKeyedWays);
  uint64_t expected = ticket.cell;
  // The chain's previous accept (index - limit) is again the one that counts.
  // If the CAS fails, index + limit was already judged against this accept:
  // nothing to take back.
  (void)aref(c[ticket.slot])
      .compare_exchange_strong(expected, cell_of(ticket.index, cell_time(ticket.replaced)),
                               std::memory_order_acq_rel, std::memory_order_relaxed);
}

uint32_t RateLimiter::release_writer(uint32_t client_id) noexcept {
  return t_.release_writer(client_id, [&](const std::byte* raw) {
    const RateEntry& e = at(raw);
    const uint8_t len = load_relaxed(e.user_len);
    if (len > kUserIdMaxBytes) return false;
    char user[kUserIdMaxBytes];
    load_text(e.user, user);
    return t_.hash({user, len}, {}) == load_relaxed(e.head.hash);
  });
}

}  // namespace perfq::shm
