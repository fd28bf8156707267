// perfqctl submit/status/cancel (SPEC §6): every outcome reaches the
// command line, errors as {statusCode, message, error} with a non-zero exit.
// Its command line (issue 15): --help and --version on stdout, options
// before or after the verb, --flag=value, usage errors naming the argument
// (exit 64), PERFQ_QUEUE, health's exit codes, every wait bounded by
// --timeout.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "daemon_test.hpp"
#include "harness.hpp"
#include "http/auth.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/shm/liveness.hpp"
#include "perfq/version.hpp"

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

// ---- perfqctl events (SPEC §5, §6): the event ring, followed from the segment

// Whether `reader` shows the event `name` of request `id`, polling it until
// it does, at most `bound`.
bool seen(EventReader& reader, uint64_t id, std::string_view name,
          std::chrono::milliseconds bound) {
  std::vector<Event> evs;
  return test::eventually(
      [&] {
        (void)reader.poll(evs);
        for (const Event& e : evs) {
          if (e.request_id == id && event_name(static_cast<EventKind>(e.kind)) == name) return true;
        }
        return false;
      },
      bound);
}

// The agent writes events once it has seen a reader (its next liveness
// pass). Submits probes until one shows up in `reader`: from then on every
// event is written while a reader polls.
bool wait_for_event_flow(Producer& p, EventReader& reader) {
  for (int i = 0; i < 50; ++i) {
    auto s = p.submit(test::make_request("probe-nobody-serves", "probe", ""));
    if (!s) return false;
    if (seen(reader, s->request_id, "request.submitted", 200ms)) return true;
  }
  return false;
}

std::vector<std::string> lines_starting_with(const std::string& text, char c) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at < text.size()) {
    const std::size_t nl = std::min(text.find('\n', at), text.size());
    if (text[at] == c) out.push_back(text.substr(at, nl - at));
    at = nl + 1;
  }
  return out;
}

TEST_F(Perfqctl, EventsPrintsTheEventsOfRequestsAsTheyHappen) {
  start();
  auto p = Producer::connect(q_.str());
  ASSERT_TRUE(p.ok()) << p.error().message;
  auto reader = EventReader::connect(q_.str());
  ASSERT_TRUE(reader.ok());
  ASSERT_TRUE(wait_for_event_flow(**p, **reader));
  // Two followers at once: JSON lines and text. Nothing but the requests
  // below makes events from here on (the probes wait for a worker).
  test::Tool json(
      {PERFQCTL_PATH, "--queue", q_.str(), "--json", "events", "--count", "3", "--timeout", "30s"});
  test::Tool text(
      {PERFQCTL_PATH, "--queue", q_.str(), "events", "--count", "2", "--timeout", "30s"});
  ASSERT_TRUE(json.wait_for_output("following the events", 20s)) << json.output();
  ASSERT_TRUE(text.wait_for_output("following the events", 20s)) << text.output();

  auto a = (*p)->submit(
      test::make_request("nobody-serves-this", "alice", "secret payload", Mode::kPriority, 12));
  ASSERT_TRUE(a.ok());
  // Submitted before cancelled, for certain: the agent took it first.
  ASSERT_TRUE(seen(**reader, a->request_id, "request.submitted", 20s));
  ASSERT_TRUE((*p)->cancel(a->request_id, "alice").ok());
  ASSERT_TRUE(seen(**reader, a->request_id, "request.cancelled", 20s));
  auto b = (*p)->submit(test::make_request("nobody-serves-this", "bob", "secret payload"));
  ASSERT_TRUE(b.ok());

  ToolRun jr = json.finish(30s);
  ASSERT_EQ(jr.exit, 0) << jr.out;
  const auto objs = lines_starting_with(jr.out, '{');
  ASSERT_EQ(objs.size(), 3u) << jr.out;
  std::vector<nlohmann::json> ev;
  for (const auto& l : objs) ev.push_back(nlohmann::json::parse(l));
  char aid[17], bid[17];
  format_request_id(a->request_id, aid);
  format_request_id(b->request_id, bid);
  EXPECT_EQ(ev[0]["event"], "request.submitted");
  EXPECT_EQ(ev[0]["requestId"], aid);
  EXPECT_EQ(ev[0]["type"], "nobody-serves-this");
  EXPECT_EQ(ev[0]["userId"], "alice");
  EXPECT_EQ(ev[0]["status"], "pending");
  EXPECT_EQ(ev[0]["mode"], "priority");
  EXPECT_EQ(ev[0]["priority"], 12);
  EXPECT_FALSE(ev[0].contains("error"));
  EXPECT_TRUE(ev[0]["at"].is_string());
  EXPECT_EQ(ev[1]["event"], "request.cancelled");
  EXPECT_EQ(ev[1]["requestId"], aid);
  EXPECT_EQ(ev[1]["status"], "cancelled");
  EXPECT_EQ(ev[1]["error"], "CANCELLED");
  EXPECT_EQ(ev[2]["event"], "request.submitted");
  EXPECT_EQ(ev[2]["requestId"], bid);
  EXPECT_EQ(ev[2]["userId"], "bob");
  // Ring positions, one after another.
  EXPECT_EQ(ev[1]["id"].get<uint64_t>(), ev[0]["id"].get<uint64_t>() + 1);
  EXPECT_EQ(ev[2]["id"].get<uint64_t>(), ev[1]["id"].get<uint64_t>() + 1);
  EXPECT_EQ(jr.out.find("secret payload"), std::string::npos) << "never a payload";

  ToolRun tr = text.finish(30s);
  ASSERT_EQ(tr.exit, 0) << tr.out;
  const auto rows = lines_starting_with(tr.out, '2');  // an ISO time: 20xx-...
  ASSERT_EQ(rows.size(), 2u) << tr.out;
  for (const std::string& part :
       {std::string("request.submitted"), std::string(aid), std::string("type nobody-serves-this"),
        std::string("user alice"), std::string("status pending")}) {
    EXPECT_NE(rows[0].find(part), std::string::npos) << part << " in " << rows[0];
  }
  EXPECT_NE(rows[1].find("request.cancelled"), std::string::npos) << rows[1];
  EXPECT_NE(rows[1].find("error CANCELLED"), std::string::npos) << rows[1];
}

TEST_F(Perfqctl, EventsThatDoNotComeWithinTheTimeoutAreAnError) {
  start();
  ToolRun r = ctl({"events", "--count", "1", "--timeout", "100ms"});
  EXPECT_EQ(r.exit, 1) << r.out;
  EXPECT_EQ(field(r.out, "error"), "TIMEOUT") << r.out;
  EXPECT_NE(r.out.find("0 of 1 events within 100ms"), std::string::npos) << r.out;
  // Without --count the timeout is how long to follow: not an error.
  ToolRun followed = ctl({"events", "--timeout", "100ms"});
  EXPECT_EQ(followed.exit, 0) << followed.out;
  ToolRun bad = ctl({"events", "--count", "0"});
  EXPECT_EQ(bad.exit, 64) << bad.out;
  EXPECT_NE(bad.out.find("--count: 0 is out of range"), std::string::npos) << bad.out;
}

// `token create` needs no queue and no agent: the token it prints is the one
// whose hash it appended, and a refused create leaves the file alone.
// Issue 13, defect 13: perfqctl followed socket_path from the segment, which
// any member of its group can rewrite, and sent an operator's command to
// whatever listened there. A process of another user listens; perfqctl
// must refuse to talk to it, and send it nothing.
TEST(PerfqctlTrust, AnAdminSocketServedByAnotherUserIsNotSentTheCommand) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to listen as another user";
  // A segment whose header says its agent is this process (no agent thread
  // runs: nothing rewrites the scribbled path while perfqctl reads it).
  test::QueueName q;
  shm::CreateOptions small;
  small.slot_count = 64;
  small.slot_payload_bytes = 256;
  small.max_clients = 4;
  shm::Segment::Opened how{};
  auto seg = shm::Segment::open_for_agent(q.str(), small, how);
  ASSERT_TRUE(seg.ok()) << seg.error().message;
  shm::SegmentHeader& h = (*seg)->header();
  store_relaxed(h.agent_pid, static_cast<uint32_t>(::getpid()));
  store_relaxed(h.agent_start_ticks, shm::self_start_ticks());
  const std::string path = "/tmp/perfq-fake-agent-" + std::to_string(::getpid()) + ".sock";
  ::unlink(path.c_str());
  test::Signal listening;
  test::Signal got;
  test::Child fake([&] {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) return 2;
    // Dies with the test (set after setuid, which clears it), and waits for
    // a connection at most 30 s: it never outlives the test.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 4) != 0) {
      return 3;
    }
    listening.notify();
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, 30'000) != 1) return 4;
    const int c = ::accept(fd, nullptr, nullptr);
    char byte = 0;
    // A byte of the command reaching us is what must not happen.
    if (c >= 0 && ::read(c, &byte, 1) == 1) got.notify();
    return 0;
  });
  listening.close_write();
  ASSERT_EQ(listening.wait(10s), 1);
  std::memset(h.socket_path, 0, sizeof h.socket_path);
  std::memcpy(h.socket_path, path.data(), path.size());

  const ToolRun r = perfqctl(q.str(), {"dlq", "list"});
  EXPECT_NE(r.exit, 0) << r.out;
  EXPECT_NE(r.out.find("uid 65534"), std::string::npos) << r.out;
  fake.kill();
  got.close_write();
  EXPECT_EQ(got.wait(1s), -1) << "the command was sent to another user's socket";
  ::unlink(path.c_str());
}

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

// ---- the command line (issue 15): CLI11's, with perfqctl's exit codes

// perfqctl ARGS... through sh, PERFQ_QUEUE unset unless `env` sets it
// ("PERFQ_QUEUE=q"), with `redirect` after it: "2>/dev/null" keeps stdout
// alone, "2>&1 >/dev/null" stderr alone. No argument may hold a quote.
ToolRun sh_perfqctl(const std::string& env, const std::vector<std::string>& args,
                    const std::string& redirect) {
  std::string cmd = "exec env -u PERFQ_QUEUE " + env + " '" + PERFQCTL_PATH + "'";
  for (const std::string& a : args) cmd += " '" + a + "'";
  cmd += " " + redirect;
  return test::run_tool({"/bin/sh", "-c", cmd});
}

// The option and verb lines of a --help text that have no description:
// nothing after their column, and no continuation line below.
std::vector<std::string> undescribed(const std::string& help) {
  std::vector<std::string> lines;
  for (std::size_t at = 0; at < help.size();) {
    const std::size_t nl = std::min(help.find('\n', at), help.size());
    lines.push_back(help.substr(at, nl - at));
    at = nl + 1;
  }
  std::vector<std::string> out;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const std::string& l = lines[i];
    if (l.size() < 3 || l.rfind("  ", 0) != 0 || l[2] == ' ') continue;
    const std::size_t gap = l.find("  ", 2);
    const bool beside =
        gap != std::string::npos && l.find_first_not_of(' ', gap) != std::string::npos;
    const bool below = i + 1 < lines.size() && lines[i + 1].rfind("          ", 0) == 0;
    if (!beside && !below) out.push_back(l);
  }
  return out;
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(PerfqctlCommandLine, HelpOfEveryVerbIsOnStdoutWithDescriptionsAndExitsZero) {
  const std::vector<std::vector<std::string>> helps = {{"--help"},
                                                       {"health", "--help"},
                                                       {"metrics", "--help"},
                                                       {"top", "--help"},
                                                       {"submit", "--help"},
                                                       {"status", "--help"},
                                                       {"cancel", "--help"},
                                                       {"dlq", "--help"},
                                                       {"dlq", "list", "--help"},
                                                       {"dlq", "show", "-h"},
                                                       {"dlq", "review", "--help"},
                                                       {"dlq", "replay", "--help"},
                                                       {"dlq", "verify", "--help"},
                                                       {"events", "--help"},
                                                       {"destroy", "--help"},
                                                       {"token", "--help"},
                                                       {"token", "create", "--help"}};
  for (const auto& args : helps) {
    const std::string what = args.front() + " " + args.back();
    const ToolRun out = sh_perfqctl("", args, "2>/dev/null");
    EXPECT_EQ(out.exit, 0) << what << ": " << out.out;
    EXPECT_TRUE(has(out.out, "Usage: perfqctl")) << what << ": " << out.out;
    EXPECT_EQ(undescribed(out.out), std::vector<std::string>{}) << what << ": " << out.out;
    const ToolRun err = sh_perfqctl("", args, "2>&1 >/dev/null");
    EXPECT_EQ(err.out, "") << what << ": nothing on stderr";
  }
  const std::string top = sh_perfqctl("", {"--help"}, "2>/dev/null").out;
  for (const char* verb : {"health", "metrics", "top", "submit", "status", "cancel", "dlq",
                           "events", "destroy", "token"}) {
    EXPECT_TRUE(has(top, std::string("\n  ") + verb + " ")) << verb << " in " << top;
  }
  EXPECT_TRUE(has(top, "PERFQ_QUEUE")) << top;
  EXPECT_TRUE(has(top, "the flag wins")) << top;
  EXPECT_TRUE(has(top, "64 a usage error")) << top;
  // Defaults and units.
  const auto help_of = [](std::vector<std::string> args) {
    args.emplace_back("--help");
    return sh_perfqctl("", args, "2>/dev/null").out;
  };
  EXPECT_TRUE(has(help_of({"submit"}), "--timeout DURATION=1m")) << help_of({"submit"});
  EXPECT_TRUE(has(help_of({"metrics"}), "--period MINUTES=60")) << help_of({"metrics"});
  EXPECT_TRUE(has(help_of({"top"}), "--interval DURATION=1s")) << help_of({"top"});
  EXPECT_TRUE(has(help_of({"dlq", "list"}), "--timeout DURATION=30s"));
  EXPECT_TRUE(has(help_of({"health"}), "0 healthy, 1 degraded, 2 unhealthy, 3 unknown"))
      << help_of({"health"});
}

TEST(PerfqctlCommandLine, VersionIsOnStdoutAndExitsZero) {
  const ToolRun r = sh_perfqctl("", {"--version"}, "2>/dev/null");
  EXPECT_EQ(r.exit, 0) << r.out;
  EXPECT_EQ(r.out, std::string("perfqctl ") + kVersion + "\n");
}

TEST(PerfqctlCommandLine, UsageErrorsNameTheArgumentOnStderrAndExit64) {
  struct Case {
    std::vector<std::string> args;
    const char* named;
  };
  const Case cases[] = {
      {{"--queue", "q", "health", "--bogus"}, "--bogus"},
      {{"--queue", "q", "--bogus", "health"}, "--bogus"},
      {{"--queue", "q", "frobnicate"}, "frobnicate"},
      {{"--queue", "q", "submit", "--user", "alice", "--type"}, "--type"},
      {{"--queue", "q", "submit", "--user", "alice"}, "--type is required"},
      {{"--queue", "q", "dlq", "list", "--limit", "abc"}, "--limit: 'abc' is not an integer"},
      {{"--json", "--queue", "q", "dlq", "list", "--limit=101"},
       "--limit: 101 is out of range 1..100"},
      {{"--queue", "q", "metrics", "--period", "60m"}, "--period: '60m' is not an integer"},
      {{"--queue", "q", "submit", "--user", "a", "--type", "t", "--priority", "high"},
       "--priority: 'high' is not an integer"},
      {{"--queue", "q", "submit", "--user", "a", "--type", "t", "--wait", "--timeout", "5"},
       "--timeout: '5' is not a duration"},
      {{"--queue", "q", "submit", "--user", "a", "--type", "t", "--timeout", "5s"},
       "--timeout requires --wait"},
      {{"--queue", "q", "status", "--user", "a"}, "ID is required"},
      {{"--queue", "q", "dlq", "frobnicate"}, "frobnicate"},
      {{"--queue", "q", "dlq"}, "a verb is required"},
      {{"health"}, "health needs --queue"},
      {{}, "a verb is required"},
  };
  for (const Case& c : cases) {
    const ToolRun err = sh_perfqctl("", c.args, "2>&1 >/dev/null");
    EXPECT_EQ(err.exit, 64) << c.named << ": " << err.out;
    EXPECT_TRUE(has(err.out, c.named)) << c.named << " in: " << err.out;
    const ToolRun out = sh_perfqctl("", c.args, "2>/dev/null");
    EXPECT_EQ(out.out, "") << c.named << ": nothing on stdout, also with --json";
  }
}

TEST_F(Perfqctl, GlobalOptionsComeAfterTheVerbAndValuesAfterEquals) {
  start();
  ToolRun s = run_perfqctl({"submit", "--user=alice", "--type=t", "--mode=priority",
                            "--priority=12", "--json", "--queue=" + q_.str()});
  ASSERT_EQ(s.exit, 0) << s.out;
  const std::string id = field(s.out, "requestId");
  ASSERT_EQ(id.size(), 16u) << s.out;
  EXPECT_EQ(field(s.out, "priority"), "12");
  EXPECT_EQ(field(s.out, "mode"), "priority");
  // --json last, after the verb's own options: JSON, not text.
  ToolRun st = run_perfqctl({"--queue", q_.str(), "status", id, "--user", "alice", "--json"});
  ASSERT_EQ(st.exit, 0) << st.out;
  const nlohmann::json body = nlohmann::json::parse(st.out, nullptr, false);
  ASSERT_TRUE(body.is_object()) << st.out;
  EXPECT_EQ(body["status"], "pending");
  EXPECT_EQ(body["priority"], 12);
  // Without it: text.
  ToolRun text = run_perfqctl({"status", id, "--queue", q_.str(), "--user", "alice"});
  ASSERT_EQ(text.exit, 0) << text.out;
  EXPECT_EQ(text.out.rfind("requestId " + id, 0), 0u) << text.out;
}

TEST_F(Perfqctl, PerfqQueueNamesTheQueueUnlessTheFlagDoes) {
  start();
  const std::string elsewhere = "no-such-queue-" + std::to_string(::getpid());
  ToolRun s = sh_perfqctl("PERFQ_QUEUE=" + q_.str(),
                          {"--json", "submit", "--user", "alice", "--type", "t"}, "2>&1");
  ASSERT_EQ(s.exit, 0) << s.out;
  const std::string id = field(s.out, "requestId");
  ASSERT_EQ(id.size(), 16u) << s.out;
  // The flag wins over the variable, either way round.
  ToolRun flag =
      sh_perfqctl("PERFQ_QUEUE=" + elsewhere,
                  {"--json", "--queue", q_.str(), "status", id, "--user", "alice"}, "2>&1");
  EXPECT_EQ(flag.exit, 0) << flag.out;
  EXPECT_EQ(field(flag.out, "status"), "pending") << flag.out;
  ToolRun other =
      sh_perfqctl("PERFQ_QUEUE=" + q_.str(),
                  {"--json", "status", id, "--user", "alice", "--queue", elsewhere}, "2>&1");
  EXPECT_EQ(other.exit, 1) << other.out;
  EXPECT_TRUE(has(other.out, elsewhere)) << other.out;
}

TEST_F(Perfqctl, SubmitWaitGivesUpAtItsTimeoutWhenNoWorkerServes) {
  start();
  ToolRun r = ctl({"submit", "--user", "alice", "--type", "nobody-serves-this", "--wait",
                   "--timeout", "200ms"});
  EXPECT_EQ(r.exit, 1) << r.out;
  const std::string id = field(r.out, "requestId");
  ASSERT_EQ(id.size(), 16u) << r.out;
  EXPECT_TRUE(has(r.out, "\"error\":\"TIMEOUT\"")) << r.out;
  EXPECT_TRUE(has(r.out, "no outcome of request " + id + " within 200ms")) << r.out;
  // perfqctl gave up waiting, not the request.
  EXPECT_EQ(field(ctl({"status", id, "--user", "alice"}).out, "status"), "pending");
}

TEST_F(Perfqctl, TopStopsAtItsTimeout) {
  start();
  // Without --iterations the timeout is the view's length.
  ToolRun view = ctl({"top", "--interval", "10ms", "--timeout", "50ms"});
  EXPECT_EQ(view.exit, 0) << view.out;
  // With them, frames not drawn in time are an error.
  ToolRun frames = ctl({"top", "--iterations", "100000", "--interval=10ms", "--timeout=50ms"});
  EXPECT_EQ(frames.exit, 1) << frames.out.substr(0, 2000);
  EXPECT_TRUE(has(frames.out, "\"error\":\"TIMEOUT\"")) << frames.out.substr(0, 2000);
  EXPECT_TRUE(has(frames.out, " of 100000 frames within 50ms")) << frames.out.substr(0, 2000);
}

// health's exit code is the queue's state, as a monitoring probe reads it
// (0 healthy, 1 degraded, 2 unhealthy, 3 unknown); the agent's admin socket
// answers it, so these run the whole agent.
class PerfqctlHealth : public test::DaemonTest {
 protected:
  void SetUp() override {
    DaemonTest::SetUp();
    cfg_.http = "off";
  }
  ToolRun health() { return perfqctl(q_.str(), {"health"}); }
  // Health until it exits `want` (bounded); the last run.
  ToolRun health_exits(int want) {
    ToolRun r;
    EXPECT_TRUE(test::eventually(
        [&] {
          r = health();
          return r.exit == want;
        },
        20s))
        << "health never exited " << want << ": " << r.exit << " " << r.out;
    return r;
  }
};

TEST_F(PerfqctlHealth, ExitsZeroWhenHealthyOneWhenDegradedTwoWhenUnhealthy) {
  cfg_.max_queue_depth = 10;
  cfg_.health_degraded_utilization = 10;   // degraded above 1 pending
  cfg_.health_unhealthy_utilization = 20;  // unhealthy above 2
  start_daemon();
  EXPECT_EQ(field(health_exits(0).out, "status"), "healthy");
  auto p = Producer::connect(q_.str());
  ASSERT_TRUE(p.ok()) << p.error().message;
  std::vector<Submitted> held;  // no worker serves the type: they stay pending
  auto submit = [&] {
    auto s = (*p)->submit(test::make_request("nobody-serves-this", "ann", "{}"));
    ASSERT_TRUE(s.ok()) << s.error().message;
    held.push_back(std::move(*s));
  };
  submit();
  submit();
  EXPECT_EQ(field(health_exits(1).out, "status"), "degraded");
  submit();
  EXPECT_EQ(field(health_exits(2).out, "status"), "unhealthy");
  // Text or JSON, the same code.
  EXPECT_EQ(perfqctl(q_.str(), {"health"}, false).exit, 2);
}

TEST_F(PerfqctlHealth, ExitsThreeWhenTheAgentIsDown) {
  const ToolRun none = perfqctl("no-such-queue-" + std::to_string(::getpid()), {"health"});
  EXPECT_EQ(none.exit, 3) << none.out;
  EXPECT_EQ(field(none.out, "error"), "AGENT_UNAVAILABLE") << none.out;
  start_daemon();
  health_exits(0);
  daemon_.kill(SIGTERM);
  ASSERT_EQ(daemon_.wait(20s), 0);
  // The body, from the segment, says why.
  const ToolRun r = health();
  EXPECT_EQ(r.exit, 3) << r.out;
  const nlohmann::json h = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_TRUE(h.is_object()) << r.out;
  EXPECT_EQ(h["status"], "unhealthy");
  EXPECT_EQ(h["agent"]["state"], "stopped");
}

// An agent that holds its segment but never answers its admin socket (a
// listening socket nobody accepts on): health is unknown (3) once its
// --timeout passes, and every other admin verb a TIMEOUT error (1) naming
// what it waited for.
TEST(PerfqctlTimeout, AnAgentThatNeverAnswersIsATimeout) {
  test::QueueName q;
  shm::CreateOptions small;
  small.slot_count = 64;
  small.slot_payload_bytes = 256;
  small.max_clients = 4;
  shm::Segment::Opened how{};
  auto seg = shm::Segment::open_for_agent(q.str(), small, how);  // holds the agent's lock
  ASSERT_TRUE(seg.ok()) << seg.error().message;
  const std::string path = "/tmp/perfq-silent-agent-" + std::to_string(::getpid()) + ".sock";
  ::unlink(path.c_str());
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 8), 0);
  shm::SegmentHeader& h = (*seg)->header();
  std::memset(h.socket_path, 0, sizeof h.socket_path);
  std::memcpy(h.socket_path, path.data(), path.size());

  const ToolRun health = perfqctl(q.str(), {"health", "--timeout", "200ms"});
  EXPECT_EQ(health.exit, 3) << health.out;
  EXPECT_EQ(field(health.out, "error"), "TIMEOUT") << health.out;
  EXPECT_TRUE(has(health.out, "no answer from the agent to health within 200ms")) << health.out;
  const ToolRun list = perfqctl(q.str(), {"dlq", "list", "--timeout=200ms"});
  EXPECT_EQ(list.exit, 1) << list.out;
  EXPECT_TRUE(has(list.out, "no answer from the agent to dlq.list within 200ms")) << list.out;
  const ToolRun metrics = perfqctl(q.str(), {"metrics", "--timeout", "200ms"}, false);
  EXPECT_EQ(metrics.exit, 1) << metrics.out;
  EXPECT_TRUE(has(metrics.out, "perfqctl: TIMEOUT: no answer from the agent to metrics"))
      << metrics.out;
  ::close(fd);
  ::unlink(path.c_str());
}

}  // namespace
}  // namespace perfq
