// One request end to end, in one process (agent thread, worker thread,
// producer) and across processes (forked agent, worker and producers).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

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

}  // namespace
}  // namespace perfq
