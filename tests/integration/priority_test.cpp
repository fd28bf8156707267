// Strict band priority: with every band loaded, all CRITICAL requests are
// dispatched before any HIGH, all HIGH before any NORMAL, and so on.
#include <gtest/gtest.h>

#include <mutex>
#include <vector>

#include "harness.hpp"

namespace perfq {
namespace {

TEST(Priority, BandsAreServedStrictlyInOrderWhenAllAreLoaded) {
  test::QueueName q;
  auto cfg = test::test_config(q.str());
  cfg.max_concurrent_workers = 1;  // one dispatch at a time: the order is observable
  test::AgentThread agent(cfg);
  auto seg = agent.segment();
  auto producer = Producer::connect(seg);
  ASSERT_TRUE(producer.ok());

  // Load the bands LOW first, so submit order is the reverse of band order.
  constexpr int kPerBand = 50;
  const uint8_t priorities[] = {1, 5, 10, 20};  // LOW, NORMAL, HIGH, CRITICAL
  std::vector<Future> outcomes;
  for (uint8_t prio : priorities) {
    for (int i = 0; i < kPerBand; ++i) {
      std::string payload(
          1, static_cast<char>('0' + static_cast<int>(band_for(Mode::kPriority, prio))));
      auto s = (*producer)->submit(test::make_request("prio", "u", payload, Mode::kPriority, prio));
      ASSERT_TRUE(s.ok());
      outcomes.push_back(std::move(s->outcome));
    }
  }
  // No worker yet: wait until the agent holds every request.
  ASSERT_TRUE(
      test::eventually([&] { return test::counters(*seg).waiting_for_worker == 4u * kPerBand; },
                       std::chrono::seconds(10)));

  std::mutex mu;
  std::string order;
  auto worker = Worker::connect(seg, WorkerOptions{IdleKind::kPark, 1});
  ASSERT_TRUE(worker.ok());
  ASSERT_TRUE((*worker)
                  ->register_processor("prio",
                                       [&](const Job& j) {
                                         std::lock_guard lock(mu);
                                         order += static_cast<char>(j.payload[0]);
                                         return Reply::ok();
                                       })
                  .ok());
  std::atomic<bool> stop{false};
  std::thread wt([&] { (*worker)->run(stop); });
  for (auto& f : outcomes) ASSERT_TRUE(f.wait_for(std::chrono::seconds(10)));
  stop = true;
  wt.join();
  std::string expected = std::string(kPerBand, '0') + std::string(kPerBand, '1') +
                         std::string(kPerBand, '2') + std::string(kPerBand, '3');
  std::lock_guard lock(mu);
  EXPECT_EQ(order, expected);
}

}  // namespace
}  // namespace perfq
