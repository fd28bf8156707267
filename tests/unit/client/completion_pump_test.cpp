// The completion pump against a producer of an agent running in a thread:
// outcomes reach the callback, a forgotten request stays due until it
// settles and is then dropped, and close() stops the thread whatever is in
// flight. Requests settle by cancel() (no worker needed) or by a worker.
#include "perfq/client/completion_pump.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "perfq/perfq.hpp"

namespace perfq {
namespace {

using namespace std::chrono_literals;

constexpr auto kBound = 10s;
constexpr std::string_view kUser = "user-1";

// What the pump's callback was given, in order, with a bounded wait for it.
class Notified {
 public:
  CompletionPump::Notify callback() {
    return [this](std::span<const uint64_t> ids) {
      {
        std::lock_guard lock(mu_);
        ids_.insert(ids_.end(), ids.begin(), ids.end());
        ++calls_;
      }
      cv_.notify_all();
    };
  }
  // Waits (at most kBound) until `id` was notified.
  bool wait_for(uint64_t id) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kBound,
                        [&] { return std::find(ids_.begin(), ids_.end(), id) != ids_.end(); });
  }
  bool seen(uint64_t id) {
    std::lock_guard lock(mu_);
    return std::find(ids_.begin(), ids_.end(), id) != ids_.end();
  }
  size_t calls() {
    std::lock_guard lock(mu_);
    return calls_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<uint64_t> ids_;
  size_t calls_ = 0;
};

class CompletionPumpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto p = Producer::connect(agent_.segment());
    ASSERT_TRUE(p.ok()) << p.error().message;
    producer_ = std::move(*p);
  }

  // Submits one request of `type` and hands its future to `pump`.
  uint64_t submit_tracked(CompletionPump& pump, std::string_view type) {
    auto s = producer_->submit(test::make_request(type, kUser, "x"));
    EXPECT_TRUE(s.ok()) << s.error().message;
    if (!s.ok()) return 0;
    EXPECT_TRUE(s->outcome.valid());
    EXPECT_FALSE(pump.track(s->request_id, std::move(s->outcome)));
    return s->request_id;
  }

  void cancel(uint64_t id) { ASSERT_TRUE(producer_->cancel(id, kUser).ok()); }

  test::QueueName queue_;
  test::AgentThread agent_{test::test_config(queue_.str())};
  std::unique_ptr<Producer> producer_;  // outlives every pump of a test (declared after)
};

TEST_F(CompletionPumpTest, SettledOutcomesArriveThroughTheCallbackAndAreCollectedOnce) {
  auto worker = Worker::connect(agent_.segment());
  ASSERT_TRUE(worker.ok());
  ASSERT_TRUE((*worker)
                  ->register_processor("echo",
                                       [](const Job& j) {
                                         return Reply::ok(std::string(reinterpret_cast<const char*>(
                                                                          j.payload.data()),
                                                                      j.payload.size()) +
                                                          "!");
                                       })
                  .ok());
  std::atomic<bool> stop{false};
  std::thread wt([&] { (*worker)->run(stop); });

  Notified notified;
  CompletionPump pump(*producer_, notified.callback());
  std::vector<uint64_t> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(submit_tracked(pump, "echo"));
  for (const uint64_t id : ids) {
    ASSERT_TRUE(notified.wait_for(id)) << "outcome of " << id << " never notified";
    EXPECT_EQ(pump.state(id), CompletionPump::State::kSettled);
  }
  EXPECT_EQ(pump.tracked(), 3u);
  for (const uint64_t id : ids) {
    auto o = pump.collect(id);
    ASSERT_TRUE(o.has_value());
    EXPECT_EQ(o->request_id, id);
    EXPECT_EQ(o->status, Status::kCompleted);
    EXPECT_EQ(o->result_text(), "x!");
    EXPECT_EQ(pump.state(id), CompletionPump::State::kUnknown);
    EXPECT_FALSE(pump.collect(id).has_value());  // collected once
  }
  EXPECT_EQ(pump.tracked(), 0u);
  stop = true;
  wt.join();
}

TEST_F(CompletionPumpTest, CollectAllHandsOverEverySettledOutcomeOldestFirst) {
  Notified notified;
  CompletionPump pump(*producer_, notified.callback());
  const uint64_t a = submit_tracked(pump, "t.nobody");
  const uint64_t b = submit_tracked(pump, "t.nobody");
  cancel(a);
  ASSERT_TRUE(notified.wait_for(a));
  cancel(b);
  ASSERT_TRUE(notified.wait_for(b));
  std::vector<Outcome> all = pump.collect_all();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].request_id, a);
  EXPECT_EQ(all[1].request_id, b);
  EXPECT_EQ(all[0].status, Status::kCancelled);
  EXPECT_EQ(pump.tracked(), 0u);
  EXPECT_TRUE(pump.collect_all().empty());
}

TEST_F(CompletionPumpTest, ForgottenUnsettledRequestStaysDueThenItsOutcomeIsDropped) {
  Notified notified;
  CompletionPump pump(*producer_, notified.callback());
  const uint64_t forgotten = submit_tracked(pump, "t.nobody");
  const uint64_t kept = submit_tracked(pump, "t.nobody");
  EXPECT_TRUE(pump.forget(forgotten));
  EXPECT_FALSE(pump.forget(forgotten));  // once
  EXPECT_EQ(pump.state(forgotten), CompletionPump::State::kUnknown);
  EXPECT_EQ(pump.forgotten(), 1u);  // still due: draining it frees its slot
  EXPECT_EQ(pump.tracked(), 1u);

  cancel(forgotten);
  cancel(kept);
  ASSERT_TRUE(notified.wait_for(kept));
  // The forgotten outcome was drained (it may come in the same batch as
  // `kept` or after it) and never handed to the callback.
  ASSERT_TRUE(test::eventually([&] { return pump.forgotten() == 0; }, kBound));
  EXPECT_FALSE(notified.seen(forgotten));
  EXPECT_FALSE(pump.collect(forgotten).has_value());
  EXPECT_EQ(producer_->outstanding(), 0u);  // both slots are free
  auto o = pump.collect(kept);
  ASSERT_TRUE(o.has_value());
  EXPECT_EQ(o->status, Status::kCancelled);
}

TEST_F(CompletionPumpTest, ForgettingASettledOutcomeDropsItAtOnce) {
  Notified notified;
  CompletionPump pump(*producer_, notified.callback());
  const uint64_t id = submit_tracked(pump, "t.nobody");
  cancel(id);
  ASSERT_TRUE(notified.wait_for(id));
  EXPECT_TRUE(pump.forget(id));
  EXPECT_EQ(pump.forgotten(), 0u);  // nothing left to drain
  EXPECT_EQ(pump.tracked(), 0u);
  EXPECT_FALSE(pump.collect(id).has_value());
}

TEST_F(CompletionPumpTest, UncollectedOutcomesBeyondTheBoundAreDroppedOldestFirst) {
  Notified notified;
  CompletionPumpOptions opt;
  opt.max_uncollected = 2;
  CompletionPump pump(*producer_, notified.callback(), opt);
  std::vector<uint64_t> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(submit_tracked(pump, "t.nobody"));
    cancel(ids.back());
    ASSERT_TRUE(notified.wait_for(ids.back()));
  }
  EXPECT_EQ(pump.state(ids[0]), CompletionPump::State::kUnknown);
  EXPECT_EQ(pump.state(ids[1]), CompletionPump::State::kSettled);
  EXPECT_EQ(pump.state(ids[2]), CompletionPump::State::kSettled);
}

TEST_F(CompletionPumpTest, AnOutcomeSettledBeforeItIsTrackedIsKeptWithoutACallback) {
  Notified notified;
  CompletionPump pump(*producer_, notified.callback());
  auto s = producer_->submit(test::make_request("t.nobody", kUser, "x"));
  ASSERT_TRUE(s.ok());
  cancel(s->request_id);
  ASSERT_TRUE(s->outcome.wait_for(kBound));
  EXPECT_TRUE(pump.track(s->request_id, std::move(s->outcome)));
  EXPECT_EQ(pump.state(s->request_id), CompletionPump::State::kSettled);
  EXPECT_EQ(notified.calls(), 0u);
}

TEST_F(CompletionPumpTest, CloseStopsTheThreadWithRequestsInFlight) {
  Notified notified;
  auto pump = std::make_unique<CompletionPump>(*producer_, notified.callback());
  std::vector<uint64_t> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(submit_tracked(*pump, "t.nobody"));
  EXPECT_TRUE(pump->forget(ids[0]));
  const auto t0 = std::chrono::steady_clock::now();
  pump->close();  // the thread is in wait_any: nobody serves t.nobody
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  EXPECT_TRUE(pump->closed());
  EXPECT_EQ(pump->tracked(), 0u);
  EXPECT_EQ(pump->forgotten(), 0u);
  for (const uint64_t id : ids) EXPECT_EQ(pump->state(id), CompletionPump::State::kUnknown);
  // A closed pump takes no more requests.
  auto s = producer_->submit(test::make_request("t.nobody", kUser, "x"));
  ASSERT_TRUE(s.ok());
  EXPECT_FALSE(pump->track(s->request_id, std::move(s->outcome)));
  EXPECT_EQ(pump->tracked(), 0u);
  pump->close();  // idempotent
  pump.reset();
  EXPECT_EQ(notified.calls(), 0u);
}

TEST_F(CompletionPumpTest, TheCallbackMayDestroyThePumpOnItsOwnThread) {
  std::unique_ptr<CompletionPump> pump;
  std::mutex mu;
  std::condition_variable cv;
  bool destroyed = false;
  pump = std::make_unique<CompletionPump>(*producer_, [&](std::span<const uint64_t>) {
    EXPECT_TRUE(pump->on_completion_thread());
    pump.reset();  // as a Python watcher dropping the last reference to its Queue
    std::lock_guard lock(mu);
    destroyed = true;
    cv.notify_all();
  });
  EXPECT_FALSE(pump->on_completion_thread());
  const uint64_t id = submit_tracked(*pump, "t.nobody");
  cancel(id);
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, kBound, [&] { return destroyed; }));
}

}  // namespace
}  // namespace perfq
