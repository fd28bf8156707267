// perfqctl: operate a queue. This version reads the segment directly; the
// admin socket of the agent (SPEC §6) takes over the verbs that change state.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "perfq/core/atomic.hpp"
#include "perfq/core/clock.hpp"
#include "perfq/perfq.hpp"
#include "perfq/shm/liveness.hpp"
#include "perfq/shm/segment.hpp"

namespace {

using perfq::load_relaxed;

int usage() {
  std::fputs(
      "usage: perfqctl --queue NAME [--json] health\n"
      "       perfqctl --queue NAME [--json] submit --user U --type T [--mode M] [--priority P]\n"
      "                [--idempotency-key K] [--payload JSON] [--wait]\n"
      "       perfqctl --queue NAME destroy      (remove the segment; no agent may run)\n",
      stderr);
  return 2;
}

std::string json_escape(std::string_view s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      o += b;
    } else {
      o += c;
    }
  }
  return o;
}

int health(perfq::shm::Segment& seg, bool json) {
  auto& h = seg.header();
  const uint64_t now = perfq::mono_now_ns();
  const uint64_t hb = load_relaxed(h.heartbeat_mono_ns);
  const double hb_age_ms = now > hb ? static_cast<double>(now - hb) / 1e6 : 0.0;
  const bool alive = seg.agent_alive();
  const auto state = load_relaxed(h.agent_state);
  // A clean stop says so; a dead agent that never got to say it is "down".
  const char* state_name = "starting";
  if (state == static_cast<uint32_t>(perfq::shm::AgentState::kStopped))
    state_name = "stopped";
  else if (!alive)
    state_name = "down";
  else if (state == static_cast<uint32_t>(perfq::shm::AgentState::kRunning))
    state_name = "running";
  const auto& k = h.counters;
  struct WorkerRow {
    uint32_t id, pid;
    double hb_ms;
    std::string types;
  };
  std::vector<WorkerRow> workers;
  uint32_t producers = 0;
  for (uint32_t id = 0; id < seg.geometry().max_clients; ++id) {
    auto& c = seg.client(id);
    if (load_relaxed(c.state) != static_cast<uint32_t>(perfq::shm::ClientState::kActive)) continue;
    const uint32_t roles = load_relaxed(c.roles);
    if ((roles & perfq::shm::kRoleProducer) != 0) ++producers;
    if ((roles & perfq::shm::kRoleWorker) == 0) continue;
    WorkerRow w{id, load_relaxed(c.pid), 0, {}};
    const uint64_t whb = load_relaxed(c.heartbeat_mono_ns);
    w.hb_ms = now > whb ? static_cast<double>(now - whb) / 1e6 : 0.0;
    const uint32_t tc = std::min(perfq::load_acquire(c.type_count), perfq::shm::kMaxTypesPerWorker);
    for (uint32_t t = 0; t < tc; ++t) {
      if (!w.types.empty()) w.types += ",";
      w.types.append(c.types[t].text, std::min<size_t>(c.types[t].len, perfq::kTypeMaxBytes));
    }
    workers.push_back(std::move(w));
  }
  uint64_t depth[perfq::kBandCount];
  for (uint8_t b = 0; b < perfq::kBandCount; ++b) {
    depth[b] = load_relaxed(k.band_depth[b]) + seg.band(static_cast<perfq::Band>(b)).size_approx();
  }
  if (json) {
    std::printf("{\"agent\":{\"pid\":%u,\"state\":\"%s\",\"heartbeatAgeMs\":%.1f},",
                load_relaxed(h.agent_pid), state_name, hb_age_ms);
    std::printf("\"bands\":{");
    for (uint8_t b = 0; b < perfq::kBandCount; ++b) {
      std::printf("%s\"%s\":%llu", b ? "," : "",
                  perfq::band_name(static_cast<perfq::Band>(b)).data(),
                  static_cast<unsigned long long>(depth[b]));
    }
    std::printf(
        "},\"processingCount\":%llu,\"waitingForWorker\":%llu,\"producers\":%u,\"workers\":[",
        static_cast<unsigned long long>(load_relaxed(k.inflight)),
        static_cast<unsigned long long>(load_relaxed(k.waiting_for_worker)), producers);
    for (size_t i = 0; i < workers.size(); ++i) {
      std::printf("%s{\"id\":%u,\"pid\":%u,\"heartbeatAgeMs\":%.1f,\"types\":\"%s\"}", i ? "," : "",
                  workers[i].id, workers[i].pid, workers[i].hb_ms,
                  json_escape(workers[i].types).c_str());
    }
    std::printf(
        "],\"counters\":{\"submitted\":%llu,\"completed\":%llu,\"failed\":%llu,"
        "\"retried\":%llu,\"rejectedInvalid\":%llu,\"ringClaimsSkipped\":%llu,"
        "\"slotsReclaimed\":%llu,\"attemptsRedispatched\":%llu}}\n",
        static_cast<unsigned long long>(load_relaxed(k.submitted)),
        static_cast<unsigned long long>(load_relaxed(k.completed)),
        static_cast<unsigned long long>(load_relaxed(k.failed)),
        static_cast<unsigned long long>(load_relaxed(k.retried)),
        static_cast<unsigned long long>(load_relaxed(k.rejected_invalid)),
        static_cast<unsigned long long>(load_relaxed(k.ring_claims_skipped)),
        static_cast<unsigned long long>(load_relaxed(k.slots_reclaimed)),
        static_cast<unsigned long long>(load_relaxed(k.attempts_redispatched)));
  } else {
    std::printf("queue %s  agent pid %u  %s  heartbeat %.1f ms ago\n", seg.queue().c_str(),
                load_relaxed(h.agent_pid), state_name, hb_age_ms);
    std::printf(
        "depth    CRITICAL %llu  HIGH %llu  NORMAL %llu  LOW %llu   in flight %llu  "
        "waiting for a worker %llu\n",
        static_cast<unsigned long long>(depth[0]), static_cast<unsigned long long>(depth[1]),
        static_cast<unsigned long long>(depth[2]), static_cast<unsigned long long>(depth[3]),
        static_cast<unsigned long long>(load_relaxed(k.inflight)),
        static_cast<unsigned long long>(load_relaxed(k.waiting_for_worker)));
    std::printf(
        "totals   submitted %llu  completed %llu  failed %llu  retried %llu  rejected %llu\n",
        static_cast<unsigned long long>(load_relaxed(k.submitted)),
        static_cast<unsigned long long>(load_relaxed(k.completed)),
        static_cast<unsigned long long>(load_relaxed(k.failed)),
        static_cast<unsigned long long>(load_relaxed(k.retried)),
        static_cast<unsigned long long>(load_relaxed(k.rejected_invalid)));
    std::printf("clients  %u producers, %zu workers\n", producers, workers.size());
    for (const auto& w : workers) {
      std::printf("  worker %-3u pid %-8u heartbeat %7.1f ms ago  types %s\n", w.id, w.pid, w.hb_ms,
                  w.types.c_str());
    }
  }
  return alive ? 0 : 1;
}

int submit(const std::string& queue, const std::vector<std::string>& a, bool json) {
  std::string user, type, mode = "fifo", key, payload = "{}";
  int priority = perfq::kPriorityDefault;
  bool wait = false;
  for (size_t i = 0; i < a.size(); ++i) {
    auto val = [&]() -> std::string { return i + 1 < a.size() ? a[++i] : std::string(); };
    if (a[i] == "--user")
      user = val();
    else if (a[i] == "--type")
      type = val();
    else if (a[i] == "--mode")
      mode = val();
    else if (a[i] == "--priority")
      priority = std::atoi(val().c_str());
    else if (a[i] == "--idempotency-key")
      key = val();
    else if (a[i] == "--payload")
      payload = val();
    else if (a[i] == "--wait")
      wait = true;
    else
      return usage();
  }
  auto fail = [&](perfq::Errc code, const std::string& msg) {
    const auto name = perfq::errc_name(code);
    if (json) {
      std::printf("{\"statusCode\":400,\"message\":\"%s\",\"error\":\"%s\"}\n",
                  json_escape(msg).c_str(), name.data());
    } else {
      std::fprintf(stderr, "perfqctl: %s: %s\n", name.data(), msg.c_str());
    }
    return 1;
  };
  perfq::RequestView r;
  r.user_id = user;
  r.type = type;
  if (!perfq::parse_mode(mode, r.mode)) {
    return fail(perfq::Errc::kInvalidMode, "mode must be fifo, priority or batch");
  }
  if (priority < 1 || priority > 20) {
    return fail(perfq::Errc::kInvalidPriority, "priority must be an integer from 1 to 20");
  }
  r.priority = static_cast<uint8_t>(priority);
  r.idempotency_key = key;
  r.payload = std::as_bytes(std::span(payload.data(), payload.size()));
  auto p = perfq::Producer::connect(queue);
  if (!p) return fail(p.error().code, p.error().message);
  auto s = (*p)->submit(r);
  if (!s) return fail(s.error().code, s.error().message);
  char id[17];
  perfq::format_request_id(s->request_id, id);
  std::printf(json ? "{\"requestId\":\"%s\",\"status\":\"pending\",\"mode\":\"%s\",\"type\":\"%s\","
                     "\"priority\":%d}\n"
                   : "requestId %s  status pending  mode %s  type %s  priority %d\n",
              id, perfq::mode_name(r.mode).data(), json_escape(type).c_str(), priority);
  if (wait) {
    const perfq::Outcome& o = s->outcome.get();
    std::printf(json ? "{\"requestId\":\"%s\",\"status\":\"%s\",\"attempts\":%u}\n"
                     : "requestId %s  status %s  attempts %u\n",
                id, perfq::status_name(o.status).data(), o.attempts);
    return o.status == perfq::Status::kCompleted ? 0 : 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string queue;
  bool json = false;
  size_t i = 0;
  for (; i < args.size(); ++i) {
    if (args[i] == "--queue" && i + 1 < args.size())
      queue = args[++i];
    else if (args[i] == "--json")
      json = true;
    else
      break;
  }
  if (queue.empty() || i >= args.size()) return usage();
  const std::string verb = args[i];
  std::vector<std::string> rest(args.begin() + static_cast<long>(i) + 1, args.end());
  if (verb == "destroy") {
    auto seg = perfq::shm::Segment::attach(queue);
    if (seg && (*seg)->agent_alive()) {
      std::fprintf(stderr, "perfqctl: the agent of queue %s is running; stop it first\n",
                   queue.c_str());
      return 1;
    }
    if (!perfq::shm::Segment::remove(queue)) {
      std::fprintf(stderr, "perfqctl: no segment for queue %s\n", queue.c_str());
      return 1;
    }
    return 0;
  }
  if (verb == "submit") return submit(queue, rest, json);
  if (verb != "health") return usage();
  auto seg = perfq::shm::Segment::attach(queue);
  if (!seg) {
    std::fprintf(stderr, "perfqctl: %s\n", seg.error().message.c_str());
    return 1;
  }
  return health(**seg, json);
}
