// The HTTP route table (agent/src/http/route_table.hpp): method + path
// pattern -> handler, a ":name" segment captured for the handler.
#include "http/route_table.hpp"

#include <gtest/gtest.h>

#include <array>
#include <string_view>

namespace perfq::agent {
namespace {

bool matches(std::string_view pattern, std::string_view path, std::string_view* param = nullptr) {
  std::string_view p = "untouched";
  const bool m = match_path(pattern, path, p);
  if (param != nullptr) *param = p;
  return m;
}

TEST(RouteTable, LiteralPatternsMatchOnlyTheSamePath) {
  EXPECT_TRUE(matches("/livez", "/livez"));
  EXPECT_TRUE(matches("/performance-queue/submit", "/performance-queue/submit"));
  EXPECT_FALSE(matches("/performance-queue/submit", "/performance-queue/submit/"));
  EXPECT_FALSE(matches("/performance-queue/submit", "/performance-queue/submi"));
  EXPECT_FALSE(matches("/performance-queue/submit", "/performance-queue"));
  EXPECT_FALSE(matches("/livez", "/livez/x"));
  EXPECT_FALSE(matches("/livez", ""));
}

TEST(RouteTable, AParamSegmentTakesExactlyOneSegment) {
  std::string_view id;
  ASSERT_TRUE(matches("/q/status/:id", "/q/status/00000000000000ab", &id));
  EXPECT_EQ(id, "00000000000000ab");
  // An empty segment is a segment: the handler refuses the id, not the router.
  ASSERT_TRUE(matches("/q/dlq/:id", "/q/dlq/", &id));
  EXPECT_EQ(id, "");
  ASSERT_TRUE(matches("/q/dlq/:id/review", "/q/dlq/17/review", &id));
  EXPECT_EQ(id, "17");
  EXPECT_FALSE(matches("/q/dlq/:id", "/q/dlq/17/review"));
  EXPECT_FALSE(matches("/q/dlq/:id/review", "/q/dlq/17"));
  EXPECT_FALSE(matches("/q/dlq/:id/review", "/q/dlq/17/replay"));
  EXPECT_FALSE(matches("/q/status/:id", "/q/status"));
}

using Handler = int;

TEST(RouteTable, TheMethodIsPartOfTheRouteAndTheFirstMatchWins) {
  static constexpr std::array<Route<Handler>, 4> kRoutes = {{
      {"GET", "/q/dlq/:id", Access::kAdmin, 1},
      {"POST", "/q/dlq/:id/review", Access::kAdmin, 2},
      {"GET", "/q/dlq/:id", Access::kUser, 3},  // shadowed by the first
      {"GET", "/livez", Access::kOpen, 4},
  }};
  std::string_view param;
  const Route<Handler>* r = find_route<Handler>(kRoutes, "GET", "/q/dlq/5", param);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->handler, 1);
  EXPECT_EQ(param, "5");
  r = find_route<Handler>(kRoutes, "POST", "/q/dlq/6/review", param);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->handler, 2);
  EXPECT_EQ(param, "6");
  EXPECT_EQ(find_route<Handler>(kRoutes, "POST", "/q/dlq/5", param), nullptr);
  EXPECT_EQ(find_route<Handler>(kRoutes, "DELETE", "/livez", param), nullptr);
  r = find_route<Handler>(kRoutes, "GET", "/livez", param);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->access, Access::kOpen);
}

}  // namespace
}  // namespace perfq::agent
