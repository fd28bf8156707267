// `metrics [--period MINUTES]`: SPEC §5 metrics for the last N minutes, from
// the agent's socket.
#include <cstdio>
#include <memory>

#include "admin_request.hpp"
#include "flags.hpp"
#include "output.hpp"
#include "verbs.hpp"

namespace perfq::ctl {

namespace {

using nlohmann::json;

void print_row(const std::string& name, const json& m) {
  std::printf("%-24s %9s %9s %7s %7s %7s %7s %8.1f %9.3f %9.3f %9.3f %9.3f\n", name.c_str(),
              text(m["totalSubmitted"]).c_str(), text(m["totalCompleted"]).c_str(),
              text(m["totalFailed"]).c_str(), text(m["totalTimeout"]).c_str(),
              text(m["totalCancelled"]).c_str(), text(m["totalRetried"]).c_str(),
              num(m["successRate"]), num(m["averageWaitTime"]), num(m["processingTime"]["p50"]),
              num(m["processingTime"]["p99"]), num(m["processingTime"]["max"]));
}

void print_table(const json& m) {
  std::printf(
      "last %s  throughput %.3f/s (over the %.0f s the history covers)  success %.1f%%  "
      "wait p50 %.3f p99 %.3f ms  processing p50 %.3f p99 %.3f p999 %.3f max %.3f ms\n",
      text(m["period"]).c_str(), num(m["throughput"]), num(m["observedSeconds"]),
      num(m["successRate"]), num(m["waitTime"]["p50"]), num(m["waitTime"]["p99"]),
      num(m["processingTime"]["p50"]), num(m["processingTime"]["p99"]),
      num(m["processingTime"]["p999"]), num(m["processingTime"]["max"]));
  std::printf("%-24s %9s %9s %7s %7s %7s %7s %8s %9s %9s %9s %9s\n", "", "submitted", "completed",
              "failed", "timeout", "cancel", "retried", "success%", "wait ms", "proc p50",
              "proc p99", "proc max");
  print_row("total", m);
  for (const std::string& band : bands_in_order()) print_row("band " + band, m["byBand"][band]);
  for (const auto& [type, t] : m["byType"].items()) print_row("type " + type, t);
}

}  // namespace

Run metrics(Command& cmd, const Globals& g) {
  struct Options {
    uint64_t period = 60;
    uint64_t timeout_ms = kAdminTimeoutMs;
  };
  auto o = std::make_shared<Options>();
  cmd.number("--period", o->period, 1, 1440, "MINUTES",
             "the last MINUTES minutes of history (1..1440)");
  cmd.timeout(o->timeout_ms, "the agent's answer");
  return [&g, o] {
    json m;
    const json request = {{"op", "metrics"}, {"period", o->period}};
    if (const int rc = admin_request(g.queue, request, g.json, o->timeout_ms, m); rc != 0) {
      return rc;
    }
    if (g.json) {
      print_json(m);
    } else {
      print_table(m);
    }
    return kExitOk;
  };
}

}  // namespace perfq::ctl
