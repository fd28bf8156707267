#include "perfq/shm/tables/keyed_table.hpp"

#include <sys/random.h>

#include <cstring>
#include <string>

#include "perfq/core/assert.hpp"
#include "perfq/core/clock.hpp"
#include "perfq/core/restore_word.hpp"

namespace perfq::shm {

namespace {

constexpr uint64_t kMul = 0x9e37'79b9'7f4a'7c15ull;

// murmur3's 64-bit finaliser: every input bit reaches every output bit.
constexpr uint64_t mix(uint64_t x) noexcept {
  x ^= x >> 33;
  x *= 0xff51'afd7'ed55'8ccdull;
  x ^= x >> 33;
  x *= 0xc4ce'b9fe'1a85'ec53ull;
  x ^= x >> 33;
  return x;
}

constexpr uint64_t rotl(uint64_t x, int r) noexcept {
  return (x << r) | (x >> (64 - r));
}

// Length first, so ("ab", "c") and ("a", "bc") differ.
uint64_t absorb(uint64_t h, std::string_view s) noexcept {
  h = rotl(h ^ mix(s.size() + kMul), 31) * kMul;
  std::size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {  // bound: s.size() / 8
    uint64_t w = 0;
    std::memcpy(&w, s.data() + i, 8);
    h = rotl(h ^ mix(w), 31) * kMul;
  }
  if (i < s.size()) {
    uint64_t w = 0;
    std::memcpy(&w, s.data() + i, s.size() - i);
    h = rotl(h ^ mix(w ^ kMul), 31) * kMul;
  }
  return h;
}

uint64_t random_seed(const void* mem) noexcept {
  uint64_t seed = 0;
  if (::getrandom(&seed, sizeof seed, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof seed)) {
    seed = mix(reinterpret_cast<uintptr_t>(mem) ^ kMul);
  }
  return seed;
}

}  // namespace

uint64_t key_hash(uint64_t seed, std::string_view a, std::string_view b) noexcept {
  return mix(absorb(absorb(mix(seed ^ kMul), a), b));
}

void KeyedTable::format(void* mem, uint32_t entries, uint32_t entry_stride, TableKind kind,
                        uint64_t param0, uint64_t param1) noexcept {
  PERFQ_ASSERT(entries_valid(entries));
  PERFQ_ASSERT(entry_stride % kCacheLine == 0 && entry_stride >= sizeof(KeyedEntryHead));
  const uint64_t bytes = bytes_for(entries, entry_stride);
  std::memset(mem, 0, bytes);
  auto& h = *static_cast<KeyedTableHeader*>(mem);
  h.layout_version = kKeyedTableVersion;
  h.kind = static_cast<uint32_t>(kind);
  h.entries = entries;
  h.entry_stride = entry_stride;
  h.region_bytes = bytes;
  h.param0 = param0;
  h.param1 = param1;
  h.seed = random_seed(mem);
  // release: pairs with attach()'s acquire load; the header is whole.
  aref(h.magic).store(kKeyedTableMagic, std::memory_order_release);
}

int KeyedTable::restore_header(TableKind kind, uint64_t param0, uint64_t param1) noexcept {
  KeyedTableHeader& h = header();
  int n = 0;
  n += restore_word(h.layout_version, kKeyedTableVersion);
  n += restore_word(h.kind, static_cast<uint32_t>(kind));
  n += restore_word(h.entries, buckets_ * kWays);
  n += restore_word(h.entry_stride, stride_);
  n += restore_word(h.region_bytes, bytes_for(buckets_ * kWays, stride_));
  n += restore_word(h.param0, param0);
  n += restore_word(h.param1, param1);
  n += restore_word(h.seed, seed_);
  if (load_acquire(h.magic) != kKeyedTableMagic) {
    // release: pairs with attach()'s acquire load; the words above first.
    aref(h.magic).store(kKeyedTableMagic, std::memory_order_release);
    ++n;
  }
  return n;
}

Result<KeyedTable> KeyedTable::attach(void* mem, uint64_t bytes, TableKind kind) {
  if (mem == nullptr || reinterpret_cast<uintptr_t>(mem) % kCacheLine != 0) {
    return Error{Errc::kSegmentInvalid, "keyed table: region is not 128-byte aligned"};
  }
  if (bytes < sizeof(KeyedTableHeader)) {
    return Error{Errc::kSegmentInvalid, "keyed table: region smaller than its header"};
  }
  const auto& h = *static_cast<const KeyedTableHeader*>(mem);
  // acquire: pairs with format()'s release store of the magic.
  if (load_acquire(h.magic) != kKeyedTableMagic) {
    return Error{Errc::kSegmentInvalid, "keyed table: bad magic (not formatted)"};
  }
  const uint32_t version = load_relaxed(h.layout_version);
  if (version != kKeyedTableVersion) {
    return Error{Errc::kSegmentInvalid, "keyed table: layout version " + std::to_string(version) +
                                            ", expected " + std::to_string(kKeyedTableVersion)};
  }
  const uint32_t got_kind = load_relaxed(h.kind);
  if (got_kind != static_cast<uint32_t>(kind)) {
    return Error{Errc::kSegmentInvalid, "keyed table: kind " + std::to_string(got_kind) +
                                            ", expected " +
                                            std::to_string(static_cast<uint32_t>(kind))};
  }
  const uint32_t entries = load_relaxed(h.entries);
  if (!entries_valid(entries)) {
    return Error{Errc::kSegmentInvalid, "keyed table: entry count " + std::to_string(entries) +
                                            " is not a power of two in [4, 2^28]"};
  }
  const uint32_t stride = load_relaxed(h.entry_stride);
  if (stride < sizeof(KeyedEntryHead) || stride % kCacheLine != 0) {
    return Error{Errc::kSegmentInvalid, "keyed table: entry stride " + std::to_string(stride) +
                                            " is not a multiple of 128"};
  }
  const uint64_t need = bytes_for(entries, stride);
  if (load_relaxed(h.region_bytes) != need) {
    return Error{Errc::kSegmentInvalid, "keyed table: recorded size does not match its geometry"};
  }
  if (bytes < need) {
    return Error{Errc::kSegmentInvalid, "keyed table: region of " + std::to_string(bytes) +
                                            " bytes, the table needs " + std::to_string(need)};
  }
  return KeyedTable(static_cast<std::byte*>(mem), entries / kWays, stride, load_relaxed(h.seed));
}

bool KeyedTable::finish(uint32_t b, uint32_t way, uint32_t client, uint16_t to) noexcept {
  uint64_t word = load_word(b);
  for (uint32_t i = 0; i < kCasTries; ++i) {  // bound: kCasTries (see its comment)
    const uint16_t f = way_field(word, way);
    if (field_state(f) != WayState::kWriting || writing_client(f) != client) return false;
    // release: pairs with scan's acquire load of the word; what the owner
    // wrote into the entry is visible to whoever sees the new state.
    if (aref(line(b).word)
            .compare_exchange_weak(word, with_field(word, way, to), std::memory_order_acq_rel,
                                   std::memory_order_acquire)) {
      return true;
    }
  }
  return false;
}

void KeyedTable::undo(uint32_t b, uint32_t way, uint32_t client) noexcept {
  // The claimer has not changed the entry: it is what the way held before.
  const KeyedEntryHead& h = head(b, way);
  const bool ready = load_relaxed(h.mark) == static_cast<uint8_t>(EntryMark::kPublished);
  (void)finish(b, way, client, ready ? ready_field(fingerprint(load_relaxed(h.hash))) : 0);
  notify_waiters();
}

bool KeyedTable::abandon(uint32_t b, uint32_t way, uint32_t client) noexcept {
  KeyedEntryHead& h = head(b, way);
  const uint64_t odd = begin_write(h);
  aref(h.mark).store(static_cast<uint8_t>(EntryMark::kNone), std::memory_order_relaxed);
  end_write(h, odd);
  const bool ok = finish(b, way, client, 0);
  notify_waiters();
  return ok;
}

bool KeyedTable::wait_change(uint32_t b, uint64_t word, int way, uint64_t version,
                             uint64_t deadline_ns) const noexcept {
  auto changed = [&] {
    if (load_word(b) != word) return true;
    return way >= 0 && load_acquire(head(b, static_cast<uint32_t>(way)).version) != version;
  };
  for (uint32_t i = 0; i < kParkTries; ++i) {  // bound: kParkTries, and the deadline
    const uint64_t now_ns = mono_now_ns();
    if (now_ns >= deadline_ns) return changed();
    if (park(header().wait, deadline_ns - now_ns, changed)) return true;
  }
  return changed();
}

}  // namespace perfq::shm
