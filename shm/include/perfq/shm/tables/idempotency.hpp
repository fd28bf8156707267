#pragma once
// The idempotency table (SPEC §5): (userId, idempotencyKey) -> the request a
// first submit created, kept until it expires. Written by every producer at
// once, on a KeyedTable (keyed_table.hpp): no locks, bounded loops.
//
// A submit with a key:
//
//   lookup_or_claim --live entry--------------------------> Original (a duplicate)
//        |  \--another submit holds WRITING for the key--> waits (parked, bounded),
//        |                                                 then looks again; kConflict
//        | absent or expired                               when the wait runs out
//        v
//     Claim (way WRITING, entry names the key) --enqueue ok--> publish  (READY)
//                                              --refused----> abandon  (EMPTY)
//
// Two submits of one key never both get a Claim: the claim is one CAS on
// the bucket word the lookup scanned (keyed_table.hpp).
//
// Eviction: a bucket holds 4 keys. A new key takes its own expired entry's
// way, else an EMPTY way, else the READY way with the earliest expiry (an
// expired one first): a bucket keeps the 4 live keys that expire last,
// which under one TTL are the 4 newest.
//
// An entry is live while now_mono_ns < expires_mono_ns.
//
// Entry (384 bytes, 128-aligned), under the entry's sequence lock:
//   0   KeyedEntryHead   version, hash, writer, mark (24 B)
//   24  u64 request_id
//   32  u64 created_unix_ns
//   40  u64 expires_mono_ns
//   48  u8  mode, 49 u8 priority, 50 u8 band
//   51  u8  user_len, 52 u8 key_len, 53 u8 type_len, 54 u8[2] reserved
//   56  u64 user[8]       userId bytes (64)
//   120 u64 key[16]       idempotencyKey bytes (128)
//   248 u64 type[8]       type bytes (64)
//   312 u8  reserved[72]
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <type_traits>
#include <variant>

#include "perfq/core/request.hpp"
#include "perfq/core/result.hpp"
#include "perfq/shm/tables/keyed_table.hpp"

namespace perfq::shm {

struct IdempotencyEntry {
  KeyedEntryHead head;
  uint64_t request_id;
  uint64_t created_unix_ns;
  uint64_t expires_mono_ns;
  uint8_t mode;
  uint8_t priority;
  uint8_t band;
  uint8_t user_len;
  uint8_t key_len;
  uint8_t type_len;
  uint8_t reserved0[2];
  uint64_t user[kUserIdMaxBytes / 8];
  uint64_t key[kIdempotencyKeyMaxBytes / 8];
  uint64_t type[kTypeMaxBytes / 8];
  uint8_t reserved[72];
};
static_assert(std::is_standard_layout_v<IdempotencyEntry>);
static_assert(std::is_trivially_copyable_v<IdempotencyEntry>);
static_assert(offsetof(IdempotencyEntry, request_id) == 24);
static_assert(offsetof(IdempotencyEntry, expires_mono_ns) == 40);
static_assert(offsetof(IdempotencyEntry, mode) == 48);
static_assert(offsetof(IdempotencyEntry, type_len) == 53);
static_assert(offsetof(IdempotencyEntry, user) == 56);
static_assert(offsetof(IdempotencyEntry, key) == 120);
static_assert(offsetof(IdempotencyEntry, type) == 248);
static_assert(sizeof(IdempotencyEntry) == 3 * kCacheLine);

class IdempotencyTable {
 public:
  // What the first submit of a key created (a duplicate answers with it).
  struct Original {
    uint64_t request_id = 0;
    uint64_t created_unix_ns = 0;
    uint8_t mode = 0;
    uint8_t priority = 0;
    uint8_t band = 0;
    uint8_t type_len = 0;  // lookups fill type; publish takes the type apart
    char type[kTypeMaxBytes] = {};
    [[nodiscard]] std::string_view type_text() const noexcept { return {type, type_len}; }
  };
  // An insert in progress: the way this client holds WRITING.
  struct Claim {
    uint32_t bucket = 0;
    uint8_t way = 0;
    uint16_t client = 0;
  };

  // entries: a power of two >= 4 (4 ways per bucket).
  [[nodiscard]] static uint64_t bytes_for(uint32_t entries) noexcept {
    return KeyedTable::bytes_for(entries, sizeof(IdempotencyEntry));
  }
  // Creator only, before the region is shared.
  static void format(void* mem, uint32_t entries) noexcept;
  // Any process: validates the header (magic, version, kind, sizes).
  [[nodiscard]] static Result<IdempotencyTable> attach(void* mem, uint64_t bytes);

  // Producers. Looks (user, key) up at now_mono_ns:
  //   live entry                 -> Original
  //   absent (or expired)        -> Claim: this client holds a way WRITING and
  //                                 must publish() or abandon() it
  //   a WRITING claim of the key -> parks on the table's WaitWord until it is
  //                                 published or abandoned, at most wait_ns of
  //                                 real time in all, then kConflict
  // kInvalidRequest for a user over 64 bytes, a key of 0 or over 128 bytes,
  // or a client id >= 1024. Error messages never contain the user or key.
  [[nodiscard]] std::variant<Original, Claim, Error> lookup_or_claim(std::string_view user,
                                                                     std::string_view key,
                                                                     uint64_t now_mono_ns,
                                                                     uint32_t client_id,
                                                                     uint64_t wait_ns);

  // Any process: the live entry of (user, key) at now_mono_ns, if one is
  // published. Never claims, never waits (a key being inserted is absent).
  [[nodiscard]] std::optional<Original> find(std::string_view user, std::string_view key,
                                             uint64_t now_mono_ns) const;

  // Claim owner, once the request is enqueued: writes the entry (value's
  // fields, `type`, live until expires_mono_ns) and makes it READY. `user`
  // and `key` must be the claim's. Wakes waiters. Never blocks.
  void publish(const Claim& claim, const Original& value, std::string_view user,
               std::string_view key, std::string_view type, uint64_t expires_mono_ns) noexcept;

  // Claim owner, when the submit was refused: the key is absent again.
  void abandon(const Claim& claim) noexcept;

  // Agent, for a dead producer before its client id is reused: gives back
  // every way it held WRITING. Returns how many.
  uint32_t release_writer(uint32_t client_id) noexcept;

  [[nodiscard]] const KeyedTable& table() const noexcept { return t_; }
  // The agent: see KeyedTable::restore_header.
  int restore_header() noexcept { return t_.restore_header(TableKind::kIdempotency, 0, 0); }

 private:
  explicit IdempotencyTable(KeyedTable t) noexcept : t_(t) {}
  KeyedTable t_;
};

}  // namespace perfq::shm
