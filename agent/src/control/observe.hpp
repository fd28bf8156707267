#pragma once
// What health, metrics and Prometheus report (SPEC §5), computed from the
// segment alone: the agent answers its socket and HTTP routes with these,
// and perfqctl computes the same health itself when the agent is down.
//
//   health   SPEC's fields with the seed's thresholds, plus the agent facts:
//            uptime, heartbeat age, per-band depth, workers and their types,
//            the journal and audit log states, the agent's counters.
//   metrics  the last N minutes (1..1440) of the per-minute history
//            (shm/metrics.hpp), in total, by type and by band.
//   /metrics Prometheus text exposition 0.0.4: counters since the agent
//            started, gauges of the moment, histograms of wait and
//            processing seconds by band (powers of two from 1 us to 67 s),
//            the producers' refusals by reason, the agent's version and
//            start time.
//   probes   liveness (the duty cycle heart-beats) and readiness (the agent
//            accepts requests), for /livez and /readyz of both listeners.
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

#include "perfq/core/result.hpp"

namespace perfq::shm {
class Segment;
}

namespace perfq::agent {

struct Config;

struct HealthLimits {
  uint64_t degraded_utilization = 70, unhealthy_utilization = 90;
  uint64_t degraded_failures = 50, unhealthy_failures = 100;
  uint64_t degraded_dlq = 20, unhealthy_dlq = 50;
  [[nodiscard]] static HealthLimits from(const Config& cfg) noexcept;
};

// SPEC §5 health. An agent that is not running is `unhealthy` whatever the
// numbers say; `reasons` names every threshold passed.
[[nodiscard]] nlohmann::json health_json(shm::Segment& seg, const HealthLimits& limits,
                                         uint64_t now_unix_ns);

// SPEC §5 metrics for the last `period_minutes` (1..1440).
// The seconds the counts of a `period_minutes` read at `now` cover (its
// observedSeconds, the throughput's divisor): from the start of the oldest
// calendar minute read, or the segment's creation if later.
[[nodiscard]] double observed_seconds(uint64_t created_unix_ns, uint32_t period_minutes,
                                      uint64_t now_unix_ns);

[[nodiscard]] nlohmann::json metrics_json(const shm::Segment& seg, uint32_t period_minutes,
                                          uint64_t now_unix_ns);

// A period as a query or flag gives it: digits only, 1..1440.
[[nodiscard]] Result<uint32_t> parse_period(std::string_view text);

// The Prometheus text format (version 0.0.4) of the queue.
[[nodiscard]] std::string prometheus_text(shm::Segment& seg, const HealthLimits& limits,
                                          uint64_t now_unix_ns);

// A probe's answer: ok, or why not (a few words, no data).
struct ProbeVerdict {
  bool ok = false;
  std::string reason;  // "live", "ready", or what is wrong ("draining", ...)
};

// How old the agent's heartbeat may be before the probes call its duty
// cycle stalled. The duty cycle beats every cycle and parks for at most
// 50 ms, so 5 s means stuck, not busy.
inline constexpr uint64_t kProbeStallMs = 5000;

// Liveness (/livez): the agent runs and its duty cycle heart-beats, its
// heartbeat at most `stall_ms` old; not live once it stopped or died. Says
// nothing of the queue's health: a restart would not mend a full queue or a
// failing worker.
[[nodiscard]] ProbeVerdict liveness(shm::Segment& seg, uint64_t now_mono_ns, uint64_t stall_ms);
// Readiness (/readyz): the agent accepts requests. Not ready while it is not
// live, or starting or draining; the health thresholds (utilization,
// failures, DLQ) do not count (docs/DECISIONS.md, "The probe listener").
[[nodiscard]] ProbeVerdict readiness(shm::Segment& seg, uint64_t now_mono_ns, uint64_t stall_ms);

}  // namespace perfq::agent
