#include "perfq/shm/tables/idempotency.hpp"

#include <limits>

#include "perfq/core/assert.hpp"
#include "perfq/core/clock.hpp"

namespace perfq::shm {

namespace {

// Scans, claims and waits before a lookup gives up. Each round either
// follows another process's completed change to the bucket or parks.
constexpr uint32_t kRounds = 4096;

// What a scan keeps of one entry.
struct Snap {
  uint64_t expires_mono_ns = 0;
  IdempotencyTable::Original original{};
};

IdempotencyEntry& at(std::byte* e) noexcept {
  return *reinterpret_cast<IdempotencyEntry*>(e);
}
const IdempotencyEntry& at(const std::byte* e) noexcept {
  return *reinterpret_cast<const IdempotencyEntry*>(e);
}

Error conflict() {
  return Error{Errc::kConflict, "a submit with this idempotency key is in progress"};
}

// Reads an entry for a scan; the key is compared (and the Original copied)
// only when the stored hash is the probe's.
auto reader(std::string_view user, std::string_view key) {
  return [user, key](const std::byte* raw, bool compare, Snap& out) {
    const IdempotencyEntry& e = at(raw);
    out.expires_mono_ns = load_relaxed(e.expires_mono_ns);
    if (!compare) return false;
    if (load_relaxed(e.user_len) != user.size() || load_relaxed(e.key_len) != key.size() ||
        !text_equals(e.user, user) || !text_equals(e.key, key)) {
      return false;
    }
    IdempotencyTable::Original& o = out.original;
    o.request_id = load_relaxed(e.request_id);
    o.created_unix_ns = load_relaxed(e.created_unix_ns);
    o.mode = load_relaxed(e.mode);
    o.priority = load_relaxed(e.priority);
    o.band = load_relaxed(e.band);
    o.type_len = load_relaxed(e.type_len);
    load_text(e.type, o.type);
    if (o.type_len > kTypeMaxBytes) o.type_len = 0;  // checked after reading
    return true;
  };
}

bool inputs_valid(std::string_view user, std::string_view key) noexcept {
  return user.size() <= kUserIdMaxBytes && !key.empty() && key.size() <= kIdempotencyKeyMaxBytes;
}

}  // namespace

void IdempotencyTable::format(void* mem, uint32_t entries) noexcept {
  KeyedTable::format(mem, entries, sizeof(IdempotencyEntry), TableKind::kIdempotency, 0, 0);
}

Result<IdempotencyTable> IdempotencyTable::attach(void* mem, uint64_t bytes) {
  auto t = KeyedTable::attach(mem, bytes, TableKind::kIdempotency);
  if (!t) return t.error();
  if (load_relaxed(t->header().entry_stride) != sizeof(IdempotencyEntry)) {
    return Error{Errc::kSegmentInvalid, "idempotency table: entry stride is not 384"};
  }
  return IdempotencyTable(*t);
}

std::variant<IdempotencyTable::Original, IdempotencyTable::Claim, Error>
IdempotencyTable::lookup_or_claim(std::string_view user, std::string_view key, uint64_t now_mono_ns,
                                  uint32_t client_id, uint64_t wait_ns) {
  PERFQ_ASSERT(client_id < kKeyedMaxClients);
  if (!inputs_valid(user, key) || client_id >= kKeyedMaxClients) {
    return Error{Errc::kInvalidRequest, "idempotency lookup: user, key or client id out of range"};
  }
  const uint64_t hash = t_.hash(user, key);
  const uint32_t b = t_.bucket_of(hash);
  const uint16_t fp = fingerprint(hash);
  const auto read = reader(user, key);

  // The end of the wait for a claim in progress: real time, set at its start.
  uint64_t deadline = 0;

  for (uint32_t round = 0; round < kRounds; ++round) {  // bound: kRounds
    const BucketScan<Snap> s = t_.scan<Snap>(b, hash, read);
    if (s.found >= 0 && now_mono_ns < s.snap[s.found].expires_mono_ns) {
      return s.snap[s.found].original;
    }
    // The key's own expired entry is replaced in place: a key has one way.
    int way = s.pending < 0 ? s.found : -1;
    if (s.pending < 0 && way < 0) {
      // Free way: EMPTY, else the READY way that expires first (expired
      // ones, this key's included, expire before any live one).
      uint64_t earliest = std::numeric_limits<uint64_t>::max();
      for (uint32_t w = 0; w < kKeyedWays; ++w) {
        const WayState st = field_state(way_field(s.word, w));
        if (st == WayState::kEmpty) {
          way = static_cast<int>(w);
          break;
        }
        if (st == WayState::kReady && (s.stable & (1u << w)) != 0 &&
            s.snap[w].expires_mono_ns <= earliest) {
          earliest = s.snap[w].expires_mono_ns;
          way = static_cast<int>(w);
        }
      }
    }
    if (way >= 0) {
      const auto w = static_cast<uint32_t>(way);
      if (!t_.claim(s, b, w, client_id, fp)) continue;  // the bucket moved: look again
      (void)t_.mark_claimed(
          b, w, client_id, hash, [](std::byte*) { return true; },
          [&](std::byte* raw) {
            IdempotencyEntry& e = at(raw);
            aref(e.expires_mono_ns).store(0, std::memory_order_relaxed);
            aref(e.user_len).store(static_cast<uint8_t>(user.size()), std::memory_order_relaxed);
            aref(e.key_len).store(static_cast<uint8_t>(key.size()), std::memory_order_relaxed);
            store_text(e.user, user);
            store_text(e.key, key);
          });
      return Claim{b, static_cast<uint8_t>(w), static_cast<uint16_t>(client_id)};
    }
    // The key is being inserted (or may be), or every way is: wait for the
    // bucket or that entry to change.
    const uint64_t now_ns = mono_now_ns();
    if (deadline == 0) {
      deadline = wait_ns > std::numeric_limits<uint64_t>::max() - now_ns
                     ? std::numeric_limits<uint64_t>::max()
                     : now_ns + wait_ns;
    }
    if (now_ns >= deadline) return conflict();
    const int on = s.pending;
    (void)t_.wait_change(b, s.word, on, on >= 0 ? s.version[on] : 0, deadline);
  }
  return conflict();
}

std::optional<IdempotencyTable::Original> IdempotencyTable::find(std::string_view user,
                                                                 std::string_view key,
                                                                 uint64_t now_mono_ns) const {
  if (!inputs_valid(user, key)) return std::nullopt;
  const uint64_t hash = t_.hash(user, key);
  const BucketScan<Snap> s = t_.scan<Snap>(t_.bucket_of(hash), hash, reader(user, key));
  if (s.found >= 0 && now_mono_ns < s.snap[s.found].expires_mono_ns) {
    return s.snap[s.found].original;
  }
  return std::nullopt;
}

void IdempotencyTable::publish(const Claim& claim, const Original& value, std::string_view user,
                               std::string_view key, std::string_view type,
                               uint64_t expires_mono_ns) noexcept {
  PERFQ_ASSERT(claim.bucket < t_.buckets() && claim.way < kKeyedWays);
  PERFQ_ASSERT(user.size() <= kUserIdMaxBytes && key.size() <= kIdempotencyKeyMaxBytes);
  if (claim.bucket >= t_.buckets() || claim.way >= kKeyedWays) return;
  if (user.size() > kUserIdMaxBytes) user = user.substr(0, kUserIdMaxBytes);
  if (key.size() > kIdempotencyKeyMaxBytes) key = key.substr(0, kIdempotencyKeyMaxBytes);
  if (type.size() > kTypeMaxBytes) type = type.substr(0, kTypeMaxBytes);
  const uint64_t hash = t_.hash(user, key);
  PERFQ_ASSERT(t_.bucket_of(hash) == claim.bucket && "publish() with another key than the claim's");
  (void)t_.publish(claim.bucket, claim.way, claim.client, fingerprint(hash), [&](std::byte* raw) {
    IdempotencyEntry& e = at(raw);
    // The key again, so the published entry matches its fingerprint even
    // if a caller passed another key than it claimed.
    aref(e.head.hash).store(hash, std::memory_order_relaxed);
    aref(e.user_len).store(static_cast<uint8_t>(user.size()), std::memory_order_relaxed);
    aref(e.key_len).store(static_cast<uint8_t>(key.size()), std::memory_order_relaxed);
    store_text(e.user, user);
    store_text(e.key, key);
    aref(e.request_id).store(value.request_id, std::memory_order_relaxed);
    aref(e.created_unix_ns).store(value.created_unix_ns, std::memory_order_relaxed);
    aref(e.expires_mono_ns).store(expires_mono_ns, std::memory_order_relaxed);
    aref(e.mode).store(value.mode, std::memory_order_relaxed);
    aref(e.priority).store(value.priority, std::memory_order_relaxed);
    aref(e.band).store(value.band, std::memory_order_relaxed);
    aref(e.type_len).store(static_cast<uint8_t>(type.size()), std::memory_order_relaxed);
    store_text(e.type, type);
  });
}

void IdempotencyTable::abandon(const Claim& claim) noexcept {
  PERFQ_ASSERT(claim.bucket < t_.buckets() && claim.way < kKeyedWays);
  if (claim.bucket >= t_.buckets() || claim.way >= kKeyedWays) return;
  (void)t_.abandon(claim.bucket, claim.way, claim.client);
}

uint32_t IdempotencyTable::release_writer(uint32_t client_id) noexcept {
  return t_.release_writer(client_id, [&](const std::byte* raw) {
    // The entry is the published one only if its key still hashes to it.
    const IdempotencyEntry& e = at(raw);
    const uint8_t user_len = load_relaxed(e.user_len);
    const uint8_t key_len = load_relaxed(e.key_len);
    if (user_len > kUserIdMaxBytes || key_len == 0 || key_len > kIdempotencyKeyMaxBytes ||
        load_relaxed(e.type_len) > kTypeMaxBytes) {
      return false;
    }
    char user[kUserIdMaxBytes];
    char key[kIdempotencyKeyMaxBytes];
    load_text(e.user, user);
    load_text(e.key, key);
    return t_.hash({user, user_len}, {key, key_len}) == load_relaxed(e.head.hash);
  });
}

}  // namespace perfq::shm
