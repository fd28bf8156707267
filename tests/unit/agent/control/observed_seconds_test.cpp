// The divisor of metrics' throughput (observedSeconds): the time the counts
// of a period cover, never more.
#include <gtest/gtest.h>

#include <cstdint>

#include "control/observe.hpp"

namespace perfq::agent {
namespace {

constexpr uint64_t kS = 1'000'000'000ull;
constexpr uint64_t kMin = 60 * kS;

// Read 10 s into a minute, a period of one minute covers those 10 s: the
// history holds the current calendar minute only (was: 60 s, a rate 6x too
// low; up to 60x a second into a minute).
TEST(ObservedSeconds, APeriodCoversTheCalendarMinutesItReads) {
  const uint64_t created = 100 * kMin;  // long ago
  const uint64_t now = 2000 * kMin + 10 * kS;
  EXPECT_DOUBLE_EQ(observed_seconds(created, 1, now), 10.0);
  EXPECT_DOUBLE_EQ(observed_seconds(created, 5, now), 4 * 60.0 + 10.0);
  EXPECT_DOUBLE_EQ(observed_seconds(created, 1440, now), 1439 * 60.0 + 10.0);
}

// A segment younger than the window: from its creation.
TEST(ObservedSeconds, AYoungSegmentCountsFromItsCreation) {
  const uint64_t created = 2000 * kMin + 50 * kS;
  const uint64_t now = 2001 * kMin + 5 * kS;
  EXPECT_DOUBLE_EQ(observed_seconds(created, 5, now), 15.0);
  EXPECT_DOUBLE_EQ(observed_seconds(created, 1, now), 5.0);
  // A creation time in the future (another host's clock): never 0.
  EXPECT_DOUBLE_EQ(observed_seconds(now + kS, 5, now), 0.001);
}

}  // namespace
}  // namespace perfq::agent
