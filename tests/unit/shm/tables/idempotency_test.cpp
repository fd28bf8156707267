#include "perfq/shm/tables/idempotency.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <thread>
#include <variant>
#include <vector>
#include "spin_barrier.hpp"

namespace perfq::shm {
namespace {

using Original = IdempotencyTable::Original;
using Claim = IdempotencyTable::Claim;
using Found = std::variant<Original, Claim, Error>;

constexpr uint64_t kNow = 1'000'000'000'000;  // ns
constexpr uint64_t kNoWait = 0;
constexpr uint64_t kLongWait = 30'000'000'000;  // only ever cut short by the event

// A 128-byte aligned heap region holding a formatted table.
class Region {
 public:
  explicit Region(uint32_t entries, uint64_t seed = 0)
      : bytes_(IdempotencyTable::bytes_for(entries)),
        mem_(std::aligned_alloc(kCacheLine, align_up(bytes_, kCacheLine))) {
    IdempotencyTable::format(mem_, entries);
    if (seed != 0) static_cast<KeyedTableHeader*>(mem_)->seed = seed;
  }
  ~Region() { std::free(mem_); }
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  [[nodiscard]] IdempotencyTable attach() const {
    auto t = IdempotencyTable::attach(mem_, bytes_);
    EXPECT_TRUE(t) << t.error().message;
    return std::move(t).value();
  }
  [[nodiscard]] void* mem() const { return mem_; }
  [[nodiscard]] uint64_t bytes() const { return bytes_; }

 private:
  uint64_t bytes_;
  void* mem_;
};

Original original(uint64_t request_id) {
  Original o;
  o.request_id = request_id;
  o.created_unix_ns = request_id * 10;
  o.mode = 1;
  o.priority = 9;
  o.band = 1;
  return o;
}

// Claims (user, key) at `now` for `client`; fails the test if it cannot.
Claim claim_of(IdempotencyTable& t, std::string_view user, std::string_view key, uint64_t now,
               uint32_t client = 1) {
  Found f = t.lookup_or_claim(user, key, now, client, kNoWait);
  EXPECT_TRUE(std::holds_alternative<Claim>(f)) << "expected a claim (absent key)";
  return std::holds_alternative<Claim>(f) ? std::get<Claim>(f) : Claim{};
}

void insert(IdempotencyTable& t, std::string_view user, std::string_view key, uint64_t request_id,
            uint64_t expires, uint64_t now = kNow) {
  const Claim c = claim_of(t, user, key, now);
  t.publish(c, original(request_id), user, key, "type.a", expires);
}

// The request id of the live entry of (user, key); 0 if there is none.
uint64_t answer(const IdempotencyTable& t, std::string_view user, std::string_view key,
                uint64_t now) {
  const auto o = t.find(user, key, now);
  return o ? o->request_id : 0;
}

TEST(IdempotencyTable, MissClaimsAndThePublishedEntryAnswersWithTheOriginal) {
  Region r(64);
  auto t = r.attach();
  Found first = t.lookup_or_claim("alice", "order-1", kNow, 1, kNoWait);
  ASSERT_TRUE(std::holds_alternative<Claim>(first));
  const Claim c = std::get<Claim>(first);
  EXPECT_EQ(c.client, 1u);

  Original o = original(42);
  o.created_unix_ns = 1234;
  o.mode = 2;
  o.priority = 17;
  o.band = 0;
  t.publish(c, o, "alice", "order-1", "email.send", kNow + 1000);

  for (uint32_t client : {1u, 7u}) {
    Found again = t.lookup_or_claim("alice", "order-1", kNow + 999, client, kNoWait);
    ASSERT_TRUE(std::holds_alternative<Original>(again)) << "client " << client;
    const Original& got = std::get<Original>(again);
    EXPECT_EQ(got.request_id, 42u);
    EXPECT_EQ(got.created_unix_ns, 1234u);
    EXPECT_EQ(got.mode, 2);
    EXPECT_EQ(got.priority, 17);
    EXPECT_EQ(got.band, 0);
    EXPECT_EQ(got.type_text(), "email.send");
  }
}

TEST(IdempotencyTable, AnotherUsersEqualKeyIsAnotherEntry) {
  Region r(64);
  auto t = r.attach();
  insert(t, "alice", "k", 1, kNow + 1000);
  insert(t, "bob", "k", 2, kNow + 1000);  // claim_of fails the test if bob's key were found
  insert(t, "a", "bk", 3, kNow + 1000);   // ("a","bk") is not ("ab","k")
  insert(t, "ab", "k", 4, kNow + 1000);
  EXPECT_EQ(answer(t, "alice", "k", kNow), 1u);
  EXPECT_EQ(answer(t, "bob", "k", kNow), 2u);
  EXPECT_EQ(answer(t, "a", "bk", kNow), 3u);
  EXPECT_EQ(answer(t, "ab", "k", kNow), 4u);
  EXPECT_EQ(answer(t, "carol", "k", kNow), 0u);
}

TEST(IdempotencyTable, AnEntryExpiresExactlyAtItsExpiry) {
  Region r(64);
  auto t = r.attach();
  const uint64_t expires = kNow + 86'400'000'000'000;
  insert(t, "alice", "k", 7, expires);
  EXPECT_EQ(answer(t, "alice", "k", expires - 1), 7u) << "live one nanosecond before";
  Found at = t.lookup_or_claim("alice", "k", expires, 3, kNoWait);
  ASSERT_TRUE(std::holds_alternative<Claim>(at)) << "expired at its expiry: claimable again";
  t.publish(std::get<Claim>(at), original(8), "alice", "k", "t", expires + 1000);
  EXPECT_EQ(answer(t, "alice", "k", expires + 999), 8u);
  EXPECT_EQ(answer(t, "alice", "k", expires + 1000), 0u);
}

TEST(IdempotencyTable, AFullBucketEvictsTheEntryThatExpiresFirst) {
  Region r(4);  // one bucket: every key collides
  auto t = r.attach();
  // Inserted out of expiry order; k2 expires first.
  insert(t, "u", "k0", 100, kNow + 400);
  insert(t, "u", "k1", 101, kNow + 300);
  insert(t, "u", "k2", 102, kNow + 100);
  insert(t, "u", "k3", 103, kNow + 200);
  insert(t, "u", "k4", 104, kNow + 500);  // evicts k2
  EXPECT_EQ(answer(t, "u", "k2", kNow), 0u) << "the earliest expiry was evicted";
  EXPECT_EQ(answer(t, "u", "k0", kNow), 100u);
  EXPECT_EQ(answer(t, "u", "k1", kNow), 101u);
  EXPECT_EQ(answer(t, "u", "k3", kNow), 103u);
  EXPECT_EQ(answer(t, "u", "k4", kNow), 104u);
  insert(t, "u", "k5", 105, kNow + 600);  // evicts k3
  EXPECT_EQ(answer(t, "u", "k3", kNow), 0u);
  EXPECT_EQ(answer(t, "u", "k0", kNow), 100u);
  EXPECT_EQ(answer(t, "u", "k1", kNow), 101u);
}

TEST(IdempotencyTable, AnExpiredEntryIsReplacedBeforeALiveOne) {
  Region r(4);
  auto t = r.attach();
  insert(t, "u", "k0", 100, kNow + 50);  // expired at kNow + 60
  insert(t, "u", "k1", 101, kNow + 10);  // expired too, and first
  insert(t, "u", "k2", 102, kNow + 1000);
  insert(t, "u", "k3", 103, kNow + 2000);
  insert(t, "u", "k4", 104, kNow + 3000, kNow + 60);
  insert(t, "u", "k5", 105, kNow + 3000, kNow + 60);
  EXPECT_EQ(answer(t, "u", "k2", kNow + 60), 102u);
  EXPECT_EQ(answer(t, "u", "k3", kNow + 60), 103u);
  EXPECT_EQ(answer(t, "u", "k4", kNow + 60), 104u);
  EXPECT_EQ(answer(t, "u", "k5", kNow + 60), 105u);
}

TEST(IdempotencyTable, WhileClaimedTheKeyIsInProgressAndAbandonMakesItClaimable) {
  Region r(64);
  auto t = r.attach();
  const Claim c = claim_of(t, "alice", "k", kNow, 1);
  Found busy = t.lookup_or_claim("alice", "k", kNow, 2, kNoWait);
  ASSERT_TRUE(std::holds_alternative<Error>(busy));
  EXPECT_EQ(std::get<Error>(busy).code, Errc::kConflict);
  EXPECT_EQ(std::get<Error>(busy).message.find("alice"), std::string::npos);
  Found other = t.lookup_or_claim("alice", "other", kNow, 2, kNoWait);
  EXPECT_TRUE(std::holds_alternative<Claim>(other)) << "another key is not held up";

  t.abandon(c);
  Found again = t.lookup_or_claim("alice", "k", kNow, 2, kNoWait);
  ASSERT_TRUE(std::holds_alternative<Claim>(again));
  t.publish(std::get<Claim>(again), original(9), "alice", "k", "t", kNow + 10);
  EXPECT_EQ(answer(t, "alice", "k", kNow), 9u);
}

TEST(IdempotencyTable, ReleaseWriterFreesADeadWritersClaimOnly) {
  Region r(64);
  auto t = r.attach();
  (void)claim_of(t, "alice", "k", kNow, 5);  // client 5 dies holding it
  const Claim other = claim_of(t, "bob", "k", kNow, 6);
  Found held = t.lookup_or_claim("alice", "k", kNow, 7, kNoWait);
  ASSERT_TRUE(std::holds_alternative<Error>(held));

  EXPECT_EQ(t.release_writer(4), 0u);
  EXPECT_EQ(t.release_writer(5), 1u);
  EXPECT_EQ(t.release_writer(5), 0u);
  Found freed = t.lookup_or_claim("alice", "k", kNow, 7, kNoWait);
  ASSERT_TRUE(std::holds_alternative<Claim>(freed)) << "claimable once released";
  // Client 6's claim was left alone and still publishes.
  t.publish(other, original(3), "bob", "k", "t", kNow + 10);
  EXPECT_EQ(answer(t, "bob", "k", kNow), 3u);
}

TEST(IdempotencyTable, AWriterThatDiedMidEvictionGivesTheEntryBack) {
  Region r(4);
  auto t = r.attach();
  insert(t, "u", "k0", 100, kNow + 400);
  // Client 9 won the CAS on k0's way and died before writing its entry.
  const KeyedTable& kt = t.table();
  const uint64_t word = kt.load_word(0);
  int way = -1;
  for (uint32_t w = 0; w < kKeyedWays; ++w) {
    if (field_state(way_field(word, w)) == WayState::kReady) way = static_cast<int>(w);
  }
  ASSERT_GE(way, 0);
  const uint16_t fp = fingerprint(kt.hash("u", "k0"));
  kt.line(0).word = with_field(word, static_cast<uint32_t>(way), writing_field(9, fp));
  Found held = t.lookup_or_claim("u", "k0", kNow, 2, kNoWait);
  ASSERT_TRUE(std::holds_alternative<Error>(held)) << "a claim in progress may be k0's";

  EXPECT_EQ(t.release_writer(9), 1u);
  EXPECT_EQ(answer(t, "u", "k0", kNow), 100u) << "the untouched entry is READY again";
}

TEST(IdempotencyTable, AWaiterGetsConflictWhenTheClaimOutlastsItsBound) {
  Region r(64);
  auto t = r.attach();
  (void)claim_of(t, "alice", "k", kNow, 1);
  Found f = t.lookup_or_claim("alice", "k", kNow, 2, 1'000'000);
  ASSERT_TRUE(std::holds_alternative<Error>(f));
  EXPECT_EQ(std::get<Error>(f).code, Errc::kConflict);
  EXPECT_EQ(std::get<Error>(f).message, "a submit with this idempotency key is in progress");
}

TEST(IdempotencyTable, AWaiterGetsTheOriginalOnceTheWriterPublishes) {
  Region r(64);
  auto t = r.attach();
  const Claim c = claim_of(t, "alice", "k", kNow, 1);
  Found waited = Error{};
  std::thread waiter([&] { waited = t.lookup_or_claim("alice", "k", kNow, 2, kLongWait); });
  // Publish once the waiter is parked on the table's WaitWord.
  const WaitWord& ww = t.table().header().wait;
  const auto bound = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (load_acquire(ww.waiters) == 0 && std::chrono::steady_clock::now() < bound) {
    std::this_thread::yield();
  }
  EXPECT_NE(load_acquire(ww.waiters), 0u) << "the waiter parked";
  t.publish(c, original(77), "alice", "k", "t", kNow + 1000);
  waiter.join();
  ASSERT_TRUE(std::holds_alternative<Original>(waited));
  EXPECT_EQ(std::get<Original>(waited).request_id, 77u);
}

TEST(IdempotencyTable, AWaiterIsNotCutShortByOtherKeysTraffic) {
  Region r(1024);
  auto t = r.attach();
  const Claim c = claim_of(t, "alice", "k", kNow, 1);
  Found waited = Error{};
  std::thread waiter([&] { waited = t.lookup_or_claim("alice", "k", kNow, 2, kLongWait); });
  const WaitWord& ww = t.table().header().wait;
  const auto bound = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (load_acquire(ww.waiters) == 0 && std::chrono::steady_clock::now() < bound) {
    std::this_thread::yield();
  }
  // Every insert wakes the waiter; none of them is its key.
  for (uint32_t i = 0; i < 20000; ++i) {
    const std::string key = "other-" + std::to_string(i);
    Found f = t.lookup_or_claim("bob", key, kNow, 1, kNoWait);
    if (auto* o = std::get_if<Claim>(&f)) t.publish(*o, original(i + 1), "bob", key, "t", kNow + 1);
  }
  t.publish(c, original(77), "alice", "k", "t", kNow + 1000);
  waiter.join();
  ASSERT_TRUE(std::holds_alternative<Original>(waited)) << "the waiter gave up before its bound";
  EXPECT_EQ(std::get<Original>(waited).request_id, 77u);
}

TEST(IdempotencyTable, AWaiterClaimsOnceTheWriterAbandons) {
  Region r(64);
  auto t = r.attach();
  const Claim c = claim_of(t, "alice", "k", kNow, 1);
  Found waited = Error{};
  std::thread waiter([&] { waited = t.lookup_or_claim("alice", "k", kNow, 2, kLongWait); });
  const WaitWord& ww = t.table().header().wait;
  const auto bound = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (load_acquire(ww.waiters) == 0 && std::chrono::steady_clock::now() < bound) {
    std::this_thread::yield();
  }
  t.abandon(c);
  waiter.join();
  ASSERT_TRUE(std::holds_alternative<Claim>(waited));
  EXPECT_EQ(std::get<Claim>(waited).client, 2u);
}

TEST(IdempotencyTable, ConcurrentInsertsOfOneKeyHaveExactlyOneWinner) {
  constexpr uint32_t kThreads = 4;
  constexpr uint32_t kKeys = 500;
  constexpr uint32_t kOpsPerKey = 4;  // 4 x 500 = 2000 ops per thread
  constexpr uint32_t kEntries = 1u << 12;
  // A seed under which no bucket gets more than 4 of the keys, so nothing is
  // evicted and a second winner could only come from a race.
  std::vector<std::string> keys;
  for (uint32_t k = 0; k < kKeys; ++k) keys.push_back("key-" + std::to_string(k));
  uint64_t seed = 0;
  for (uint64_t s = 1; s < 64 && seed == 0; ++s) {
    std::vector<uint32_t> per_bucket(kEntries / kKeyedWays, 0);
    bool fits = true;
    for (const auto& k : keys) {
      fits = fits && ++per_bucket[key_hash(s, "user", k) & (kEntries / kKeyedWays - 1)] <= 4;
    }
    if (fits) seed = s;
  }
  ASSERT_NE(seed, 0u);
  Region r(kEntries, seed);
  auto t = r.attach();

  std::vector<std::atomic<uint32_t>> wins(kKeys);
  std::vector<std::atomic<uint64_t>> winner(kKeys);
  struct Seen {
    uint32_t key;
    uint64_t request_id;
  };
  std::vector<std::vector<Seen>> seen(kThreads);
  std::atomic<uint32_t> errors{0};
  std::atomic<uint32_t> stuck{0};
  test::SpinBarrier meet(kThreads);
  std::vector<std::thread> threads;
  for (uint32_t th = 0; th < kThreads; ++th) {
    threads.emplace_back([&, th] {
      for (uint32_t k = 0; k < kKeys; ++k) {
        if (!meet.arrive_and_wait()) {
          stuck.fetch_add(1, std::memory_order_relaxed);
          return;
        }
        for (uint32_t i = 0; i < kOpsPerKey; ++i) {
          Found f = t.lookup_or_claim("user", keys[k], kNow, th + 1, kLongWait);
          if (auto* c = std::get_if<Claim>(&f)) {
            const uint64_t id = (uint64_t{th + 1} << 32) | (k * kOpsPerKey + i);
            wins[k].fetch_add(1, std::memory_order_relaxed);
            winner[k].store(id, std::memory_order_relaxed);
            t.publish(*c, original(id), "user", keys[k], "t", ~uint64_t{0});
          } else if (auto* o = std::get_if<Original>(&f)) {
            seen[th].push_back({k, o->request_id});
          } else {
            errors.fetch_add(1, std::memory_order_relaxed);
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();

  ASSERT_EQ(stuck.load(), 0u);
  EXPECT_EQ(errors.load(), 0u);
  for (uint32_t k = 0; k < kKeys; ++k) {
    ASSERT_EQ(wins[k].load(), 1u) << "key " << k << " was claimed " << wins[k].load() << " times";
  }
  uint64_t duplicates = 0;
  for (const auto& per_thread : seen) {
    for (const Seen& s : per_thread) {
      ASSERT_EQ(s.request_id, winner[s.key].load()) << "key " << s.key;
      ++duplicates;
    }
  }
  EXPECT_EQ(duplicates, uint64_t{kThreads} * kKeys * kOpsPerKey - kKeys);
}

TEST(IdempotencyTable, AttachSaysWhichCheckFailed) {
  Region r(64);
  auto bad_size = IdempotencyTable::attach(r.mem(), r.bytes() - 1);
  ASSERT_FALSE(bad_size);
  EXPECT_EQ(bad_size.code(), Errc::kSegmentInvalid);
  EXPECT_NE(bad_size.error().message.find("needs"), std::string::npos) << bad_size.error().message;

  static_cast<KeyedTableHeader*>(r.mem())->kind = static_cast<uint32_t>(TableKind::kRateLimit);
  auto bad_kind = IdempotencyTable::attach(r.mem(), r.bytes());
  ASSERT_FALSE(bad_kind);
  EXPECT_NE(bad_kind.error().message.find("kind"), std::string::npos) << bad_kind.error().message;

  static_cast<KeyedTableHeader*>(r.mem())->magic = 0;
  auto bad_magic = IdempotencyTable::attach(r.mem(), r.bytes());
  ASSERT_FALSE(bad_magic);
  EXPECT_NE(bad_magic.error().message.find("magic"), std::string::npos);
}

TEST(IdempotencyTable, OutOfRangeInputsAreRefusedWithoutEchoingThem) {
  Region r(64);
  auto t = r.attach();
  const std::string long_user(kUserIdMaxBytes + 1, 'u');
  const std::string long_key(kIdempotencyKeyMaxBytes + 1, 'k');
  for (Found f :
       {t.lookup_or_claim(long_user, "k", kNow, 1, 0), t.lookup_or_claim("u", long_key, kNow, 1, 0),
        t.lookup_or_claim("u", "", kNow, 1, 0)}) {
    ASSERT_TRUE(std::holds_alternative<Error>(f));
    EXPECT_EQ(std::get<Error>(f).code, Errc::kInvalidRequest);
    EXPECT_EQ(std::get<Error>(f).message.find("uuuu"), std::string::npos);
  }
  // The longest user and key fit whole.
  const std::string user(kUserIdMaxBytes, 'u');
  const std::string key(kIdempotencyKeyMaxBytes, 'k');
  insert(t, user, key, 5, kNow + 10);
  EXPECT_EQ(answer(t, user, key, kNow), 5u);
  EXPECT_EQ(answer(t, user, key.substr(1), kNow), 0u);
}

}  // namespace
}  // namespace perfq::shm
