// perfqctl submit/status/cancel (SPEC §6): every outcome reaches the
// command line, errors as {statusCode, message, error} with a non-zero exit.
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

#include "harness.hpp"
#include "http/auth.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/shm/liveness.hpp"

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
  test::Tool json({PERFQCTL_PATH, "--queue", q_.str(), "--json", "events", "--count", "3",
                   "--timeout-ms", "30000"});
  test::Tool text(
      {PERFQCTL_PATH, "--queue", q_.str(), "events", "--count", "2", "--timeout-ms", "30000"});
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
  ToolRun r = ctl({"events", "--count", "1", "--timeout-ms", "100"});
  EXPECT_EQ(r.exit, 1) << r.out;
  EXPECT_NE(r.out.find("0 of 1 events within 100 ms"), std::string::npos) << r.out;
  ToolRun bad = ctl({"events", "--count", "0"});
  EXPECT_EQ(bad.exit, 1) << bad.out;
  EXPECT_EQ(field(bad.out, "error"), "INVALID_REQUEST") << bad.out;
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

}  // namespace
}  // namespace perfq
