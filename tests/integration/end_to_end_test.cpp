// One request end to end, in one process (agent thread, worker thread,
// producer) and across processes (forked agent, worker and producers).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "perfq/perfq.hpp"

namespace perfq {
namespace {

RequestView request(std::string_view type, std::string_view payload) {
  RequestView r;
  r.type = type;
  r.user_id = "user-1";
  r.payload = std::as_bytes(std::span(payload.data(), payload.size()));
  return r;
}

TEST(EndToEnd, RequestIsProcessedByWorkerAndOutcomeReachesProducer) {
  test::QueueName q;
  test::AgentThread agent(test::test_config(q.str()));
  auto worker = Worker::connect(agent.segment());
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

  auto producer = Producer::connect(agent.segment());
  ASSERT_TRUE(producer.ok());
  auto s = (*producer)->submit(request("echo", "hello"));
  ASSERT_TRUE(s.ok()) << s.error().message;
  ASSERT_TRUE(s->outcome.wait_for(std::chrono::seconds(10)));
  const Outcome& o = s->outcome.get();
  EXPECT_EQ(o.status, Status::kCompleted);
  EXPECT_EQ(o.request_id, s->request_id);
  EXPECT_EQ(o.result_text(), "hello!");
  EXPECT_EQ(o.attempts, 1);
  stop = true;
  wt.join();
}

TEST(EndToEnd, AShortWaitReturnsWhileAnotherThreadDrainsForALongOne) {
  test::QueueName q;
  test::AgentThread agent(test::test_config(q.str()));
  auto producer = Producer::connect(agent.segment());
  ASSERT_TRUE(producer.ok());
  auto x = (*producer)->submit(request("late", "x"));
  auto y = (*producer)->submit(request("late", "y"));
  ASSERT_TRUE(x.ok() && y.ok());
  // No worker yet: A waits long (and drains the ring for everyone).
  std::atomic<int> a_result{-1};
  std::thread a([&] { a_result = x->outcome.wait_for(std::chrono::seconds(20)) ? 1 : 0; });
  // B's short wait must come back on its own deadline, not on A's.
  EXPECT_FALSE(y->outcome.wait_for(std::chrono::milliseconds(1)));
  // Only now does a worker appear; A must still see its outcome in time.
  auto worker = Worker::connect(agent.segment());
  ASSERT_TRUE(worker.ok());
  ASSERT_TRUE((*worker)->register_processor("late", [](const Job&) { return Reply::ok(); }).ok());
  std::atomic<bool> stop{false};
  std::thread wt([&] { (*worker)->run(stop); });
  a.join();
  EXPECT_EQ(a_result.load(), 1);
  EXPECT_TRUE(y->outcome.wait_for(std::chrono::seconds(10)));
  stop = true;
  wt.join();
}

TEST(EndToEnd, ManyThreadsWaitOnOneProducerWhileAnotherPolls) {
  test::QueueName q;
  test::AgentThread agent(test::test_config(q.str()));
  auto worker = Worker::connect(agent.segment());
  ASSERT_TRUE(worker.ok());
  ASSERT_TRUE((*worker)->register_processor("echo", [](const Job&) { return Reply::ok(); }).ok());
  std::atomic<bool> stop{false};
  std::thread wt([&] { (*worker)->run(stop); });
  auto producer = Producer::connect(agent.segment());
  ASSERT_TRUE(producer.ok());
  std::atomic<bool> polling{true};
  std::thread poller([&] {
    while (polling.load()) (void)(*producer)->poll();
  });
  constexpr int kThreads = 4;
  constexpr int kEach = 2000;
  std::atomic<int> settled{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < kEach; ++i) {
        auto s = (*producer)->submit(request("echo", "m"));
        if (!s) continue;
        if (s->outcome.wait_for(std::chrono::seconds(10)) &&
            s->outcome.get().status == Status::kCompleted) {
          ++settled;
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  polling = false;
  poller.join();
  EXPECT_EQ(settled.load(), kThreads * kEach);
  stop = true;
  wt.join();
}

// A result larger than slot_payload_bytes is never cut short: the attempt
// fails for good and the outcome says why.
TEST(EndToEnd, AResultTooLargeForTheSlotFailsTheRequestInsteadOfBeingCut) {
  test::QueueName q;
  test::AgentThread agent(test::test_config(q.str()));  // 256-byte payloads and results
  auto worker = Worker::connect(agent.segment());
  ASSERT_TRUE(worker.ok());
  ASSERT_TRUE(
      (*worker)
          ->register_processor("big", [](const Job&) { return Reply::ok(std::string(257, 'r')); })
          .ok());
  ASSERT_TRUE(
      (*worker)
          ->register_processor("fits", [](const Job&) { return Reply::ok(std::string(256, 'r')); })
          .ok());
  std::atomic<bool> stop{false};
  std::thread wt([&] { (*worker)->run(stop); });
  auto producer = Producer::connect(agent.segment());
  ASSERT_TRUE(producer.ok());
  auto big = (*producer)->submit(request("big", "x"));
  auto fits = (*producer)->submit(request("fits", "x"));
  ASSERT_TRUE(big.ok() && fits.ok());
  ASSERT_TRUE(big->outcome.wait_for(std::chrono::seconds(10)));
  ASSERT_TRUE(fits->outcome.wait_for(std::chrono::seconds(10)));
  const Outcome& b = big->outcome.get();
  EXPECT_EQ(b.status, Status::kFailed);
  EXPECT_EQ(b.error, Errc::kProcessorError);
  EXPECT_EQ(b.attempts, 1);
  EXPECT_EQ(b.result_text(), "the result (257 bytes) is larger than slot_payload_bytes (256)");
  EXPECT_EQ(fits->outcome.get().status, Status::kCompleted);
  EXPECT_EQ(fits->outcome.get().result.size(), 256u);
  stop = true;
  wt.join();
}

// A worker told to stop finishes the attempt it runs and takes nothing
// else from its ring: those attempts go back to the agent when it closes,
// uncounted, and another worker completes them at their first attempt.
TEST(EndToEnd, AStoppedWorkerLeavesItsQueuedAttemptsToOthersWithoutCostingAnAttempt) {
  test::QueueName q;
  test::AgentThread agent(test::test_config(q.str()));
  auto first = Worker::connect(agent.segment());
  ASSERT_TRUE(first.ok());
  std::atomic<bool> open{false};
  test::Signal started;
  ASSERT_TRUE((*first)
                  ->register_processor("job",
                                       [&](const Job&) {
                                         started.notify();
                                         while (!open.load()) open.wait(false);
                                         return Reply::ok("first");
                                       })
                  .ok());
  std::atomic<bool> stop{false};
  std::thread run_first([&] { (*first)->run(stop); });
  struct Opener {
    std::atomic<bool>& open;
    ~Opener() {
      open = true;
      open.notify_all();
    }
  } opener{open};
  auto producer = Producer::connect(agent.segment());
  ASSERT_TRUE(producer.ok());
  std::vector<Submitted> subs;
  for (int i = 0; i < 3; ++i) {
    auto s = (*producer)->submit(request("job", "x"));
    ASSERT_TRUE(s.ok());
    subs.push_back(std::move(*s));
  }
  ASSERT_GE(started.wait(std::chrono::seconds(10)), 0);
  // The other two are handed to the only worker (ASSIGNED) behind the first.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  auto assigned = [&](const Submitted& s) {
    auto st = (*producer)->status(s.request_id, shm::Caller{"user-1", false});
    return st.ok() && st->status == Status::kAssigned;
  };
  while (!(assigned(subs[1]) && assigned(subs[2])) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  ASSERT_TRUE(assigned(subs[1]) && assigned(subs[2]));
  stop = true;
  open = true;
  open.notify_all();
  run_first.join();
  EXPECT_EQ((*first)->processed(), 1u);
  first->reset();  // leaves: the agent takes back what it never started

  auto second = Worker::connect(agent.segment());
  ASSERT_TRUE(second.ok());
  ASSERT_TRUE(
      (*second)->register_processor("job", [](const Job&) { return Reply::ok("second"); }).ok());
  std::atomic<bool> stop_second{false};
  std::thread run_second([&] { (*second)->run(stop_second); });
  std::vector<std::string> by;
  for (auto& s : subs) {
    ASSERT_TRUE(s.outcome.wait_for(std::chrono::seconds(10)));
    const Outcome& o = s.outcome.get();
    EXPECT_EQ(o.status, Status::kCompleted);
    EXPECT_EQ(o.attempts, 1);
    by.push_back(o.result_text());
  }
  EXPECT_EQ(by, (std::vector<std::string>{"first", "second", "second"}));
  stop_second = true;
  run_second.join();
}

// Producer::wait_any, the bindings' completion thread: it reports every
// settled request once, by id, and comes back on its deadline when none is.
TEST(EndToEnd, WaitAnyReportsEverySettledRequestOnce) {
  test::QueueName q;
  test::AgentThread agent(test::test_config(q.str()));
  auto producer = Producer::connect(agent.segment());
  ASSERT_TRUE(producer.ok());
  std::vector<uint64_t> settled;
  EXPECT_EQ((*producer)->wait_any(std::chrono::milliseconds(1), settled), 0u);
  std::vector<uint64_t> ids;
  std::vector<Submitted> subs;
  for (int i = 0; i < 50; ++i) {
    auto s = (*producer)->submit(request("echo", "m"));
    ASSERT_TRUE(s.ok()) << s.error().message;
    ids.push_back(s->request_id);
    subs.push_back(std::move(*s));
  }
  // No worker yet: nothing settles, and the wait ends on its deadline.
  EXPECT_EQ((*producer)->wait_any(std::chrono::milliseconds(5), settled), 0u);
  auto worker = Worker::connect(agent.segment());
  ASSERT_TRUE(worker.ok());
  ASSERT_TRUE((*worker)->register_processor("echo", [](const Job&) { return Reply::ok(); }).ok());
  std::atomic<bool> stop{false};
  std::thread wt([&] { (*worker)->run(stop); });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (settled.size() < ids.size() && std::chrono::steady_clock::now() < deadline) {
    (void)(*producer)->wait_any(std::chrono::milliseconds(200), settled);
  }
  std::vector<uint64_t> got = settled;
  std::sort(got.begin(), got.end());
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(got, ids);
  for (auto& s : subs) EXPECT_TRUE(s.outcome.ready());
  stop = true;
  wt.join();
}

// SPEC §4 max_concurrent_workers, measured where it matters: by the
// processors. Six workers could take every request at once; the cap lets
// three run. Processors hold their request until the test opens the gate.
TEST(EndToEnd, ConcurrencyCapIsNeverExceededAcrossWorkers) {
  test::QueueName q;
  auto cfg = test::test_config(q.str());
  cfg.max_concurrent_workers = 3;
  test::AgentThread agent(cfg);
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  std::atomic<int> active{0};
  std::atomic<int> most{0};
  Processor hold = [&](const Job&) {
    const int now = active.fetch_add(1) + 1;
    int seen = most.load();
    while (now > seen && !most.compare_exchange_weak(seen, now)) {
    }
    {
      std::unique_lock lock(mu);
      cv.wait_for(lock, std::chrono::seconds(30), [&] { return open; });
    }
    active.fetch_sub(1);
    return Reply::ok();
  };
  std::atomic<bool> stop{false};
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; ++i) {
    // One dispatch at a time each: a worker routed early cannot hold a
    // second request behind the one it runs.
    auto w = Worker::connect(agent.segment(), WorkerOptions{IdleKind::kPark, 1});
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->register_processor("held", hold).ok());
    workers.push_back(std::move(*w));
  }
  for (auto& w : workers) threads.emplace_back([&, wp = w.get()] { wp->run(stop); });
  // However the test ends: processors released, worker threads joined.
  struct Release {
    std::function<void()> fn;
    ~Release() { fn(); }
  } release{[&] {
    {
      std::lock_guard lock(mu);
      open = true;
    }
    cv.notify_all();
    stop = true;
    for (auto& t : threads) {
      if (t.joinable()) t.join();
    }
  }};
  auto producer = Producer::connect(agent.segment());
  ASSERT_TRUE(producer.ok());
  std::vector<Future> fs;
  for (int i = 0; i < 30; ++i) {
    auto s = (*producer)->submit(request("held", "x"));
    ASSERT_TRUE(s.ok());
    fs.push_back(std::move(s->outcome));
  }
  // The agent has taken all 30 and dispatched what the cap allows.
  ASSERT_TRUE(test::eventually(
      [&] {
        const auto k = test::counters(*agent.segment());
        return k.submitted == 30 && k.dispatched == 3 && active.load() == 3;
      },
      std::chrono::seconds(10)));
  EXPECT_EQ(test::counters(*agent.segment()).dispatched, 3u);
  {
    std::lock_guard lock(mu);
    open = true;
  }
  cv.notify_all();
  for (auto& f : fs) {
    ASSERT_TRUE(f.wait_for(std::chrono::seconds(10)));
    EXPECT_EQ(f.get().status, Status::kCompleted);
  }
  EXPECT_EQ(most.load(), 3);
}

// The bindings' shape (issue 14): one thread takes dispatches while the
// runner has room and hands them over; another runs them and reports, the
// result ring's only writer. Every request completes once, never more than
// `room` run at once, and ThreadSanitizer sees both threads.
TEST(EndToEnd, ATakeThreadHandsAttemptsToAReportingThreadWithinItsRoom) {
  test::QueueName q;
  agent::Config cfg = test::test_config(q.str());
  cfg.max_concurrent_workers = 64;
  test::AgentThread agent(cfg);
  auto w = Worker::connect(agent.segment(), WorkerOptions{IdleKind::kPark, 16});
  ASSERT_TRUE(w.ok());
  Worker& worker = **w;
  ASSERT_TRUE(worker.declare_type("handed", false).ok());

  constexpr uint32_t kRoom = 4;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<Held, std::string>> handed;  // taken, not yet run
  uint32_t running = 0;                              // handed and not reported
  uint32_t most = 0;
  std::atomic<bool> stop{false};
  std::atomic<bool> freed{false};

  std::thread taker([&] {
    const Worker::Admit admit = [&](std::string_view type, bool batch) {
      EXPECT_EQ(type, "handed");
      EXPECT_FALSE(batch);
      std::lock_guard lock(mu);
      if (running == kRoom) return false;
      ++running;
      most = std::max(most, running);
      return true;
    };
    const Worker::Sink sink = [&](std::span<const Job> jobs, std::span<const Held> held, bool) {
      std::lock_guard lock(mu);
      if (held.empty()) --running;  // taken back meanwhile: the room goes back
      for (size_t k = 0; k < held.size(); ++k) {
        handed.emplace_back(held[k],
                            std::string(reinterpret_cast<const char*>(jobs[k].payload.data()),
                                        jobs[k].payload.size()));
      }
      cv.notify_all();
    };
    while (!stop.load()) {
      freed.store(false);
      if (worker.take(64, admit, sink) == 0) {
        worker.park(20'000'000, [&] { return stop.load() || freed.load(); });
      }
    }
  });
  std::thread reporter([&] {
    for (;;) {
      std::vector<std::pair<Held, std::string>> batch;
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return stop.load() || !handed.empty(); });
        if (handed.empty()) return;
        batch.swap(handed);
      }
      for (const auto& [h, payload] : batch) worker.report(h, Reply::ok(payload + "!"));
      worker.announce();
      {
        std::lock_guard lock(mu);
        running -= static_cast<uint32_t>(batch.size());
      }
      freed.store(true);
      worker.unpark();
    }
  });

  auto producer = Producer::connect(agent.segment());
  ASSERT_TRUE(producer.ok());
  std::vector<Future> futures;
  for (int i = 0; i < 300; ++i) {
    const std::string payload = std::to_string(i);
    auto s = (*producer)->submit(request("handed", payload));
    ASSERT_TRUE(s.ok()) << s.error().message;
    futures.push_back(std::move(s->outcome));
  }
  for (int i = 0; i < 300; ++i) {
    ASSERT_TRUE(futures[i].wait_for(std::chrono::seconds(20))) << i;
    const Outcome& o = futures[i].get();
    EXPECT_EQ(o.status, Status::kCompleted);
    EXPECT_EQ(o.attempts, 1);
    EXPECT_EQ(o.result_text(), std::to_string(i) + "!");
  }
  stop = true;
  worker.unpark();
  cv.notify_all();
  taker.join();
  reporter.join();
  EXPECT_LE(most, kRoom);
  EXPECT_EQ(worker.processed(), 300u);
}

}  // namespace
}  // namespace perfq
