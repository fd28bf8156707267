#include "control/observe.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "perfq/agent/config.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/core/clock.hpp"
#include "perfq/core/iso_time.hpp"
#include "perfq/shm/agent_version.hpp"
#include "perfq/shm/metrics.hpp"
#include "perfq/shm/rejections.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq::agent {

using nlohmann::json;

HealthLimits HealthLimits::from(const Config& c) noexcept {
  return {c.health_degraded_utilization, c.health_unhealthy_utilization, c.health_degraded_failures,
          c.health_unhealthy_failures,   c.health_degraded_dlq,          c.health_unhealthy_dlq};
}

namespace {

const char* journal_state_name(uint32_t st) {
  switch (static_cast<shm::JournalHealthState>(st)) {
    case shm::JournalHealthState::kHealthy:
      return "healthy";
    case shm::JournalHealthState::kFailing:
      return "failing";
    default:
      return "off";
  }
}

std::string errno_name(int e) {
  return e != 0 ? std::strerror(e) : "";
}

double ms_of_us(double us) {
  return std::round(us) / 1000.0;
}

double age_ms(uint64_t now, uint64_t then) {
  return now > then ? std::round(static_cast<double>(now - then) / 1e5) / 10.0 : 0.0;
}

// The agent's own state: a clean stop says so, a dead agent that never got
// to say it is "down".
const char* agent_state_name(shm::Segment& seg) {
  const auto state = load_relaxed(seg.header().agent_state);
  if (state == static_cast<uint32_t>(shm::AgentState::kStopped)) return "stopped";
  if (!seg.agent_alive()) return "down";
  if (state == static_cast<uint32_t>(shm::AgentState::kRunning)) return "running";
  return "starting";
}

struct Facts {
  uint64_t pending = 0;
  uint64_t band_depth[kBandCount] = {};
  uint32_t producers = 0;
  json workers = json::array();
};

Facts facts_of(shm::Segment& seg, uint64_t now_mono) {
  Facts f;
  const auto& k = seg.header().counters;
  for (uint8_t b = 0; b < kBandCount; ++b) {
    // The agent's scheduler plus what it has not drained from the ring yet.
    f.band_depth[b] = load_relaxed(k.band_depth[b]) + seg.band(static_cast<Band>(b)).size_approx();
    f.pending += f.band_depth[b];
  }
  f.pending += load_relaxed(k.waiting_for_worker);
  for (uint32_t id = 0; id < seg.geometry().max_clients; ++id) {
    auto& c = seg.client(id);
    if (load_relaxed(c.state) != static_cast<uint32_t>(shm::ClientState::kActive)) continue;
    const uint32_t roles = load_relaxed(c.roles);
    if ((roles & shm::kRoleProducer) != 0) ++f.producers;
    if ((roles & shm::kRoleWorker) == 0) continue;
    json types = json::array();
    const uint32_t tc = std::min(load_acquire(c.type_count), shm::kMaxTypesPerWorker);
    // The worker writes its types before publishing type_count (release):
    // the names below it are settled.
    for (uint32_t t = 0; t < tc; ++t) {
      types.push_back(
          std::string(c.types[t].text, std::min<size_t>(c.types[t].len, kTypeMaxBytes)));
    }
    f.workers.push_back({{"id", id},
                         {"pid", load_relaxed(c.pid)},
                         {"heartbeatAgeMs", age_ms(now_mono, load_relaxed(c.heartbeat_mono_ns))},
                         {"types", std::move(types)}});
  }
  return f;
}

// One set of SPEC §5 metrics fields.
json totals_json(const shm::MetricsTotals& t, double seconds) {
  using shm::Outcome;
  const uint64_t completed = t.count(Outcome::kCompleted);
  const uint64_t failed = t.count(Outcome::kFailed);
  const uint64_t timeout = t.count(Outcome::kTimeout);
  const uint64_t finished = completed + failed + timeout;
  auto pct = [](auto&& at) {
    return json{{"p50", ms_of_us(static_cast<double>(at(0.5)))},
                {"p90", ms_of_us(static_cast<double>(at(0.9)))},
                {"p99", ms_of_us(static_cast<double>(at(0.99)))},
                {"p999", ms_of_us(static_cast<double>(at(0.999)))},
                {"max", ms_of_us(static_cast<double>(at(1.0)))}};
  };
  return {
      {"totalSubmitted", t.count(Outcome::kSubmitted)},
      {"totalCompleted", completed},
      {"totalFailed", failed},
      {"totalTimeout", timeout},
      {"totalCancelled", t.count(Outcome::kCancelled)},
      {"totalRetried", t.count(Outcome::kRetried)},
      {"averageWaitTime",
       t.wait_count == 0 ? 0.0 : ms_of_us(static_cast<double>(t.wait_sum_us) / t.wait_count)},
      {"averageProcessingTime",
       t.processing_count == 0
           ? 0.0
           : ms_of_us(static_cast<double>(t.processing_sum_us) / t.processing_count)},
      {"waitTime", pct([&](double q) { return t.wait_percentile_us(q); })},
      {"processingTime", pct([&](double q) { return t.processing_percentile_us(q); })},
      {"throughput",
       seconds > 0 ? std::round(static_cast<double>(completed) / seconds * 1000.0) / 1000.0 : 0.0},
      {"successRate", finished == 0 ? 100.0
                                    : std::round(static_cast<double>(completed) * 10000.0 /
                                                 static_cast<double>(finished)) /
                                          100.0},
  };
}

// The health levels, worst last; each names the threshold it passed.
struct Verdict {
  int level = 0;  // 0 healthy, 1 degraded, 2 unhealthy
  json reasons = json::array();

  void check(const char* what, uint64_t v, uint64_t degraded, uint64_t unhealthy) {
    const int l = v > unhealthy ? 2 : v > degraded ? 1 : 0;
    if (l == 0) return;
    reasons.push_back(std::string(what) + " " + std::to_string(v) + " above " +
                      std::to_string(l == 2 ? unhealthy : degraded));
    level = std::max(level, l);
  }
  [[nodiscard]] const char* status() const {
    return level == 2 ? "unhealthy" : level == 1 ? "degraded" : "healthy";
  }
};

json agent_json(const shm::SegmentHeader& h, const char* state, uint64_t now_unix_ns,
                uint64_t now_mono) {
  const uint64_t started = load_relaxed(h.agent_started_unix_ns);
  return {{"pid", load_relaxed(h.agent_pid)},
          {"state", state},
          {"startedAt", iso_time(started)},
          {"uptimeMs", now_unix_ns > started ? (now_unix_ns - started) / 1'000'000 : 0},
          {"heartbeatAgeMs", age_ms(now_mono, load_relaxed(h.heartbeat_mono_ns))}};
}

json journal_json(const shm::JournalView& jv) {
  return {{"state", journal_state_name(load_relaxed(jv.state))},
          {"lastError", errno_name(load_relaxed(jv.last_errno))},
          {"awaitingDurable", load_relaxed(jv.awaiting)},
          {"failedFlushes", load_relaxed(jv.failed_flushes)},
          {"entries", load_relaxed(jv.entries)},
          {"segments", load_relaxed(jv.segments)}};
}

json audit_log_json(const shm::JournalView& jv) {
  return {{"state", journal_state_name(load_relaxed(jv.audit_state))},
          {"lastError", errno_name(load_relaxed(jv.audit_errno))}};
}

json counters_json(const shm::AgentCounters& k) {
  return {{"submitted", load_relaxed(k.submitted)},
          {"completed", load_relaxed(k.completed)},
          {"failed", load_relaxed(k.failed)},
          {"timedOut", load_relaxed(k.timed_out)},
          {"cancelled", load_relaxed(k.cancelled)},
          {"retried", load_relaxed(k.retried)},
          {"rejectedInvalid", load_relaxed(k.rejected_invalid)},
          {"ringClaimsSkipped", load_relaxed(k.ring_claims_skipped)},
          {"slotsReclaimed", load_relaxed(k.slots_reclaimed)},
          {"attemptsRedispatched", load_relaxed(k.attempts_redispatched)}};
}

json bands_json(const Facts& f) {
  json bands = json::object();
  for (uint8_t b = 0; b < kBandCount; ++b) {
    bands[std::string(band_name(static_cast<Band>(b)))] = f.band_depth[b];
  }
  return bands;
}

}  // namespace

json health_json(shm::Segment& seg, const HealthLimits& lim, uint64_t now_unix_ns) {
  auto& h = seg.header();
  const uint64_t now_mono = mono_now_ns();
  const auto& k = h.counters;
  const Facts f = facts_of(seg, now_mono);
  const uint64_t max_depth = std::max<uint64_t>(1, load_relaxed(h.max_queue_depth));
  const uint64_t utilization = std::min<uint64_t>(
      100, static_cast<uint64_t>(std::llround(static_cast<double>(f.pending) * 100.0 /
                                              static_cast<double>(max_depth))));
  const shm::MetricsTotals hour = shm::read_metrics(seg, now_unix_ns, 60).total();
  const uint64_t recent_failures =
      hour.count(shm::Outcome::kFailed) + hour.count(shm::Outcome::kTimeout);
  const uint64_t dlq = load_relaxed(h.journal.unreviewed);
  const char* agent_state = agent_state_name(seg);
  Verdict v;
  v.check("capacityUtilization", utilization, lim.degraded_utilization, lim.unhealthy_utilization);
  v.check("recentFailures", recent_failures, lim.degraded_failures, lim.unhealthy_failures);
  v.check("dlqSize", dlq, lim.degraded_dlq, lim.unhealthy_dlq);
  if (std::strcmp(agent_state, "running") != 0) {
    v.reasons.push_back(std::string("agent ") + agent_state);
    v.level = 2;
  }
  return {
      {"status", v.status()},
      {"pendingCount", f.pending},
      {"processingCount", load_relaxed(k.inflight)},
      {"dlqSize", dlq},
      {"recentFailures", recent_failures},
      {"averageProcessingTime",
       hour.processing_count == 0
           ? 0.0
           : ms_of_us(static_cast<double>(hour.processing_sum_us) / hour.processing_count)},
      {"activeWorkers", f.workers.size()},
      {"capacityUtilization", utilization},
      {"reasons", std::move(v.reasons)},
      {"agent", agent_json(h, agent_state, now_unix_ns, now_mono)},
      {"bands", bands_json(f)},
      {"waitingForWorker", load_relaxed(k.waiting_for_worker)},
      {"producers", f.producers},
      {"workers", f.workers},
      {"journal", journal_json(h.journal)},
      {"auditLog", audit_log_json(h.journal)},
      {"counters", counters_json(k)},
  };
}

// The time the counts of a period cover. The history reads whole calendar
// minutes: the current one (so far) and the period - 1 before it, so the
// window starts at the start of the oldest; and the history begins when the
// segment was created (it carries across agent restarts). Rounded to the
// millisecond, as reported.
double observed_seconds(uint64_t created_unix_ns, uint32_t period_minutes, uint64_t now_unix_ns) {
  constexpr uint64_t kMinuteNs = 60'000'000'000ull;
  const uint64_t minute = now_unix_ns / kMinuteNs;  // the current one's index
  const uint64_t back = std::max<uint32_t>(period_minutes, 1) - 1;
  const uint64_t window_start = minute >= back ? (minute - back) * kMinuteNs : 0;
  const uint64_t from = std::max(window_start, created_unix_ns);
  const double seconds = now_unix_ns > from ? static_cast<double>(now_unix_ns - from) / 1e9 : 0.0;
  return std::round(std::max(seconds, 0.001) * 1000.0) / 1000.0;
}

json metrics_json(const shm::Segment& seg, uint32_t period_minutes, uint64_t now_unix_ns) {
  const shm::MetricsSnapshot snap = shm::read_metrics(seg, now_unix_ns, period_minutes);
  const double seconds =
      observed_seconds(load_relaxed(seg.header().created_unix_ns), period_minutes, now_unix_ns);
  json out = totals_json(snap.total(), seconds);
  out["period"] = std::to_string(period_minutes) + (period_minutes == 1 ? " minute" : " minutes");
  out["observedSeconds"] = seconds;
  json by_type = json::object();
  for (const auto& [name, t] : snap.types) by_type[name] = totals_json(t, seconds);
  json by_band = json::object();
  for (uint8_t b = 0; b < kBandCount; ++b) {
    by_band[std::string(band_name(static_cast<Band>(b)))] = totals_json(snap.bands[b], seconds);
  }
  out["byType"] = std::move(by_type);
  out["byBand"] = std::move(by_band);
  return out;
}

Result<uint32_t> parse_period(std::string_view text) {
  uint32_t v = 0;
  const bool digits =
      !text.empty() && text.size() <= 4 &&
      std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (digits) {
    for (char c : text) v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  if (!digits || v < 1 || v > shm::kMetricsMinutes) {
    return {Errc::kInvalidRequest, "period must be a whole number of minutes from 1 to 1440"};
  }
  return v;
}

// ---------------------------------------------------------------- probes

ProbeVerdict liveness(shm::Segment& seg, uint64_t now_mono_ns, uint64_t stall_ms) {
  // A clean stop says so; a dead agent never got to.
  const auto state = load_relaxed(seg.header().agent_state);
  if (state == static_cast<uint32_t>(shm::AgentState::kStopped)) return {false, "stopped"};
  if (!seg.agent_alive()) return {false, "agent down"};
  const uint64_t beat = load_relaxed(seg.header().heartbeat_mono_ns);
  // A heartbeat from the future (a scribble) is taken as fresh: the next
  // duty cycle rewrites it.
  const uint64_t age_ms = now_mono_ns > beat ? (now_mono_ns - beat) / 1'000'000 : 0;
  if (age_ms > stall_ms) {
    return {false, "duty cycle stalled: heartbeat " + std::to_string(age_ms) + " ms old"};
  }
  return {true, "live"};
}

ProbeVerdict readiness(shm::Segment& seg, uint64_t now_mono_ns, uint64_t stall_ms) {
  ProbeVerdict live = liveness(seg, now_mono_ns, stall_ms);
  if (!live.ok) return live;
  switch (static_cast<shm::AgentState>(load_relaxed(seg.header().agent_state))) {
    case shm::AgentState::kRunning:
      return {true, "ready"};
    case shm::AgentState::kStarting:
      return {false, "starting"};
    case shm::AgentState::kDraining:
      return {false, "draining"};
    case shm::AgentState::kStopped:
      return {false, "stopped"};
  }
  return {false, "agent state unknown"};
}

// ---------------------------------------------------------------- Prometheus

namespace {

// Label values escape backslash, double quote and newline (exposition 0.0.4).
std::string label(std::string_view v) {
  std::string o;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      o += '\\';
      o += c;
    } else if (c == '\n') {
      o += "\\n";
    } else {
      o += c;
    }
  }
  return o;
}

// The shortest text that reads back as the same double (0.00025, 1e-06,
// 67.108864), not printf's %.17g (0.00025000000000000001).
std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  char b[64];
  const auto [end, ec] = std::to_chars(b, b + sizeof b, v);
  return ec == std::errc() ? std::string(b, end) : std::string("NaN");
}

class Exposition {
 public:
  void family(const char* name, const char* type, const char* help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  void sample(std::string_view name, const std::string& labels, const std::string& value) {
    out_ += name;
    if (!labels.empty()) {
      out_ += '{';
      out_ += labels;
      out_ += '}';
    }
    out_ += ' ';
    out_ += value;
    out_ += '\n';
  }
  void sample(std::string_view name, const std::string& labels, uint64_t value) {
    sample(name, labels, std::to_string(value));
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

// Bucket bounds of the latency histograms, in microseconds: the powers of
// two from 1 us to 2^26 us (67.1 s). Each is the lower edge of a bucket of
// the recorded histograms (shm::MinuteBuckets: 8 per power of two, in whole
// microseconds, truncated), so the count at a bound is exact: the attempts
// that took less than it. Decimal bounds (1, 2.5, 5 per decade) fall inside
// recorded buckets from 25 us up (50 us lies in [48, 51]) and could only be
// undercounted or guessed (docs/DECISIONS.md, "Prometheus buckets").
constexpr uint32_t kBoundCount = 27;

[[nodiscard]] constexpr uint64_t bound_us(uint32_t k) {
  return uint64_t{1} << k;
}

[[nodiscard]] constexpr bool bounds_are_bucket_edges() {
  for (uint32_t k = 0; k < kBoundCount; ++k) {
    const uint64_t b = bound_us(k);
    if (shm::MinuteBuckets::lower(shm::MinuteBuckets::index(b)) != b) return false;
  }
  return bound_us(kBoundCount - 1) < shm::MinuteBuckets::kTrackableMax;
}
static_assert(bounds_are_bucket_edges());

void histogram(Exposition& x, const char* name, const std::string& labels,
               const std::array<uint64_t, shm::kMinuteBuckets>& buckets, uint64_t count,
               uint64_t sum_us) {
  std::size_t i = 0;
  uint64_t cumulative = 0;
  const std::string bucket = std::string(name) + "_bucket";
  for (uint32_t k = 0; k < kBoundCount; ++k) {
    // Every recorded bucket below the one that starts at the bound.
    const std::size_t edge = shm::MinuteBuckets::index(bound_us(k));
    for (; i < edge; ++i) cumulative += buckets[i];
    const double le = static_cast<double>(bound_us(k)) / 1e6;
    x.sample(bucket, labels + ",le=\"" + number(le) + "\"", cumulative);
  }
  x.sample(bucket, labels + ",le=\"+Inf\"", count);
  x.sample(std::string(name) + "_sum", labels, number(static_cast<double>(sum_us) / 1e6));
  x.sample(std::string(name) + "_count", labels, count);
}

std::string band_label(uint8_t b) {
  return "band=\"" + std::string(band_name(static_cast<Band>(b))) + "\"";
}

// Counters since the agent started, by band and by type (two families each:
// summing one never double-counts).
void outcome_counters(Exposition& x, const shm::MetricsSnapshot& life) {
  struct Counter {
    const char* name;
    const char* help;
    shm::Outcome outcome;
  };
  const Counter counters[] = {
      {"perfq_requests_submitted_total", "Requests taken by the agent.", shm::Outcome::kSubmitted},
      {"perfq_requests_completed_total", "Requests completed.", shm::Outcome::kCompleted},
      {"perfq_requests_failed_total", "Requests failed (dead-lettered).", shm::Outcome::kFailed},
      {"perfq_requests_timeout_total", "Requests that timed out (dead-lettered).",
       shm::Outcome::kTimeout},
      {"perfq_requests_cancelled_total", "Requests cancelled.", shm::Outcome::kCancelled},
      {"perfq_attempts_retried_total", "Failed attempts sent back for a retry.",
       shm::Outcome::kRetried},
  };
  for (const Counter& c : counters) {
    x.family(c.name, "counter", c.help);
    for (uint8_t b = 0; b < kBandCount; ++b) {
      x.sample(c.name, band_label(b), life.bands[b].count(c.outcome));
    }
  }
  for (const Counter& c : counters) {
    const std::string name = std::string("perfq_type_") + (c.name + 6);
    x.family(name.c_str(), "counter", c.help);
    for (const auto& [type, t] : life.types) {
      x.sample(name, "type=\"" + label(type) + "\"", t.count(c.outcome));
    }
  }
}

void latency_histograms(Exposition& x, const shm::MetricsSnapshot& life) {
  x.family("perfq_wait_seconds", "histogram",
           "Time from eligible to dispatch, per attempt, since the agent started.");
  for (uint8_t b = 0; b < kBandCount; ++b) {
    const auto& t = life.bands[b];
    histogram(x, "perfq_wait_seconds", band_label(b), t.wait, t.wait_count, t.wait_sum_us);
  }
  x.family("perfq_processing_seconds", "histogram",
           "Time from dispatch to result, per attempt, since the agent started.");
  for (uint8_t b = 0; b < kBandCount; ++b) {
    const auto& t = life.bands[b];
    histogram(x, "perfq_processing_seconds", band_label(b), t.processing, t.processing_count,
              t.processing_sum_us);
  }
}

// The gauges of the moment, read off the health answer.
void health_gauges(Exposition& x, const json& health) {
  x.family("perfq_queue_depth", "gauge", "Pending requests, by band.");
  for (uint8_t b = 0; b < kBandCount; ++b) {
    x.sample("perfq_queue_depth", band_label(b),
             health["bands"][std::string(band_name(static_cast<Band>(b)))].get<uint64_t>());
  }
  auto gauge = [&](const char* name, const char* help, uint64_t v) {
    x.family(name, "gauge", help);
    x.sample(name, "", v);
  };
  gauge("perfq_processing_requests", "Attempts dispatched and not yet settled.",
        health["processingCount"].get<uint64_t>());
  gauge("perfq_waiting_for_worker_requests", "Pending requests whose type has no worker.",
        health["waitingForWorker"].get<uint64_t>());
  gauge("perfq_capacity_utilization_percent", "Pending requests over max_queue_depth, percent.",
        health["capacityUtilization"].get<uint64_t>());
  gauge("perfq_workers", "Active workers.", health["activeWorkers"].get<uint64_t>());
  gauge("perfq_producers", "Attached producers.", health["producers"].get<uint64_t>());
  gauge("perfq_dlq_unreviewed", "Dead letters not yet reviewed (dlqSize).",
        health["dlqSize"].get<uint64_t>());
  gauge("perfq_journal_awaiting_durable", "Dead letters waiting for their fdatasync.",
        health["journal"]["awaitingDurable"].get<uint64_t>());
  gauge("perfq_journal_failing", "1 while the DLQ journal cannot write.",
        health["journal"]["state"] == "failing" ? 1 : 0);
  x.family("perfq_health_status", "gauge", "1 for the current health status.");
  for (const char* s : {"healthy", "degraded", "unhealthy"}) {
    x.sample("perfq_health_status", std::string("status=\"") + s + "\"",
             health["status"] == s ? 1 : 0);
  }
  gauge("perfq_agent_uptime_seconds", "Seconds since the agent started.",
        health["agent"]["uptimeMs"].get<uint64_t>() / 1000);
}

// Submits the producers refused, by reason (shm/rejections.hpp); every
// reason is printed, 0 included, so a rate over it always has a series.
void rejection_counters(Exposition& x, const shm::SegmentHeader& h) {
  x.family("perfq_rejected_total", "counter",
           "Submits refused, by reason (queue_full, rate_limited, invalid, draining, conflict, "
           "other), since the segment was created.");
  for (uint8_t r = 0; r < shm::kRejectReasonCount; ++r) {
    const auto reason = static_cast<shm::RejectReason>(r);
    x.sample("perfq_rejected_total", "reason=\"" + label(shm::reject_reason_name(reason)) + "\"",
             shm::rejections(h, reason));
  }
}

// The agent's own facts: its version (from the header, checked) and when it
// started, as the Prometheus conventions name them.
void agent_facts(Exposition& x, const shm::SegmentHeader& h) {
  x.family("perfq_build_info", "gauge", "Always 1; the running agent's version as a label.");
  x.sample("perfq_build_info", "version=\"" + label(shm::read_agent_version(h)) + "\"",
           uint64_t{1});
  x.family("process_start_time_seconds", "gauge",
           "Start time of the agent since the Unix epoch, in seconds.");
  x.sample("process_start_time_seconds", "",
           number(static_cast<double>(load_relaxed(h.agent_started_unix_ns)) / 1e9));
}

}  // namespace

std::string prometheus_text(shm::Segment& seg, const HealthLimits& limits, uint64_t now_unix_ns) {
  const json health = health_json(seg, limits, now_unix_ns);
  const shm::MetricsSnapshot life = shm::read_metrics(seg, now_unix_ns, 0);
  Exposition x;
  outcome_counters(x, life);
  latency_histograms(x, life);
  health_gauges(x, health);
  rejection_counters(x, seg.header());
  agent_facts(x, seg.header());
  return x.take();
}

}  // namespace perfq::agent
