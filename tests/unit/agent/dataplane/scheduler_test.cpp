// The scheduler without a segment: band order, aging, the no-worker
// queues, and its timers (backoffs, deadlines, queue timeouts).
#include "dataplane/scheduler.hpp"

#include <gtest/gtest.h>

#include <string_view>
#include <vector>

namespace perfq::agent {
namespace {

constexpr uint64_t kMs = 1'000'000;
constexpr int kCritical = static_cast<int>(Band::kCritical);
constexpr int kHigh = static_cast<int>(Band::kHigh);
constexpr int kNormal = static_cast<int>(Band::kNormal);
constexpr int kLow = static_cast<int>(Band::kLow);

Config config() {
  Config cfg;
  cfg.aging_ms = 100;
  cfg.queue_timeout_ms = 1000;
  cfg.processing_timeout_ms = 500;
  cfg.retry_backoff_ms = 10;
  cfg.retry_jitter = 0.1;
  cfg.max_concurrent_workers = 4;
  return cfg;
}

Pending request(uint32_t slot, int band, uint64_t eligible_ns) {
  return Pending{slot, 1, eligible_ns, static_cast<uint8_t>(band)};
}

// Serves every band to the end at `now_ns`; the slots in the order served.
std::vector<uint32_t> serve_all(Scheduler& s, uint64_t now_ns) {
  const bool none_blocked[kBandCount] = {};
  std::vector<uint32_t> order;
  for (int b = s.pick_band(now_ns, none_blocked); b >= 0; b = s.pick_band(now_ns, none_blocked)) {
    order.push_back(s.front(b).slot);
    s.pop_front(b);
  }
  return order;
}

TEST(Scheduler, BandsAreServedInPriorityOrderAndFifoWithinABand) {
  Scheduler s(config());
  const uint64_t t = 1000 * kMs;
  s.enqueue(request(1, kLow, t));
  s.enqueue(request(2, kNormal, t));
  s.enqueue(request(3, kCritical, t));
  s.enqueue(request(4, kHigh, t));
  s.enqueue(request(5, kCritical, t));
  s.enqueue(request(6, kLow, t));
  EXPECT_EQ(serve_all(s, t), (std::vector<uint32_t>{3, 5, 4, 2, 1, 6}));
}

TEST(Scheduler, FrontAgedPastAgingMsGoesBeforeYoungerFrontsOfHigherBands) {
  Scheduler s(config());
  const uint64_t t = 1000 * kMs;
  s.enqueue(request(1, kLow, t));
  s.enqueue(request(2, kCritical, t + 50 * kMs));
  const bool none_blocked[kBandCount] = {};
  // 99 ms: not aged yet, band order.
  EXPECT_EQ(s.pick_band(t + 99 * kMs, none_blocked), kCritical);
  // 100 ms: the LOW front has waited aging_ms and the CRITICAL one has not.
  EXPECT_EQ(s.pick_band(t + 100 * kMs, none_blocked), kLow);
}

TEST(Scheduler, AmongAgedFrontsTheOldestGoesFirst) {
  Scheduler s(config());
  const uint64_t t = 1000 * kMs;
  s.enqueue(request(1, kHigh, t + 10 * kMs));
  s.enqueue(request(2, kLow, t));
  s.enqueue(request(3, kNormal, t + 5 * kMs));
  EXPECT_EQ(serve_all(s, t + 500 * kMs), (std::vector<uint32_t>{2, 3, 1}));
}

TEST(Scheduler, BlockedBandIsPassedOver) {
  Scheduler s(config());
  const uint64_t t = 1000 * kMs;
  s.enqueue(request(1, kCritical, t));
  s.enqueue(request(2, kNormal, t));
  bool blocked[kBandCount] = {};
  blocked[kCritical] = true;
  EXPECT_EQ(s.pick_band(t, blocked), kNormal);
  blocked[kNormal] = true;
  EXPECT_EQ(s.pick_band(t, blocked), -1);
}

TEST(Scheduler, ReturnedRequestGoesBeforeItsBandsQueue) {
  Scheduler s(config());
  const uint64_t t = 1000 * kMs;
  s.enqueue(request(1, kNormal, t));
  s.return_front(request(2, kNormal, t));
  EXPECT_EQ(serve_all(s, t), (std::vector<uint32_t>{2, 1}));
}

TEST(Scheduler, RequestsWaitingForAWorkerReturnToTheirBandsOldestFirst) {
  Scheduler s(config());
  const uint64_t t = 1000 * kMs;
  s.enqueue(request(9, kHigh, t + 1 * kMs));  // already queued: goes after the returning ones
  s.wait_for_worker("resize", request(1, kHigh, t));
  s.wait_for_worker("resize", request(2, kHigh, t));
  s.wait_for_worker("mail", request(3, kLow, t));
  EXPECT_EQ(s.waiting_for_worker(kHigh), 2u);
  EXPECT_EQ(s.waiting_for_worker(kLow), 1u);
  s.release_waiting([](std::string_view type) { return type == "resize"; });
  EXPECT_EQ(s.waiting_for_worker(kHigh), 0u);
  EXPECT_EQ(s.waiting_for_worker(kLow), 1u);
  EXPECT_EQ(serve_all(s, t), (std::vector<uint32_t>{1, 2, 9}));
}

TEST(Scheduler, QueueTimeoutTakesOnlyFrontsEligibleForQueueTimeoutMs) {
  Scheduler s(config());
  const uint64_t t = 1000 * kMs;
  s.enqueue(request(1, kNormal, t));
  s.enqueue(request(2, kNormal, t + 10 * kMs));
  s.enqueue(request(3, kLow, t));
  s.wait_for_worker("resize", request(4, kHigh, t));
  std::vector<uint32_t> expired;
  auto take = [&](const Pending& p) {
    expired.push_back(p.slot);
    return p.slot != 3;  // slot 3 moved on meanwhile: not counted
  };
  EXPECT_EQ(s.expire_bands(t + 999 * kMs, take), 0);
  EXPECT_EQ(s.expire_bands(t + 1000 * kMs, take), 1);
  EXPECT_EQ(expired, (std::vector<uint32_t>{1, 3}));
  EXPECT_EQ(s.band_size(kNormal), 1u);
  EXPECT_EQ(s.expire_waiting(t + 1000 * kMs, take), 1);
  EXPECT_EQ(s.waiting_for_worker(kHigh), 0u);
}

TEST(Scheduler, RetryIsDueAtItsTimeNotBeforeAndInTimeOrder) {
  Scheduler s(config());
  s.schedule_retry(Timer{300, 1, 1, 1});
  s.schedule_retry(Timer{100, 2, 1, 1});
  s.schedule_retry(Timer{200, 3, 1, 1});
  Timer t{};
  EXPECT_FALSE(s.pop_due_retry(99, t));
  ASSERT_TRUE(s.pop_due_retry(250, t));
  EXPECT_EQ(t.slot, 2u);
  ASSERT_TRUE(s.pop_due_retry(250, t));
  EXPECT_EQ(t.slot, 3u);
  EXPECT_FALSE(s.pop_due_retry(250, t));
  ASSERT_TRUE(s.pop_due_retry(300, t));
  EXPECT_EQ(t.slot, 1u);
}

TEST(Scheduler, BackoffDoublesPerFailedAttemptWithinTheJitter) {
  Scheduler s(config());  // retry_backoff_ms 10, jitter 0.1
  for (uint8_t k = 0; k < 4; ++k) {
    const double base = 10.0 * kMs * static_cast<double>(1u << k);
    for (int i = 0; i < 100; ++i) {
      const auto d = static_cast<double>(s.backoff_ns(k));
      EXPECT_GE(d, base * 0.9) << "attempt " << int{k};
      EXPECT_LE(d, base * 1.1) << "attempt " << int{k};
    }
  }
}

TEST(Scheduler, DeadlineIsDueProcessingTimeoutMsAfterDispatch) {
  Scheduler s(config());  // processing_timeout_ms 500
  const uint64_t t = 1000 * kMs;
  s.start_deadline(Timer{s.deadline_for(t), 1, 1, 1});
  s.start_deadline(Timer{s.deadline_for(t + kMs), 2, 1, 1});
  Timer d{};
  EXPECT_FALSE(s.pop_due_deadline(t + 499 * kMs, d));
  ASSERT_TRUE(s.pop_due_deadline(t + 500 * kMs, d));
  EXPECT_EQ(d.slot, 1u);
  EXPECT_FALSE(s.pop_due_deadline(t + 500 * kMs, d));
}

TEST(Scheduler, RestoredDeadlinesAreServedInTimeOrder) {
  Scheduler s(config());
  s.restore_deadlines({Timer{300, 1, 1, 1}, Timer{100, 2, 1, 1}, Timer{200, 3, 1, 1}});
  std::vector<uint32_t> order;
  for (Timer d{}; s.pop_due_deadline(1000, d);) order.push_back(d.slot);
  EXPECT_EQ(order, (std::vector<uint32_t>{2, 3, 1}));
}

TEST(Scheduler, DeadlinesAreTrimmedToTheLiveOnesOnlyPastTheirBound) {
  Scheduler s(config());  // bound: 2 x 4 + 1024
  const size_t bound = 2 * 4 + 1024;
  for (uint32_t i = 0; i < bound; ++i) s.start_deadline(Timer{i, i, 1, 1});
  auto even = [](const Timer& t) { return t.slot % 2 == 0; };
  s.trim_deadlines(even);
  EXPECT_EQ(s.deadline_count(), bound);  // within the bound: kept as they are
  s.start_deadline(Timer{bound, static_cast<uint32_t>(bound), 1, 1});
  s.trim_deadlines(even);
  EXPECT_EQ(s.deadline_count(), bound / 2 + 1);
}

}  // namespace
}  // namespace perfq::agent
