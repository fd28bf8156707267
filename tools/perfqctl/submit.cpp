// `submit`: a request into the queue as a producer on the segment (no agent
// round trip); --wait waits for its outcome.
#include <cstdio>
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

}  // namespace

int submit(const Invocation& in) {
  const Flags f = parse_flags(
      in.args, {"--user", "--type", "--mode", "--priority", "--idempotency-key", "--payload"},
      {"--wait"});
  if (f.bad || !f.positional.empty()) return usage();
  const std::string user = f.value_or("--user", "");
  const std::string type = f.value_or("--type", "");
  const std::string key = f.value_or("--idempotency-key", "");
  const std::string payload = f.value_or("--payload", "{}");
  RequestView r;
  r.user_id = user;
  r.type = type;
  if (!parse_mode(f.value_or("--mode", "fifo"), r.mode)) {
    return fail(in.json, Errc::kInvalidMode, "mode must be fifo, priority or batch");
  }
  uint64_t priority = 0;
  if (!parse_u64(f.value_or("--priority", "5"), priority) || priority < kPriorityMin ||
      priority > kPriorityMax) {
    return fail(in.json, Errc::kInvalidPriority, "priority must be an integer from 1 to 20");
  }
  r.priority = static_cast<uint8_t>(priority);
  r.idempotency_key = key;
  r.payload = std::as_bytes(std::span(payload.data(), payload.size()));
  auto p = Producer::connect(in.queue);
  if (!p) return fail(in.json, p.error());
  auto s = (*p)->submit(r);
  if (!s) return fail(in.json, s.error());
  print_submitted(in.json, *s, type);
  if (!f.has("--wait") || !s->outcome.valid()) return 0;
  const Outcome& o = s->outcome.get();
  if (in.json) {
    print_json(agent::outcome_json(o));
  } else {
    std::printf("requestId %s  status %s  attempts %u\n",
                agent::request_id_text(o.request_id).c_str(), status_name(o.status).data(),
                o.attempts);
  }
  return o.status == Status::kCompleted ? 0 : 1;
}

}  // namespace perfq::ctl
