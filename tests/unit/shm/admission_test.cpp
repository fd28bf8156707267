#include "perfq/shm/admission.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <memory>

#include "harness.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq::shm {
namespace {

CreateOptions small_options() {
  CreateOptions o;
  o.slot_count = 16;
  o.slot_payload_bytes = 64;
  o.max_clients = 4;
  return o;
}

std::unique_ptr<Segment> open_agent(const std::string& queue, Segment::Opened& how) {
  auto s = Segment::open_for_agent(queue, small_options(), how);
  if (!s) {
    ADD_FAILURE() << "open_for_agent: " << s.error().message;
    return nullptr;
  }
  return std::move(s).value();
}

constexpr uint64_t kBandDepth[kBandCount] = {1, 2, 0, 0};

TEST(AdmissionView, PublishedViewIsReadByAnyProcess) {
  test::QueueName q;
  Segment::Opened how{};
  auto agent = open_agent(q.str(), how);
  ASSERT_NE(agent, nullptr);
  publish_admission(*agent, 3, kBandDepth);
  auto producer = Segment::attach(q.str());
  ASSERT_TRUE(producer) << producer.error().message;
  const Occupancy o = occupancy(**producer);
  EXPECT_TRUE(o.known);
  EXPECT_EQ(o.depth, 3u);
  EXPECT_EQ(o.ahead[1], 2u);
}

// Regression: an agent killed between the two steps of publish_admission
// left the view's seq odd, and every occupancy() after gave up (QUEUE_FULL,
// "depth could not be read"), across agent restarts. The agent that takes
// the segment over repairs it.
TEST(AdmissionView, ViewLeftMidPublishByAKilledAgentIsReadableAfterTakeover) {
  test::QueueName q;
  Segment::Opened how{};
  auto agent = open_agent(q.str(), how);
  ASSERT_NE(agent, nullptr);
  ASSERT_EQ(how, Segment::Opened::kCreated);
  publish_admission(*agent, 3, kBandDepth);
  // Killed after making seq odd, before making it even again.
  aref(agent->header().admission.seq).fetch_add(1, std::memory_order_acq_rel);
  auto producer = Segment::attach(q.str());
  ASSERT_TRUE(producer) << producer.error().message;
  EXPECT_FALSE(occupancy(**producer).known);  // the reader's bound gives up
  agent.reset();                              // the agent lock goes with it

  auto next = open_agent(q.str(), how);
  ASSERT_NE(next, nullptr);
  ASSERT_EQ(how, Segment::Opened::kReattached);
  Occupancy o = occupancy(**producer);
  EXPECT_TRUE(o.known);
  EXPECT_EQ(o.depth, 3u);
  EXPECT_EQ(o.ahead[0], 1u);
  // And it stays readable as the new agent publishes.
  publish_admission(*next, 5, kBandDepth);
  o = occupancy(**producer);
  EXPECT_TRUE(o.known);
  EXPECT_EQ(o.depth, 5u);
  EXPECT_EQ(load_relaxed(next->header().admission.seq) % 2, 0u);
}

}  // namespace
}  // namespace perfq::shm
