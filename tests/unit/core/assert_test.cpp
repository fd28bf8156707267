// PERFQ_ENFORCE stops the process on a broken invariant in every build;
// PERFQ_ASSERT does where assertions are on (debug, sanitizer trees) and
// evaluates nothing where they are off.
#include "perfq/core/assert.hpp"

#include <gtest/gtest.h>

namespace perfq {
namespace {

TEST(Assert, EnforceAbortsNamingTheConditionAndItsPlace) {
  const int live = 0;
  EXPECT_DEATH(PERFQ_ENFORCE(live > 0),
               "assertion failed: live > 0 \\(.*assert_test.cpp:[0-9]+\\)");
}

TEST(Assert, EnforcePassesQuietlyWhenTheConditionHolds) {
  int evaluated = 0;
  PERFQ_ENFORCE(++evaluated == 1);
  EXPECT_EQ(evaluated, 1);
}

TEST(Assert, AssertChecksOnlyWhereAssertionsAreOn) {
#if defined(PERFQ_ASSERTIONS) || !defined(NDEBUG)
  EXPECT_DEATH(PERFQ_ASSERT(1 + 1 == 3), "assertion failed: 1 \\+ 1 == 3");
#else
  int evaluated = 0;
  PERFQ_ASSERT(++evaluated == 5);  // not evaluated: no side effect, no abort
  EXPECT_EQ(evaluated, 0);
#endif
}

}  // namespace
}  // namespace perfq
