// The time rules of SPEC §4/§5 on a manual clock: retry backoff with jitter,
// queue timeout, processing timeout (late results dropped), and aging. The
// agent, a worker and a producer share one thread and one mapping; the test
// turns their duty cycles by hand and moves the clock, so nothing waits.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "harness.hpp"
#include "perfq/agent/dead_letter.hpp"
#include "perfq/client/events.hpp"
#include "perfq/shm/admission.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq {
namespace {

class ManualClock final : public Clock {
 public:
  uint64_t now_mono_ns() const noexcept override { return now_; }
  uint64_t now_unix_ns() const noexcept override { return 1'700'000'000'000'000'000ull + now_; }
  void advance_ms(uint64_t ms) { now_ += ms * 1'000'000; }

 private:
  uint64_t now_ = 1'000'000'000'000;  // any start far from zero
};

constexpr uint64_t kMs = 1'000'000;

class TimeRules : public ::testing::Test {
 protected:
  void start(const std::function<void(agent::Config&)>& tune = {}) {
    cfg_ = test::test_config(q_.str());
    cfg_.retry_backoff_ms = 1000;
    cfg_.retry_jitter = 0.1;
    cfg_.max_retry_attempts = 3;
    cfg_.liveness_interval_ms = 1;
    if (tune) tune(cfg_);
    auto a = agent::Conductor::open(cfg_, clock_);
    ASSERT_TRUE(a.ok()) << a.error().message;
    agent_ = std::move(*a);
    auto p = Producer::connect(agent_->segment());
    ASSERT_TRUE(p.ok());
    producer_ = std::move(*p);
  }

  Worker& add_worker(const std::string& type, Processor fn, uint32_t max_inflight = 64) {
    auto w =
        Worker::connect(agent_->segment(), WorkerOptions{IdleKind::kPark, max_inflight, &clock_});
    EXPECT_TRUE(w.ok());
    EXPECT_TRUE((*w)->register_processor(type, std::move(fn)).ok());
    workers_.push_back(std::move(*w));
    return *workers_.back();
  }

  // A worker with a batch processor; `sizes` gets the size of each call.
  Worker& add_batch_worker(const std::string& type, BatchProcessor fn) {
    auto w = Worker::connect(agent_->segment(), WorkerOptions{IdleKind::kPark, 64, &clock_});
    EXPECT_TRUE(w.ok());
    EXPECT_TRUE((*w)->register_batch_processor(type, std::move(fn)).ok());
    workers_.push_back(std::move(*w));
    return *workers_.back();
  }

  // A worker that takes one request at a time and notes the first byte of
  // each payload, in dispatch order.
  Worker& add_order_worker(const std::string& type, std::string& order) {
    return add_worker(
        type,
        [&order](const Job& j) {
          order += static_cast<char>(j.payload[0]);
          return Reply::ok();
        },
        1);
  }

  // Turns every duty cycle until nothing moves (bounded), without moving
  // the clock. The agent's liveness pass runs on its first cycle after any
  // advance (its interval is 1 ms), so new workers are routed.
  void pump(bool run_workers = true) {
    for (int i = 0; i < 64; ++i) {
      int n = agent_->do_work();
      if (run_workers) {
        for (auto& w : workers_) n += w->do_work();
      }
      n += static_cast<int>(producer_->poll());
      if (n == 0) return;
    }
  }

  void advance_ms(uint64_t ms) {
    clock_.advance_ms(ms);
    pump();
  }

  Future submit(const std::string& type, uint8_t priority = 5, Mode mode = Mode::kPriority,
                const std::string& payload = "p") {
    auto s = producer_->submit(test::make_request(type, "u", payload, mode, priority));
    EXPECT_TRUE(s.ok());
    return std::move(s->outcome);
  }

  shm::AgentCounters counters() { return test::counters(*agent_->segment()); }

  test::QueueName q_;
  ManualClock clock_;
  agent::Config cfg_;
  std::unique_ptr<agent::Conductor> agent_;
  std::unique_ptr<Producer> producer_;
  std::vector<std::unique_ptr<Worker>> workers_;
};

TEST_F(TimeRules, FailedAttemptsAreRetriedAfterTwoThenFourSecondsThenFail) {
  start();
  int calls = 0;
  add_worker("flaky", [&](const Job&) {
    ++calls;
    return Reply::error("downstream unavailable");
  });
  advance_ms(1);  // route the worker
  Future f = submit("flaky");
  pump();
  EXPECT_EQ(calls, 1);
  // Attempt 1 failed: back after 2 s +- 10 %, not before.
  advance_ms(1790);
  EXPECT_EQ(calls, 1);
  advance_ms(420);  // t = 2.21 s
  EXPECT_EQ(calls, 2);
  // Attempt 2 failed: back after 4 s +- 10 %.
  advance_ms(3590);
  EXPECT_EQ(calls, 2);
  advance_ms(820);
  EXPECT_EQ(calls, 3);
  // Attempt 3 was the last.
  ASSERT_TRUE(f.ready());
  const Outcome& o = f.get();
  EXPECT_EQ(o.status, Status::kFailed);
  EXPECT_EQ(o.error, Errc::kProcessorError);
  EXPECT_EQ(o.attempts, 3);
  advance_ms(60'000);
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(counters().retried, 2u);
  // The dead letter keeps every attempt's error.
  const auto letters = agent_->memory_dead_letters()->snapshot();
  ASSERT_EQ(letters.size(), 1u);
  const agent::DeadLetter& d = letters[0];
  EXPECT_EQ(d.request_id, o.request_id);
  EXPECT_EQ(d.status, Status::kFailed);
  EXPECT_EQ(d.reason, Errc::kProcessorError);
  EXPECT_EQ(d.type, "flaky");
  EXPECT_EQ(d.user_id, "u");
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(d.payload.data()), d.payload.size()), "p");
  EXPECT_EQ(d.attempt_count, 3u);
  ASSERT_EQ(d.history.size(), 3u);
  for (const auto& h : d.history) {
    EXPECT_EQ(h.code, Errc::kProcessorError);
    EXPECT_EQ(h.message, "downstream unavailable");
  }
  EXPECT_LT(d.history[0].at_unix_ns, d.history[1].at_unix_ns);
  EXPECT_LT(d.history[1].at_unix_ns, d.history[2].at_unix_ns);
  EXPECT_GT(d.first_attempt_unix_ns, 0u);
  EXPECT_LE(d.first_attempt_unix_ns, d.history[0].at_unix_ns);
  EXPECT_EQ(d.last_attempt_unix_ns, d.history[2].at_unix_ns);
}

TEST_F(TimeRules, JitterSpreadsRetriesOfRequestsThatFailedTogether) {
  start([](agent::Config& c) { c.max_retry_attempts = 2; });
  std::vector<uint64_t> retried_at;
  std::vector<int> seen(64, 0);
  add_worker("flaky", [&](const Job& j) {
    const int i =
        std::stoi(std::string(reinterpret_cast<const char*>(j.payload.data()), j.payload.size()));
    if (++seen[static_cast<size_t>(i)] == 2) retried_at.push_back(clock_.now_mono_ns());
    return Reply::error("no");
  });
  advance_ms(1);
  const uint64_t failed_at = clock_.now_mono_ns();
  std::vector<Future> fs;
  for (int i = 0; i < 64; ++i) fs.push_back(submit("flaky", 5, Mode::kPriority, std::to_string(i)));
  pump();
  for (int step = 0; step < 500; ++step) advance_ms(1);  // 1 ms resolution over 2 +- 0.2 s
  for (int step = 0; step < 1700; ++step) clock_.advance_ms(1), pump();
  ASSERT_EQ(retried_at.size(), 64u);
  uint64_t lo = UINT64_MAX, hi = 0;
  for (uint64_t t : retried_at) {
    lo = std::min(lo, t - failed_at);
    hi = std::max(hi, t - failed_at);
  }
  EXPECT_GE(lo, 1800 * kMs);
  EXPECT_LE(hi, 2201 * kMs);
  EXPECT_GT(hi - lo, 100 * kMs) << "64 retries should not all land together";
}

TEST_F(TimeRules, PermanentErrorSkipsRetries) {
  start();
  int calls = 0;
  add_worker("bad", [&](const Job&) {
    ++calls;
    return Reply::permanent_error("malformed message");
  });
  advance_ms(1);
  Future f = submit("bad");
  pump();
  ASSERT_TRUE(f.ready());
  EXPECT_EQ(f.get().status, Status::kFailed);
  EXPECT_EQ(f.get().attempts, 1);
  advance_ms(10'000);
  EXPECT_EQ(calls, 1);
  const auto letters = agent_->memory_dead_letters()->snapshot();
  ASSERT_EQ(letters.size(), 1u);
  ASSERT_EQ(letters[0].history.size(), 1u);
  EXPECT_EQ(letters[0].history[0].message, "malformed message");
}

TEST_F(TimeRules, RequestNotDispatchedWithinQueueTimeoutEndsAsTimeout) {
  start([](agent::Config& c) { c.queue_timeout_ms = 30'000; });
  Future f = submit("nobody-serves-this");
  pump();
  advance_ms(29'990);
  EXPECT_FALSE(f.ready());
  advance_ms(20);
  ASSERT_TRUE(f.ready());
  EXPECT_EQ(f.get().status, Status::kTimeout);
  EXPECT_EQ(f.get().error, Errc::kQueueTimeout);
  EXPECT_EQ(f.get().attempts, 0);
  EXPECT_EQ(counters().timed_out, 1u);
  const auto letters = agent_->memory_dead_letters()->snapshot();
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(letters[0].status, Status::kTimeout);
  EXPECT_EQ(letters[0].reason, Errc::kQueueTimeout);
  EXPECT_EQ(letters[0].attempt_count, 0u);
  EXPECT_EQ(letters[0].first_attempt_unix_ns, 0u);
  EXPECT_TRUE(letters[0].history.empty());
}

TEST_F(TimeRules, QueueTimeoutCountsFromTheEndOfARetryBackoff) {
  start([](agent::Config& c) {
    c.queue_timeout_ms = 3000;
    c.retry_jitter = 0;
  });
  int calls = 0;
  add_worker(
      "once",
      [&](const Job&) {
        ++calls;
        return Reply::error("first time fails");
      },
      64);
  advance_ms(1);
  Future f = submit("once");
  pump();
  ASSERT_EQ(calls, 1);
  // Remove the worker: the retry becomes eligible at t = 2 s and waits.
  workers_.clear();
  advance_ms(1);
  advance_ms(1999);  // retry eligible now, no worker
  EXPECT_FALSE(f.ready());
  advance_ms(2990);  // 2.99 s after it became eligible again
  EXPECT_FALSE(f.ready());
  advance_ms(20);
  ASSERT_TRUE(f.ready());
  EXPECT_EQ(f.get().status, Status::kTimeout);
}

TEST_F(TimeRules, AttemptOverProcessingTimeoutFailsAndItsLateResultIsDropped) {
  start([](agent::Config& c) {
    c.processing_timeout_ms = 60'000;
    c.retry_jitter = 0;
  });
  int calls = 0;
  add_worker("slow", [&](const Job& j) {
    ++calls;
    if (j.attempt == 1) {
      // While attempt 1 runs, its deadline passes and the agent takes it back.
      clock_.advance_ms(60'001);
      agent_->do_work();
      return Reply::ok("late result of attempt 1");
    }
    return Reply::ok("result of attempt 2");
  });
  advance_ms(1);
  Future f = submit("slow");
  pump();  // attempt 1 runs and times out inside the processor
  EXPECT_FALSE(f.ready());
  advance_ms(2001);  // backoff after attempt 1: 2 s
  ASSERT_TRUE(f.ready());
  const Outcome& o = f.get();
  EXPECT_EQ(o.status, Status::kCompleted);
  EXPECT_EQ(o.result_text(), "result of attempt 2");
  EXPECT_EQ(o.attempts, 2);
  EXPECT_EQ(calls, 2);
}

// SPEC §4: processing_timeout_ms counts from the attempt's start. A worker
// holding two dispatches runs the second after the first: its time starts
// then, not when it was dispatched.
TEST_F(TimeRules, ProcessingTimeCountsFromTheAttemptsStartNotItsDispatch) {
  start([](agent::Config& c) {
    c.processing_timeout_ms = 1000;
    c.max_retry_attempts = 1;
  });
  int calls = 0;
  add_worker("held", [&](const Job&) {
    // Each attempt runs 800 ms and lets the agent look at the clock: the
    // second's dispatch deadline (1000 ms) passes while it runs, its start
    // deadline (1600 ms) does not.
    ++calls;
    clock_.advance_ms(800);
    agent_->do_work();
    return Reply::ok();
  });
  advance_ms(1);
  Future a = submit("held");
  Future b = submit("held");
  pump();
  ASSERT_TRUE(a.ready());
  ASSERT_TRUE(b.ready());
  EXPECT_EQ(a.get().status, Status::kCompleted);
  EXPECT_EQ(b.get().status, Status::kCompleted) << errc_name(b.get().error);
  EXPECT_EQ(b.get().attempts, 1);
  EXPECT_EQ(calls, 2);
  // Its processing time is from its start: the 800 ms it ran.
  EXPECT_EQ(b.get().processing_ns, 800 * kMs);
}

// The same from the other side: an attempt that started late still has
// only processing_timeout_ms from its start.
TEST_F(TimeRules, AnAttemptThatStartedLateStillTimesOutFromItsStart) {
  start([](agent::Config& c) {
    c.processing_timeout_ms = 1000;
    c.max_retry_attempts = 1;
  });
  int calls = 0;
  add_worker("held", [&](const Job&) {
    // The first runs 800 ms; the second 1100 ms from its start, past its
    // deadline, with the agent looking at the clock at 1000 ms after its
    // dispatch and again after its start deadline.
    ++calls;
    clock_.advance_ms(calls == 1 ? 800 : 300);
    agent_->do_work();
    if (calls == 2) {
      clock_.advance_ms(800);
      agent_->do_work();
    }
    return Reply::ok();
  });
  advance_ms(1);
  Future a = submit("held");
  Future b = submit("held");
  pump();
  ASSERT_TRUE(a.ready());
  ASSERT_TRUE(b.ready());
  EXPECT_EQ(a.get().status, Status::kCompleted);
  EXPECT_EQ(b.get().status, Status::kFailed);
  EXPECT_EQ(b.get().error, Errc::kProcessingTimeout);
}

// An attempt its worker never started is not an attempt: a processing
// timeout after its dispatch it goes back to its band uncounted, and is
// dispatched again.
TEST_F(TimeRules, AnAttemptNeverStartedGoesBackUncounted) {
  start([](agent::Config& c) {
    c.processing_timeout_ms = 1000;
    c.max_retry_attempts = 1;
  });
  add_worker("stuck", [](const Job&) { return Reply::ok("ran"); });
  advance_ms(1);
  Future f = submit("stuck");
  // Dispatch without letting the worker run (a frozen worker), three
  // processing timeouts long: each time it is taken back and dispatched again.
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 4; ++i) agent_->do_work(), producer_->poll();
    clock_.advance_ms(1001);
  }
  for (int i = 0; i < 4; ++i) agent_->do_work(), producer_->poll();
  EXPECT_FALSE(f.ready());
  // The worker wakes up: the stale dispatches are skipped, the live one runs
  // as the request's first attempt.
  pump();
  ASSERT_TRUE(f.ready());
  EXPECT_EQ(f.get().status, Status::kCompleted);
  EXPECT_EQ(f.get().attempts, 1);
  EXPECT_EQ(f.get().result_text(), "ran");
  EXPECT_TRUE(agent_->memory_dead_letters()->snapshot().empty());
}

// The wait before an attempt starts is a wait in the queue: a request that
// no worker starts within queue_timeout_ms ends as `timeout`.
TEST_F(TimeRules, ARequestNeverStartedEndsAtTheQueueTimeout) {
  start([](agent::Config& c) {
    c.processing_timeout_ms = 1000;
    c.queue_timeout_ms = 2500;
  });
  add_worker("stuck", [](const Job&) { return Reply::ok(); });
  advance_ms(1);
  Future f = submit("stuck");
  for (int round = 0; round < 4 && !f.ready(); ++round) {
    for (int i = 0; i < 4; ++i) agent_->do_work(), producer_->poll();
    clock_.advance_ms(1001);
  }
  for (int i = 0; i < 4; ++i) agent_->do_work(), producer_->poll();
  ASSERT_TRUE(f.ready());
  EXPECT_EQ(f.get().status, Status::kTimeout);
  EXPECT_EQ(f.get().error, Errc::kQueueTimeout);
  EXPECT_EQ(f.get().attempts, 0);
  // The worker wakes up: its stale dispatches are ignored.
  EXPECT_EQ(workers_[0]->do_work(), 0);
}

TEST_F(TimeRules, AgedRequestIsServedBeforeYoungerRequestsOfHigherBands) {
  start([](agent::Config& c) {
    c.aging_ms = 5000;
    c.max_concurrent_workers = 1;
  });
  std::string order;
  add_order_worker("t", order);
  // The worker is not routed yet. An old LOW request, then younger ones.
  std::vector<Future> fs;
  fs.push_back(submit("t", 1, Mode::kPriority, "L"));
  agent_->do_work();  // the agent holds it from t0
  clock_.advance_ms(3000);
  for (int i = 0; i < 3; ++i) fs.push_back(submit("t", 20, Mode::kPriority, "C"));
  fs.push_back(submit("t", 1, Mode::kPriority, "l"));
  agent_->do_work();  // these from t0 + 3 s
  clock_.advance_ms(2500);
  pump();
  // At t0 + 5.5 s only "L" has waited past aging_ms: it goes before the
  // CRITICAL ones, which go before the younger LOW.
  EXPECT_EQ(order, "LCCCl");
}

TEST_F(TimeRules, WithoutAgingHigherBandsGoFirst) {
  start([](agent::Config& c) {
    c.aging_ms = 5000;
    c.max_concurrent_workers = 1;
  });
  std::string order;
  add_order_worker("t", order);
  std::vector<Future> fs;
  fs.push_back(submit("t", 1, Mode::kPriority, "L"));
  fs.push_back(submit("t", 20, Mode::kPriority, "C"));
  agent_->do_work();
  clock_.advance_ms(4000);  // below aging_ms
  pump();
  EXPECT_EQ(order, "CL");
}

TEST_F(TimeRules, RestartedAgentHonoursABackoffAndADeadlineInProgress) {
  start([](agent::Config& c) {
    c.retry_jitter = 0;
    c.processing_timeout_ms = 10'000;
  });
  // Producer and worker map the segment themselves, so the agent's mapping
  // (and its lock) goes away with the agent.
  producer_.reset();
  auto p = Producer::connect(q_.str());
  ASSERT_TRUE(p.ok());
  int calls = 0;
  auto w = Worker::connect(q_.str());
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->register_processor("flaky",
                                       [&](const Job&) {
                                         ++calls;
                                         return Reply::error("no");
                                       })
                  .ok());
  auto turn = [&] {
    for (int i = 0; i < 16; ++i) {
      agent_->do_work();
      (*w)->do_work();
      (*p)->poll();
    }
  };
  clock_.advance_ms(1);
  turn();
  auto s = (*p)->submit(test::make_request("flaky", "u", "x"));
  ASSERT_TRUE(s.ok());
  turn();
  ASSERT_EQ(calls, 1);  // attempt 1 failed at t0: retry at t0 + 2 s
  clock_.advance_ms(1000);
  agent_.reset();  // the agent goes away mid-backoff
  auto again = agent::Conductor::open(cfg_, clock_);
  ASSERT_TRUE(again.ok()) << again.error().message;
  agent_ = std::move(*again);
  ASSERT_TRUE(agent_->reattached());
  clock_.advance_ms(900);  // t0 + 1.9 s
  turn();
  EXPECT_EQ(calls, 1) << "the restarted agent kept the backoff";
  clock_.advance_ms(200);  // t0 + 2.1 s
  turn();
  EXPECT_EQ(calls, 2);
}

// ---- cancel (SPEC §5): the same hand-turned agent

TEST_F(TimeRules, CancelBeforeDispatchMeansNeverDispatched) {
  start();
  int calls = 0;
  auto s = producer_->submit(test::make_request("later", "alice", "x"));
  ASSERT_TRUE(s.ok());
  agent_->do_work();  // pending in the agent: no worker for the type yet
  ASSERT_TRUE(producer_->cancel(s->request_id, "alice").ok());
  add_worker("later", [&](const Job&) {
    ++calls;
    return Reply::ok();
  });
  advance_ms(1);
  advance_ms(1);
  ASSERT_TRUE(s->outcome.ready());
  EXPECT_EQ(s->outcome.get().status, Status::kCancelled);
  EXPECT_EQ(s->outcome.get().error, Errc::kCancelled);
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(counters().cancelled, 1u);
  EXPECT_TRUE(agent_->memory_dead_letters()->snapshot().empty()) << "a cancel is not a failure";
}

TEST_F(TimeRules, CancelBeforeTheAgentTookItFromItsRing) {
  start();
  int calls = 0;
  add_worker("fast", [&](const Job&) {
    ++calls;
    return Reply::ok();
  });
  advance_ms(1);
  auto s = producer_->submit(test::make_request("fast", "alice", "x"));
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(producer_->cancel(s->request_id, "alice").ok());  // still QUEUED in its band ring
  pump();
  ASSERT_TRUE(s->outcome.ready());
  EXPECT_EQ(s->outcome.get().status, Status::kCancelled);
  EXPECT_EQ(calls, 0);
}

TEST_F(TimeRules, CancelWhileWaitingForARetryStopsTheRetry) {
  start([](agent::Config& c) { c.retry_jitter = 0; });
  int calls = 0;
  add_worker("flaky", [&](const Job&) {
    ++calls;
    return Reply::error("no");
  });
  advance_ms(1);
  auto s = producer_->submit(test::make_request("flaky", "alice", "x"));
  ASSERT_TRUE(s.ok());
  pump();
  ASSERT_EQ(calls, 1);  // in backoff now
  ASSERT_TRUE(producer_->cancel(s->request_id, "alice").ok());
  advance_ms(1);
  advance_ms(5000);
  EXPECT_EQ(calls, 1);
  ASSERT_TRUE(s->outcome.ready());
  EXPECT_EQ(s->outcome.get().status, Status::kCancelled);
  EXPECT_EQ(s->outcome.get().attempts, 1);
}

TEST_F(TimeRules, OnlyTheOwnerCancelsAndOnlyWhilePending) {
  start();
  auto s = producer_->submit(test::make_request("held", "alice", "x"));
  ASSERT_TRUE(s.ok());
  agent_->do_work();
  auto other = producer_->cancel(s->request_id, "mallory");
  EXPECT_EQ(other.code(), Errc::kNotFound) << "another user's request does not exist for them";
  EXPECT_EQ(producer_->cancel(s->request_id + 1000, "alice").code(), Errc::kNotFound);
  // Dispatched (the worker holds it, not yet started): too late to cancel.
  add_worker("held", [](const Job&) { return Reply::ok(); });
  clock_.advance_ms(1);
  for (int i = 0; i < 4; ++i) agent_->do_work();
  EXPECT_EQ(producer_->cancel(s->request_id, "alice").code(), Errc::kInvalidStatus);
  pump();
  ASSERT_TRUE(s->outcome.ready());
  EXPECT_EQ(s->outcome.get().status, Status::kCompleted);
  // Finished and collected: the status table still knows it, and it is final.
  EXPECT_EQ(producer_->cancel(s->request_id, "alice").code(), Errc::kInvalidStatus);
  EXPECT_EQ(producer_->cancel(s->request_id, "mallory").code(), Errc::kNotFound);
}

TEST_F(TimeRules, ACancelledRequestLeavesTheQueueDepthAtOnce) {
  start([](agent::Config& c) { c.max_queue_depth = 1; });
  // Waiting for a worker of its type: the agent holds it in a side queue.
  auto s = producer_->submit(test::make_request("nobody", "alice", "x"));
  ASSERT_TRUE(s.ok());
  pump();
  EXPECT_EQ(producer_->try_submit(test::make_request("nobody", "alice", "y")).code(),
            Errc::kQueueFull);
  ASSERT_TRUE(producer_->cancel(s->request_id, "alice").ok());
  pump();
  ASSERT_TRUE(s->outcome.ready());
  // Its entry in the side queue is only dropped when reached; the depth
  // does not wait for that.
  EXPECT_TRUE(producer_->try_submit(test::make_request("nobody", "alice", "z")).ok());
}

TEST_F(TimeRules, ATypeWithoutAWorkerWaitsWithoutBurningAttempts) {
  start();
  auto s = producer_->submit(test::make_request("later", "u", "p"));
  ASSERT_TRUE(s.ok());
  Future f = std::move(s->outcome);
  advance_ms(10'000);
  auto st = producer_->status(s->request_id, shm::Caller{"u"});
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->status, Status::kPending);
  EXPECT_EQ(st->error, Errc::kWorkerUnavailable);
  EXPECT_EQ(st->attempts, 0);
  EXPECT_EQ(counters().submitted, 1u);
  EXPECT_EQ(counters().dispatched, 0u);
  EXPECT_EQ(counters().waiting_for_worker, 1u);
  int calls = 0;
  add_worker("later", [&](const Job& j) {
    ++calls;
    EXPECT_EQ(j.attempt, 1);
    return Reply::ok();
  });
  advance_ms(1);
  ASSERT_TRUE(f.ready());
  EXPECT_EQ(f.get().status, Status::kCompleted);
  EXPECT_EQ(f.get().attempts, 1);
  EXPECT_EQ(calls, 1);
}

// ---- events (SPEC §5): the same hand-turned agent

std::vector<std::string> names_for(const std::vector<Event>& evs, uint64_t request_id) {
  std::vector<std::string> out;
  for (const Event& e : evs) {
    if (e.request_id == request_id) out.emplace_back(event_name(static_cast<EventKind>(e.kind)));
  }
  return out;
}

TEST_F(TimeRules, EventsFollowARequestThroughItsLifeInOrder) {
  start([](agent::Config& c) { c.retry_jitter = 0; });
  auto reader = EventReader::connect(agent_->segment());
  ASSERT_TRUE(reader.ok());
  int calls = 0;
  add_worker("once",
             [&](const Job&) { return ++calls == 1 ? Reply::error("first fails") : Reply::ok(); });
  advance_ms(1);  // liveness pass: the agent sees the reader and the worker
  auto s = producer_->submit(test::make_request("once", "user-7", "secret payload"));
  ASSERT_TRUE(s.ok());
  pump();
  advance_ms(2001);
  ASSERT_TRUE(s->outcome.ready());
  std::vector<Event> evs;
  (*reader)->poll(evs);
  EXPECT_EQ(names_for(evs, s->request_id),
            (std::vector<std::string>{"request.submitted", "request.assigned", "request.processing",
                                      "request.retrying", "request.assigned", "request.processing",
                                      "request.completed"}));
  for (const Event& e : evs) {
    if (e.request_id != s->request_id) continue;
    EXPECT_EQ(std::string(e.type, e.type_len), "once");
    EXPECT_EQ(std::string(e.user_id, e.user_len), "user-7");
    const std::string raw(reinterpret_cast<const char*>(&e), sizeof e);
    EXPECT_EQ(raw.find("secret payload"), std::string::npos) << "events never carry payloads";
  }
  EXPECT_EQ((*reader)->missed(), 0u);
}

TEST_F(TimeRules, EventsTellWhenTheQueueFillsAndEmpties) {
  start([](agent::Config& c) { c.max_queue_depth = 2; });
  auto reader = EventReader::connect(agent_->segment());
  ASSERT_TRUE(reader.ok());
  advance_ms(1);
  Future a = submit("later");
  Future b = submit("later");
  pump();
  add_worker("later", [](const Job&) { return Reply::ok(); });
  advance_ms(1);
  ASSERT_TRUE(a.ready() && b.ready());
  std::vector<Event> evs;
  (*reader)->poll(evs);
  std::vector<std::string> queue_events;
  for (const Event& e : evs) {
    if (e.request_id == 0) queue_events.emplace_back(event_name(static_cast<EventKind>(e.kind)));
  }
  EXPECT_EQ(queue_events, (std::vector<std::string>{"queue.full", "queue.empty"}));
}

TEST_F(TimeRules, ASlowReaderLosesTheOldestEventsAndIsToldHowMany) {
  start();
  auto reader = EventReader::connect(agent_->segment());
  ASSERT_TRUE(reader.ok());
  add_worker("fast", [](const Job&) { return Reply::ok(); });
  advance_ms(1);
  // Each request makes four events (submitted, assigned, processing,
  // completed): far more than the ring holds.
  const int requests = static_cast<int>(shm::kEventCapacity);
  std::vector<Future> fs;
  for (int i = 0; i < requests; ++i) {
    fs.push_back(submit("fast"));
    if (fs.size() >= 256) {
      pump();
      fs.clear();
    }
  }
  pump();
  std::vector<Event> evs;
  while ((*reader)->poll(evs) > 0) {
  }
  EXPECT_GT((*reader)->missed(), 0u);
  EXPECT_LE(evs.size(), shm::kEventCapacity);
  // Every event written was either read or counted as missed.
  EXPECT_EQ(evs.size() + (*reader)->missed(), agent_->segment()->events().tail());
  EXPECT_GE(agent_->segment()->events().tail(), 4u * static_cast<uint64_t>(requests));
  for (size_t k = 1; k < evs.size(); ++k) {
    EXPECT_LE(evs[k - 1].at_unix_ns, evs[k].at_unix_ns);
  }
}

TEST_F(TimeRules, WithoutReadersNoEventsAreWritten) {
  start();
  add_worker("fast", [](const Job&) { return Reply::ok(); });
  advance_ms(1);
  Future f = submit("fast");
  pump();
  ASSERT_TRUE(f.ready());
  EXPECT_EQ(agent_->segment()->events().tail(), 0u);
}

// ---------------------------------------------------------------- batch mode

// Replies ok to every job and notes each call's payloads ("abc|de|...").
BatchProcessor recording_batch(std::string& calls) {
  return [&calls](std::span<const Job> jobs) {
    if (!calls.empty()) calls += '|';
    std::vector<Reply> replies;
    for (const Job& j : jobs) {
      calls.append(reinterpret_cast<const char*>(j.payload.data()), j.payload.size());
      replies.push_back(Reply::ok());
    }
    return replies;
  };
}

TEST_F(TimeRules, ABatchGoesWhenBatchSizeRequestsOfItsTypeWait) {
  start([](agent::Config& c) {
    c.batch_size = 4;
    c.batch_interval_ms = 1000;
  });
  std::string calls;
  add_batch_worker("embed", recording_batch(calls));
  advance_ms(1);
  std::vector<Future> fs;
  for (const char* p : {"a", "b", "c"}) fs.push_back(submit("embed", 5, Mode::kBatch, p));
  pump();
  EXPECT_EQ(calls, "");  // three wait for a fourth
  fs.push_back(submit("embed", 5, Mode::kBatch, "d"));
  pump();
  EXPECT_EQ(calls, "abcd");  // one call, in submit order
  for (auto& f : fs) {
    ASSERT_TRUE(f.ready());
    EXPECT_EQ(f.get().status, Status::kCompleted);
  }
  EXPECT_EQ(counters().batches, 1u);
}

TEST_F(TimeRules, ABatchGoesWhenItsOldestRequestHasWaitedBatchInterval) {
  start([](agent::Config& c) {
    c.batch_size = 100;
    c.batch_interval_ms = 1000;
  });
  std::string calls;
  add_batch_worker("embed", recording_batch(calls));
  advance_ms(1);
  Future f1 = submit("embed", 5, Mode::kBatch, "a");
  pump();  // the agent holds it from now on
  advance_ms(400);
  Future f2 = submit("embed", 5, Mode::kBatch, "b");
  advance_ms(599);
  EXPECT_EQ(calls, "");  // the oldest has waited 999 ms
  advance_ms(1);
  EXPECT_EQ(calls, "ab");
  ASSERT_TRUE(f1.ready() && f2.ready());
  EXPECT_EQ(f2.get().status, Status::kCompleted);
}

TEST_F(TimeRules, BatchesArePerTypeAndOtherModesAreNotHeldBack) {
  start([](agent::Config& c) {
    c.batch_size = 2;
    c.batch_interval_ms = 1000;
  });
  std::string embed;
  std::string rank;
  add_batch_worker("embed", recording_batch(embed));
  add_batch_worker("rank", recording_batch(rank));
  advance_ms(1);
  Future a = submit("embed", 5, Mode::kBatch, "a");
  Future x = submit("rank", 5, Mode::kBatch, "x");
  pump();
  EXPECT_EQ(embed, "");
  EXPECT_EQ(rank, "");
  // A fifo request of a batch-only type goes at once, as a batch of one.
  Future now = submit("rank", 5, Mode::kFifo, "n");
  pump();
  EXPECT_EQ(rank, "n");
  Future b = submit("embed", 5, Mode::kBatch, "b");
  pump();
  EXPECT_EQ(embed, "ab");
  EXPECT_EQ(rank, "n");  // x still waits for a partner of its own type
}

TEST_F(TimeRules, FailedBatchItemsAreRetriedOneByOne) {
  start([](agent::Config& c) {
    c.batch_size = 3;
    c.batch_interval_ms = 1000;
  });
  std::vector<size_t> sizes;
  std::string seen;
  add_batch_worker("embed", [&](std::span<const Job> jobs) {
    sizes.push_back(jobs.size());
    std::vector<Reply> replies;
    for (const Job& j : jobs) {
      const char c = static_cast<char>(j.payload[0]);
      seen += c;
      // b fails once; c fails for good; a is fine.
      if (c == 'b' && j.attempt == 1) {
        replies.push_back(Reply::error("try again"));
      } else if (c == 'c') {
        replies.push_back(Reply::permanent_error("malformed"));
      } else {
        replies.push_back(Reply::ok("done"));
      }
    }
    return replies;
  });
  advance_ms(1);
  Future a = submit("embed", 5, Mode::kBatch, "a");
  Future b = submit("embed", 5, Mode::kBatch, "b");
  Future c = submit("embed", 5, Mode::kBatch, "c");
  pump();
  ASSERT_EQ(sizes, (std::vector<size_t>{3}));
  ASSERT_TRUE(a.ready() && c.ready());
  EXPECT_EQ(a.get().status, Status::kCompleted);
  EXPECT_EQ(c.get().status, Status::kFailed);  // permanent: no retry
  EXPECT_EQ(c.get().attempts, 1);
  EXPECT_FALSE(b.ready());
  advance_ms(2300);                               // b's backoff: 2 s +- 10 %
  EXPECT_EQ(sizes, (std::vector<size_t>{3, 1}));  // b alone, not a new batch of three
  EXPECT_EQ(seen, "abcb");
  ASSERT_TRUE(b.ready());
  EXPECT_EQ(b.get().status, Status::kCompleted);
  EXPECT_EQ(b.get().attempts, 2);
}

TEST_F(TimeRules, ItemsABatchProcessorLeavesWithoutAnOutcomeFailTheirAttempt) {
  start([](agent::Config& c) {
    c.batch_size = 2;
    c.max_retry_attempts = 1;
  });
  add_batch_worker("embed", [](std::span<const Job>) { return std::vector<Reply>{Reply::ok()}; });
  advance_ms(1);
  Future a = submit("embed", 5, Mode::kBatch, "a");
  Future b = submit("embed", 5, Mode::kBatch, "b");
  pump();
  ASSERT_TRUE(a.ready() && b.ready());
  EXPECT_EQ(a.get().status, Status::kCompleted);
  EXPECT_EQ(b.get().status, Status::kFailed);
  EXPECT_EQ(b.get().result_text(), "the batch processor gave no outcome");
}

TEST_F(TimeRules, ABatchCountsOnceAgainstMaxConcurrentWorkers) {
  start([](agent::Config& c) {
    c.batch_size = 3;
    c.max_concurrent_workers = 1;
  });
  size_t most = 0;
  add_batch_worker("embed", [&](std::span<const Job> jobs) {
    most = std::max(most, jobs.size());
    return std::vector<Reply>(jobs.size(), Reply::ok());
  });
  advance_ms(1);
  std::vector<Future> fs;
  for (int i = 0; i < 6; ++i) fs.push_back(submit("embed", 5, Mode::kBatch, "x"));
  pump(false);  // the agent alone: one dispatch may be out
  EXPECT_EQ(counters().batches, 1u);
  EXPECT_EQ(counters().inflight, 1u);
  pump();
  EXPECT_EQ(counters().batches, 2u);
  EXPECT_EQ(most, 3u);
  for (auto& f : fs) ASSERT_TRUE(f.ready());
}

TEST_F(TimeRules, ADueBatchIsNotStarvedBySingleRequests) {
  start([](agent::Config& c) {
    c.max_concurrent_workers = 1;
    c.batch_size = 10;
    c.batch_interval_ms = 100;
  });
  std::string order;
  add_worker("chat", [&](const Job&) {
    order += 'f';
    return Reply::ok();
  });
  add_batch_worker("embed", [&](std::span<const Job> jobs) {
    order += 'B';
    return std::vector<Reply>(jobs.size(), Reply::ok());
  });
  advance_ms(1);
  Future b = submit("embed", 5, Mode::kBatch, "e");
  pump();
  std::vector<Future> singles;
  for (int i = 0; i < 20; ++i) singles.push_back(submit("chat", 5, Mode::kFifo, "f"));
  // The batch is due when the singles arrive: it goes first, not after them.
  advance_ms(100);
  ASSERT_TRUE(b.ready());
  ASSERT_FALSE(order.empty());
  EXPECT_EQ(order.front(), 'B') << order;
}

TEST_F(TimeRules, ACancelSeenBeforeItsBandCellKeepsTheCountsExact) {
  start();
  // More cells than one duty cycle drains from a band: the cancel ring is
  // read before the agent reaches the last request's cell.
  std::vector<uint64_t> ids;
  std::vector<Future> fs;
  for (int i = 0; i < 1100; ++i) {
    auto s = producer_->submit(test::make_request("nobody", "u", "x"));
    ASSERT_TRUE(s.ok());
    ids.push_back(s->request_id);
    fs.push_back(std::move(s->outcome));
  }
  ASSERT_TRUE(producer_->cancel(ids.back(), "u").ok());
  pump();
  ASSERT_TRUE(fs.back().ready());
  EXPECT_EQ(fs.back().get().status, Status::kCancelled);
  EXPECT_EQ(fs.back().get().attempts, 0);
  advance_ms(1);  // a liveness tick publishes the counters
  const auto k = counters();
  EXPECT_EQ(k.submitted, 1100u);
  EXPECT_EQ(k.cancelled, 1u);
  EXPECT_EQ(shm::occupancy(*agent_->segment()).depth, 1099u);
}

TEST_F(TimeRules, GatheredBatchRequestsStillTimeOut) {
  start([](agent::Config& c) {
    c.batch_size = 10;
    c.batch_interval_ms = 60'000;
    c.queue_timeout_ms = 5'000;
  });
  std::string calls;
  add_batch_worker("embed", recording_batch(calls));
  advance_ms(1);
  Future f = submit("embed", 5, Mode::kBatch, "a");
  pump();
  advance_ms(4'999);
  EXPECT_FALSE(f.ready());
  advance_ms(1);
  ASSERT_TRUE(f.ready());
  EXPECT_EQ(f.get().status, Status::kTimeout);
  EXPECT_EQ(calls, "");
}

}  // namespace
}  // namespace perfq
