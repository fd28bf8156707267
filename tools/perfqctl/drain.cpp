// `drain`: asks the agent to drain (the admin socket's "drain"): it admits
// nothing new (producers get QUEUE_FULL, "the agent is draining"), finishes
// what is queued, retrying and in flight, and exits within --timeout. This
// waits for the exit, then reads from the segment what was left. Exit 0:
// nothing was left; 1: requests were left (they stay in the segment for the
// next agent), or the agent did not exit in time. A Kubernetes preStop hook
// (deploy/kubernetes) runs it.
#include <time.h>

#include <cstdio>
#include <memory>

#include "admin_request.hpp"
#include "flags.hpp"
#include "output.hpp"
#include "perfq/core/clock.hpp"
#include "perfq/shm/admission.hpp"
#include "perfq/shm/segment.hpp"
#include "verbs.hpp"

namespace perfq::ctl {

namespace {

// The agent's own stop takes this much past its drain bound at most (the
// listeners close, the journal's last round).
constexpr uint64_t kExitGraceMs = 10'000;
// How often the agent's liveness lock is probed while it drains.
constexpr long kProbeEveryNs = 20'000'000;

struct DrainOptions {
  uint64_t timeout_ms = 30'000;
};

// Whether the agent exited within `bound_ms`.
bool await_exit(shm::Segment& seg, uint64_t bound_ms) {
  const uint64_t deadline = mono_now_ns() + bound_ms * 1'000'000;
  while (seg.agent_alive()) {
    if (mono_now_ns() >= deadline) return false;
    const timespec step{0, kProbeEveryNs};
    ::nanosleep(&step, nullptr);
  }
  return true;
}

int run_drain(const Globals& g, const DrainOptions& o) {
  auto seg = shm::Segment::attach(g.queue);
  if (!seg) return fail(g.json, seg.error());
  if (!(*seg)->agent_alive()) {
    return fail(g.json, Errc::kAgentUnavailable,
                "the agent of queue " + g.queue + " is not running");
  }
  nlohmann::json answer;
  const nlohmann::json request = {{"op", "drain"}, {"timeoutMs", o.timeout_ms}};
  if (const int rc = admin_request(**seg, request, g.json, kAdminTimeoutMs, answer); rc != 0) {
    return rc;
  }
  if (!g.json) {
    std::printf("draining queue %s: nothing new is admitted; waiting up to %s for the agent\n",
                g.queue.c_str(), duration_text(o.timeout_ms).c_str());
    std::fflush(stdout);
  }
  if (!await_exit(**seg, o.timeout_ms + kExitGraceMs)) {
    return timed_out(g.json, "the agent of queue " + g.queue + " did not exit within " +
                                 duration_text(o.timeout_ms + kExitGraceMs) + " of the drain");
  }
  const shm::Occupancy left = shm::occupancy(**seg);
  const bool drained = left.known && left.depth == 0;
  if (g.json) {
    print_json({{"drained", drained},
                {"left", left.known ? nlohmann::json(left.depth) : nlohmann::json(nullptr)}});
  } else if (drained) {
    std::printf("drained: the agent exited with nothing left\n");
  } else if (left.known) {
    std::printf(
        "the agent exited with %llu request(s) left in the segment: the next agent on it takes "
        "them up (perfqctl destroy would lose them)\n",
        static_cast<unsigned long long>(left.depth));
  } else {
    std::printf("the agent exited; what it left could not be read\n");
  }
  return drained ? kExitOk : kExitError;
}

}  // namespace

Run drain(Command& cmd, const Globals& g) {
  auto o = std::make_shared<DrainOptions>();
  cmd.duration("--timeout", o->timeout_ms, 1,
               "the drain's bound: the agent exits once nothing is left or when it passes; "
               "perfqctl waits for that exit, and up to 10s more");
  cmd.footer(
      "Exit code: 0 the agent exited with nothing left; 1 requests were left in the segment "
      "(printed), the agent was not running, or it did not exit in time.");
  return [&g, o] { return run_drain(g, *o); };
}

}  // namespace perfq::ctl
