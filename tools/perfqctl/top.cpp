// `top`: a live view, redrawn in place: per-band depth, throughput since the
// last frame, latency percentiles of the current minute, workers. Reads the
// segment directly (no socket round trip, nothing audited), so it also
// shows a queue whose agent is down.
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>

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

struct TopOptions {
  uint64_t interval_ms = 1000;
  std::optional<uint64_t> iterations;  // none: until interrupted or --timeout
  std::optional<uint64_t> timeout_ms;
};

// Sleeps `ms` (the refresh period of the view, not a wait for an event).
void pause_ms(uint64_t ms) {
  const timespec t{static_cast<time_t>(ms / 1000), static_cast<long>(ms % 1000) * 1'000'000};
  nanosleep(&t, nullptr);
}

int run_top(const Globals& g, const TopOptions& o) {
  auto seg = shm::Segment::attach(g.queue);
  if (!seg) return fail(g.json, seg.error());
  const bool tty = !g.json && ::isatty(STDOUT_FILENO) != 0;
  const uint64_t deadline = o.timeout_ms ? mono_now_ns() + *o.timeout_ms * 1'000'000 : UINT64_MAX;
  uint64_t last_completed = 0;
  uint64_t last_ns = 0;
  const uint64_t frames = o.iterations.value_or(UINT64_MAX);
  // Bounded by --iterations, else by the deadline, else by a signal.
  for (uint64_t frame = 0; frame < frames; ++frame) {
    const uint64_t now = unix_now_ns();
    json h = agent::health_json(**seg, agent::HealthLimits{}, now);
    json m = agent::metrics_json(**seg, 1, now);
    const uint64_t completed = h["counters"]["completed"].get<uint64_t>();
    const double rate = last_ns == 0 ? 0.0
                                     : static_cast<double>(completed - last_completed) * 1e9 /
                                           static_cast<double>(now - last_ns);
    last_completed = completed;
    last_ns = now;
    if (g.json) {
      print_json(agent::top_frame_json(std::move(h), std::move(m), rate));
    } else {
      draw(g.queue, h, m, rate, tty);
    }
    std::fflush(stdout);
    if (frame + 1 >= frames) break;
    const uint64_t mono = mono_now_ns();
    if (mono >= deadline) {
      if (!o.iterations) return kExitOk;  // the view's length
      return timed_out(g.json, std::to_string(frame + 1) + " of " + std::to_string(frames) +
                                   " frames within " + duration_text(*o.timeout_ms));
    }
    uint64_t pause = o.interval_ms;
    if (o.timeout_ms) pause = std::min(pause, (deadline - mono) / 1'000'000 + 1);
    pause_ms(pause);
  }
  return kExitOk;
}

}  // namespace

Run top(Command& cmd, const Globals& g) {
  auto o = std::make_shared<TopOptions>();
  cmd.duration("--interval", o->interval_ms, 10, "time between frames, at least 10ms");
  cmd.number("--iterations", o->iterations, 1, UINT64_MAX, "N",
             "draw N frames and exit (default: until Ctrl-C or --timeout)");
  cmd.duration("--timeout", o->timeout_ms, 1,
               "stop after this long (exit 0); with --iterations, N frames not drawn by then "
               "are a TIMEOUT error (default: no limit)");
  return [&g, o] { return run_top(g, *o); };
}

}  // namespace perfq::ctl
