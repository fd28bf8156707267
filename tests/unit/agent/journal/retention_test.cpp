// Retention: which segments go (whole segments, oldest first, stopping at
// the first held one, never the active one), their removal from the
// directory and from the index. Real files under a unique /tmp directory.
#include "journal/retention.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <vector>

#include "temp_dir.hpp"

namespace perfq::agent {
namespace {

constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kKeepMs = 50;

DlqSummary entry(uint64_t dlq_id, uint64_t segment) {
  DlqSummary s;
  s.dlq_id = dlq_id;
  s.request_id = 0x1000 + dlq_id;
  s.segment = segment;
  return s;
}

// Segments 1..5 (5 active), entry k in segment k, each reviewed at 10 ms
// but the one in `unreviewed` (0: none).
DlqIndex index_of_five(uint64_t unreviewed) {
  DlqIndex index;
  for (uint64_t seq = 1; seq <= 5; ++seq) {
    EXPECT_TRUE(index.add(entry(seq, seq)));
    if (seq != unreviewed) {
      EXPECT_TRUE(index.apply(ReviewRecord{seq, "ops", 10 * kMs, "done"}));
    }
  }
  return index;
}

TEST(Retention, PlanStopsAtTheFirstHeldSegmentAndNeverTakesTheActiveOne) {
  Retention r("/nonexistent", kKeepMs);
  r.adopt({1, 2, 3, 4});
  r.add(5);
  EXPECT_EQ(r.plan(index_of_five(3), 5, 100 * kMs), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(r.plan(index_of_five(0), 5, 100 * kMs), (std::vector<uint64_t>{1, 2, 3, 4}));
  EXPECT_EQ(r.plan(index_of_five(1), 5, 100 * kMs), (std::vector<uint64_t>{}));
  // Reviewed, but not long enough ago.
  EXPECT_EQ(r.plan(index_of_five(0), 5, 59 * kMs), (std::vector<uint64_t>{}));
  EXPECT_EQ(r.plan(index_of_five(0), 5, 60 * kMs), (std::vector<uint64_t>{1, 2, 3, 4}));
}

TEST(Retention, RemoveUnlinksThePlannedFilesAndForgetDropsThemFromTheIndex) {
  test::TempDir dir("retention");
  for (uint64_t seq = 1; seq <= 5; ++seq) {
    std::FILE* f = std::fopen(dir.file(segment_name(seq)).c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::fclose(f);
  }
  Retention r(dir.path(), kKeepMs);
  r.adopt({1, 2, 3, 4, 5});
  DlqIndex index = index_of_five(3);
  const std::vector<uint64_t> plan = r.plan(index, 5, 100 * kMs);
  ASSERT_EQ(plan, (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(r.remove(plan), 2u);
  r.forget(plan, index);
  EXPECT_EQ(r.segments(), (std::vector<uint64_t>{3, 4, 5}));
  EXPECT_EQ(index.size(), 3u);
  EXPECT_EQ(index.find(1), nullptr);
  EXPECT_EQ(index.find(2), nullptr);
  for (uint64_t seq = 1; seq <= 5; ++seq) {
    EXPECT_EQ(std::filesystem::exists(dir.file(segment_name(seq))), seq >= 3) << seq;
  }
}

TEST(Retention, ANewActiveSegmentNeedsItsOwnCheckpoint) {
  Retention r("/nonexistent", kKeepMs);
  r.adopt({1});
  EXPECT_FALSE(r.checkpointed());
  r.mark_checkpointed();
  EXPECT_TRUE(r.checkpointed());
  r.add(2);
  EXPECT_FALSE(r.checkpointed());
  EXPECT_EQ(r.segments(), (std::vector<uint64_t>{1, 2}));
}

}  // namespace
}  // namespace perfq::agent
