// `submit`: a request into the queue as a producer on the segment (no agent
// round trip); --wait waits for its outcome, at most --timeout (60 s by
// default: a copy whose agent went away must not wait forever).
#include <chrono>
#include <cstdio>
#include <memory>
#include <span>

#include "control/wire_json.hpp"
#include "flags.hpp"
#include "output.hpp"
#include "perfq/perfq.hpp"
#include "verbs.hpp"

namespace perfq::ctl {

namespace {

void print_submitted(bool json, const Submitted& s, const std::string& type) {
  if (json) {
    print_json(agent::submitted_json(s, type));
    return;
  }
  std::printf("requestId %s  status %s  mode %s  type %s  priority %u  queuePosition %llu%s\n",
              agent::request_id_text(s.request_id).c_str(),
              s.status_known ? status_name(s.status).data() : "unknown", mode_name(s.mode).data(),
              type.c_str(), s.priority, static_cast<unsigned long long>(s.queue_position),
              s.duplicate ? "  (duplicate of an earlier submit)" : "");
}

struct SubmitOptions {
  std::string user;
  std::string type;
  std::string mode = "fifo";
  uint64_t priority = kPriorityDefault;
  std::string idempotency_key;
  std::string payload = "{}";
  bool wait = false;
  uint64_t timeout_ms = 60'000;
};

// Waits for the outcome of `s`, at most o.timeout_ms; prints it.
int wait_outcome(const Globals& g, const SubmitOptions& o, Submitted& s) {
  const std::string id = agent::request_id_text(s.request_id);
  if (!s.outcome.wait_for(std::chrono::milliseconds(o.timeout_ms))) {
    return timed_out(g.json,
                     "no outcome of request " + id + " within " + duration_text(o.timeout_ms) +
                         "; it stays queued (perfqctl status " + id + " --user " + o.user + ")");
  }
  const Outcome& out = s.outcome.get();
  if (g.json) {
    print_json(agent::outcome_json(out));
  } else {
    std::printf("requestId %s  status %s  attempts %u\n", id.c_str(),
                status_name(out.status).data(), out.attempts);
  }
  return out.status == Status::kCompleted ? kExitOk : kExitError;
}

int run_submit(const Globals& g, const SubmitOptions& o) {
  RequestView r;
  r.user_id = o.user;
  r.type = o.type;
  if (!parse_mode(o.mode, r.mode)) {
    return fail(g.json, Errc::kInvalidMode, "mode must be fifo, priority or batch");
  }
  // The range is the queue's rule, answered with its code (SPEC §3).
  if (o.priority < kPriorityMin || o.priority > kPriorityMax) {
    return fail(g.json, Errc::kInvalidPriority, "priority must be an integer from 1 to 20");
  }
  r.priority = static_cast<uint8_t>(o.priority);
  r.idempotency_key = o.idempotency_key;
  r.payload = std::as_bytes(std::span(o.payload.data(), o.payload.size()));
  auto p = Producer::connect(g.queue);
  if (!p) return fail(g.json, p.error());
  auto s = (*p)->submit(r);
  if (!s) return fail(g.json, s.error());
  print_submitted(g.json, *s, o.type);
  if (!o.wait || !s->outcome.valid()) return kExitOk;
  return wait_outcome(g, o, *s);
}

}  // namespace

Run submit(Command& cmd, const Globals& g) {
  auto o = std::make_shared<SubmitOptions>();
  cmd.text("--user", o->user, "the user the request is submitted as", true);
  cmd.text("--type", o->type, "the request's type, which workers register for", true);
  cmd.text("--mode", o->mode, "fifo, priority or batch");
  cmd.number("--priority", o->priority, 0, UINT64_MAX, "N",
             "the request's priority, 1 (lowest) to 20; its band with --mode priority");
  cmd.text("--idempotency-key", o->idempotency_key,
           "a second submit of the user with this key returns the first request");
  cmd.text("--payload", o->payload, "the request's body, JSON");
  cmd.flag("--wait", o->wait, "wait for the outcome and print it; exit 1 unless it completed");
  cmd.timeout(o->timeout_ms, "the outcome (with --wait)");
  cmd.needs("--timeout", "--wait");
  return [&g, o] { return run_submit(g, *o); };
}

}  // namespace perfq::ctl
