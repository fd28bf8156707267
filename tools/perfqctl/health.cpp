// `health`: SPEC §5 health, from the agent's socket; from the segment when
// the agent is not running (then `unhealthy`, with the reason). The exit
// code is the state, as a monitoring probe wants it (verbs.hpp): 0 healthy,
// 1 degraded, 2 unhealthy, 3 unknown (the agent down or not answering).
#include <cstdio>
#include <memory>

#include "admin_request.hpp"
#include "control/observe.hpp"
#include "flags.hpp"
#include "output.hpp"
#include "perfq/core/clock.hpp"
#include "perfq/shm/segment.hpp"
#include "verbs.hpp"

namespace perfq::ctl {

namespace {

using nlohmann::json;

void print_state(const std::string& queue, const json& h) {
  const auto& ag = h["agent"];
  std::printf("queue %s  %s  agent pid %s %s  up %.1f s  heartbeat %.1f ms ago\n", queue.c_str(),
              text(h["status"]).c_str(), text(ag["pid"]).c_str(), text(ag["state"]).c_str(),
              num(ag["uptimeMs"]) / 1000.0, num(ag["heartbeatAgeMs"]));
  std::printf("pending  %s (", text(h["pendingCount"]).c_str());
  for (const std::string& band : bands_in_order()) {
    std::printf("%s%s %s", band == "CRITICAL" ? "" : "  ", band.c_str(),
                text(h["bands"][band]).c_str());
  }
  std::printf(")  processing %s  capacity %s%%  waiting for a worker %s\n",
              text(h["processingCount"]).c_str(), text(h["capacityUtilization"]).c_str(),
              text(h["waitingForWorker"]).c_str());
  std::printf("last hour  failures %s  average processing %.3f ms\n",
              text(h["recentFailures"]).c_str(), num(h["averageProcessingTime"]));
}

void print_files_and_totals(const json& h) {
  const auto& jv = h["journal"];
  const auto& au = h["auditLog"];
  std::printf(
      "dlq %s unreviewed of %s  journal %s%s%s  awaiting durable %s  failed flushes %s  "
      "segments %s  audit log %s%s%s\n",
      text(h["dlqSize"]).c_str(), text(jv["entries"]).c_str(), text(jv["state"]).c_str(),
      jv["lastError"] != "" ? ": " : "", text(jv["lastError"]).c_str(),
      text(jv["awaitingDurable"]).c_str(), text(jv["failedFlushes"]).c_str(),
      text(jv["segments"]).c_str(), text(au["state"]).c_str(), au["lastError"] != "" ? ": " : "",
      text(au["lastError"]).c_str());
  const auto& k = h["counters"];
  std::printf(
      "totals  submitted %s  completed %s  failed %s  timed out %s  cancelled %s  "
      "retried %s  rejected %s\n",
      text(k["submitted"]).c_str(), text(k["completed"]).c_str(), text(k["failed"]).c_str(),
      text(k["timedOut"]).c_str(), text(k["cancelled"]).c_str(), text(k["retried"]).c_str(),
      text(k["rejectedInvalid"]).c_str());
}

void print_clients(const json& h) {
  if (num(h["waitingForWorker"]) > 0) {
    std::printf("WORKER_UNAVAILABLE: %s requests wait for a worker of their type\n",
                text(h["waitingForWorker"]).c_str());
  }
  std::printf("clients  %s producers, %s workers\n", text(h["producers"]).c_str(),
              text(h["activeWorkers"]).c_str());
  for (const auto& w : h["workers"]) {
    const std::string types = joined(w["types"]);
    std::printf("  worker %-3s pid %-8s heartbeat %7.1f ms ago  types %s\n", text(w["id"]).c_str(),
                text(w["pid"]).c_str(), num(w["heartbeatAgeMs"]), types.c_str());
  }
  for (const auto& r : h["reasons"]) std::printf("because  %s\n", text(r).c_str());
  // Settings the agent was given that its segment, made before, cannot take.
  if (h.contains("ignoredSettings")) {
    for (const auto& i : h["ignoredSettings"]) {
      std::printf("not applied  %s = %s (the segment keeps %s): to apply, %s\n",
                  text(i["setting"]).c_str(), text(i["asked"]).c_str(), text(i["inEffect"]).c_str(),
                  text(i["apply"]).c_str());
    }
  }
}

// The exit code of a health body the agent answered.
int state_code(const json& h) {
  const std::string status = h.value("status", std::string());
  if (status == "healthy") return kExitOk;
  if (status == "degraded") return kHealthDegraded;
  if (status == "unhealthy") return kHealthUnhealthy;
  return kHealthUnknown;
}

int run_health(const Globals& g, uint64_t timeout_ms) {
  auto seg = shm::Segment::attach(g.queue);
  if (!seg) {
    (void)fail(g.json, seg.error());
    return kHealthUnknown;
  }
  json h;
  const bool alive = (*seg)->agent_alive();
  if (alive) {
    if (admin_request(**seg, {{"op", "health"}}, g.json, timeout_ms, h) != 0) {
      return kHealthUnknown;
    }
  } else {
    h = agent::health_json(**seg, agent::HealthLimits{}, unix_now_ns());
  }
  if (g.json) {
    print_json(h);
  } else {
    print_state(g.queue, h);
    print_files_and_totals(h);
    print_clients(h);
  }
  return alive ? state_code(h) : kHealthUnknown;
}

}  // namespace

Run health(Command& cmd, const Globals& g) {
  auto timeout_ms = std::make_shared<uint64_t>(kAdminTimeoutMs);
  cmd.timeout(*timeout_ms, "the agent's answer");
  cmd.footer(
      "Exit codes (a Nagios plugin's): 0 healthy, 1 degraded, 2 unhealthy, 3 unknown: the agent "
      "is down (no segment, the agent not running) or did not answer (refused, or nothing "
      "within --timeout); 64 a usage error. With the agent down the body is still printed, "
      "computed from the segment.");
  return [&g, timeout_ms] { return run_health(g, *timeout_ms); };
}

}  // namespace perfq::ctl
