// AuditLog: the bounded line queue, the audit.dropped line, and what
// happens to lines the writer's queue refuses. Real files under a unique
// /tmp directory; the Journal's lock is not needed here (one thread).
#include "journal/audit_log.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "temp_dir.hpp"

namespace perfq::agent {
namespace {

std::string read_text(const std::string& path) {
  std::string out;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return out;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
  std::fclose(f);
  return out;
}

std::unique_ptr<AuditLog> open_ok(const std::string& path, AuditLogOptions o) {
  auto a = AuditLog::open(path, o);
  EXPECT_TRUE(a.ok()) << (a.ok() ? "" : a.error().message);
  return a.ok() ? std::move(a).value() : nullptr;
}

TEST(AuditLog, LinesPastTheBoundAreCountedInOneDroppedLineFirst) {
  test::TempDir dir("audit");
  AuditLogOptions o;
  o.queue_max = 3;
  auto log = open_ok(dir.file("audit.log"), o);
  ASSERT_NE(log, nullptr);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(log->push("{\"n\":" + std::to_string(i) + "}"), i < 3);
  std::vector<std::string> lines = log->take(0);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_NE(lines[0].find("\"event\":\"audit.dropped\",\"count\":2"), std::string::npos)
      << lines[0];
  EXPECT_EQ(lines[1], "{\"n\":0}");
  ASSERT_TRUE(log->write(lines));
  EXPECT_TRUE(lines.empty());
  log->put_back(std::move(lines));
  EXPECT_FALSE(log->has_work());
  const std::string text = read_text(dir.file("audit.log"));
  EXPECT_NE(text.find("audit.dropped"), std::string::npos);
  EXPECT_NE(text.find("{\"n\":2}\n"), std::string::npos);
  EXPECT_EQ(text.find("{\"n\":3}"), std::string::npos);
}

// The writer's queue takes two lines of this size; what it refuses goes back
// in front of the lines queued meanwhile, and the queue keeps its bound: the
// newest lines past it are dropped and counted, as push does.
TEST(AuditLog, LinesTheWriterRefusesGoBackInFrontWithinTheBound) {
  test::TempDir dir("audit");
  AuditLogOptions o;
  o.queue_max = 4;
  o.max_pending_bytes = 2 * 8;  // two lines of 7 bytes and their '\n'
  auto log = open_ok(dir.file("audit.log"), o);
  ASSERT_NE(log, nullptr);
  for (const char* l : {"line-01", "line-02", "line-03", "line-04"}) ASSERT_TRUE(log->push(l));
  std::vector<std::string> lines = log->take(0);
  for (const char* l : {"line-05", "line-06", "line-07", "line-08"}) ASSERT_TRUE(log->push(l));
  ASSERT_TRUE(log->write(lines));
  EXPECT_EQ(lines, (std::vector<std::string>{"line-03", "line-04"}));
  log->put_back(std::move(lines));
  EXPECT_FALSE(log->push("line-09"));  // full
  std::vector<std::string> next = log->take(0);
  ASSERT_EQ(next.size(), 5u);  // the dropped line, then at most queue_max
  EXPECT_NE(next[0].find("\"count\":3"), std::string::npos) << next[0];  // 07, 08, 09
  EXPECT_EQ(std::vector<std::string>(next.begin() + 1, next.end()),
            (std::vector<std::string>{"line-03", "line-04", "line-05", "line-06"}));
}

TEST(AuditLog, IsDueWhenItHasWorkAndNoBackoffRuns) {
  test::TempDir dir("audit");
  auto log = open_ok(dir.file("audit.log"), {});
  ASSERT_NE(log, nullptr);
  const auto now = std::chrono::steady_clock::now();
  EXPECT_FALSE(log->has_work());
  EXPECT_FALSE(log->due(now, true));
  ASSERT_TRUE(log->push("{}"));
  EXPECT_TRUE(log->due(now, false));
}

}  // namespace
}  // namespace perfq::agent
