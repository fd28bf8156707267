// DlqIndex: the entries by id, the operator claims that let one review and
// one replay win, and what retention may forget (no files: the index alone).
#include "journal/dlq_index.hpp"

#include <gtest/gtest.h>

#include <string>
#include <unordered_set>
#include <vector>

namespace perfq::agent {
namespace {

constexpr uint64_t kMs = 1'000'000;

DlqSummary entry(uint64_t dlq_id, uint64_t segment) {
  DlqSummary s;
  s.dlq_id = dlq_id;
  s.request_id = 0x1000 + dlq_id;
  s.segment = segment;
  return s;
}

ReviewRecord review_of(uint64_t dlq_id, uint64_t at_ns) {
  return ReviewRecord{dlq_id, "ops", at_ns, "fixed"};
}

TEST(DlqIndex, AnIdIsIndexedOnceAndTheFirstReviewAndReplayStay) {
  DlqIndex index;
  EXPECT_TRUE(index.add(entry(1, 1)));
  DlqSummary again = entry(1, 2);
  again.request_id = 0x9999;
  EXPECT_FALSE(index.add(again));  // never written twice; the first stays
  EXPECT_EQ(index.find(1)->segment, 1u);
  EXPECT_TRUE(index.holds_request(0x1001));
  EXPECT_FALSE(index.holds_request(0x9999));
  EXPECT_EQ(index.unreviewed(), 1u);

  EXPECT_TRUE(index.apply(review_of(1, 5 * kMs)));
  EXPECT_TRUE(index.apply(ReviewRecord{1, "late", 9 * kMs, "other"}));
  EXPECT_EQ(index.find(1)->reviewed_by, "ops");
  EXPECT_EQ(index.unreviewed(), 0u);
  EXPECT_TRUE(index.apply(ReplayRecord{1, 0xAA, 6 * kMs}));
  EXPECT_TRUE(index.apply(ReplayRecord{1, 0xBB, 7 * kMs}));
  EXPECT_EQ(index.find(1)->replayed_as, 0xAAu);
  // Records naming no entry are orphans.
  EXPECT_FALSE(index.apply(review_of(7, 5 * kMs)));
  EXPECT_FALSE(index.apply(ReplayRecord{7, 0xCC, 6 * kMs}));
}

TEST(DlqIndex, OneReviewClaimWinsUntilItEnds) {
  DlqIndex index;
  ASSERT_TRUE(index.add(entry(1, 1)));
  EXPECT_EQ(index.claim_review(2).code(), Errc::kNotFound);
  ASSERT_TRUE(index.claim_review(1).ok());
  EXPECT_EQ(index.claim_review(1).code(), Errc::kConflict);  // on its way to disk
  index.end_review(1);
  ASSERT_TRUE(index.claim_review(1).ok());
  ASSERT_TRUE(index.apply(review_of(1, 1)));
  index.end_review(1);
  EXPECT_EQ(index.claim_review(1).code(), Errc::kConflict);  // reviewed already
}

TEST(DlqIndex, OneReplayBeginsAndItsRecordHoldsTheClaim) {
  DlqIndex index;
  ASSERT_TRUE(index.add(entry(1, 1)));
  EXPECT_EQ(index.begin_replay(2).code(), Errc::kNotFound);
  EXPECT_EQ(index.claim_replay_record(2).code(), Errc::kNotFound);
  ASSERT_TRUE(index.begin_replay(1).ok());
  EXPECT_EQ(index.begin_replay(1).code(), Errc::kConflict);
  ASSERT_TRUE(index.claim_replay_record(1).ok());  // the claim begin_replay took
  EXPECT_TRUE(index.check_replayable(1).ok());     // not replayed until durable
  ASSERT_TRUE(index.apply(ReplayRecord{1, 0xAB, 1}));
  index.end_replay(1);
  const auto r = index.check_replayable(1);
  EXPECT_EQ(r.code(), Errc::kConflict);
  EXPECT_NE(r.error().message.find("00000000000000ab"), std::string::npos) << r.error().message;
  EXPECT_EQ(index.begin_replay(1).code(), Errc::kConflict);
  EXPECT_EQ(index.claim_replay_record(1).code(), Errc::kConflict);
}

TEST(DlqIndex, ListsUnreviewedThenReviewedNewestFirstWithinTheLimit) {
  DlqIndex index;
  for (uint64_t id = 1; id <= 5; ++id) ASSERT_TRUE(index.add(entry(id, 1)));
  ASSERT_TRUE(index.apply(review_of(2, 1)));
  ASSERT_TRUE(index.apply(review_of(4, 1)));
  auto ids = [](const std::vector<DlqSummary>& v) {
    std::vector<uint64_t> out;
    for (const auto& s : v) out.push_back(s.dlq_id);
    return out;
  };
  EXPECT_EQ(ids(index.list(10, false)), (std::vector<uint64_t>{5, 3, 1}));
  EXPECT_EQ(ids(index.list(10, true)), (std::vector<uint64_t>{5, 3, 1, 4, 2}));
  EXPECT_EQ(ids(index.list(4, true)), (std::vector<uint64_t>{5, 3, 1, 4}));
}

TEST(DlqIndex, HeldSegmentsHoldAnUnreviewedOrRecentlyReviewedEntry) {
  DlqIndex index;
  ASSERT_TRUE(index.add(entry(1, 1)));  // reviewed long ago
  ASSERT_TRUE(index.add(entry(2, 2)));  // reviewed just now
  ASSERT_TRUE(index.add(entry(3, 3)));  // unreviewed
  ASSERT_TRUE(index.add(entry(4, 4)));  // reviewed exactly keep ago
  ASSERT_TRUE(index.apply(review_of(1, 10 * kMs)));
  ASSERT_TRUE(index.apply(review_of(2, 99 * kMs)));
  ASSERT_TRUE(index.apply(review_of(4, 50 * kMs)));
  EXPECT_EQ(index.held_segments(100 * kMs, 50 * kMs), (std::unordered_set<uint64_t>{2, 3}));
}

TEST(DlqIndex, ForgettingASegmentDropsItsReviewedEntries) {
  DlqIndex index;
  ASSERT_TRUE(index.add(entry(1, 1)));
  ASSERT_TRUE(index.add(entry(2, 1)));
  ASSERT_TRUE(index.add(entry(3, 2)));
  ASSERT_TRUE(index.apply(review_of(1, 1)));
  ASSERT_TRUE(index.apply(review_of(2, 1)));
  index.forget_segment(1);
  EXPECT_EQ(index.size(), 1u);
  EXPECT_EQ(index.find(1), nullptr);
  EXPECT_FALSE(index.holds_request(0x1002));
  EXPECT_EQ(index.unreviewed(), 1u);
}

TEST(DlqIndex, ForgettingASegmentWithAnUnreviewedEntryStopsTheProcess) {
  DlqIndex index;
  ASSERT_TRUE(index.add(entry(1, 1)));
  ASSERT_TRUE(index.add(entry(2, 1)));
  ASSERT_TRUE(index.apply(review_of(1, 1)));
  EXPECT_DEATH(index.forget_segment(1), "assertion failed: it->second.reviewed");
}

}  // namespace
}  // namespace perfq::agent
