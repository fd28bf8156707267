#include "perfq/shm/tables/rate_limit.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <latch>
#include <random>
#include <string>
#include <thread>
#include <vector>
#include "spin_barrier.hpp"

namespace perfq::shm {
namespace {

constexpr uint64_t ms(uint64_t v) {
  return v * 1'000'000;
}
constexpr uint64_t kT0 = 5'000'000;  // ms of CLOCK_MONOTONIC, well past one window

// A 128-byte aligned heap region holding a formatted rate limiter.
class Region {
 public:
  Region(uint32_t entries, uint32_t limit, uint64_t window_ms)
      : bytes_(RateLimiter::bytes_for(entries, limit)),
        mem_(std::aligned_alloc(kCacheLine, align_up(bytes_, kCacheLine))) {
    RateLimiter::format(mem_, entries, limit, window_ms);
  }
  ~Region() { std::free(mem_); }
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  [[nodiscard]] RateLimiter attach() const {
    auto r = RateLimiter::attach(mem_, bytes_);
    EXPECT_TRUE(r) << r.error().message;
    return std::move(r).value();
  }
  [[nodiscard]] void* mem() const { return mem_; }
  [[nodiscard]] uint64_t bytes() const { return bytes_; }

 private:
  uint64_t bytes_;
  void* mem_;
};

Result<RateTicket> at_ms(RateLimiter& r, std::string_view user, uint64_t t_ms,
                         uint32_t client = 1) {
  return r.acquire(user, ms(t_ms), client);
}

// Expects a refusal that names no user and says when to retry.
void expect_refused(const Result<RateTicket>& got, uint64_t retry_after_ms) {
  ASSERT_FALSE(got) << "accepted";
  EXPECT_EQ(got.code(), Errc::kRateLimitExceeded);
  EXPECT_EQ(got.error().retry_after_ms, retry_after_ms) << got.error().message;
  for (const char* user : {"alice", "bob", "user-"}) {
    EXPECT_EQ(got.error().message.find(user), std::string::npos) << got.error().message;
  }
}

TEST(RateLimiter, TheSixtyFirstInAWindowWaitsForTheFirstToLeave) {
  Region reg(64, 60, 60000);
  auto r = reg.attach();
  for (uint64_t i = 0; i < 60; ++i) ASSERT_TRUE(at_ms(r, "alice", kT0 + 100 * i)) << i;
  expect_refused(at_ms(r, "alice", kT0 + 10000), 50000);
  EXPECT_TRUE(at_ms(r, "alice", kT0 + 60000)) << "the first accept has left the window";
  expect_refused(at_ms(r, "alice", kT0 + 60000), 100);
  EXPECT_TRUE(at_ms(r, "alice", kT0 + 60100));
}

TEST(RateLimiter, TheWindowBoundaryIsExact) {
  Region reg(64, 60, 60000);
  auto r = reg.attach();
  for (int i = 0; i < 60; ++i) ASSERT_TRUE(at_ms(r, "alice", kT0));
  expect_refused(at_ms(r, "alice", kT0 + 59999), 1);
  EXPECT_TRUE(at_ms(r, "alice", kT0 + 60000));
}

TEST(RateLimiter, AcceptTimesAreRoundedUpSoTheWindowIsNeverShort) {
  Region reg(64, 1, 60000);
  auto r = reg.attach();
  ASSERT_TRUE(r.acquire("alice", ms(kT0) + 1, 1));  // kept as kT0 + 1 ms
  expect_refused(at_ms(r, "alice", kT0 + 60000), 1);
  EXPECT_TRUE(at_ms(r, "alice", kT0 + 60001));
}

TEST(RateLimiter, ARefundedAcquireDoesNotCount) {
  Region reg(64, 60, 60000);
  auto r = reg.attach();
  for (int i = 0; i < 59; ++i) ASSERT_TRUE(at_ms(r, "alice", kT0));
  auto sixtieth = at_ms(r, "alice", kT0 + 1);
  ASSERT_TRUE(sixtieth);
  r.refund(*sixtieth);
  EXPECT_TRUE(at_ms(r, "alice", kT0 + 2)) << "the refunded submit left room for one";
  expect_refused(at_ms(r, "alice", kT0 + 3), 59997);
}

TEST(RateLimiter, RefundsBetweenAcceptsGiveTheirRoomBack) {
  Region reg(64, 60, 60000);
  auto r = reg.attach();
  for (int i = 0; i < 30; ++i) ASSERT_TRUE(at_ms(r, "alice", kT0));
  for (int i = 0; i < 30; ++i) {  // refused later, e.g. QUEUE_FULL
    auto t = at_ms(r, "alice", kT0 + 1);
    ASSERT_TRUE(t) << i;
    r.refund(*t);
  }
  for (int i = 0; i < 30; ++i) EXPECT_TRUE(at_ms(r, "alice", kT0 + 2)) << i;
  expect_refused(at_ms(r, "alice", kT0 + 3), 59997);
  for (int i = 0; i < 30; ++i) EXPECT_TRUE(at_ms(r, "alice", kT0 + 60000)) << i;
  expect_refused(at_ms(r, "alice", kT0 + 60000), 2);
}

TEST(RateLimiter, ARefundLeavesTheAcceptBeforeItCounting) {
  Region reg(64, 1, 100);
  auto r = reg.attach();
  ASSERT_TRUE(at_ms(r, "alice", kT0));
  auto second = at_ms(r, "alice", kT0 + 100);
  ASSERT_TRUE(second);
  r.refund(*second);
  // A caller whose clock read came late: the accept at kT0 still counts.
  expect_refused(at_ms(r, "alice", kT0 + 50), 50);
  EXPECT_TRUE(at_ms(r, "alice", kT0 + 100));
}

TEST(RateLimiter, UsersAreIndependent) {
  Region reg(64, 3, 60000);
  auto r = reg.attach();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(at_ms(r, "alice", kT0));
  expect_refused(at_ms(r, "alice", kT0), 60000);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(at_ms(r, "bob", kT0)) << i;
  expect_refused(at_ms(r, "bob", kT0), 60000);
}

TEST(RateLimiter, AFullBucketRefusesANewUserUntilAWayGoesIdle) {
  Region reg(4, 3, 1000);  // one bucket: four users at most
  auto r = reg.attach();
  for (uint64_t u = 0; u < 4; ++u) {
    ASSERT_TRUE(at_ms(r, "user-" + std::to_string(u), kT0 + 100 * u));
  }
  expect_refused(at_ms(r, "user-4", kT0 + 400), 600);
  expect_refused(at_ms(r, "user-4", kT0 + 999), 1);
  // The users inside keep their limit: two more each, then refused.
  for (uint64_t u = 0; u < 4; ++u) {
    const std::string user = "user-" + std::to_string(u);
    EXPECT_TRUE(at_ms(r, user, kT0 + 100 * u));
    EXPECT_TRUE(at_ms(r, user, kT0 + 100 * u));
    expect_refused(at_ms(r, user, kT0 + 100 * u), 1000);
  }
  EXPECT_TRUE(at_ms(r, "user-4", kT0 + 1000)) << "user-0 has been idle a full window";
  expect_refused(at_ms(r, "user-0", kT0 + 1000), 100);
}

TEST(RateLimiter, AnIdleUsersWayGoesToANewUserWithItsLogAsItWas) {
  Region reg(4, 2, 1000);
  auto r = reg.attach();
  std::vector<uint32_t> entries;
  for (uint64_t u = 0; u < 4; ++u) {
    auto t = at_ms(r, "user-" + std::to_string(u), kT0 + u);
    ASSERT_TRUE(t);
    entries.push_back(t->entry);
  }
  auto fresh = at_ms(r, "user-4", kT0 + 1000);  // only user-0 is idle
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh->entry, entries[0]);
  EXPECT_TRUE(at_ms(r, "user-4", kT0 + 1000));
  expect_refused(at_ms(r, "user-4", kT0 + 1000), 1000);
}

TEST(RateLimiter, AnEvictedUserCannotRestartInsideAWindowOfItsOldAccepts) {
  Region reg(4, 2, 1000);
  auto r = reg.attach();
  ASSERT_TRUE(at_ms(r, "user-0", kT0));
  ASSERT_TRUE(at_ms(r, "user-0", kT0 + 1));
  std::vector<uint32_t> entries;
  for (uint64_t u = 1; u < 4; ++u) {
    auto t = at_ms(r, "user-" + std::to_string(u), kT0 + 500);
    ASSERT_TRUE(t);
    entries.push_back(t->entry);
  }
  ASSERT_TRUE(at_ms(r, "user-4", kT0 + 1001));  // evicts user-0
  // user-3's way empties (as after an abandoned claim), so user-0 finds room.
  const KeyedTable& kt = r.table();
  kt.line(0).word = with_field(kt.load_word(0), entries[2] % kKeyedWays, 0);
  // A user-0 submit whose clock read came late must still count the two
  // accepts at kT0 and kT0 + 1.
  expect_refused(at_ms(r, "user-0", kT0 + 600), 401);
  EXPECT_TRUE(at_ms(r, "user-0", kT0 + 1001));
}

TEST(RateLimiter, AClaimerThatDiedMidEvictionGivesTheUserBackWithItsLog) {
  Region reg(4, 2, 1000);
  auto r = reg.attach();
  auto first = at_ms(r, "alice", kT0);
  ASSERT_TRUE(first);
  ASSERT_TRUE(at_ms(r, "alice", kT0 + 1));
  // Client 9 won the CAS on alice's way and died before writing the entry.
  const KeyedTable& kt = r.table();
  const uint16_t fp = fingerprint(kt.hash("alice", {}));
  kt.line(0).word = with_field(kt.load_word(0), first->entry % kKeyedWays, writing_field(9, fp));
  auto held = at_ms(r, "alice", kT0 + 2);
  ASSERT_FALSE(held) << "a claim that may be alice's is in progress";
  EXPECT_EQ(held.code(), Errc::kRateLimitExceeded);

  EXPECT_EQ(r.release_writer(8), 0u);
  EXPECT_EQ(r.release_writer(9), 1u);
  expect_refused(at_ms(r, "alice", kT0 + 2), 998);
  EXPECT_TRUE(at_ms(r, "alice", kT0 + 1000));
}

TEST(RateLimiter, ManyThreadsAtOneInstantGetExactlyTheLimitForOneUser) {
  constexpr uint32_t kThreads = 4;
  constexpr uint32_t kRounds = 100;
  constexpr uint32_t kOpsPerRound = 4;  // 16 tries for 5 accepts each round
  constexpr uint32_t kLimit = 5;
  constexpr uint64_t kWindowMs = 1000;
  Region reg(64, kLimit, kWindowMs);
  auto r = reg.attach();
  // Round k: every thread at the same instant, a full window after round k-1.
  std::vector<std::atomic<uint32_t>> accepted(kRounds);
  std::atomic<uint32_t> odd{0};  // refusals of another kind
  std::atomic<uint32_t> stuck{0};
  test::SpinBarrier meet(kThreads);
  std::vector<std::thread> threads;
  for (uint32_t th = 0; th < kThreads; ++th) {
    threads.emplace_back([&, th] {
      for (uint32_t k = 0; k < kRounds; ++k) {
        if (!meet.arrive_and_wait()) {
          stuck.fetch_add(1, std::memory_order_relaxed);
          return;
        }
        for (uint32_t i = 0; i < kOpsPerRound; ++i) {
          auto t = r.acquire("alice", ms(kT0 + k * kWindowMs), th + 1);
          if (t) {
            accepted[k].fetch_add(1, std::memory_order_relaxed);
          } else if (t.code() != Errc::kRateLimitExceeded) {
            odd.fetch_add(1, std::memory_order_relaxed);
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(stuck.load(), 0u);
  for (uint32_t k = 0; k < kRounds; ++k) EXPECT_EQ(accepted[k].load(), kLimit) << "round " << k;
  EXPECT_EQ(odd.load(), 0u);
}

TEST(RateLimiter, RandomThreadsNeverExceedTheLimitInAnyWindow) {
  constexpr uint32_t kThreads = 4;
  constexpr uint32_t kOps = 4000;
  constexpr uint32_t kUsers = 7;  // more than the table holds: evictions, full buckets
  constexpr uint32_t kLimit = 4;
  constexpr uint64_t kWindowMs = 50;
  Region reg(8, kLimit, kWindowMs);
  auto r = reg.attach();
  std::atomic<uint64_t> clock{ms(kT0)};
  struct Accept {
    uint32_t user;
    uint64_t at_ns;
  };
  std::vector<std::vector<Accept>> kept(kThreads);
  std::atomic<uint32_t> refused{0};
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (uint32_t th = 0; th < kThreads; ++th) {
    threads.emplace_back([&, th] {
      std::mt19937_64 rng(0x5eed + th);
      start.arrive_and_wait();
      for (uint32_t i = 0; i < kOps; ++i) {
        const uint64_t now = clock.fetch_add(rng() % 300'000, std::memory_order_relaxed);
        const auto user = static_cast<uint32_t>(rng() % kUsers);
        auto t = r.acquire("user-" + std::to_string(user), now, th + 1);
        if (!t) {
          ASSERT_EQ(t.code(), Errc::kRateLimitExceeded);
          ASSERT_GE(t.error().retry_after_ms, 1u);
          refused.fetch_add(1, std::memory_order_relaxed);
        } else if (rng() % 8 == 0) {
          r.refund(*t);  // refused later (e.g. QUEUE_FULL): does not count
        } else {
          kept[th].push_back({user, now});
        }
      }
    });
  }
  for (auto& th : threads) th.join();

  std::vector<std::vector<uint64_t>> per_user(kUsers);
  uint64_t total = 0;
  for (const auto& list : kept) {
    for (const Accept& a : list) per_user[a.user].push_back(a.at_ns);
    total += list.size();
  }
  for (uint32_t u = 0; u < kUsers; ++u) {
    auto& ts = per_user[u];
    std::sort(ts.begin(), ts.end());
    // Any window of kWindowMs holds at most kLimit: accepts kLimit apart in
    // time order are at least a window apart.
    for (std::size_t i = 0; i + kLimit < ts.size(); ++i) {
      ASSERT_GE(ts[i + kLimit] - ts[i], ms(kWindowMs))
          << "user " << u << ": " << kLimit + 1 << " accepts within one window, from " << ts[i]
          << " ns";
    }
  }
  EXPECT_GT(total, 100u) << "the test accepted too little to show anything";
  EXPECT_GT(refused.load(), 100u) << "the test never ran into the limit";
}

TEST(RateLimiter, AttachChecksLimitAndStride) {
  Region reg(8, 60, 60000);
  auto ok = RateLimiter::attach(reg.mem(), reg.bytes());
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->limit(), 60u);
  EXPECT_EQ(ok->window_ms(), 60000u);

  auto* h = static_cast<KeyedTableHeader*>(reg.mem());
  h->param0 = 100;  // the stride was laid out for 60 cells, not 100
  auto bad_stride = RateLimiter::attach(reg.mem(), reg.bytes());
  ASSERT_FALSE(bad_stride);
  EXPECT_EQ(bad_stride.code(), Errc::kSegmentInvalid);
  EXPECT_NE(bad_stride.error().message.find("stride"), std::string::npos);
  h->param0 = 0;
  auto bad_limit = RateLimiter::attach(reg.mem(), reg.bytes());
  ASSERT_FALSE(bad_limit);
  EXPECT_NE(bad_limit.error().message.find("limit"), std::string::npos);
  h->param0 = 60;
  h->kind = static_cast<uint32_t>(TableKind::kIdempotency);
  EXPECT_FALSE(RateLimiter::attach(reg.mem(), reg.bytes()));
}

}  // namespace
}  // namespace perfq::shm
