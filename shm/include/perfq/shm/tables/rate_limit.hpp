#pragma once
// The rate limiter (SPEC §4): at most `limit` accepted submits per user in
// ANY rolling window of window_ms, across every producer process. Exact: a
// log of accept times, not a token bucket. Built on a KeyedTable
// (keyed_table.hpp); no locks, bounded loops; time is always the caller's.
//
// Each user entry holds `count` (accept indices handed out so far) and
// `limit` cells; accept index n lives in cell n % limit:
//
//   cell (u64):  63            24 23          0
//               +----------------+-------------+
//               | time_ms (40)   | seq (24)    |   seq = n mod 2^24
//               +----------------+-------------+   time = ceil(now_ms), >= 1;
//                                                  0 = never (formatted, refunded to "never")
//   formatted: cell i = {seq (i - limit) mod 2^24, time 0}
//
// Accepting index n: cell n % limit must hold index n - limit; n is
// accepted iff that accept left the window (time == 0 or time + window_ms
// <= floor(now_ms)); a CAS of the cell to {n, ceil(now_ms)} takes n, then
// count n -> n + 1 (anyone who sees cell {n, _} helps).
//
// Each cell is a chain: every value a CAS puts in it is >= window_ms after
// the value it replaced, whatever order the callers' clocks arrive in. So a
// window holds at most one counted accept per cell, `limit` in all.
//
// refund(ticket) puts back the value the cell held before (the chain's
// previous accept): the refunded submit no longer counts. Its cell is then
// out of the window while the ring's oldest (n - limit) may not be, so when
// the ring's cell would refuse, one pass over the cells takes over any cell
// whose accept has left the window (CAS to {same seq, ceil(now_ms)}; count
// unchanged). A submit is refused only when all `limit` cells hold accepts
// inside the window, and retry_after_ms is when the oldest of them leaves.
//
// Entries: a new user takes an EMPTY way, else a READY way whose user has
// been idle a full window (last_ms + window_ms <= floor(now_ms)); its count
// and cells are kept (they are idle) and only the user name is rewritten.
// With 4 live users in its bucket a new user is refused (kRateLimitExceeded,
// retry_after_ms = until the first way goes idle): a full table never lets
// anyone exceed the limit. An eviction raises the bucket's horizon to the
// evicted entry's last_ms; no entry of the bucket accepts before horizon +
// window_ms, so the evicted user's next entry (same bucket) cannot start a
// fresh log inside a window of its old accepts, even for a late caller.
//
// Entry (stride = align_up(256 + 8 limit, 128)):
//   0   KeyedEntryHead   version, hash, writer, mark (24 B)
//   24  u8  user_len, 25 u8[7] reserved
//   32  u64 user[8]       userId bytes (64)
//   96  u8  reserved[32]
//   128 u64 count         accept indices handed out (monotonic)
//   136 u64 last_ms       newest accept time (ms, rounded up); never lowered
//   144 u8  reserved[112]
//   256 u64 cells[limit]
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include "perfq/core/request.hpp"
#include "perfq/core/result.hpp"
#include "perfq/shm/tables/keyed_table.hpp"

namespace perfq::shm {

struct RateEntry {
  KeyedEntryHead head;
  uint8_t user_len;
  uint8_t reserved0[7];
  uint64_t user[kUserIdMaxBytes / 8];
  uint8_t reserved1[32];
  alignas(kCacheLine) uint64_t count;  // written by every accept: a line of its own
  uint64_t last_ms;
  uint8_t reserved2[112];
  // followed by uint64_t cells[limit]
};
static_assert(std::is_standard_layout_v<RateEntry>);
static_assert(std::is_trivially_copyable_v<RateEntry>);
static_assert(offsetof(RateEntry, user_len) == 24);
static_assert(offsetof(RateEntry, user) == 32);
static_assert(offsetof(RateEntry, count) == kCacheLine);
static_assert(offsetof(RateEntry, last_ms) == kCacheLine + 8);
static_assert(sizeof(RateEntry) == 2 * kCacheLine);

// An accepted submit: which accept index it holds, for refund().
struct RateTicket {
  uint32_t entry = 0;     // 4 x bucket + way
  uint32_t slot = 0;      // the cell it took: index % limit
  uint64_t index = 0;     // accept index n (a takeover: the ring index of its cell)
  uint64_t cell = 0;      // the cell value this submit wrote
  uint64_t replaced = 0;  // the cell value it replaced (index n - limit)
};

class RateLimiter {
 public:
  static constexpr uint32_t kMaxLimit = 1u << 16;
  static constexpr uint64_t kMaxWindowMs = uint64_t{1} << 39;
  static constexpr uint32_t kCellsOffset = sizeof(RateEntry);

  [[nodiscard]] static constexpr uint32_t entry_stride(uint32_t limit) noexcept {
    return static_cast<uint32_t>(align_up(kCellsOffset + 8 * std::size_t{limit}, kCacheLine));
  }
  // entries: a power of two >= 4; limit: 1 .. kMaxLimit.
  [[nodiscard]] static uint64_t bytes_for(uint32_t entries, uint32_t limit) noexcept {
    return KeyedTable::bytes_for(entries, entry_stride(limit));
  }
  // Creator only, before the region is shared. window_ms: 1 .. kMaxWindowMs.
  static void format(void* mem, uint32_t entries, uint32_t limit, uint64_t window_ms) noexcept;
  // Any process: validates the header (magic, version, kind, sizes, limit, window).
  [[nodiscard]] static Result<RateLimiter> attach(void* mem, uint64_t bytes);

  // Producers: takes an accept for `user` at now_mono_ns, or refuses with
  // kRateLimitExceeded and Error::retry_after_ms (>= 1): when the oldest
  // accept in the window leaves it, or when a way of a full bucket goes
  // idle. Waits (parked, a few ms at most) only while another process is
  // adding this user's entry. kInvalidRequest for a user over 64 bytes or
  // a client id >= 1024. Messages never contain the user.
  [[nodiscard]] Result<RateTicket> acquire(std::string_view user, uint64_t now_mono_ns,
                                           uint32_t client_id);

  // The accepted submit was refused later (e.g. QUEUE_FULL): it no longer
  // counts. Once per ticket.
  void refund(const RateTicket& ticket) noexcept;

  // Agent, for a dead producer before its client id is reused.
  uint32_t release_writer(uint32_t client_id) noexcept;

  [[nodiscard]] uint32_t limit() const noexcept { return limit_; }
  [[nodiscard]] uint64_t window_ms() const noexcept { return window_ms_; }
  [[nodiscard]] const KeyedTable& table() const noexcept { return t_; }
  // The agent: see KeyedTable::restore_header.
  int restore_header() noexcept {
    return t_.restore_header(TableKind::kRateLimit, limit_, window_ms_);
  }

  // How long a claim of this user's entry by another process is waited for.
  static constexpr uint64_t kClaimWaitNs = 10'000'000;

 private:
  RateLimiter(KeyedTable t, uint32_t limit, uint64_t window_ms) noexcept
      : t_(t), limit_(limit), window_ms_(window_ms) {}

  // What a scan keeps of each entry it reads.
  struct Snap {
    uint64_t last_ms = 0;
  };
  // acquire()'s steps: an absent user's entry is claimed, evicting an idle
  // user if need be, and published; then an accept is taken in it.
  [[nodiscard]] bool insert(uint32_t b, uint32_t way, const BucketScan<Snap>& s, uint64_t hash,
                            std::string_view user, uint64_t now_mono_ns, uint32_t client_id);

  enum class Take : uint8_t { kAccepted, kRefused, kMoved };
  Take take(uint32_t b, uint32_t way, uint64_t version, uint64_t now_mono_ns, RateTicket& ticket,
            uint64_t& retry_after_ms) noexcept;
  // take()'s steps, over its fixed inputs (rate_limit.cpp).
  struct TakeCtx;
  Take take_other_cell(const TakeCtx& x, uint64_t n, uint64_t slot, uint64_t cell,
                       RateTicket& ticket, uint64_t& retry_after_ms) noexcept;
  Take commit(const TakeCtx& x, uint64_t slot_at, uint64_t index, uint64_t mine, uint64_t replaced,
              RateTicket& ticket) noexcept;
  [[nodiscard]] uint64_t* cells(uint32_t b, uint32_t way) const noexcept {
    return reinterpret_cast<uint64_t*>(t_.entry(b, way) + kCellsOffset);
  }

  KeyedTable t_;
  uint32_t limit_ = 0;
  uint64_t window_ms_ = 0;
};

}  // namespace perfq::shm
