// Four producer processes x 100,000 requests through a forked agent and a
// forked worker: every request completes exactly once, and within a band a
// producer's requests are dispatched in its submit order.
#include <gtest/gtest.h>

#include <cstdio>
#include <deque>
#include <map>
#include <set>
#include <vector>

#include "harness.hpp"

namespace perfq {
namespace {

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr uint32_t kPerProducer = 10'000;
#else
constexpr uint32_t kPerProducer = 100'000;
#endif
constexpr uint32_t kProducers = 4;
constexpr uint32_t kWindow = 512;  // outstanding requests per producer

// Payload "<producer>:<seq>:<band>"; the worker checks per (producer, band)
// that sequence numbers arrive in increasing order.
int run_producer(const std::string& queue, uint32_t p) {
  auto prod = Producer::connect(queue);
  if (!prod) return 3;
  std::deque<Future> window;
  std::set<uint64_t> ids;
  const std::string user = "user-" + std::to_string(p);  // outlives every RequestView
  uint64_t completed = 0;
  auto settle_one = [&]() -> bool {
    Future f = std::move(window.front());
    window.pop_front();
    if (!f.wait_for(std::chrono::seconds(60))) return false;
    const Outcome& o = f.get();
    if (o.status != Status::kCompleted || o.attempts != 1) return false;
    ++completed;
    return true;
  };
  for (uint32_t i = 0; i < kPerProducer; ++i) {
    const auto prio = static_cast<uint8_t>(1 + (i * 7) % 20);
    const char band =
        static_cast<char>('0' + static_cast<uint8_t>(band_for(Mode::kPriority, prio)));
    char payload[48];
    const int n = std::snprintf(payload, sizeof payload, "%u:%u:%c", p, i, band);
    auto r =
        test::make_request("order.check", user, std::string_view(payload, static_cast<size_t>(n)),
                           Mode::kPriority, prio);
    auto s = (*prod)->submit(r);
    if (!s) {
      std::fprintf(stderr, "producer %u: submit %u: %s\n", p, i, s.error().message.c_str());
      return 4;
    }
    if (!ids.insert(s->request_id).second) return 5;  // a requestId reused
    window.push_back(std::move(s->outcome));
    if (window.size() >= kWindow && !settle_one()) return 6;
  }
  while (!window.empty()) {
    if (!settle_one()) return 6;
  }
  return completed == kPerProducer ? 0 : 7;
}

TEST(ManyProducers, EveryRequestCompletesOnceAndBandOrderFollowsSubmitOrder) {
  test::QueueName q;
  auto cfg = test::test_config(q.str());
  test::Child agent = test::spawn_agent(cfg);

  // The worker exits 0 after seeing every request once and in order, or 1 at
  // the first out-of-order or duplicate request.
  test::Signal ready;
  std::map<std::pair<uint32_t, char>, int64_t> last;  // (producer, band) -> seq
  uint64_t seen = 0;
  static bool order_ok = true;  // in the worker child
  test::Child worker = test::spawn_worker(
      q.str(), "order.check",
      [&last, &seen](const Job& j) {
        unsigned p = 0, s = 0;
        char band = 0;
        std::string text(reinterpret_cast<const char*>(j.payload.data()), j.payload.size());
        if (std::sscanf(text.c_str(), "%u:%u:%c", &p, &s, &band) != 3) order_ok = false;
        auto& l = last.try_emplace({p, band}, -1).first->second;
        if (static_cast<int64_t>(s) <= l) order_ok = false;
        l = s;
        ++seen;
        if (!order_ok) {
          std::fprintf(stderr, "out of order: producer %u band %c seq %u after %lld\n", p, band, s,
                       static_cast<long long>(l));
          std::_Exit(1);
        }
        return Reply::ok();
      },
      &ready, WorkerOptions{IdleKind::kPark, 256});
  ready.close_write();
  ASSERT_EQ(ready.wait(std::chrono::seconds(10)), 1);

  std::vector<test::Child> producers;
  for (uint32_t p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] { return run_producer(q.str(), p); });
  }
  for (auto& c : producers) EXPECT_EQ(c.wait(std::chrono::minutes(5)), 0);

  auto seg = shm::Segment::attach(q.str());
  ASSERT_TRUE(seg.ok());
  ASSERT_TRUE(test::eventually(
      [&] { return test::counters(**seg).completed == uint64_t{kProducers} * kPerProducer; },
      std::chrono::seconds(10)));
  const auto k = test::counters(**seg);
  EXPECT_EQ(k.completed, uint64_t{kProducers} * kPerProducer);
  EXPECT_EQ(k.failed, 0u);
  EXPECT_EQ(k.retried, 0u);
  EXPECT_EQ(k.dispatched, uint64_t{kProducers} * kPerProducer);  // nothing dispatched twice
  worker.kill(SIGTERM);
  EXPECT_EQ(worker.wait(std::chrono::seconds(10)), 0);
  agent.kill(SIGTERM);
  EXPECT_EQ(agent.wait(std::chrono::seconds(10)), 0);
}

}  // namespace
}  // namespace perfq
