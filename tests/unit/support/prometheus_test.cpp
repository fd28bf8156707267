// The strict Prometheus text parser of tests/support refuses what the format
// forbids, so the tests that use it can trust a clean parse.
#include "prometheus.hpp"

#include <gtest/gtest.h>

#include <string>

namespace perfq::test {
namespace {

TEST(PrometheusParser, RefusesWhatTheFormatForbids) {
  const std::string ok =
      "# HELP a_total A.\n# TYPE a_total counter\na_total{band=\"x\"} 1\n"
      "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\n"
      "h_sum 3\nh_count 2\n";
  EXPECT_EQ(parse_exposition(ok).error, "");
  const std::string broken[] = {
      "a_total 1\n",                                                  // no family
      "# HELP a_total A.\n# TYPE a_total counter\na_total 1",         // no final newline
      "# HELP a A.\n# TYPE a counter\na 1\n",                         // counter without _total
      "# HELP a_total A.\n# TYPE a_total counter\na_total{b=x} 1\n",  // unquoted
      "# HELP a_total A.\n# TYPE a_total counter\na_total 1\na_total 2\n",  // twice
      "# HELP a_total A.\n# TYPE a_total counter\na_total one\n",           // value
      "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n"
      "h_count 1\n",                                                            // not cumulative
      "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 3\n",  // count
      "# TYPE g gauge\ng 1\n",                                                  // no HELP
  };
  for (const std::string& b : broken) EXPECT_NE(parse_exposition(b).error, "") << b;
}

}  // namespace
}  // namespace perfq::test
