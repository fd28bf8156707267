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

}  // namespace
}  // namespace perfq
