// Health, metrics and Prometheus exposition of the running agent (SPEC §5):
// health flips healthy -> degraded -> unhealthy at its thresholds (small
// constants here), metrics count exactly what the test submitted and the
// workers did, and /metrics is valid Prometheus text (a strict parser here,
// and promtool when Debian's prometheus package is installed).
#include "perfq/agent/observe.hpp"

#include <gtest/gtest.h>

#include <algorithm>
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
#include "perfq/core/clock.hpp"

namespace perfq {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
namespace fs = std::filesystem;

// ------------------------------------------------ a strict exposition parser

// Prometheus text format 0.0.4, strictly: every sample belongs to a family
// declared by # HELP and # TYPE before it, names and labels are well formed,
// label values are quoted with only \\, \" and \n escapes, values are floats,
// no series appears twice, counters end in _total, and each histogram's
// buckets are cumulative, end with le="+Inf", and agree with _count.
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct Exposition {
  std::map<std::string, std::string> types;  // family -> type
  std::vector<Sample> samples;
  std::string error;  // empty when valid

  [[nodiscard]] double value(const std::string& name,
                             const std::map<std::string, std::string>& labels) const {
    for (const Sample& s : samples) {
      if (s.name == name && s.labels == labels) return s.value;
    }
    return NAN;
  }
};

// [a-zA-Z_:][a-zA-Z0-9_:]* for metric names (colons allowed), without ':'
// for label names.
bool valid_name(std::string_view s, bool colons) {
  auto letter = [&](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colons && c == ':');
  };
  if (s.empty() || !letter(s[0])) return false;
  return std::all_of(s.begin(), s.end(),
                     [&](char c) { return letter(c) || (c >= '0' && c <= '9'); });
}

Exposition parse_exposition(const std::string& text) {
  Exposition x;
  std::map<std::string, bool> helped;
  std::set<std::string> series;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  auto bad = [&](const std::string& why) {
    if (x.error.empty()) x.error = "line " + std::to_string(n) + ": " + why + ": " + line;
  };
  if (text.empty() || text.back() != '\n') x.error = "the text must end with a newline";
  while (std::getline(in, line) && x.error.empty()) {
    ++n;
    if (line.empty()) {
      bad("empty line");
      continue;
    }
    if (line[0] == '#') {
      std::istringstream c(line);
      std::string hash, kind, family, rest;
      c >> hash >> kind >> family;
      std::getline(c, rest);
      if (!valid_name(family, true)) bad("bad family name");
      if (kind == "HELP") {
        if (helped[family]) bad("second HELP");
        helped[family] = true;
      } else if (kind == "TYPE") {
        const std::string t = rest.empty() ? "" : rest.substr(1);
        if (t != "counter" && t != "gauge" && t != "histogram" && t != "summary" &&
            t != "untyped") {
          bad("bad type");
        }
        if (x.types.count(family) != 0) bad("second TYPE");
        if (!helped[family]) bad("TYPE without HELP before it");
        if (t == "counter" &&
            (family.size() < 6 || family.compare(family.size() - 6, 6, "_total") != 0)) {
          bad("a counter's name ends in _total");
        }
        x.types[family] = t;
      } else {
        bad("unknown comment");
      }
      continue;
    }
    Sample s;
    std::size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = line.substr(0, i);
    if (!valid_name(s.name, true)) bad("bad metric name");
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        std::size_t eq = line.find('=', i);
        if (eq == std::string::npos) {
          bad("label without =");
          break;
        }
        const std::string lname = line.substr(i, eq - i);
        if (!valid_name(lname, false)) bad("bad label name");
        i = eq + 1;
        if (i >= line.size() || line[i] != '"') {
          bad("unquoted label value");
          break;
        }
        ++i;
        std::string v;
        while (i < line.size() && line[i] != '"') {
          if (line[i] == '\\') {
            if (i + 1 >= line.size()) break;
            const char e = line[i + 1];
            if (e == 'n') {
              v += '\n';
            } else if (e == '\\' || e == '"') {
              v += e;
            } else {
              bad("bad escape");
            }
            i += 2;
          } else {
            v += line[i++];
          }
        }
        if (i >= line.size()) {
          bad("unterminated label value");
          break;
        }
        ++i;  // closing quote
        if (s.labels.count(lname) != 0) bad("label twice");
        s.labels[lname] = v;
        if (i < line.size() && line[i] == ',') ++i;
      }
      if (i >= line.size()) {
        bad("unterminated labels");
        continue;
      }
      ++i;  // '}'
    }
    if (i >= line.size() || line[i] != ' ') {
      bad("no space before the value");
      continue;
    }
    const std::string value = line.substr(i + 1);
    if (value == "+Inf") {
      s.value = INFINITY;
    } else if (value == "-Inf") {
      s.value = -INFINITY;
    } else if (value == "NaN") {
      s.value = NAN;
    } else {
      std::size_t used = 0;
      try {
        s.value = std::stod(value, &used);
      } catch (...) {
        used = 0;
      }
      if (used == 0 || used != value.size()) bad("bad value (or a timestamp)");
    }
    // Its family: the name itself, or a histogram's _bucket/_sum/_count.
    std::string family = s.name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      const std::string sx = suffix;
      if (x.types.count(family) == 0 && s.name.size() > sx.size() &&
          s.name.substr(s.name.size() - sx.size()) == sx &&
          x.types.count(s.name.substr(0, s.name.size() - sx.size())) != 0) {
        family = s.name.substr(0, s.name.size() - sx.size());
      }
    }
    if (x.types.count(family) == 0) bad("sample before its family's TYPE");
    if (family != s.name && x.types[family] != "histogram" && x.types[family] != "summary") {
      bad("suffix on a non-histogram");
    }
    if (x.types[family] == "histogram" && family == s.name) bad("bare histogram sample");
    if (s.name.size() > 7 && s.name.substr(s.name.size() - 7) == "_bucket" &&
        s.labels.count("le") == 0) {
      bad("bucket without le");
    }
    std::string key = s.name;
    for (const auto& [k, v] : s.labels) key += "|" + k + "=" + v;
    if (!series.insert(key).second) bad("series twice");
    x.samples.push_back(std::move(s));
  }
  // Histograms: cumulative buckets ending at +Inf == _count.
  for (const auto& [family, type] : x.types) {
    if (type != "histogram" || !x.error.empty()) continue;
    std::map<std::map<std::string, std::string>, std::vector<std::pair<double, double>>> by;
    for (const Sample& s : x.samples) {
      if (s.name != family + "_bucket") continue;
      auto labels = s.labels;
      const std::string le = labels["le"];
      labels.erase("le");
      by[labels].emplace_back(le == "+Inf" ? INFINITY : std::stod(le), s.value);
    }
    for (const auto& [labels, buckets] : by) {
      for (std::size_t k = 1; k < buckets.size(); ++k) {
        if (buckets[k].first <= buckets[k - 1].first) x.error = family + ": le not increasing";
        if (buckets[k].second < buckets[k - 1].second) x.error = family + ": not cumulative";
      }
      if (buckets.empty() || !std::isinf(buckets.back().first)) {
        x.error = family + ": no +Inf bucket";
      } else if (buckets.back().second != x.value(family + "_count", labels)) {
        x.error = family + ": +Inf bucket differs from _count";
      }
    }
  }
  return x;
}

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
    EXPECT_EQ(r.exit, 0) << r.out;
    return json::parse(r.out, nullptr, false);
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
  EXPECT_NE(r.exit, 0);
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
  EXPECT_DOUBLE_EQ(m["throughput"].get<double>(), std::round(10.0 / 300.0 * 1000.0) / 1000.0);
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
    EXPECT_NE(r.exit, 0) << bad;
    const json e = json::parse(r.out, nullptr, false);
    EXPECT_EQ(e["statusCode"], 400) << bad << ": " << r.out;
    EXPECT_EQ(e["error"], "INVALID_REQUEST") << bad;
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
  // at le="60".
  EXPECT_EQ(x.value("perfq_processing_seconds_bucket", {{"band", "NORMAL"}, {"le", "60"}}), 5);
  EXPECT_EQ(x.value("perfq_wait_seconds_bucket", {{"band", "NORMAL"}, {"le", "60"}}), 5);
  EXPECT_EQ(x.value("perfq_dlq_unreviewed", {}), 1);
  EXPECT_EQ(x.value("perfq_workers", {}), 1);
  EXPECT_EQ(x.value("perfq_health_status", {{"status", "healthy"}}), 1);
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

TEST_F(Observe, TopDrawsFramesFromTheSegment) {
  start();
  start_worker();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(run("works").status, Status::kCompleted);
  const test::ToolRun r = ctl(q_.str(), {"top", "--iterations", "2", "--interval-ms", "10"});
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
      {PERFQCTL_PATH, "--queue", q_.str(), "top", "--iterations", "1", "--interval-ms", "10"});
  ASSERT_EQ(human.exit, 0) << human.out;
  for (const char* band : {"CRITICAL", "HIGH", "NORMAL", "LOW"}) {
    EXPECT_NE(human.out.find(band), std::string::npos) << human.out;
  }
  EXPECT_NE(human.out.find("works,doomed,flaky"), std::string::npos) << human.out;
  const test::ToolRun bad = ctl(q_.str(), {"top", "--interval-ms", "0"});
  EXPECT_NE(bad.exit, 0);
}

}  // namespace
}  // namespace perfq
