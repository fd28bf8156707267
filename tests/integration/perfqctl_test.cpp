// perfqctl submit/status/cancel (SPEC §6): every outcome reaches the
// command line, errors as {statusCode, message, error} with a non-zero exit.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "harness.hpp"
#include "perfq/agent/auth.hpp"

namespace perfq {
namespace {

using namespace std::chrono_literals;

using test::ToolRun;

// Runs perfqctl ARGS... (no --queue added), bounded; collects its output.
ToolRun run_perfqctl(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {PERFQCTL_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  return test::run_tool(argv);
}

// Runs perfqctl --queue Q --json ARGS..., bounded; collects its output.
ToolRun perfqctl(const std::string& queue, std::vector<std::string> args, bool json = true) {
  std::vector<std::string> argv = {"--queue", queue};
  if (json) argv.emplace_back("--json");
  argv.insert(argv.end(), args.begin(), args.end());
  return run_perfqctl(argv);
}

std::string field(const std::string& json, const std::string& name) {
  const std::string key = "\"" + name + "\":";
  const size_t at = json.find(key);
  if (at == std::string::npos) return {};
  size_t b = at + key.size();
  if (json[b] == '"') {
    const size_t e = json.find('"', b + 1);
    return json.substr(b + 1, e - b - 1);
  }
  size_t e = b;
  while (e < json.size() && json[e] != ',' && json[e] != '}') ++e;
  return json.substr(b, e - b);
}

class Perfqctl : public ::testing::Test {
 protected:
  void start(const std::function<void(agent::Config&)>& tune = {}) {
    auto cfg = test::test_config(q_.str());
    if (tune) tune(cfg);
    agent_ = std::make_unique<test::AgentThread>(cfg);
  }
  ToolRun ctl(std::vector<std::string> args, bool json = true) {
    return perfqctl(q_.str(), std::move(args), json);
  }
  test::QueueName q_;
  std::unique_ptr<test::AgentThread> agent_;
};

TEST_F(Perfqctl, SubmitStatusAndCancelOfOwnRequest) {
  start();
  ToolRun s = ctl({"submit", "--user", "alice", "--type", "nobody-serves-this", "--mode",
                   "priority", "--priority", "12", "--payload", "{\"text\":\"hi\"}"});
  ASSERT_EQ(s.exit, 0) << s.out;
  const std::string id = field(s.out, "requestId");
  ASSERT_EQ(id.size(), 16u) << s.out;
  EXPECT_EQ(field(s.out, "status"), "pending");
  EXPECT_EQ(field(s.out, "mode"), "priority");
  EXPECT_EQ(field(s.out, "priority"), "12");
  EXPECT_EQ(field(s.out, "queuePosition"), "0");
  EXPECT_NE(field(s.out, "createdAt"), "");

  ToolRun st = ctl({"status", id, "--user", "alice"});
  ASSERT_EQ(st.exit, 0) << st.out;
  EXPECT_EQ(field(st.out, "status"), "pending");
  EXPECT_EQ(field(st.out, "band"), "HIGH");
  EXPECT_EQ(field(st.out, "error"), "WORKER_UNAVAILABLE");

  ToolRun other = ctl({"status", id, "--user", "bob"});
  EXPECT_EQ(other.exit, 1);
  EXPECT_EQ(field(other.out, "statusCode"), "404");
  EXPECT_EQ(field(other.out, "error"), "NOT_FOUND");

  ToolRun steal = ctl({"cancel", id, "--user", "bob"});
  EXPECT_EQ(steal.exit, 1);
  EXPECT_EQ(field(steal.out, "error"), "NOT_FOUND");
  ToolRun cancel = ctl({"cancel", id, "--user", "alice"});
  EXPECT_EQ(cancel.exit, 0) << cancel.out;
  ASSERT_TRUE(test::eventually(
      [&] {
        return field(ctl({"status", id, "--user", "alice"}).out, "status") == "cancelled";
      },
      10s));
  ToolRun again = ctl({"cancel", id, "--user", "alice"});
  EXPECT_EQ(again.exit, 1);
  EXPECT_EQ(field(again.out, "statusCode"), "400");
  EXPECT_EQ(field(again.out, "error"), "INVALID_STATUS");
}

TEST_F(Perfqctl, ValidationErrorsNameTheirCode) {
  start();
  struct Case {
    std::vector<std::string> args;
    const char* code;
  };
  const Case cases[] = {
      {{"submit", "--user", "alice", "--type", "t", "--priority", "21"}, "INVALID_PRIORITY"},
      {{"submit", "--user", "alice", "--type", "t", "--priority", "0"}, "INVALID_PRIORITY"},
      {{"submit", "--user", "alice", "--type", "t", "--mode", "lifo"}, "INVALID_MODE"},
      {{"submit", "--user", "alice", "--type", "bad type"}, "INVALID_REQUEST"},
      {{"submit", "--user", "", "--type", "t"}, "INVALID_REQUEST"},
      {{"status", "not-an-id", "--user", "alice"}, "INVALID_REQUEST"},
      {{"status", "00000000000000ff", "--user", "alice"}, "NOT_FOUND"},
  };
  for (const Case& c : cases) {
    ToolRun r = ctl(c.args);
    EXPECT_EQ(r.exit, 1) << r.out;
    EXPECT_EQ(field(r.out, "error"), c.code) << r.out;
    EXPECT_NE(field(r.out, "message"), "") << r.out;
  }
  // Without --json the code still leads the message, on stderr.
  ToolRun human = ctl({"submit", "--user", "alice", "--type", "t", "--priority", "99"}, false);
  EXPECT_EQ(human.exit, 1);
  EXPECT_NE(human.out.find("INVALID_PRIORITY"), std::string::npos) << human.out;
}

TEST_F(Perfqctl, RateLimitAndQueueFullAreReported) {
  start([](agent::Config& c) {
    c.max_requests_per_user_per_minute = 2;
    c.max_queue_depth = 3;
    c.rope_drop_timeout_ms = 0;
  });
  const std::vector<std::string> alice = {"submit", "--user", "alice", "--type", "t"};
  ASSERT_EQ(ctl(alice).exit, 0);
  ASSERT_EQ(ctl(alice).exit, 0);
  ToolRun limited = ctl(alice);
  EXPECT_EQ(limited.exit, 1);
  EXPECT_EQ(field(limited.out, "statusCode"), "429");
  EXPECT_EQ(field(limited.out, "error"), "RATE_LIMIT_EXCEEDED");
  const std::string after = field(limited.out, "retryAfterMs");
  ASSERT_NE(after, "") << limited.out;
  EXPECT_GT(std::stoull(after), 0u);
  EXPECT_LE(std::stoull(after), 60'000u);
  // The same key again is a duplicate, not a third request of alice.
  ToolRun keyed = ctl({"submit", "--user", "bob", "--type", "t", "--idempotency-key", "k"});
  ASSERT_EQ(keyed.exit, 0) << keyed.out;
  ToolRun dup = ctl({"submit", "--user", "bob", "--type", "t", "--idempotency-key", "k"});
  ASSERT_EQ(dup.exit, 0) << dup.out;
  EXPECT_EQ(field(dup.out, "duplicate"), "true");
  EXPECT_EQ(field(dup.out, "requestId"), field(keyed.out, "requestId"));
  // Three requests wait (no worker): the queue is full.
  ToolRun full = ctl({"submit", "--user", "carol", "--type", "t"});
  EXPECT_EQ(full.exit, 1);
  EXPECT_EQ(field(full.out, "statusCode"), "503");
  EXPECT_EQ(field(full.out, "error"), "QUEUE_FULL");
}

// `token create` needs no queue and no agent: the token it prints is the one
// whose hash it appended, and a refused create leaves the file alone.
TEST(PerfqctlToken, CreatePrintsATokenThatTheStoreAuthenticates) {
  std::string tmpl = "/tmp/perfq-ctl-token-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  const std::string path = tmpl + "/tokens";
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } cleanup{tmpl};

  ToolRun r = run_perfqctl(
      {"--json", "token", "create", "--tokens", path, "--user", "ops@example", "--role", "admin"});
  ASSERT_EQ(r.exit, 0) << r.out;
  const std::string token = field(r.out, "token");
  ASSERT_EQ(token.rfind("pq_", 0), 0u) << r.out;
  EXPECT_EQ(field(r.out, "userId"), "ops@example");
  EXPECT_EQ(field(r.out, "role"), "admin");

  auto store = agent::TokenStore::load(path);
  ASSERT_TRUE(store.ok()) << store.error().message;
  ASSERT_EQ(store->size(), 1u);
  const auto p = store->authenticate(token);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->user_id, "ops@example");
  EXPECT_TRUE(p->admin());

  // Human output: the token alone on a line, and it authenticates as a user.
  ToolRun human =
      run_perfqctl({"token", "create", "--tokens", path, "--user", "alice", "--role", "user"});
  ASSERT_EQ(human.exit, 0) << human.out;
  const std::string line = human.out.substr(0, human.out.find('\n'));
  auto again = agent::TokenStore::load(path);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->size(), 2u);
  EXPECT_TRUE(again->authenticate(token).has_value());
  const auto a = again->authenticate(line);
  ASSERT_TRUE(a.has_value()) << human.out;
  EXPECT_EQ(a->user_id, "alice");
  EXPECT_FALSE(a->admin());

  ToolRun bad = run_perfqctl(
      {"--json", "token", "create", "--tokens", path, "--user", "mallory", "--role", "root"});
  EXPECT_EQ(bad.exit, 1) << bad.out;
  EXPECT_EQ(field(bad.out, "statusCode"), "400") << bad.out;
  EXPECT_EQ(field(bad.out, "error"), "INVALID_REQUEST") << bad.out;
  auto after = agent::TokenStore::load(path);
  ASSERT_TRUE(after.ok()) << after.error().message;
  EXPECT_EQ(after->size(), 2u);
}

}  // namespace
}  // namespace perfq
