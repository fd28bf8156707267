// The DLQ journal in the running agent (SPEC §5 "DLQ journal", §7): a
// request is failed/timeout only once its record is durable, nothing is lost
// or doubled when the agent is killed mid-write, disk errors hold requests
// back and show in health, and operators review, replay and verify through
// perfqctl, with every action in the audit log.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "control/admin_client.hpp"
#include "daemon_test.hpp"
#include "harness.hpp"
#include "journal/format.hpp"
#include "journal/journal.hpp"
#include "journal/writer.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/core/clock.hpp"
#include "perfq/shm/futex.hpp"
#include "temp_dir.hpp"

namespace perfq {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
namespace fs = std::filesystem;

using test::ToolRun;

// Runs perfqctl --queue Q [--json] ARGS..., bounded; collects its output.
ToolRun perfqctl(const std::string& queue, const std::vector<std::string>& args,
                 bool as_json = true) {
  std::vector<std::string> argv = {PERFQCTL_PATH, "--queue", queue};
  if (as_json) argv.emplace_back("--json");
  argv.insert(argv.end(), args.begin(), args.end());
  return test::run_tool(argv);
}

json parsed(const ToolRun& r) {
  return json::parse(r.out, nullptr, /*allow_exceptions=*/false);
}

using test::slurp;

std::vector<std::byte> read_bytes(const std::string& path) {
  const std::string s = slurp(path);
  const auto* b = reinterpret_cast<const std::byte*>(s.data());
  return {b, b + s.size()};
}

// Every dead-letter entry in <data_dir>/dlq, by original request id, and the
// problems a scan reports.
struct OnDisk {
  std::map<uint64_t, int> entries_by_request;
  std::vector<agent::JournalEntry> entries;
  uint64_t corrupt = 0;
};

OnDisk read_journal(const std::string& data_dir) {
  OnDisk d;
  std::vector<fs::path> files;
  for (const auto& de : fs::directory_iterator(data_dir + "/dlq")) files.push_back(de.path());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    const auto bytes = read_bytes(f.string());
    const agent::ScanResult s = agent::scan(bytes);
    d.corrupt += s.corrupt.size();
    for (const auto& r : s.records) {
      if (r.type != agent::RecordType::kDeadLetter) continue;
      auto e = agent::decode_dead_letter(r.body);
      if (!e) continue;
      ++d.entries_by_request[e->letter.request_id];
      d.entries.push_back(std::move(*e));
    }
  }
  return d;
}

// An IoSeam whose fdatasyncs fail with EIO while a word in shared memory is
// set: the test (parent) flips it, the daemon (child) obeys.
class SharedFaults final : public agent::IoSeam {
 public:
  SharedFaults() {
    void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    word_ = static_cast<uint32_t*>(p);
    *word_ = 0;
  }
  ~SharedFaults() override { ::munmap(word_, 4096); }
  void fail_fsync(bool on) { aref(*word_).store(on ? 1 : 0, std::memory_order_release); }
  // The next fdatasync that succeeds kills the process: the record is on
  // disk, and the agent dies before it can conclude the request.
  void die_after_fsync() { aref(*word_).store(2, std::memory_order_release); }
  int on_result(Op op, int res) override {
    const uint32_t mode = aref(*word_).load(std::memory_order_acquire);
    if (op == Op::kFsync && mode == 1) return -EIO;
    if (op == Op::kFsync && mode == 2 && res == 0) {
      aref(*word_).store(0, std::memory_order_release);
      ::raise(SIGKILL);
    }
    return res;
  }

 private:
  uint32_t* word_ = nullptr;
};

class Dlq : public test::DaemonTest {
 protected:
  void stop_daemon() {
    daemon_.kill(SIGTERM);
    ASSERT_EQ(daemon_.wait(20s), 0);
  }
  // A worker of `type` whose every attempt fails for good ("boom <payload>").
  void start_failing_worker(const std::string& type) {
    test::Signal ready;
    worker_ = test::spawn_worker(
        q_.str(), type, [](const Job&) { return Reply::permanent_error("boom"); }, &ready);
    ready.close_write();
    ASSERT_EQ(ready.wait(10s), 1);
  }
  ToolRun ctl(std::vector<std::string> args, bool as_json = true) {
    return perfqctl(q_.str(), std::move(args), as_json);
  }
  shm::JournalView journal_view() {
    const auto& v = seg_->header().journal;
    shm::JournalView out{};
    out.state = load_relaxed(v.state);
    out.last_errno = load_relaxed(v.last_errno);
    out.unreviewed = load_relaxed(v.unreviewed);
    out.entries = load_relaxed(v.entries);
    out.awaiting = load_relaxed(v.awaiting);
    out.failed_flushes = load_relaxed(v.failed_flushes);
    return out;
  }
};

// A word in memory shared with forked children: closed until open() (the
// worker below waits on it, bounded).
class Gate {
 public:
  Gate() {
    void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    word_ = static_cast<uint32_t*>(p);
    *word_ = 0;
  }
  ~Gate() { ::munmap(word_, 4096); }
  Gate(const Gate&) = delete;
  Gate& operator=(const Gate&) = delete;
  void open() {
    aref(*word_).store(1, std::memory_order_release);
    shm::futex_wake_all(word_);
  }
  // Waits until open, at most `bound`.
  void wait(std::chrono::milliseconds bound) const {
    const uint64_t deadline = mono_now_ns() + static_cast<uint64_t>(bound.count()) * 1'000'000;
    while (aref(*word_).load(std::memory_order_acquire) == 0 && mono_now_ns() < deadline) {
      shm::futex_wait(word_, 0, deadline - mono_now_ns());
    }
  }

 private:
  uint32_t* word_ = nullptr;
};

TEST_F(Dlq, AgentKilledWhileDeadLetteringLosesAndDoublesNothing) {
  constexpr int kRequests = 3000;
  constexpr int kBeforeGate = 500;
  start_daemon();
  // The worker fails the first kBeforeGate requests at once and holds the
  // rest until the gate opens: the agent is killed while dead letters stream
  // through the journal, with most of them still to come however fast this
  // machine is.
  Gate gate;
  test::Signal ready;
  worker_ = test::spawn_worker(
      q_.str(), "doomed",
      [&gate, n = 0](const Job&) mutable {
        if (++n > kBeforeGate) gate.wait(60s);
        return Reply::permanent_error("boom");
      },
      &ready);
  ready.close_write();
  ASSERT_EQ(ready.wait(10s), 1);
  auto p = Producer::connect(q_.str());
  ASSERT_TRUE(p.ok());
  std::vector<uint64_t> ids;
  std::vector<Future> fs;
  for (int i = 0; i < kRequests; ++i) {
    auto s = (*p)->submit(test::make_request("doomed", "u", "x"));
    ASSERT_TRUE(s.ok()) << s.error().message;
    ids.push_back(s->request_id);
    fs.push_back(std::move(s->outcome));
  }
  // Kill the agent while dead letters stream through the journal: some
  // outcomes have been seen, most have not.
  auto seen_failed = [&] {
    (*p)->poll();
    std::set<uint64_t> seen;
    for (size_t i = 0; i < fs.size(); ++i) {
      if (fs[i].ready()) seen.insert(ids[i]);
    }
    return seen;
  };
  ASSERT_TRUE(test::eventually([&] { return seen_failed().size() >= 200; }, 60s));
  daemon_.kill(SIGKILL);
  ASSERT_EQ(daemon_.wait(10s), 128 + SIGKILL);
  const std::set<uint64_t> before_kill = seen_failed();
  EXPECT_LE(before_kill.size(), static_cast<size_t>(kBeforeGate));

  gate.open();
  start_daemon();
  for (auto& f : fs) {
    ASSERT_TRUE(f.wait_for(60s));
    EXPECT_EQ(f.get().status, Status::kFailed);
  }
  stop_daemon();

  const OnDisk d = read_journal(cfg_.data_dir);
  EXPECT_EQ(d.corrupt, 0u);
  EXPECT_EQ(d.entries.size(), static_cast<size_t>(kRequests));
  for (const uint64_t id : ids) {
    auto it = d.entries_by_request.find(id);
    ASSERT_NE(it, d.entries_by_request.end()) << "request " << id << " failed but is not journaled";
    EXPECT_EQ(it->second, 1) << "request " << id << " journaled " << it->second << " times";
  }
  for (const uint64_t id : before_kill) EXPECT_TRUE(d.entries_by_request.contains(id));
  std::set<uint64_t> dlq_ids;
  for (const auto& e : d.entries) dlq_ids.insert(e.dlq_id);
  EXPECT_EQ(dlq_ids.size(), d.entries.size()) << "a DLQ id was given twice";
}

TEST_F(Dlq, AgentKilledAfterTheRecordIsDurableDoesNotJournalItTwice) {
  SharedFaults faults;
  faults.die_after_fsync();
  agent::DaemonHooks hooks;
  hooks.seam = &faults;
  start_daemon(hooks);
  start_failing_worker("doomed");
  auto p = Producer::connect(q_.str());
  ASSERT_TRUE(p.ok());
  auto s = (*p)->submit(test::make_request("doomed", "u", "x"));
  ASSERT_TRUE(s.ok());
  // The daemon kills itself right after the record's fdatasync.
  ASSERT_EQ(daemon_.wait(20s), 128 + SIGKILL);
  EXPECT_FALSE(s->outcome.ready());
  ASSERT_EQ(read_journal(cfg_.data_dir).entries.size(), 1u);

  // The next agent finds the request SEALING and concludes it from the
  // record that is already there.
  start_daemon();
  ASSERT_TRUE(s->outcome.wait_for(20s));
  EXPECT_EQ(s->outcome.get().status, Status::kFailed);
  stop_daemon();
  const OnDisk d = read_journal(cfg_.data_dir);
  ASSERT_EQ(d.entries.size(), 1u) << "journaled twice";
  EXPECT_EQ(d.entries[0].letter.request_id, s->request_id);
}

TEST_F(Dlq, DiskErrorsHoldRequestsOutOfFailedAndShowInHealth) {
  SharedFaults faults;
  faults.fail_fsync(true);
  agent::DaemonHooks hooks;
  hooks.seam = &faults;
  hooks.journal_retry_ms = 2;
  start_daemon(hooks);
  start_failing_worker("doomed");
  auto p = Producer::connect(q_.str());
  ASSERT_TRUE(p.ok());
  auto s = (*p)->submit(test::make_request("doomed", "u", "x"));
  ASSERT_TRUE(s.ok());

  // The attempt failed for good, but its record cannot be made durable.
  ASSERT_TRUE(test::eventually(
      [&] {
        const auto v = journal_view();
        return v.state == static_cast<uint32_t>(shm::JournalHealthState::kFailing) &&
               v.awaiting == 1 && v.failed_flushes >= 2;
      },
      20s));
  EXPECT_EQ(journal_view().last_errno, EIO);
  EXPECT_FALSE(s->outcome.wait_for(0ms));
  auto st = (*p)->status(s->request_id, shm::Caller{"u", false});
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->status, Status::kProcessing) << "failed before its record was durable";
  const ToolRun health = ctl({"health"});
  const json h = parsed(health);
  ASSERT_TRUE(h.is_object()) << health.out;
  EXPECT_EQ(h["journal"]["state"], "failing");
  EXPECT_EQ(h["journal"]["awaitingDurable"], 1);
  EXPECT_NE(h["journal"]["lastError"].get<std::string>(), "");
  EXPECT_EQ(h["auditLog"]["state"], "healthy") << "the audit log has its own state";

  faults.fail_fsync(false);
  ASSERT_TRUE(s->outcome.wait_for(20s));
  EXPECT_EQ(s->outcome.get().status, Status::kFailed);
  ASSERT_TRUE(test::eventually(
      [&] {
        const auto v = journal_view();
        return v.state == static_cast<uint32_t>(shm::JournalHealthState::kHealthy) &&
               v.awaiting == 0 && v.unreviewed == 1;
      },
      10s));
  stop_daemon();
  const OnDisk d = read_journal(cfg_.data_dir);
  ASSERT_EQ(d.entries.size(), 1u);
  EXPECT_EQ(d.entries[0].letter.request_id, s->request_id);
}

TEST_F(Dlq, OperatorsReviewReplayAndVerifyThroughPerfqctl) {
  start_daemon();
  start_failing_worker("doomed");
  auto p = Producer::connect(q_.str());
  ASSERT_TRUE(p.ok());
  const std::string secret = "{\"card\":\"SECRET-PAYLOAD-4242\"}";
  std::vector<uint64_t> ids;
  for (const char* user : {"ann", "bob", "cy"}) {
    RequestView r = test::make_request("doomed", user, secret);
    const std::string key = std::string("SECRET-KEY-") + user;
    r.idempotency_key = key;
    auto s = (*p)->submit(r);
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE(s->outcome.wait_for(20s));
    ASSERT_EQ(s->outcome.get().status, Status::kFailed);
    ids.push_back(s->request_id);
  }
  char id_text[3][17];
  for (int i = 0; i < 3; ++i) format_request_id(ids[static_cast<size_t>(i)], id_text[i]);

  // list: newest first, every SPEC field.
  json l = parsed(ctl({"dlq", "list"}));
  ASSERT_TRUE(l.is_object());
  ASSERT_EQ(l["entries"].size(), 3u);
  EXPECT_EQ(l["entries"][0]["originalRequestId"], id_text[2]);
  EXPECT_EQ(l["entries"][2]["originalRequestId"], id_text[0]);
  EXPECT_EQ(l["entries"][0]["userId"], "cy");
  EXPECT_EQ(l["entries"][0]["failureReason"], "PROCESSOR_ERROR");
  EXPECT_EQ(l["entries"][0]["attemptCount"], 1);
  EXPECT_EQ(l["entries"][0]["reviewed"], false);
  EXPECT_EQ(parsed(ctl({"dlq", "list", "--limit", "2"}))["entries"].size(), 2u);
  EXPECT_NE(ctl({"dlq", "list", "--limit", "0"}).exit, 0);
  EXPECT_NE(ctl({"dlq", "list", "--limit", "101"}).exit, 0);
  const std::string newest = l["entries"][0]["dlqId"];
  const std::string oldest = l["entries"][2]["dlqId"];

  // show: the payload, metadata and errorHistory.
  json e = parsed(ctl({"dlq", "show", oldest}));
  ASSERT_TRUE(e.is_object());
  EXPECT_EQ(e["payload"]["card"], "SECRET-PAYLOAD-4242");
  ASSERT_EQ(e["errorHistory"].size(), 1u);
  EXPECT_EQ(e["errorHistory"][0]["code"], "PROCESSOR_ERROR");
  EXPECT_EQ(e["errorHistory"][0]["message"], "boom");
  EXPECT_EQ(parsed(ctl({"dlq", "show", "999"}))["statusCode"], 404);

  // review: empty refused, unknown is an error, twice is a conflict.
  ToolRun r = ctl({"dlq", "review", oldest, "--resolution", ""});
  EXPECT_NE(r.exit, 0);
  EXPECT_EQ(parsed(r)["statusCode"], 400);
  r = ctl({"dlq", "review", "999", "--resolution", "x"});
  EXPECT_NE(r.exit, 0);
  EXPECT_EQ(parsed(r)["statusCode"], 404);
  r = ctl({"dlq", "review", oldest, "--resolution", "card expired; user told"});
  EXPECT_EQ(r.exit, 0) << r.out;
  r = ctl({"dlq", "review", oldest, "--resolution", "again"});
  EXPECT_NE(r.exit, 0);
  EXPECT_EQ(parsed(r)["statusCode"], 409);
  l = parsed(ctl({"dlq", "list"}));
  EXPECT_EQ(l["entries"].size(), 2u) << "reviewed entries are listed only with --all";
  l = parsed(ctl({"dlq", "list", "--all"}));
  ASSERT_EQ(l["entries"].size(), 3u);
  EXPECT_EQ(l["entries"][2]["dlqId"], oldest) << "reviewed entries come after unreviewed ones";
  EXPECT_EQ(l["entries"][2]["resolution"], "card expired; user told");
  EXPECT_EQ(journal_view().unreviewed, 2u);

  // replay: a new request with the original's fields; once only.
  r = ctl({"dlq", "replay", newest});
  ASSERT_EQ(r.exit, 0) << r.out;
  const std::string replayed = parsed(r)["replayedAs"];
  uint64_t replayed_id = 0;
  ASSERT_TRUE(parse_request_id(replayed, replayed_id));
  EXPECT_NE(replayed_id, ids[2]);
  auto st = (*p)->status(replayed_id, shm::Caller{"cy", false});
  ASSERT_TRUE(st.ok()) << "the replay belongs to the original user";
  EXPECT_EQ(st->type, "doomed");
  EXPECT_EQ(parsed(ctl({"dlq", "show", newest}))["replayedAs"], replayed);
  r = ctl({"dlq", "replay", newest});
  EXPECT_EQ(parsed(r)["statusCode"], 409);

  // verify: every record checks out.
  r = ctl({"dlq", "verify"});
  EXPECT_EQ(r.exit, 0) << r.out;
  EXPECT_EQ(parsed(r)["ok"], true);

  // An admin cancel (no --user) of someone's pending request.
  auto pending = (*p)->submit(test::make_request("nobody-serves-this", "dee", "x"));
  ASSERT_TRUE(pending.ok());
  char pending_text[17];
  format_request_id(pending->request_id, pending_text);
  r = ctl({"cancel", pending_text});
  EXPECT_EQ(r.exit, 0) << r.out;
  ASSERT_TRUE(pending->outcome.wait_for(10s));
  EXPECT_EQ(pending->outcome.get().status, Status::kCancelled);

  // Everything survives a restart of the agent.
  stop_daemon();
  start_daemon();
  l = parsed(ctl({"dlq", "list", "--all"}));
  ASSERT_EQ(l["entries"].size(), 4u) << "the replay failed too: a fourth entry";
  EXPECT_EQ(parsed(ctl({"dlq", "show", oldest}))["reviewed"], true);
  EXPECT_EQ(parsed(ctl({"dlq", "show", newest}))["replayedAs"], replayed);
  stop_daemon();

  // The audit log: one JSON object per line, the actions above, and never a
  // payload or idempotency key.
  const std::string audit = slurp(cfg_.data_dir + "/audit.log");
  std::map<std::string, int> events;  // "event result"
  std::istringstream lines(audit);
  for (std::string line; std::getline(lines, line);) {
    const json a = json::parse(line, nullptr, false);
    ASSERT_TRUE(a.is_object()) << line;
    std::string key = a.value("event", std::string());
    if (a.contains("result")) key += " " + a.value("result", std::string());
    ++events[key];
  }
  EXPECT_EQ(events["agent.start"], 2);
  EXPECT_EQ(events["agent.stop"], 2);
  EXPECT_EQ(events["config.loaded"], 2);
  // Refused actions are audited too, with their outcome.
  EXPECT_EQ(events["dlq.review ok"], 1);
  EXPECT_EQ(events["dlq.review INVALID_REQUEST"], 1);
  EXPECT_EQ(events["dlq.review NOT_FOUND"], 1);
  EXPECT_EQ(events["dlq.review CONFLICT"], 1);
  EXPECT_EQ(events["dlq.replay ok"], 1);
  EXPECT_EQ(events["dlq.replay CONFLICT"], 1);
  EXPECT_EQ(events["cancel ok"], 1);
  EXPECT_GE(events["dlq.show ok"], 3);
  EXPECT_EQ(events["dlq.show NOT_FOUND"], 1);
  EXPECT_EQ(events.count("dlq.list ok"), 0u) << "listing is not an action";
  EXPECT_EQ(audit.find("SECRET-PAYLOAD"), std::string::npos);
  EXPECT_EQ(audit.find("SECRET-KEY"), std::string::npos);
}

TEST_F(Dlq, CorruptRecordIsReportedAndTheAgentStillStarts) {
  start_daemon();
  start_failing_worker("doomed");
  auto p = Producer::connect(q_.str());
  ASSERT_TRUE(p.ok());
  for (int i = 0; i < 3; ++i) {
    auto s = (*p)->submit(test::make_request("doomed", "u", "payload"));
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE(s->outcome.wait_for(20s));
  }
  stop_daemon();
  // Flip one byte inside the second record's body.
  std::string segment;
  for (const auto& de : fs::directory_iterator(cfg_.data_dir + "/dlq")) segment = de.path();
  auto bytes = read_bytes(segment);
  const agent::ScanResult before = agent::scan(bytes);
  ASSERT_EQ(before.records.size(), 3u);
  const uint64_t second = before.records[1].offset;
  {
    std::fstream f(segment, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(second + agent::kRecordHeaderBytes + 10));
    char c = 0;
    f.read(&c, 1);
    f.seekp(static_cast<std::streamoff>(second + agent::kRecordHeaderBytes + 10));
    c = static_cast<char>(c ^ 0x40);
    f.write(&c, 1);
  }

  // With the agent down, perfqctl reads the journal itself.
  const ToolRun offline = ctl({"dlq", "verify"});
  EXPECT_NE(offline.exit, 0) << offline.out;
  EXPECT_EQ(parsed(offline)["problems"][0]["offset"], second) << offline.out;

  start_daemon();  // starts: the record is reported, not fatal
  const json l = parsed(ctl({"dlq", "list"}));
  EXPECT_EQ(l["entries"].size(), 2u);
  const ToolRun v = ctl({"dlq", "verify"});
  EXPECT_NE(v.exit, 0) << "verify must fail on a corrupt record";
  const json vj = parsed(v);
  ASSERT_TRUE(vj.is_object()) << v.out;
  ASSERT_EQ(vj["problems"].size(), 1u);
  EXPECT_EQ(vj["problems"][0]["offset"], second);
  EXPECT_EQ(vj["problems"][0]["file"], fs::path(segment).filename().string());
  const ToolRun human = ctl({"dlq", "verify"}, /*as_json=*/false);
  EXPECT_NE(human.out.find("offset " + std::to_string(second)), std::string::npos) << human.out;
}

TEST_F(Dlq, MalformedAdminRequestsAreRefusedAndTheAgentCarriesOn) {
  start_daemon();
  const std::string sock = cfg_.data_dir + "/agent.sock";
  for (const json& bad :
       {json{{"op", 1}}, json{{"op", "dlq.list"}, {"all", 1}},
        json{{"op", "dlq.list"}, {"limit", "many"}},
        json{{"op", "dlq.show"}, {"id", json::array()}},
        json{{"op", "dlq.review"}, {"id", "1"}, {"resolution", 5}},
        json{{"op", "cancel"}, {"id", 7}}, json{{"op", "no.such.op"}}, json{{"nothing", true}}}) {
    auto r = agent::admin_call(sock, bad);
    ASSERT_TRUE(r.ok()) << bad.dump() << ": " << r.error().message;
    EXPECT_EQ((*r)["statusCode"], 400) << bad.dump();
  }
  auto ok = agent::admin_call(sock, json{{"op", "dlq.list"}});
  ASSERT_TRUE(ok.ok());
  EXPECT_TRUE(ok->contains("entries"));
}

TEST_F(Dlq, RefusedAdminConnectionsAreAnsweredAndAudited) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to connect as another uid";
  start_daemon();
  const std::string sock(seg_->header().socket_path);
  // A process of another uid (nobody) asks for the DLQ.
  test::Child other([&] {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) return 3;
    auto r = agent::admin_call(sock, json{{"op", "dlq.list"}});
    if (!r) return 4;
    return r->value("statusCode", 0) == 403 ? 0 : 5;
  });
  EXPECT_EQ(other.wait(20s), 0);
  // A flood of refused connections is audited, coalesced: not a line each.
  test::Child flood([&] {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) return 3;
    for (int i = 0; i < 200; ++i) {
      auto r = agent::admin_call(sock, json{{"op", "dlq.list"}});
      if (!r || r->value("statusCode", 0) != 403) return 4;
    }
    return 0;
  });
  EXPECT_EQ(flood.wait(60s), 0);
  stop_daemon();
  const std::string audit = slurp(cfg_.data_dir + "/audit.log");
  int refused_lines = 0;
  std::istringstream lines(audit);
  for (std::string line; std::getline(lines, line);) {
    const json a = json::parse(line, nullptr, false);
    if (a.value("event", std::string()) != "admin.refused") continue;
    ++refused_lines;
    EXPECT_EQ(a["peer"]["uid"], 65534) << line;
  }
  EXPECT_GE(refused_lines, 1) << audit;
  EXPECT_LT(refused_lines, 201) << "one line per refused connection";
}

// Issue 13 point 19: the refusals still coalesced when the agent stops are
// written then, so the log accounts for every one.
TEST_F(Dlq, EveryRefusedAdminConnectionIsAccountedForAtShutdown) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to connect as another uid";
  start_daemon();
  const std::string sock(seg_->header().socket_path);
  test::Child flood([&] {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) return 3;
    for (int i = 0; i < 100; ++i) {
      auto r = agent::admin_call(sock, json{{"op", "dlq.list"}});
      if (!r || r->value("statusCode", 0) != 403) return 4;
    }
    return 0;
  });
  ASSERT_EQ(flood.wait(60s), 0);
  stop_daemon();
  const std::string audit = slurp(cfg_.data_dir + "/audit.log");
  uint64_t refusals = 0;
  std::istringstream lines(audit);
  for (std::string line; std::getline(lines, line);) {
    const json a = json::parse(line, nullptr, false);
    if (a.value("event", std::string()) != "admin.refused") continue;
    // A line is one refusal and the ones coalesced before it; a line
    // flushed at shutdown only the coalesced ones.
    refusals += (a.value("flushed", false) ? 0 : 1) + a.value("suppressed", uint64_t{0});
  }
  EXPECT_EQ(refusals, 100u) << audit;
}

// Issue 13 point 19: an admin's op is never the audit event: an unknown op
// is one fixed event, with the op (sanitized) as a field.
TEST_F(Dlq, AnUnknownOpIsAuditedUnderAFixedEventName) {
  start_daemon();
  const std::string sock = cfg_.data_dir + "/agent.sock";
  for (const char* op : {"agent.stop", "evil\n{\"event\":\"x\"}"}) {
    auto r = agent::admin_call(sock, json{{"op", op}});
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ((*r)["statusCode"], 400);
  }
  stop_daemon();
  const std::string audit = slurp(cfg_.data_dir + "/audit.log");
  int stops = 0;
  std::vector<std::string> unknown;
  std::istringstream lines(audit);
  for (std::string line; std::getline(lines, line);) {
    const json a = json::parse(line, nullptr, false);
    const std::string event = a.value("event", std::string());
    if (event == "agent.stop") ++stops;
    if (event == "admin.unknown_op") unknown.push_back(a.value("op", std::string()));
  }
  EXPECT_EQ(stops, 1) << "only the agent's own stop line\n" << audit;
  EXPECT_EQ(unknown, (std::vector<std::string>{"agent.stop", "evil???event???x??"})) << audit;
}

}  // namespace
}  // namespace perfq

namespace perfq {
namespace {

// Issue 14: a second agent of another queue on the same data dir used to
// open the journal (cutting a group commit in flight) and take over
// agent.sock before learning it was second. Now it stops at the data dir's
// lock, says who holds it, and touches nothing.
TEST_F(Dlq, ASecondAgentOnTheSameDataDirRefusesAndTouchesNothing) {
  start_daemon();
  start_failing_worker("doomed");
  auto p = Producer::connect(q_.str());
  ASSERT_TRUE(p.ok());
  for (int i = 0; i < 3; ++i) {
    auto s = (*p)->submit(test::make_request("doomed", "ann", "{}"));
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE(s->outcome.wait_for(20s));
  }
  const auto before = fs::last_write_time(cfg_.data_dir + "/dlq");
  const std::string journal_before = slurp(cfg_.data_dir + "/dlq/0000000000000001.log");

  test::QueueName other;
  agent::Config cfg2 = test::test_config(other.str());
  cfg2.data_dir = cfg_.data_dir;
  const std::string err_path = cfg_.data_dir + "/../second-agent-" + other.str() + ".err";
  test::Child second([&] {
    std::FILE* f = std::freopen(err_path.c_str(), "w", stderr);
    if (f == nullptr) return 3;
    std::atomic<bool> stop{true};
    return agent::run_daemon(cfg2, stop, {});
  });
  EXPECT_EQ(second.wait(20s), 1);
  const std::string err = slurp(err_path);
  fs::remove(err_path);
  EXPECT_NE(err.find("in use by another agent (pid " + std::to_string(daemon_.pid())),
            std::string::npos)
      << err;
  EXPECT_FALSE(shm::Segment::attach(other.str()).ok());  // no segment made for it

  EXPECT_EQ(slurp(cfg_.data_dir + "/dlq/0000000000000001.log"), journal_before);
  EXPECT_EQ(fs::last_write_time(cfg_.data_dir + "/dlq"), before);
  EXPECT_EQ(read_journal(cfg_.data_dir).entries.size(), 3u);
  EXPECT_EQ(journal_view().entries, 3u);
  const json v = parsed(ctl({"dlq", "verify"}));  // the first agent still answers
  EXPECT_EQ(v["ok"], true) << v.dump();
  EXPECT_EQ(v["entries"], 3);
}

}  // namespace
}  // namespace perfq
