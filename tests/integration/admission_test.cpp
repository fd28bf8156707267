// Admission (SPEC §5): max_queue_depth, the rope-drop wait, try_submit, and
// queuePosition.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace perfq {
namespace {

using namespace std::chrono_literals;

RequestView req(std::string_view type, uint8_t priority = 5) {
  return test::make_request(type, "u", "p", Mode::kPriority, priority);
}

TEST(Admission, SubmitWaitsForRoomThenReportsQueueFull) {
  test::QueueName q;
  auto cfg = test::test_config(q.str());
  cfg.max_queue_depth = 4;
  cfg.rope_drop_timeout_ms = 100;
  test::AgentThread agent(cfg);
  auto p = Producer::connect(agent.segment());
  ASSERT_TRUE(p.ok());
  std::vector<Future> held;
  for (int i = 0; i < 4; ++i) {
    auto s = (*p)->submit(req("nobody"));
    ASSERT_TRUE(s.ok()) << s.error().message;
    held.push_back(std::move(s->outcome));
  }
  auto fifth = (*p)->submit(req("nobody"));  // waits rope_drop_timeout_ms, then gives up
  ASSERT_FALSE(fifth.ok());
  EXPECT_EQ(fifth.code(), Errc::kQueueFull);
  auto tried = (*p)->try_submit(req("nobody"));  // never waits
  ASSERT_FALSE(tried.ok());
  EXPECT_EQ(tried.code(), Errc::kQueueFull);
}

TEST(Admission, SubmitSucceedsWhenRoomAppearsDuringTheWait) {
  test::QueueName q;
  auto cfg = test::test_config(q.str());
  cfg.max_queue_depth = 4;
  cfg.rope_drop_timeout_ms = 30'000;
  test::AgentThread agent(cfg);
  auto p = Producer::connect(agent.segment());
  ASSERT_TRUE(p.ok());
  std::vector<Future> held;
  for (int i = 0; i < 4; ++i) {
    auto s = (*p)->submit(req("work"));
    ASSERT_TRUE(s.ok());
    held.push_back(std::move(s->outcome));
  }
  EXPECT_EQ((*p)->try_submit(req("work")).code(), Errc::kQueueFull);
  std::atomic<int> result{-1};
  std::thread waiter([&] {
    auto s = (*p)->submit(req("work"));  // full: waits for room
    result = s.ok() ? 1 : 0;
    if (s.ok()) (void)s->outcome.wait_for(10s);
  });
  // Room appears only when a worker drains the queue.
  auto w = Worker::connect(agent.segment());
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->register_processor("work", [](const Job&) { return Reply::ok(); }).ok());
  std::atomic<bool> stop{false};
  std::thread wt([&] { (*w)->run(stop); });
  waiter.join();
  EXPECT_EQ(result.load(), 1);
  for (auto& f : held) EXPECT_TRUE(f.wait_for(10s));
  stop = true;
  wt.join();
}

// Producer::submit(r, give_up): the wait for room asks give_up() between
// slices and ends with QUEUE_FULL once it says true (a stopping server, a
// closing binding, a signal), long before rope_drop_timeout_ms.
TEST(Admission, AWaitForRoomEndsWhenTheCallerGivesUp) {
  test::QueueName q;
  auto cfg = test::test_config(q.str());
  cfg.max_queue_depth = 2;
  cfg.rope_drop_timeout_ms = 600'000;
  test::AgentThread agent(cfg);
  auto p = Producer::connect(agent.segment());
  ASSERT_TRUE(p.ok());
  std::vector<Future> held;
  for (int i = 0; i < 2; ++i) {
    auto s = (*p)->submit(req("work"));
    ASSERT_TRUE(s.ok());
    held.push_back(std::move(s->outcome));
  }
  test::Signal asked;
  test::Signal returned;
  std::atomic<bool> give_up{false};
  std::atomic<int> calls{0};
  std::atomic<int> code{-1};
  std::thread waiter([&] {
    auto s = (*p)->submit(req("work"), [&] {
      if (calls.fetch_add(1) == 0) asked.notify();
      return give_up.load();
    });
    code = static_cast<int>(s.code());
    returned.notify();
  });
  ASSERT_GE(asked.wait(10s), 0) << "give_up() was never asked";
  give_up = true;
  const bool came_back = returned.wait(10s) >= 0;
  if (!came_back) {
    // Still waiting: a worker makes room, so the waiter (and the test) end.
    auto w = Worker::connect(agent.segment());
    std::atomic<bool> stop{false};
    std::thread wt;
    if (w.ok() && (*w)->register_processor("work", [](const Job&) { return Reply::ok(); }).ok()) {
      wt = std::thread([&] { (*w)->run(stop); });
    }
    waiter.join();
    stop = true;
    if (wt.joinable()) wt.join();
  } else {
    waiter.join();
  }
  EXPECT_TRUE(came_back) << "the wait did not end when the caller gave up";
  EXPECT_EQ(code.load(), static_cast<int>(Errc::kQueueFull));
}

TEST(Admission, QueuePositionCountsTheRequestsServedBeforeIt) {
  test::QueueName q;
  auto cfg = test::test_config(q.str());
  test::AgentThread agent(cfg);
  auto p = Producer::connect(agent.segment());
  ASSERT_TRUE(p.ok());
  std::vector<Future> held;
  auto position = [&](uint8_t priority) {
    auto s = (*p)->submit(req("nobody", priority));
    EXPECT_TRUE(s.ok());
    const uint64_t pos = s->queue_position;
    held.push_back(std::move(s->outcome));
    return pos;
  };
  EXPECT_EQ(position(1), 0u);  // LOW
  EXPECT_EQ(position(1), 1u);  // LOW behind one LOW
  EXPECT_EQ(position(1), 2u);
  EXPECT_EQ(position(20), 0u);  // CRITICAL goes first
  EXPECT_EQ(position(5), 1u);   // NORMAL: behind the CRITICAL one
  EXPECT_EQ(position(1), 5u);   // LOW: behind all five
}

}  // namespace
}  // namespace perfq
