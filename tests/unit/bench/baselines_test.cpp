// Smoke tests: each baseline forks a real peer and completes. No timing
// assertions; the numbers depend on the machine.
#include "baselines/baselines.hpp"

#include <gtest/gtest.h>

#include <cstdint>

namespace perfq::bench {
namespace {

constexpr uint64_t kRoundTrips = 2000;

void expect_complete(const LatencySummary& s) {
  EXPECT_EQ(s.samples, kRoundTrips);
  EXPECT_GT(s.p50_ns, 0u);
  EXPECT_LE(s.p50_ns, s.p90_ns);
  EXPECT_LE(s.p90_ns, s.p99_ns);
  EXPECT_LE(s.p99_ns, s.p999_ns);
  EXPECT_LE(s.p999_ns, s.max_ns);
}

TEST(Baselines, FutexPingPongCompletesEveryRoundTrip) {
  expect_complete(futex_ping_pong(kRoundTrips));
}

TEST(Baselines, SpinPingPongCompletesEveryRoundTrip) {
  expect_complete(spin_ping_pong(kRoundTrips));
}

TEST(Baselines, UnixSocketPingPongCompletesEveryRoundTrip) {
  expect_complete(unix_socket_ping_pong(kRoundTrips));
}

TEST(Baselines, BoostMessageQueueRoundTripCompletesEveryRoundTrip) {
  expect_complete(boost_mq_round_trip(kRoundTrips));
}

TEST(Baselines, BoostMessageQueueOneWayDeliversEveryMessage) {
  const ThroughputSummary s = boost_mq_one_way(20000);
  EXPECT_EQ(s.messages, 20000u);
  EXPECT_GT(s.seconds, 0.0);
  EXPECT_GT(s.per_second, 0.0);
}

TEST(Baselines, ZeroCountReportsEmptyResultWithoutForking) {
  EXPECT_EQ(futex_ping_pong(0).samples, 0u);
  EXPECT_EQ(spin_ping_pong(0).samples, 0u);
  EXPECT_EQ(unix_socket_ping_pong(0).samples, 0u);
  EXPECT_EQ(boost_mq_round_trip(0).samples, 0u);
  EXPECT_EQ(boost_mq_one_way(0).messages, 0u);
}

}  // namespace
}  // namespace perfq::bench
