// `top`: a live view, redrawn in place: per-band depth, throughput since the
// last frame, latency percentiles of the current minute, workers. Reads the
// segment directly (no socket round trip, nothing audited), so it also
// shows a queue whose agent is down.
#include <unistd.h>

#include <cstdio>

#include "control/observe.hpp"
#include "control/wire_json.hpp"
#include "flags.hpp"
#include "output.hpp"
#include "perfq/core/clock.hpp"
#include "perfq/shm/segment.hpp"
#include "verbs.hpp"

namespace perfq::ctl {

namespace {

using nlohmann::json;

void draw(const std::string& queue, const json& h, const json& m, double rate, bool tty) {
  if (tty) std::printf("\x1b[H\x1b[2J");  // home, clear: redrawn in place
  std::printf("perfq top  queue %s  %s  agent %s  up %.0f s\n", queue.c_str(),
              text(h["status"]).c_str(), text(h["agent"]["state"]).c_str(),
              num(h["agent"]["uptimeMs"]) / 1000.0);
  std::printf("%-9s %8s   %s\n", "band", "depth", "last minute: wait p50/p99 ms  proc p50/p99 ms");
  for (const std::string& band : bands_in_order()) {
    const auto& b = m["byBand"][band];
    std::printf("%-9s %8s   %9.3f %9.3f  %9.3f %9.3f\n", band.c_str(),
                text(h["bands"][band]).c_str(), num(b["waitTime"]["p50"]),
                num(b["waitTime"]["p99"]), num(b["processingTime"]["p50"]),
                num(b["processingTime"]["p99"]));
  }
  std::printf("processing %s  completed/s %.1f  failures last hour %s  dlq %s  capacity %s%%\n",
              text(h["processingCount"]).c_str(), rate, text(h["recentFailures"]).c_str(),
              text(h["dlqSize"]).c_str(), text(h["capacityUtilization"]).c_str());
  std::printf("workers %s\n", text(h["activeWorkers"]).c_str());
  for (const auto& w : h["workers"]) {
    const std::string types = joined(w["types"]);
    std::printf("  %-3s pid %-8s heartbeat %7.1f ms ago  %s\n", text(w["id"]).c_str(),
                text(w["pid"]).c_str(), num(w["heartbeatAgeMs"]), types.c_str());
  }
}

}  // namespace

int top(const Invocation& in) {
  const Flags f = parse_flags(in.args, {"--interval-ms", "--iterations"}, {});
  if (f.bad || !f.positional.empty()) return usage();
  uint64_t interval_ms = 1000;
  uint64_t iterations = 0;  // 0: until interrupted
  auto number_flag = [&](const char* name, uint64_t& out, uint64_t lo) {
    const std::string* v = f.get(name);
    return v == nullptr || (parse_u64(*v, out) && out >= lo);
  };
  if (!number_flag("--interval-ms", interval_ms, 10) ||
      !number_flag("--iterations", iterations, 1)) {
    return fail(in.json, Errc::kInvalidRequest,
                "--interval-ms must be at least 10 and --iterations at least 1");
  }
  auto seg = shm::Segment::attach(in.queue);
  if (!seg) return fail(in.json, seg.error());
  const bool tty = !in.json && ::isatty(STDOUT_FILENO) != 0;
  uint64_t last_completed = 0;
  uint64_t last_ns = 0;
  for (uint64_t frame = 0; iterations == 0 || frame < iterations; ++frame) {
    const uint64_t now = unix_now_ns();
    json h = agent::health_json(**seg, agent::HealthLimits{}, now);
    json m = agent::metrics_json(**seg, 1, now);
    const uint64_t completed = h["counters"]["completed"].get<uint64_t>();
    const double rate = last_ns == 0 ? 0.0
                                     : static_cast<double>(completed - last_completed) * 1e9 /
                                           static_cast<double>(now - last_ns);
    last_completed = completed;
    last_ns = now;
    if (in.json) {
      print_json(agent::top_frame_json(std::move(h), std::move(m), rate));
    } else {
      draw(in.queue, h, m, rate, tty);
    }
    std::fflush(stdout);
    if (iterations != 0 && frame + 1 >= iterations) break;
    // The refresh period of the view (not a wait for an event).
    ::usleep(static_cast<useconds_t>(interval_ms * 1000));
  }
  return 0;
}

}  // namespace perfq::ctl
