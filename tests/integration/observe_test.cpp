// Health, metrics and Prometheus exposition of the running agent (SPEC §5):
// health flips healthy -> degraded -> unhealthy at its thresholds (small
// constants here), metrics count exactly what the test submitted and the
// workers did, and /metrics is valid Prometheus text (a strict parser here,
// and promtool when Debian's prometheus package is installed).
#include "control/observe.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "daemon_test.hpp"
#include "harness.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/core/clock.hpp"
#include "perfq/shm/agent_version.hpp"
#include "perfq/shm/metrics.hpp"
#include "perfq/version.hpp"
#include "prometheus.hpp"

namespace perfq {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
namespace fs = std::filesystem;
using test::Exposition;
using test::parse_exposition;

// ------------------------------------------------------------- the agent

test::ToolRun ctl(const std::string& queue, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {PERFQCTL_PATH, "--queue", queue, "--json"};
  argv.insert(argv.end(), args.begin(), args.end());
  return test::run_tool(argv);
}

class Observe : public test::DaemonTest {
 protected:
  void SetUp() override {
    DaemonTest::SetUp();
    cfg_.http = "off";
    cfg_.max_retry_attempts = 2;
  }
  void start() {
    start_daemon();
    ASSERT_TRUE(seg_);
    auto p = Producer::connect(q_.str());
    ASSERT_TRUE(p.ok());
    producer_ = std::move(*p);
  }
  // One worker process: "works" completes, "doomed" fails for good, "flaky"
  // fails its first attempt and completes the second.
  void start_worker() {
    test::Signal ready;
    worker_ = test::spawn_worker_with(
        q_.str(),
        [](Worker& w) -> Result<void> {
          if (auto r = w.register_processor("works", [](const Job&) { return Reply::ok("done"); });
              !r) {
            return r;
          }
          if (auto r = w.register_processor(
                  "doomed", [](const Job&) { return Reply::permanent_error("boom"); });
              !r) {
            return r;
          }
          return w.register_processor("flaky", [](const Job& j) {
            return j.attempt == 1 ? Reply::error("not yet") : Reply::ok("done");
          });
        },
        &ready);
    ready.close_write();
    ASSERT_EQ(ready.wait(10s), 1);
  }
  // Submits and waits for the outcome (bounded).
  Outcome run(const std::string& type, uint8_t priority = kPriorityDefault,
              Mode mode = Mode::kFifo) {
    auto s = producer_->submit(test::make_request(type, "ann", "{}", mode, priority));
    EXPECT_TRUE(s.ok()) << s.error().message;
    if (!s.ok()) return {};
    EXPECT_TRUE(s->outcome.wait_for(20s));
    return s->outcome.get();
  }
  json health() {
    const test::ToolRun r = ctl(q_.str(), {"health"});
    json h = json::parse(r.out, nullptr, false);
    // perfqctl health exits with the state: 0 healthy, 1 degraded, 2 unhealthy.
    const std::string status = h.is_object() ? h.value("status", "") : "";
    const int want = status == "healthy" ? 0 : status == "degraded" ? 1 : 2;
    EXPECT_EQ(r.exit, want) << r.out;
    return h;
  }
  // Health until its status is `want` (bounded); the last answer.
  json health_becomes(const std::string& want) {
    json h;
    EXPECT_TRUE(test::eventually(
        [&] {
          h = health();
          return h.value("status", "") == want;
        },
        20s))
        << "health never became " << want << ": " << h.dump();
    return h;
  }
  static bool has_reason(const json& h, const std::string& prefix) {
    for (const auto& r : h["reasons"]) {
      if (r.get<std::string>().rfind(prefix, 0) == 0) return true;
    }
    return false;
  }

  std::unique_ptr<Producer> producer_;
};

TEST_F(Observe, HealthFlipsAtTheUtilizationThresholds) {
  cfg_.max_queue_depth = 10;  // degraded above 70 %, unhealthy above 90 %
  start();
  json h = health_becomes("healthy");
  EXPECT_EQ(h["capacityUtilization"], 0);
  EXPECT_EQ(h["agent"]["state"], "running");
  std::vector<Submitted> held;  // no worker serves this type: they stay pending
  auto submit = [&](int n) {
    for (int i = 0; i < n; ++i) {
      auto s = producer_->submit(test::make_request("nobody-serves-this", "ann", "{}"));
      ASSERT_TRUE(s.ok()) << s.error().message;
      held.push_back(std::move(*s));
    }
  };
  submit(7);  // 70 %: not above the threshold
  h = health_becomes("healthy");
  EXPECT_EQ(h["pendingCount"], 7);
  submit(1);  // 80 %
  h = health_becomes("degraded");
  EXPECT_EQ(h["capacityUtilization"], 80);
  EXPECT_TRUE(has_reason(h, "capacityUtilization 80 above 70")) << h.dump();
  submit(2);  // 100 %
  h = health_becomes("unhealthy");
  EXPECT_EQ(h["capacityUtilization"], 100);
  EXPECT_EQ(h["pendingCount"], 10);
  EXPECT_TRUE(has_reason(h, "capacityUtilization 100 above 90")) << h.dump();
}

TEST_F(Observe, HealthFlipsAtTheFailureThresholdsAndDlqSize) {
  cfg_.max_retry_attempts = 1;
  cfg_.health_degraded_failures = 2;
  cfg_.health_unhealthy_failures = 4;
  cfg_.health_degraded_dlq = 1000;
  cfg_.health_unhealthy_dlq = 1000;
  start();
  start_worker();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(run("doomed").status, Status::kFailed);
  json h = health_becomes("degraded");
  EXPECT_EQ(h["recentFailures"], 3);
  EXPECT_TRUE(has_reason(h, "recentFailures 3 above 2")) << h.dump();
  for (int i = 0; i < 2; ++i) EXPECT_EQ(run("doomed").status, Status::kFailed);
  h = health_becomes("unhealthy");
  EXPECT_EQ(h["recentFailures"], 5);
  EXPECT_EQ(h["dlqSize"], 5);
  EXPECT_GT(h["averageProcessingTime"].get<double>(), 0.0);
}

TEST_F(Observe, HealthFollowsTheUnreviewedDeadLetters) {
  cfg_.max_retry_attempts = 1;
  cfg_.health_degraded_dlq = 1;
  cfg_.health_unhealthy_dlq = 2;
  cfg_.health_degraded_failures = 1000;
  cfg_.health_unhealthy_failures = 1000;
  start();
  start_worker();
  EXPECT_EQ(run("doomed").status, Status::kFailed);
  json h = health_becomes("healthy");  // 1 is not above 1
  EXPECT_EQ(h["dlqSize"], 1);
  EXPECT_EQ(run("doomed").status, Status::kFailed);
  h = health_becomes("degraded");
  EXPECT_TRUE(has_reason(h, "dlqSize 2 above 1")) << h.dump();
  EXPECT_EQ(run("doomed").status, Status::kFailed);
  h = health_becomes("unhealthy");
  // Reviewing an entry brings it back down.
  const test::ToolRun list = ctl(q_.str(), {"dlq", "list"});
  ASSERT_EQ(list.exit, 0) << list.out;
  const std::string id = json::parse(list.out)["entries"][0]["dlqId"];
  const test::ToolRun rev = ctl(q_.str(), {"dlq", "review", id, "--resolution", "looked at it"});
  ASSERT_EQ(rev.exit, 0) << rev.out;
  h = health_becomes("degraded");
  EXPECT_EQ(h["dlqSize"], 2);
}

TEST_F(Observe, HealthOfAStoppedAgentIsUnhealthy) {
  start();
  health_becomes("healthy");
  daemon_.kill(SIGTERM);
  ASSERT_EQ(daemon_.wait(20s), 0);
  const test::ToolRun r = ctl(q_.str(), {"health"});
  EXPECT_EQ(r.exit, 3) << "unknown: the agent is down";
  const json h = json::parse(r.out, nullptr, false);
  EXPECT_EQ(h["status"], "unhealthy") << r.out;
  EXPECT_EQ(h["agent"]["state"], "stopped");
  EXPECT_TRUE(has_reason(h, "agent stopped")) << r.out;
}

TEST_F(Observe, MetricsCountWhatWasSubmittedAndProcessed) {
  start();
  start_worker();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(run("works").status, Status::kCompleted);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(run("works", 20, Mode::kPriority).status, Status::kCompleted);  // CRITICAL
  }
  for (int i = 0; i < 2; ++i) EXPECT_EQ(run("doomed").status, Status::kFailed);
  for (int i = 0; i < 2; ++i)
    EXPECT_EQ(run("flaky", 3, Mode::kPriority).status, Status::kCompleted);
  {
    auto s = producer_->submit(test::make_request("nobody-serves-this", "ann", "{}"));
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE(producer_->cancel(s->request_id, "ann").ok());
    ASSERT_TRUE(s->outcome.wait_for(20s));
    EXPECT_EQ(s->outcome.get().status, Status::kCancelled);
  }
  const test::ToolRun r = ctl(q_.str(), {"metrics", "--period", "5"});
  ASSERT_EQ(r.exit, 0) << r.out;
  const json m = json::parse(r.out);
  EXPECT_EQ(m["period"], "5 minutes");
  EXPECT_EQ(m["totalSubmitted"], 13);
  EXPECT_EQ(m["totalCompleted"], 10);
  EXPECT_EQ(m["totalFailed"], 2);
  EXPECT_EQ(m["totalTimeout"], 0);
  EXPECT_EQ(m["totalCancelled"], 1);
  EXPECT_EQ(m["totalRetried"], 2);
  EXPECT_DOUBLE_EQ(m["successRate"].get<double>(), 83.33);  // 10 of 12 finished
  // Over the time the history covers: the segment is seconds old, not the
  // 5 minutes asked for (dividing by those undercounted the rate).
  const double observed = m["observedSeconds"].get<double>();
  EXPECT_GT(observed, 0.0);
  EXPECT_LT(observed, 300.0);
  EXPECT_DOUBLE_EQ(m["throughput"].get<double>(), std::round(10.0 / observed * 1000.0) / 1000.0);
  for (const char* which : {"waitTime", "processingTime"}) {
    const json& p = m[which];
    EXPECT_LE(p["p50"].get<double>(), p["p90"].get<double>()) << m.dump();
    EXPECT_LE(p["p90"].get<double>(), p["p99"].get<double>());
    EXPECT_LE(p["p99"].get<double>(), p["p999"].get<double>());
    EXPECT_LE(p["p999"].get<double>(), p["max"].get<double>());
  }
  EXPECT_GT(m["processingTime"]["max"].get<double>(), 0.0);
  const json& works = m["byType"]["works"];
  EXPECT_EQ(works["totalSubmitted"], 8);
  EXPECT_EQ(works["totalCompleted"], 8);
  EXPECT_DOUBLE_EQ(works["successRate"].get<double>(), 100.0);
  EXPECT_EQ(m["byType"]["doomed"]["totalFailed"], 2);
  EXPECT_DOUBLE_EQ(m["byType"]["doomed"]["successRate"].get<double>(), 0.0);
  // metrics_types is 2 in tests: the third and fourth types count as "other".
  EXPECT_EQ(m["byType"].count("flaky"), 0u);
  EXPECT_EQ(m["byType"]["other"]["totalSubmitted"], 3);
  EXPECT_EQ(m["byType"]["other"]["totalRetried"], 2);
  EXPECT_EQ(m["byBand"]["CRITICAL"]["totalSubmitted"], 3);
  EXPECT_EQ(m["byBand"]["LOW"]["totalSubmitted"], 2);
  EXPECT_EQ(m["byBand"]["LOW"]["totalRetried"], 2);
  EXPECT_EQ(m["byBand"]["NORMAL"]["totalSubmitted"], 8);
  EXPECT_EQ(m["byBand"]["HIGH"]["totalSubmitted"], 0);
  EXPECT_DOUBLE_EQ(m["byBand"]["HIGH"]["successRate"].get<double>(), 100.0);
}

TEST_F(Observe, BadPeriodsAreRefused) {
  start();
  for (const char* bad : {"0", "1441", "abc", "-5", "60m", ""}) {
    const test::ToolRun r = ctl(q_.str(), {"metrics", "--period", bad});
    // perfqctl's own usage error (exit 64, on stderr), never sent to the agent.
    EXPECT_EQ(r.exit, 64) << bad << ": " << r.out;
    EXPECT_NE(r.out.find("--period: "), std::string::npos) << bad << ": " << r.out;
  }
  const test::ToolRun ok = ctl(q_.str(), {"metrics", "--period", "1440"});
  EXPECT_EQ(ok.exit, 0) << ok.out;
  EXPECT_EQ(json::parse(ok.out)["period"], "1440 minutes");
}

TEST_F(Observe, PrometheusTextParsesAndCarriesTheCounts) {
  start();
  start_worker();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(run("works").status, Status::kCompleted);
  EXPECT_EQ(run("doomed").status, Status::kFailed);
  const std::string text = agent::prometheus_text(*seg_, agent::HealthLimits{}, unix_now_ns());
  const Exposition x = parse_exposition(text);
  ASSERT_EQ(x.error, "") << text;
  EXPECT_EQ(x.types.at("perfq_requests_completed_total"), "counter");
  EXPECT_EQ(x.types.at("perfq_processing_seconds"), "histogram");
  EXPECT_EQ(x.types.at("perfq_queue_depth"), "gauge");
  EXPECT_EQ(x.value("perfq_requests_submitted_total", {{"band", "NORMAL"}}), 5);
  EXPECT_EQ(x.value("perfq_requests_completed_total", {{"band", "NORMAL"}}), 4);
  EXPECT_EQ(x.value("perfq_requests_failed_total", {{"band", "NORMAL"}}), 1);
  EXPECT_EQ(x.value("perfq_type_requests_completed_total", {{"type", "works"}}), 4);
  EXPECT_EQ(x.value("perfq_processing_seconds_count", {{"band", "NORMAL"}}), 5);
  // Every attempt here waited and ran well under a minute: all are counted
  // at the last finite bound, 2^26 us.
  EXPECT_EQ(x.value("perfq_processing_seconds_bucket", {{"band", "NORMAL"}, {"le", "67.108864"}}),
            5);
  EXPECT_EQ(x.value("perfq_wait_seconds_bucket", {{"band", "NORMAL"}, {"le", "67.108864"}}), 5);
  EXPECT_EQ(x.value("perfq_dlq_unreviewed", {}), 1);
  EXPECT_EQ(x.value("perfq_workers", {}), 1);
  EXPECT_EQ(x.value("perfq_health_status", {{"status", "healthy"}}), 1);
  // The agent's version (written into the header at start) and start time.
  EXPECT_EQ(x.types.at("perfq_build_info"), "gauge");
  EXPECT_EQ(x.value("perfq_build_info", {{"version", kVersion}}), 1) << text;
  EXPECT_EQ(x.value("process_start_time_seconds", {}),
            static_cast<double>(load_relaxed(seg_->header().agent_started_unix_ns)) / 1e9);
  EXPECT_EQ(x.types.at("perfq_rejected_total"), "counter");
  for (const char* reason :
       {"queue_full", "rate_limited", "invalid", "draining", "conflict", "other"}) {
    EXPECT_EQ(x.value("perfq_rejected_total", {{"reason", reason}}), 0) << reason;
  }
  // promtool, where Debian's prometheus package is installed (scripts/setup
  // installs it), checks the same text.
  if (fs::exists("/usr/bin/promtool")) {
    const std::string file = cfg_.data_dir + "/metrics.txt";
    std::ofstream(file) << text;
    const test::ToolRun r =
        test::run_tool({"/bin/sh", "-c", "/usr/bin/promtool check metrics < " + file});
    EXPECT_EQ(r.exit, 0) << r.out;
  }
}

// The le labels of one histogram series, in order.
std::vector<std::string> bucket_bounds(const Exposition& x, const std::string& family,
                                       const std::string& band) {
  std::vector<std::string> les;
  for (const test::Sample& s : x.samples) {
    if (s.name == family + "_bucket" && s.labels.at("band") == band)
      les.push_back(s.labels.at("le"));
  }
  return les;
}

TEST_F(Observe, HistogramBucketsRunFromOneMicrosecondAndPrintShort) {
  start();
  const Exposition x =
      parse_exposition(agent::prometheus_text(*seg_, agent::HealthLimits{}, unix_now_ns()));
  ASSERT_EQ(x.error, "");
  for (const char* family : {"perfq_wait_seconds", "perfq_processing_seconds"}) {
    const std::vector<std::string> les = bucket_bounds(x, family, "HIGH");
    ASSERT_EQ(les.size(), 28u) << family;  // 2^0 .. 2^26 us, then +Inf
    EXPECT_EQ(les.front(), "1e-06");
    EXPECT_EQ(les[1], "2e-06");
    EXPECT_EQ(les[8], "0.000256");
    EXPECT_EQ(les[20], "1.048576");
    EXPECT_EQ(les[26], "67.108864");
    EXPECT_EQ(les.back(), "+Inf");
    // Each finite bound is the power of two it stands for, printed as the
    // shortest text that reads back as the same double.
    for (std::size_t k = 0; k + 1 < les.size(); ++k) {
      const double le = static_cast<double>(uint64_t{1} << k) / 1e6;
      char b[64];
      const auto [end, ec] = std::to_chars(b, b + sizeof b, le);
      ASSERT_EQ(ec, std::errc());
      EXPECT_EQ(les[k], std::string(b, end)) << family << " bound " << k;
    }
  }
  // No value anywhere carries printf's noise (0.00025000000000000001).
  for (const test::Sample& s : x.samples) {
    for (const auto& [name, value] : s.labels) {
      EXPECT_EQ(value.find("0000000"), std::string::npos) << s.name << " " << name << "=" << value;
    }
  }
}

// A small segment made in process (no agent), for tests that write its
// metrics or header themselves.
Result<std::unique_ptr<shm::Segment>> small_segment(const std::string& queue) {
  shm::CreateOptions o;
  o.slot_count = 64;
  o.slot_payload_bytes = 64;
  o.max_clients = 4;
  o.status_entries = 64;
  o.idempotency_entries = 0;
  o.rate_entries = 0;
  o.rate_limit = 0;
  o.metrics_types = 1;
  shm::Segment::Opened how{};
  return shm::Segment::open_for_agent(queue, o, how);
}

// Each bound's count is exact: every attempt shorter than the bound, none
// longer, with samples on both sides of every bound (an in-process segment
// whose metrics the test writes itself).
TEST(PrometheusBuckets, CountsAreExactAtEveryBound) {
  test::QueueName q;
  auto seg = small_segment(q.str());
  ASSERT_TRUE(seg.ok()) << seg.error().message;
  const uint64_t now = unix_now_ns();
  shm::MetricsWriter w(**seg, now);
  w.roll(now);
  std::vector<uint64_t> waits_ns;
  for (uint32_t k = 0; k <= 26; ++k) {
    const uint64_t edge_ns = (uint64_t{1} << k) * 1000;
    for (const int64_t d : {-1001, -1, 0, 1, 999, 1000}) {
      if (static_cast<int64_t>(edge_ns) + d >= 0) waits_ns.push_back(edge_ns + d);
    }
  }
  // Decimal latencies that fall inside recorded buckets (50 us is in [48, 51]).
  for (const uint64_t us : {25, 50, 100, 250, 500, 1000, 2500, 5000, 10000}) {
    waits_ns.push_back(us * 1000);
  }
  for (const uint64_t ns : waits_ns) w.waited(static_cast<uint8_t>(Band::kHigh), 0, ns);
  const std::string text = agent::prometheus_text(**seg, agent::HealthLimits{}, now);
  const Exposition x = parse_exposition(text);
  ASSERT_EQ(x.error, "") << text;
  for (uint32_t k = 0; k <= 26; ++k) {
    const uint64_t bound_ns = (uint64_t{1} << k) * 1000;
    const auto shorter = static_cast<double>(std::count_if(
        waits_ns.begin(), waits_ns.end(), [&](uint64_t ns) { return ns < bound_ns; }));
    char b[64];
    const auto [end, ec] =
        std::to_chars(b, b + sizeof b, static_cast<double>(uint64_t{1} << k) / 1e6);
    ASSERT_EQ(ec, std::errc());
    EXPECT_EQ(x.value("perfq_wait_seconds_bucket", {{"band", "HIGH"}, {"le", std::string(b, end)}}),
              shorter)
        << "le " << std::string(b, end);
  }
  EXPECT_EQ(x.value("perfq_wait_seconds_bucket", {{"band", "HIGH"}, {"le", "+Inf"}}),
            static_cast<double>(waits_ns.size()));
  EXPECT_EQ(x.value("perfq_wait_seconds_count", {{"band", "HIGH"}}),
            static_cast<double>(waits_ns.size()));
}

// perfq_build_info's version comes from the header, which any member can
// write: copied, each byte outside printable ASCII (or a space) shown as
// '?', then escaped as a label value.
TEST(PrometheusBuildInfo, TheVersionIsCopiedCheckedAndEscaped) {
  test::QueueName q;
  auto seg = small_segment(q.str());
  ASSERT_TRUE(seg.ok()) << seg.error().message;
  shm::SegmentHeader& h = (*seg)->header();
  auto build_info_version = [&]() -> std::string {
    const std::string text = agent::prometheus_text(**seg, agent::HealthLimits{}, unix_now_ns());
    const Exposition x = parse_exposition(text);
    EXPECT_EQ(x.error, "") << text;
    for (const test::Sample& s : x.samples) {
      if (s.name == "perfq_build_info") return s.labels.at("version");
    }
    return "(none)";
  };
  EXPECT_EQ(build_info_version(), "unknown");  // no agent wrote one
  EXPECT_EQ(shm::write_agent_version(h, std::string_view("1.2\x01 \"x\\", 8)), 1);
  EXPECT_EQ(shm::write_agent_version(h, std::string_view("1.2\x01 \"x\\", 8)), 0);  // as it is
  EXPECT_EQ(build_info_version(), "1.2??\"x\\");
  // Longer than the field: cut, and still NUL-terminated.
  (void)shm::write_agent_version(h, std::string(100, 'v'));
  EXPECT_EQ(build_info_version(), std::string(shm::kAgentVersionBytes - 1, 'v'));
}

TEST_F(Observe, AScribbledVersionIsRestoredByTheLivenessPass) {
  start();
  EXPECT_EQ(shm::read_agent_version(seg_->header()), kVersion);
  const char garbage[shm::kAgentVersionBytes] = "\xff\xfe not ours";
  store_shared_text(seg_->header().agent_version, garbage, sizeof garbage);
  EXPECT_TRUE(
      test::eventually([&] { return shm::read_agent_version(seg_->header()) == kVersion; }, 20s));
}

TEST_F(Observe, RefusedSubmitsAreCountedByReasonOncePerAnswer) {
  cfg_.max_queue_depth = 2;
  cfg_.max_requests_per_user_per_minute = 1;
  cfg_.rope_drop_timeout_ms = 50;  // a waiting submit's wait: several attempts, one answer
  // The test writes the agent's state word; the liveness pass would put
  // it back at once with the test settings.
  cfg_.liveness_interval_ms = 600'000;
  start();
  auto rejected = [&](const char* reason) {
    const Exposition x =
        parse_exposition(agent::prometheus_text(*seg_, agent::HealthLimits{}, unix_now_ns()));
    EXPECT_EQ(x.error, "");
    return x.value("perfq_rejected_total", {{"reason", reason}});
  };
  // Users are literals: the views stay valid.
  auto req = [](const char* user, uint8_t priority = kPriorityDefault) {
    return test::make_request("nobody-serves-this", user, "{}", Mode::kPriority, priority);
  };
  auto code = [](const Result<Submitted>& r) { return r.ok() ? Errc::kOk : r.error().code; };
  // Invalid: the client's own validation.
  EXPECT_EQ(code(producer_->try_submit(req("ann", 0))), Errc::kInvalidPriority);
  EXPECT_EQ(rejected("invalid"), 1);
  // Rate limited: one accepted submit a minute per user.
  std::vector<Submitted> held;  // nobody serves the type: they stay pending
  auto first = producer_->submit(req("bob"));
  ASSERT_TRUE(first.ok()) << first.error().message;
  held.push_back(std::move(*first));
  EXPECT_EQ(code(producer_->try_submit(req("bob"))), Errc::kRateLimitExceeded);
  EXPECT_EQ(rejected("rate_limited"), 1);
  // Queue full (each from a new user, so that the rate limit passes them):
  // try_submit, a waiting submit, a submit that gives up, and a batch of
  // three: one count per answer, none for a waiting submit's attempts.
  auto second = producer_->submit(req("cid"));
  ASSERT_TRUE(second.ok()) << second.error().message;
  held.push_back(std::move(*second));
  EXPECT_EQ(code(producer_->try_submit(req("dan"))), Errc::kQueueFull);
  EXPECT_EQ(rejected("queue_full"), 1);
  EXPECT_EQ(code(producer_->submit(req("eve"))), Errc::kQueueFull);
  EXPECT_EQ(rejected("queue_full"), 2);
  int asked = 0;
  EXPECT_EQ(code(producer_->submit(req("fay"), [&] { return ++asked > 2; })), Errc::kQueueFull);
  EXPECT_EQ(rejected("queue_full"), 3);
  const RequestView batch[] = {req("gus"), req("hal"), req("ivy")};
  std::vector<Result<Submitted>> answers;
  EXPECT_EQ(producer_->try_submit_many(batch, answers), 0u);
  EXPECT_EQ(rejected("queue_full"), 6);
  // Draining: what is not the request's own fault is the drain's.
  store_relaxed(seg_->header().agent_state, static_cast<uint32_t>(shm::AgentState::kDraining));
  EXPECT_EQ(code(producer_->try_submit(req("jon"))), Errc::kQueueFull);
  EXPECT_EQ(rejected("draining"), 1);
  EXPECT_EQ(code(producer_->try_submit(req("kim", 0))), Errc::kInvalidPriority);
  EXPECT_EQ(rejected("invalid"), 2);
  store_relaxed(seg_->header().agent_state, static_cast<uint32_t>(shm::AgentState::kRunning));
  EXPECT_EQ(rejected("queue_full"), 6);
  EXPECT_EQ(rejected("rate_limited"), 1);
  EXPECT_EQ(rejected("conflict"), 0);
  EXPECT_EQ(rejected("other"), 0);
}

TEST_F(Observe, TopDrawsFramesFromTheSegment) {
  start();
  start_worker();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(run("works").status, Status::kCompleted);
  const test::ToolRun r = ctl(q_.str(), {"top", "--iterations", "2", "--interval", "10ms"});
  ASSERT_EQ(r.exit, 0) << r.out;
  std::istringstream lines(r.out);
  std::string line;
  int frames = 0;
  while (std::getline(lines, line)) {
    const json f = json::parse(line, nullptr, false);
    ASSERT_TRUE(f.is_object()) << line;
    EXPECT_EQ(f["health"]["counters"]["completed"], 3);
    EXPECT_EQ(f["lastMinute"]["byType"]["works"]["totalCompleted"], 3) << line;
    EXPECT_EQ(f["health"]["activeWorkers"], 1);
    ++frames;
  }
  EXPECT_EQ(frames, 2);
  // The human view names every band and the worker's types.
  const test::ToolRun human = test::run_tool(
      {PERFQCTL_PATH, "--queue", q_.str(), "top", "--iterations", "1", "--interval", "10ms"});
  ASSERT_EQ(human.exit, 0) << human.out;
  for (const char* band : {"CRITICAL", "HIGH", "NORMAL", "LOW"}) {
    EXPECT_NE(human.out.find(band), std::string::npos) << human.out;
  }
  EXPECT_NE(human.out.find("works,doomed,flaky"), std::string::npos) << human.out;
  const test::ToolRun bad = ctl(q_.str(), {"top", "--interval", "0ms"});
  EXPECT_EQ(bad.exit, 64) << bad.out;
}

}  // namespace
}  // namespace perfq
