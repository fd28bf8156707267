// The dispatches out without a segment: each counts once against the
// concurrency budget and its worker, and leaves the counts once.
#include "dataplane/inflight.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace perfq::agent {
namespace {

Inflight with(uint32_t workers, uint32_t slots) {
  Inflight f;
  f.resize(workers, slots);
  return f;
}

TEST(Inflight, SingleDispatchCountsOnceAndIsReleasedOnce) {
  Inflight f = with(4, 16);
  f.open(5, 2);
  EXPECT_EQ(f.total(), 1u);
  EXPECT_EQ(f.of(2), 1u);
  EXPECT_TRUE(f.release(5));
  EXPECT_EQ(f.total(), 0u);
  EXPECT_EQ(f.of(2), 0u);
  EXPECT_FALSE(f.release(5));  // a duplicate report releases nothing
  EXPECT_EQ(f.total(), 0u);
}

TEST(Inflight, SlotNeverDispatchedReleasesNothing) {
  Inflight f = with(4, 16);
  f.open(1, 0);
  EXPECT_FALSE(f.release(2));  // a forged report for a slot the agent never dispatched
  EXPECT_EQ(f.total(), 1u);
  EXPECT_EQ(f.of(0), 1u);
}

TEST(Inflight, BatchCountsOnceUntilItsLastItemSettles) {
  Inflight f = with(4, 16);
  const std::vector<Pending> items = {{3, 1, 0, 2}, {9, 1, 0, 2}, {11, 1, 0, 2}};
  f.open_batch(items, 1);
  f.open(4, 1);
  EXPECT_EQ(f.total(), 2u);
  EXPECT_EQ(f.of(1), 2u);
  EXPECT_TRUE(f.release(9));
  EXPECT_TRUE(f.release(3));
  EXPECT_EQ(f.total(), 2u);  // one item still out
  EXPECT_TRUE(f.release(11));
  EXPECT_EQ(f.total(), 1u);
  EXPECT_EQ(f.of(1), 1u);
  EXPECT_FALSE(f.release(11));
  EXPECT_EQ(f.total(), 1u);
}

TEST(Inflight, WrittenOffWorkerLeavesTheCountsAndItsLateReportsReleaseNothing) {
  Inflight f = with(4, 16);
  const std::vector<Pending> items = {{3, 1, 0, 2}, {9, 1, 0, 2}};
  f.open_batch(items, 1);
  f.open(4, 1);
  f.open(5, 2);
  f.write_off(1);
  EXPECT_EQ(f.of(1), 0u);
  EXPECT_EQ(f.total(), 1u);
  EXPECT_FALSE(f.release(3));
  EXPECT_FALSE(f.release(4));
  EXPECT_EQ(f.total(), 1u);
  // The slots can go out again, to anyone.
  f.open(4, 3);
  EXPECT_EQ(f.total(), 2u);
  EXPECT_TRUE(f.release(5));
  EXPECT_TRUE(f.release(4));
  EXPECT_EQ(f.total(), 0u);
}

}  // namespace
}  // namespace perfq::agent
