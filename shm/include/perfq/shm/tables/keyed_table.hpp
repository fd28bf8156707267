#pragma once
// KeyedTable: a fixed-size 4-way set-associative table of keyed entries in a
// caller-provided shared-memory region, written by many processes at once.
// No locks: every change is a CAS on one 64-bit word, and every loop has a
// bound. The idempotency table and the rate limiter are built on it.
//
// Region (offsets from its start; every part 128-byte aligned):
//
//   0               KeyedTableHeader   256 bytes: identity, sizes, WaitWord
//   256             BucketLine[nb]     128 bytes each: bucket word, aux word
//   256 + 128 nb    entries[4 nb]      entry_stride bytes each (a multiple
//                                      of 128); entry (b, w) is number 4 b + w
//
// Bucket word: 4 ways x 16 bits; way w is bits [16 w, 16 w + 16):
//
//    15 14 13      10 9                 0
//   +-----+----------+-------------------+
//   |state|       payload (14 bits)      |
//   +-----+----------+-------------------+
//   |  0  |             0                |  EMPTY
//   |  1  | fp >> 10 |  writer client id |  WRITING: claimed by that client
//   |  2  |   fingerprint (fp, 14 bits)  |  READY: published, fp of its key
//   |  3  |   never written; skipped     |  (a corrupt way is never matched or claimed)
//
//   fp = hash >> 50 (the top 14 bits); bucket = hash & (nb - 1).
//
// Way life cycle (the WRITING owner alone writes the entry):
//
//   EMPTY ---claim---> WRITING(c) ---publish---> READY(fp)
//   READY ---claim---> WRITING(c) ---abandon---> EMPTY
//                      WRITING(c) ---undo, release_writer(c)---> what it was
//                                    (READY if the entry is still the published
//                                     one, else EMPTY)
//
// A claim is one CAS from the exact bucket word the claimer scanned, so the
// decision "no way holds this key, and way w is free" and the claim are one
// step: of two processes inserting one key, the second CAS fails, re-scans,
// and finds the first one's WRITING or READY way. After the CAS the claimer
// re-reads the versions of the entries its decision relied on; a changed one
// means the word went A -> B -> A meanwhile, and the claim is undone.
//
// Each entry starts with KeyedEntryHead. Its `version` is a sequence lock
// (core/seqlock.hpp, counter form): the owner makes it odd, writes, makes
// it even (release); readers copy with relaxed atomic loads between an
// acquire load and a re-check of `version`.
// A claim first marks its entry kClaimed with its key, so a reader that
// finds a WRITING way can tell whose key is being inserted; until it can
// (the mark is not written yet), the reader waits as for its own key.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>

#include "perfq/core/atomic.hpp"
#include "perfq/core/cache_line.hpp"
#include "perfq/core/result.hpp"
#include "perfq/core/seqlock.hpp"
#include "perfq/core/wait_word.hpp"
#include "perfq/shm/futex.hpp"

namespace perfq::shm {

inline constexpr uint64_t kKeyedTableMagic = 0x3174'6b71'6672'6570ull;  // "perfqkt1"
inline constexpr uint32_t kKeyedTableVersion = 1;
inline constexpr uint32_t kKeyedWays = 4;
// Client ids fit the 10 bits of a WRITING way.
inline constexpr uint32_t kKeyedMaxClients = 1024;
inline constexpr uint32_t kKeyedMaxEntries = 1u << 28;

enum class TableKind : uint32_t { kIdempotency = 1, kRateLimit = 2 };
enum class WayState : uint8_t { kEmpty = 0, kWriting = 1, kReady = 2, kInvalid = 3 };
// What the entry holds, written under its sequence lock.
enum class EntryMark : uint8_t {
  kNone = 0,       // nothing (formatted, abandoned or released)
  kClaimed = 1,    // the key of the claim holding the way (head.writer)
  kPublished = 2,  // a published key and its data
};

// --- Bucket word codec.
[[nodiscard]] constexpr uint16_t way_field(uint64_t word, uint32_t way) noexcept {
  return static_cast<uint16_t>(word >> (16 * way));
}
[[nodiscard]] constexpr WayState field_state(uint16_t f) noexcept {
  return static_cast<WayState>(f >> 14);
}
[[nodiscard]] constexpr uint16_t field_payload(uint16_t f) noexcept {
  return static_cast<uint16_t>(f & 0x3fff);
}
[[nodiscard]] constexpr uint16_t fingerprint(uint64_t hash) noexcept {
  return static_cast<uint16_t>(hash >> 50);
}
[[nodiscard]] constexpr uint16_t ready_field(uint16_t fp) noexcept {
  return static_cast<uint16_t>((uint32_t{2} << 14) | (fp & 0x3fffu));
}
[[nodiscard]] constexpr uint16_t writing_field(uint32_t client, uint16_t fp) noexcept {
  return static_cast<uint16_t>((uint32_t{1} << 14) | ((uint32_t{fp} >> 10) << 10) |
                               (client & 0x3ffu));
}
[[nodiscard]] constexpr uint32_t writing_client(uint16_t f) noexcept {
  return f & 0x3ffu;
}
[[nodiscard]] constexpr uint16_t writing_tag(uint16_t f) noexcept {
  return static_cast<uint16_t>((f >> 10) & 0xfu);
}
[[nodiscard]] constexpr uint64_t with_field(uint64_t word, uint32_t way, uint16_t f) noexcept {
  const uint32_t shift = 16 * way;
  return (word & ~(uint64_t{0xffff} << shift)) | (uint64_t{f} << shift);
}
static_assert(writing_client(writing_field(1023, 0x3fff)) == 1023);
static_assert(writing_tag(writing_field(5, 0x3fff)) == 0xf);
static_assert(field_state(ready_field(0x3fff)) == WayState::kReady);
static_assert(field_payload(ready_field(0x1234)) == 0x1234);

// The table hash of a key made of two byte strings (e.g. user and key), the
// same in every process. `seed` is the table's (KeyedTableHeader::seed), so
// nobody can pick keys that crowd one bucket without knowing it.
[[nodiscard]] uint64_t key_hash(uint64_t seed, std::string_view a, std::string_view b) noexcept;

struct KeyedTableHeader {
  uint64_t magic;           // 0: kKeyedTableMagic, stored last by format()
  uint32_t layout_version;  // 8: kKeyedTableVersion
  uint32_t kind;            // 12: TableKind
  uint32_t entries;         // 16: 4 x buckets, a power of two >= 4
  uint32_t entry_stride;    // 20: bytes per entry, a multiple of 128
  uint64_t region_bytes;    // 24: bytes_for(entries, entry_stride)
  uint64_t param0;          // 32: kind's own (rate limiter: limit)
  uint64_t param1;          // 40: kind's own (rate limiter: window_ms)
  uint64_t seed;            // 48: key_hash seed, random per format()
  uint8_t reserved[72];     // 56
  WaitWord wait;            // 128: lookups waiting for a WRITING way park here
};
static_assert(std::is_standard_layout_v<KeyedTableHeader>);
static_assert(std::is_trivially_copyable_v<KeyedTableHeader>);
static_assert(offsetof(KeyedTableHeader, seed) == 48);
static_assert(offsetof(KeyedTableHeader, wait) == kCacheLine);
static_assert(sizeof(KeyedTableHeader) == 2 * kCacheLine);

// One bucket word per line: claims on different buckets never share a line.
struct BucketLine {
  alignas(kCacheLine) uint64_t word;  // 0: the 4 ways (above)
  uint64_t aux;                       // 8: kind's own (rate limiter: eviction horizon, ms)
  uint8_t reserved[112];
};
static_assert(sizeof(BucketLine) == kCacheLine);
static_assert(offsetof(BucketLine, aux) == 8);

// The first 24 bytes of every entry.
struct KeyedEntryHead {
  uint64_t version;  // 0: sequence lock, odd while the way's owner writes
  uint64_t hash;     // 8: key_hash() of the key held
  uint32_t writer;   // 16: client id that marked the entry kClaimed
  uint8_t mark;      // 20: EntryMark
  uint8_t reserved[3];
};
static_assert(std::is_trivially_copyable_v<KeyedEntryHead>);
static_assert(offsetof(KeyedEntryHead, writer) == 16);
static_assert(offsetof(KeyedEntryHead, mark) == 20);
static_assert(sizeof(KeyedEntryHead) == 24);
static_assert(std::atomic_ref<uint64_t>::is_always_lock_free);
static_assert(std::atomic_ref<uint32_t>::is_always_lock_free);
static_assert(std::atomic_ref<uint8_t>::is_always_lock_free);

// --- Text fields are arrays of u64 words, copied with atomic word accesses
// (core/atomic.hpp's store_shared_text / load_shared_text).
// Writer (the way's owner): the first `len` bytes of the words are `s`, the rest zero.
template <std::size_t N>
void store_text(uint64_t (&words)[N], std::string_view s) noexcept {
  static_assert(N * 8 <= kSharedTextMax);
  char buf[N * 8] = {};
  std::memcpy(buf, s.data(), s.size() < sizeof buf ? s.size() : sizeof buf);
  store_shared_text(reinterpret_cast<char*>(words), buf, sizeof buf);
}
// Reader (under the sequence lock): copies all N words.
template <std::size_t N>
void load_text(const uint64_t (&words)[N], char (&out)[N * 8]) noexcept {
  static_assert(N * 8 <= kSharedTextMax);
  load_shared_text(reinterpret_cast<const char*>(words), N * 8, out);
}
// Reader: whether the first s.size() bytes are `s` (len is compared apart).
template <std::size_t N>
[[nodiscard]] bool text_equals(const uint64_t (&words)[N], std::string_view s) noexcept {
  if (s.size() > N * 8) return false;
  for (std::size_t i = 0; 8 * i < s.size(); ++i) {
    const uint64_t w = load_relaxed(words[i]);
    char got[8];
    std::memcpy(got, &w, 8);
    const std::size_t n = s.size() - 8 * i < 8 ? s.size() - 8 * i : 8;
    if (std::memcmp(got, s.data() + 8 * i, n) != 0) return false;
  }
  return true;
}

// What one scan of a bucket found, and the exact word it is based on.
template <class Snap>
struct BucketScan {
  uint64_t word = 0;
  uint64_t version[kKeyedWays] = {};  // last version seen of each entry read
  uint8_t stable = 0;                 // bit w: entry w was read whole; snap[w] holds it
  uint8_t relied = 0;                 // bit w: the key's presence was judged from entry w
  int8_t found = -1;                  // READY way holding the key
  int8_t pending = -1;                // WRITING (or unreadable) way holding the key, or that may
  Snap snap[kKeyedWays] = {};
};

class KeyedTable {
 public:
  static constexpr uint32_t kWays = kKeyedWays;
  // Bounds. A CAS on a bucket word fails only when another process changed
  // another way of it, so kCasTries failures in a row do not happen.
  static constexpr uint32_t kCasTries = 1u << 16;
  static constexpr uint32_t kReadTries = 8;         // torn entry reads before "unreadable"
  static constexpr uint32_t kParkTries = 1u << 20;  // wake-ups per wait_change()

  [[nodiscard]] static bool entries_valid(uint32_t entries) noexcept {
    return entries >= kWays && entries <= kKeyedMaxEntries && (entries & (entries - 1)) == 0;
  }
  [[nodiscard]] static uint64_t bytes_for(uint32_t entries, uint32_t entry_stride) noexcept {
    return sizeof(KeyedTableHeader) + uint64_t{entries / kWays} * sizeof(BucketLine) +
           uint64_t{entries} * entry_stride;
  }
  // Creator only, before any other process maps the region: zeroes it (all
  // ways EMPTY, all entries version 0, kNone) and writes the header, magic
  // last. `entries` must be entries_valid(), `entry_stride` a multiple of 128.
  static void format(void* mem, uint32_t entries, uint32_t entry_stride, TableKind kind,
                     uint64_t param0, uint64_t param1) noexcept;
  // Any process: checks the header against `kind` and the region's size and
  // says which check failed (kSegmentInvalid).
  [[nodiscard]] static Result<KeyedTable> attach(void* mem, uint64_t bytes, TableKind kind);

  // The agent, rebuilding a scribbled header (Segment::rebuild_header): a
  // view of a table whose geometry and seed it knows from its own copy,
  // whatever the header says.
  [[nodiscard]] static KeyedTable adopt(void* mem, uint32_t entries, uint32_t entry_stride,
                                        uint64_t seed) noexcept {
    return KeyedTable(static_cast<std::byte*>(mem), entries / kWays, entry_stride, seed);
  }
  [[nodiscard]] uint64_t seed() const noexcept { return seed_; }

  // The agent, on each liveness pass: rewrites every header word that
  // differs from this attached copy (a member may scribble on the header;
  // new clients attach from it). Compares first; returns the words written.
  int restore_header(TableKind kind, uint64_t param0, uint64_t param1) noexcept;

  [[nodiscard]] uint32_t buckets() const noexcept { return buckets_; }
  [[nodiscard]] uint32_t entries() const noexcept { return buckets_ * kWays; }
  [[nodiscard]] uint64_t param0() const noexcept { return load_relaxed(header().param0); }
  [[nodiscard]] uint64_t param1() const noexcept { return load_relaxed(header().param1); }
  [[nodiscard]] uint64_t hash(std::string_view a, std::string_view b) const noexcept {
    return key_hash(seed_, a, b);
  }
  [[nodiscard]] uint32_t bucket_of(uint64_t hash) const noexcept {
    return static_cast<uint32_t>(hash) & (buckets_ - 1);
  }
  [[nodiscard]] std::byte* entry(uint32_t bucket, uint32_t way) const noexcept {
    return entries_ + (uint64_t{bucket} * kWays + way) * stride_;
  }
  [[nodiscard]] KeyedEntryHead& head(uint32_t bucket, uint32_t way) const noexcept {
    return *reinterpret_cast<KeyedEntryHead*>(entry(bucket, way));
  }
  [[nodiscard]] BucketLine& line(uint32_t bucket) const noexcept {
    return reinterpret_cast<BucketLine*>(base_ + sizeof(KeyedTableHeader))[bucket];
  }
  [[nodiscard]] uint64_t load_word(uint32_t bucket) const noexcept {
    // acquire: pairs with the release CAS of the way's last transition
    // (publish: the entry's data is visible once READY is).
    return load_acquire(line(bucket).word);
  }
  [[nodiscard]] KeyedTableHeader& header() const noexcept {
    return *reinterpret_cast<KeyedTableHeader*>(base_);
  }

  // --- Sequence lock of one entry (core/seqlock.hpp, counter form).
  // Writers: the WRITING owner of its way. A way's new owner repairs a
  // version a dead writer left odd by writing: begin_write goes on from the
  // next odd value, and end_write makes it even.
  static uint64_t begin_write(KeyedEntryHead& h) noexcept {
    // seq_cst: the entry stores after it cannot move before it, and (rate
    // limiter) the claimer's load of last_ms after it is ordered after it:
    // the Dekker pair with an acceptor's last_ms update + version re-check.
    return seqlock::begin_write(h.version, std::memory_order_seq_cst);
  }
  static void end_write(KeyedEntryHead& h, uint64_t odd) noexcept {
    // release (in end_write): pairs with read_stable's acquire load; the
    // entry is whole.
    seqlock::end_write(h.version, odd);
  }
  // Any process: runs `copy` (relaxed atomic loads only) between two reads
  // of the version. True with `version` = the even version copied; false
  // after kReadTries torn or in-progress reads, with the last version seen.
  template <class Copy>
  static bool read_stable(const KeyedEntryHead& h, uint64_t& version, Copy&& copy) noexcept {
    return seqlock::read(h.version, seqlock::ReadBound{.tries = kReadTries, .yield_ns = 0}, version,
                         static_cast<Copy&&>(copy));
  }

  // Any process: scans bucket `b` for the key with hash `hash`. `read(entry,
  // compare, snap)` is run under each READY entry's sequence lock and under
  // that of each WRITING one whose fp tag matches; it fills `snap` with what
  // the caller's policy needs and returns whether the stored key equals the
  // probe (asked only when `compare`, i.e. the stored hash is the probe's).
  template <class Snap, class Read>
  [[nodiscard]] BucketScan<Snap> scan(uint32_t b, uint64_t hash, Read&& read) const noexcept;

  // Any process: claims way `way` for `client` by one CAS from s.word, then
  // re-checks the versions s.relied on. False (nothing held) if the word
  // changed, or if a relied-on entry did (the claim is undone).
  template <class Snap>
  [[nodiscard]] bool claim(const BucketScan<Snap>& s, uint32_t b, uint32_t way, uint32_t client,
                           uint16_t fp) noexcept;

  // Claim owner, right after claim(): under the sequence lock runs `check`
  // (false: give the way back as it was, and return false), then marks the
  // entry kClaimed with `hash` and `client` and runs `write` (the key).
  template <class Check, class Write>
  bool mark_claimed(uint32_t b, uint32_t way, uint32_t client, uint64_t hash, Check&& check,
                    Write&& write) noexcept;

  // Claim owner: `write` under the sequence lock, mark kPublished, then
  // WRITING(client) -> READY(fp). False if the way is no longer this
  // client's (release_writer took it back).
  template <class Write>
  bool publish(uint32_t b, uint32_t way, uint32_t client, uint16_t fp, Write&& write) noexcept;

  // Claim owner: mark kNone, WRITING(client) -> EMPTY.
  bool abandon(uint32_t b, uint32_t way, uint32_t client) noexcept;

  // Agent, for a client that is dead, before its id is reused: every way
  // WRITING(client) goes back to READY if its entry is still the published
  // one (mark kPublished and `intact(entry)`: the stored key hashes to the
  // stored hash), else to EMPTY. Bound: every bucket once. Returns the count.
  template <class Intact>
  uint32_t release_writer(uint32_t client, Intact&& intact) noexcept;

  // Any process: parks until bucket b's word is no longer `word` or (way
  // >= 0) that entry's version is no longer `version`, or until deadline_ns
  // (mono_now_ns() time). Every claim, publish, abandon, undo and release
  // wakes all waiters of the table; a waiter whose bucket did not change
  // parks again. True if it changed.
  bool wait_change(uint32_t b, uint64_t word, int way, uint64_t version,
                   uint64_t deadline_ns) const noexcept;

  void notify_waiters() const noexcept { notify(header().wait); }

 private:
  KeyedTable(std::byte* base, uint32_t buckets, uint32_t stride, uint64_t seed) noexcept
      : base_(base),
        entries_(base + sizeof(KeyedTableHeader) + uint64_t{buckets} * sizeof(BucketLine)),
        buckets_(buckets),
        stride_(stride),
        seed_(seed) {}

  // WRITING(client) at `way` -> `to`; bounded CAS loop (other ways move).
  bool finish(uint32_t b, uint32_t way, uint32_t client, uint16_t to) noexcept;
  // Gives a claimed way back as the entry says it was (READY or EMPTY).
  void undo(uint32_t b, uint32_t way, uint32_t client) noexcept;

  std::byte* base_ = nullptr;
  std::byte* entries_ = nullptr;
  uint32_t buckets_ = 0;
  uint32_t stride_ = 0;
  uint64_t seed_ = 0;
};

// --- Templates.

template <class Snap, class Read>
BucketScan<Snap> KeyedTable::scan(uint32_t b, uint64_t hash, Read&& read) const noexcept {
  BucketScan<Snap> s;
  s.word = load_word(b);
  const uint16_t fp = fingerprint(hash);
  for (uint32_t w = 0; w < kWays; ++w) {
    const uint16_t f = way_field(s.word, w);
    const WayState st = field_state(f);
    if (st != WayState::kReady && st != WayState::kWriting) continue;
    const bool fp_match =
        st == WayState::kReady ? field_payload(f) == fp : writing_tag(f) == (fp >> 10);
    if (st == WayState::kWriting && !fp_match) continue;  // another key's claim
    const KeyedEntryHead& h = head(b, w);
    const std::byte* e = entry(b, w);
    bool same = false;
    uint8_t mark = 0;
    uint32_t writer = 0;
    const bool whole = read_stable(h, s.version[w], [&] {
      mark = load_relaxed(h.mark);
      writer = load_relaxed(h.writer);
      const bool compare = fp_match && load_relaxed(h.hash) == hash;
      same = read(e, compare, s.snap[w]) && compare;
    });
    const uint8_t bit = static_cast<uint8_t>(1u << w);
    if (st == WayState::kReady) {
      if (!whole) {
        if (fp_match && s.pending < 0) s.pending = static_cast<int8_t>(w);  // may be the key
        continue;
      }
      s.stable |= bit;
      if (!fp_match) continue;  // the word says another key; nothing relied on
      s.relied |= bit;
      if (same && s.found < 0) s.found = static_cast<int8_t>(w);
      continue;
    }
    // WRITING with our tag: whose key is it?
    const bool named =
        whole && mark == static_cast<uint8_t>(EntryMark::kClaimed) && writer == writing_client(f);
    if (named) {
      s.relied |= bit;
      if (same && s.pending < 0) s.pending = static_cast<int8_t>(w);
    } else if (s.pending < 0) {
      s.pending = static_cast<int8_t>(w);  // its key is not written yet: may be ours
    }
  }
  return s;
}

template <class Snap>
bool KeyedTable::claim(const BucketScan<Snap>& s, uint32_t b, uint32_t way, uint32_t client,
                       uint16_t fp) noexcept {
  uint64_t expected = s.word;
  // acq_rel: acquire pairs with the release of the word's previous
  // transition (the entry we may reuse is whole); the re-checks below cannot
  // move before it.
  if (!aref(line(b).word)
           .compare_exchange_strong(expected, with_field(s.word, way, writing_field(client, fp)),
                                    std::memory_order_acq_rel, std::memory_order_relaxed)) {
    return false;
  }
  for (uint32_t w = 0; w < kWays; ++w) {
    if ((s.relied & (1u << w)) == 0) continue;
    // acquire: pairs with end_write; a rewrite since the scan is seen here.
    if (load_acquire(head(b, w).version) != s.version[w]) {
      undo(b, way, client);
      return false;
    }
  }
  return true;
}

template <class Check, class Write>
bool KeyedTable::mark_claimed(uint32_t b, uint32_t way, uint32_t client, uint64_t hash,
                              Check&& check, Write&& write) noexcept {
  KeyedEntryHead& h = head(b, way);
  std::byte* e = entry(b, way);
  const uint64_t odd = begin_write(h);
  if (!check(e)) {
    end_write(h, odd);
    undo(b, way, client);
    return false;
  }
  // The mark goes first: release_writer trusts only kPublished entries.
  aref(h.mark).store(static_cast<uint8_t>(EntryMark::kClaimed), std::memory_order_relaxed);
  aref(h.writer).store(client, std::memory_order_relaxed);
  aref(h.hash).store(hash, std::memory_order_relaxed);
  write(e);
  end_write(h, odd);
  notify_waiters();  // scans that could not tell whose claim this is
  return true;
}

template <class Write>
bool KeyedTable::publish(uint32_t b, uint32_t way, uint32_t client, uint16_t fp,
                         Write&& write) noexcept {
  KeyedEntryHead& h = head(b, way);
  const uint64_t odd = begin_write(h);
  write(entry(b, way));
  aref(h.mark).store(static_cast<uint8_t>(EntryMark::kPublished), std::memory_order_relaxed);
  end_write(h, odd);
  const bool ok = finish(b, way, client, ready_field(fp));
  notify_waiters();
  return ok;
}

template <class Intact>
uint32_t KeyedTable::release_writer(uint32_t client, Intact&& intact) noexcept {
  uint32_t released = 0;
  for (uint32_t b = 0; b < buckets_; ++b) {  // bound: the bucket count
    const uint64_t word = load_word(b);
    for (uint32_t w = 0; w < kWays; ++w) {
      const uint16_t f = way_field(word, w);
      if (field_state(f) != WayState::kWriting || writing_client(f) != client) continue;
      KeyedEntryHead& h = head(b, w);
      // The writer is dead: nobody else writes this entry now.
      const bool keep = load_relaxed(h.mark) == static_cast<uint8_t>(EntryMark::kPublished) &&
                        intact(static_cast<const std::byte*>(entry(b, w)));
      const uint64_t odd = begin_write(h);
      if (!keep)
        aref(h.mark).store(static_cast<uint8_t>(EntryMark::kNone), std::memory_order_relaxed);
      end_write(h, odd);
      const uint16_t to = keep ? ready_field(fingerprint(load_relaxed(h.hash))) : uint16_t{0};
      if (finish(b, w, client, to)) ++released;
    }
  }
  if (released != 0) notify_waiters();
  return released;
}

}  // namespace perfq::shm
