// perfqctl: operate a queue. This version reads the segment directly; the
// admin socket of the agent (SPEC §6) takes over the verbs that change state.
#include <signal.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "perfq/agent/admin.hpp"
#include "perfq/agent/auth.hpp"
#include "perfq/agent/event_feed.hpp"
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
      "       perfqctl --queue NAME [--json] status ID --user U\n"
      "       perfqctl --queue NAME [--json] cancel ID [--user U]   (no --user: as an admin)\n"
      "       perfqctl --queue NAME [--json] dlq list [--limit N] [--all]\n"
      "       perfqctl --queue NAME [--json] dlq show ID\n"
      "       perfqctl --queue NAME [--json] dlq review ID --resolution TEXT\n"
      "       perfqctl --queue NAME [--json] dlq replay ID\n"
      "       perfqctl --queue NAME [--json] dlq verify\n"
      "       perfqctl --queue NAME [--json] events [--count N] [--timeout-ms MS]\n"
      "                (follows the event ring until Ctrl-C, N events or MS ms)\n"
      "       perfqctl --queue NAME destroy      (remove the segment; no agent may run)\n"
      "       perfqctl [--json] token create --tokens FILE --user U --role user|admin\n"
      "                (prints the new token once; FILE keeps only its hash; no --queue)\n",
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
  const auto& jv = h.journal;
  auto state_text = [](uint32_t st) {
    return st == static_cast<uint32_t>(perfq::shm::JournalHealthState::kHealthy)   ? "healthy"
           : st == static_cast<uint32_t>(perfq::shm::JournalHealthState::kFailing) ? "failing"
                                                                                   : "off";
  };
  const char* journal_state = state_text(load_relaxed(jv.state));
  const char* audit_state = state_text(load_relaxed(jv.audit_state));
  const int jerr = load_relaxed(jv.last_errno);
  const std::string journal_error = jerr != 0 ? std::strerror(jerr) : "";
  const int aerr = load_relaxed(jv.audit_errno);
  const std::string audit_error = aerr != 0 ? std::strerror(aerr) : "";
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
        "],\"dlqSize\":%llu,\"journal\":{\"state\":\"%s\",\"lastError\":\"%s\","
        "\"awaitingDurable\":%llu,\"failedFlushes\":%llu,\"entries\":%llu,\"segments\":%llu},"
        "\"auditLog\":{\"state\":\"%s\",\"lastError\":\"%s\"}",
        static_cast<unsigned long long>(load_relaxed(jv.unreviewed)), journal_state,
        json_escape(journal_error).c_str(),
        static_cast<unsigned long long>(load_relaxed(jv.awaiting)),
        static_cast<unsigned long long>(load_relaxed(jv.failed_flushes)),
        static_cast<unsigned long long>(load_relaxed(jv.entries)),
        static_cast<unsigned long long>(load_relaxed(jv.segments)), audit_state,
        json_escape(audit_error).c_str());
    std::printf(
        ",\"counters\":{\"submitted\":%llu,\"completed\":%llu,\"failed\":%llu,"
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
    std::printf(
        "journal  %s%s%s  dlq %llu unreviewed of %llu  awaiting durable %llu  "
        "failed flushes %llu  segments %llu  audit log %s%s%s\n",
        journal_state, jerr != 0 ? ": " : "", journal_error.c_str(),
        static_cast<unsigned long long>(load_relaxed(jv.unreviewed)),
        static_cast<unsigned long long>(load_relaxed(jv.entries)),
        static_cast<unsigned long long>(load_relaxed(jv.awaiting)),
        static_cast<unsigned long long>(load_relaxed(jv.failed_flushes)),
        static_cast<unsigned long long>(load_relaxed(jv.segments)), audit_state,
        aerr != 0 ? ": " : "", audit_error.c_str());
    if (load_relaxed(k.waiting_for_worker) != 0) {
      std::printf("WORKER_UNAVAILABLE: %llu requests wait for a worker of their type\n",
                  static_cast<unsigned long long>(load_relaxed(k.waiting_for_worker)));
    }
    std::printf("clients  %u producers, %zu workers\n", producers, workers.size());
    for (const auto& w : workers) {
      std::printf("  worker %-3u pid %-8u heartbeat %7.1f ms ago  types %s\n", w.id, w.pid, w.hb_ms,
                  w.types.c_str());
    }
  }
  return alive ? 0 : 1;
}

using perfq::agent::iso_time;

// Prints an error as SPEC §6 shapes it and returns the exit code (1).
int fail(bool json, perfq::Errc code, const std::string& msg, uint64_t retry_after_ms = 0) {
  const auto name = perfq::errc_name(code);
  if (json) {
    std::printf("{\"statusCode\":%d,\"message\":\"%s\",\"error\":\"%s\"", perfq::http_status(code),
                json_escape(msg).c_str(), name.data());
    if (retry_after_ms != 0) {
      std::printf(",\"retryAfterMs\":%llu", static_cast<unsigned long long>(retry_after_ms));
    }
    std::printf("}\n");
  } else {
    std::fprintf(stderr, "perfqctl: %s: %s", name.data(), msg.c_str());
    if (retry_after_ms != 0) {
      std::fprintf(stderr, " (retry after %llu ms)",
                   static_cast<unsigned long long>(retry_after_ms));
    }
    std::fprintf(stderr, "\n");
  }
  return 1;
}

int fail(bool json, const perfq::Error& e) {
  return fail(json, e.code, e.message, e.retry_after_ms);
}

// Flags of the verbs below: "--name value" pairs and bare switches.
struct Flags {
  std::vector<std::string> positional;
  std::vector<std::pair<std::string, std::string>> named;
  std::vector<std::string> switches;
  bool bad = false;

  [[nodiscard]] const std::string* get(std::string_view name) const {
    for (const auto& [k, v] : named) {
      if (k == name) return &v;
    }
    return nullptr;
  }
  [[nodiscard]] bool has(std::string_view name) const {
    return std::find(switches.begin(), switches.end(), name) != switches.end();
  }
};

Flags parse_flags(const std::vector<std::string>& a, std::initializer_list<std::string_view> valued,
                  std::initializer_list<std::string_view> bare) {
  Flags f;
  for (size_t i = 0; i < a.size(); ++i) {
    const std::string& x = a[i];
    if (x.rfind("--", 0) != 0) {
      f.positional.push_back(x);
    } else if (std::find(valued.begin(), valued.end(), x) != valued.end() && i + 1 < a.size()) {
      f.named.emplace_back(x, a[++i]);
    } else if (std::find(bare.begin(), bare.end(), x) != bare.end()) {
      f.switches.push_back(x);
    } else {
      f.bad = true;
    }
  }
  return f;
}

int submit(const std::string& queue, const std::vector<std::string>& a, bool json) {
  const Flags f =
      parse_flags(a, {"--user", "--type", "--mode", "--priority", "--idempotency-key", "--payload"},
                  {"--wait"});
  if (f.bad || !f.positional.empty()) return usage();
  auto opt = [&](std::string_view name, std::string dflt) {
    const std::string* v = f.get(name);
    return v != nullptr ? *v : dflt;
  };
  const std::string user = opt("--user", "");
  const std::string type = opt("--type", "");
  const std::string mode = opt("--mode", "fifo");
  const std::string key = opt("--idempotency-key", "");
  const std::string payload = opt("--payload", "{}");
  const std::string prio_text = opt("--priority", "5");
  perfq::RequestView r;
  r.user_id = user;
  r.type = type;
  if (!perfq::parse_mode(mode, r.mode)) {
    return fail(json, perfq::Errc::kInvalidMode, "mode must be fifo, priority or batch");
  }
  int priority = 0;
  const auto pr = std::from_chars(prio_text.data(), prio_text.data() + prio_text.size(), priority);
  if (pr.ec != std::errc{} || pr.ptr != prio_text.data() + prio_text.size() || priority < 1 ||
      priority > 20) {
    return fail(json, perfq::Errc::kInvalidPriority, "priority must be an integer from 1 to 20");
  }
  r.priority = static_cast<uint8_t>(priority);
  r.idempotency_key = key;
  r.payload = std::as_bytes(std::span(payload.data(), payload.size()));
  auto p = perfq::Producer::connect(queue);
  if (!p) return fail(json, p.error());
  auto s = (*p)->submit(r);
  if (!s) return fail(json, s.error());
  char id[17];
  perfq::format_request_id(s->request_id, id);
  const std::string created = iso_time(s->created_at_unix_ns);
  const char* status = s->status_known ? perfq::status_name(s->status).data() : "unknown";
  if (json) {
    std::printf(
        "{\"requestId\":\"%s\",\"status\":\"%s\",\"mode\":\"%s\",\"type\":\"%s\",\"priority\":%u,"
        "\"createdAt\":\"%s\",\"queuePosition\":%llu%s}\n",
        id, status, perfq::mode_name(s->mode).data(), json_escape(type).c_str(), s->priority,
        created.c_str(), static_cast<unsigned long long>(s->queue_position),
        s->duplicate ? ",\"duplicate\":true" : "");
  } else {
    std::printf("requestId %s  status %s  mode %s  type %s  priority %u  queuePosition %llu%s\n",
                id, status, perfq::mode_name(s->mode).data(), type.c_str(), s->priority,
                static_cast<unsigned long long>(s->queue_position),
                s->duplicate ? "  (duplicate of an earlier submit)" : "");
  }
  if (f.has("--wait") && s->outcome.valid()) {
    const perfq::Outcome& o = s->outcome.get();
    std::printf(json ? "{\"requestId\":\"%s\",\"status\":\"%s\",\"attempts\":%u}\n"
                     : "requestId %s  status %s  attempts %u\n",
                id, perfq::status_name(o.status).data(), o.attempts);
    return o.status == perfq::Status::kCompleted ? 0 : 1;
  }
  return 0;
}

// `status ID --user U` and `cancel ID --user U`: the owner's view.
struct Target {
  std::string id_text;
  uint64_t id = 0;
  std::string user;
};

// Parses `ID --user U` and connects. Returns 0, or the exit code to leave with.
int open_target(const std::string& queue, const std::vector<std::string>& a, bool json, Target& t,
                std::unique_ptr<perfq::Producer>& p) {
  const Flags f = parse_flags(a, {"--user"}, {});
  if (f.bad || f.positional.size() != 1 || f.get("--user") == nullptr) return usage();
  t.id_text = f.positional[0];
  t.user = *f.get("--user");
  if (!perfq::parse_request_id(t.id_text, t.id)) {
    return fail(json, perfq::Errc::kInvalidRequest, "a request id is 16 hex digits");
  }
  auto connected = perfq::Producer::connect(queue);
  if (!connected) return fail(json, connected.error());
  p = std::move(*connected);
  return 0;
}

int status(const std::string& queue, const std::vector<std::string>& a, bool json) {
  Target t;
  std::unique_ptr<perfq::Producer> p;
  if (const int rc = open_target(queue, a, json, t, p); rc != 0) return rc;
  auto st = p->status(t.id, perfq::shm::Caller{t.user, false});
  if (!st) return fail(json, st.error());
  char id[17];
  perfq::format_request_id(st->request_id, id);
  const bool final = perfq::is_final(st->status);
  const std::string created = iso_time(st->created_at_unix_ns);
  const std::string finished = final ? iso_time(st->finished_at_unix_ns) : std::string();
  const bool show_error = st->error != perfq::Errc::kOk;
  if (json) {
    std::printf(
        "{\"requestId\":\"%s\",\"status\":\"%s\",\"mode\":\"%s\",\"type\":\"%s\",\"priority\":%u,"
        "\"band\":\"%s\",\"userId\":\"%s\",\"attempts\":%u,\"createdAt\":\"%s\"",
        id, perfq::status_name(st->status).data(), perfq::mode_name(st->mode).data(),
        json_escape(st->type).c_str(), st->priority, perfq::band_name(st->band).data(),
        json_escape(st->user_id).c_str(), st->attempts, created.c_str());
    if (final) std::printf(",\"finishedAt\":\"%s\"", finished.c_str());
    if (show_error) std::printf(",\"error\":\"%s\"", perfq::errc_name(st->error).data());
    std::printf("}\n");
  } else {
    std::printf("requestId %s  status %s  mode %s  type %s  priority %u (%s)  attempts %u\n", id,
                perfq::status_name(st->status).data(), perfq::mode_name(st->mode).data(),
                st->type.c_str(), st->priority, perfq::band_name(st->band).data(), st->attempts);
    std::printf("created %s%s%s\n", created.c_str(), final ? "  finished " : "", finished.c_str());
    if (show_error) std::printf("error %s\n", perfq::errc_name(st->error).data());
  }
  return 0;
}

// One request to the agent's admin socket (its path is in the segment).
// Prints the SPEC error body and returns 1 on error; 0 with `out` set.
int admin(const std::string& queue, const nlohmann::json& req, bool json, nlohmann::json& out) {
  auto seg = perfq::shm::Segment::attach(queue);
  if (!seg) return fail(json, seg.error());
  const auto& h = (*seg)->header();
  const std::string path(h.socket_path, strnlen(h.socket_path, sizeof h.socket_path));
  if (!(*seg)->agent_alive()) {
    if (req.value("op", std::string()) == "dlq.verify") {
      // Nothing writes the journal while the agent is down: read it here.
      const std::string data_dir = std::filesystem::path(path).parent_path().string();
      auto rep = perfq::agent::verify_journal(data_dir);
      if (!rep) return fail(json, rep.error());
      out = perfq::agent::report_json(*rep);
      return 0;
    }
    return fail(json, perfq::Errc::kAgentUnavailable,
                "the agent of queue " + queue + " is not running");
  }
  auto r = perfq::agent::admin_call(path, req);
  if (!r) return fail(json, r.error());
  if (r->contains("statusCode")) {
    const std::string code = r->value("error", std::string("INTERNAL"));
    if (json) {
      std::printf("%s\n", r->dump().c_str());
    } else {
      std::fprintf(stderr, "perfqctl: %s: %s\n", code.c_str(),
                   r->value("message", std::string()).c_str());
    }
    return 1;
  }
  out = std::move(*r);
  return 0;
}

std::string text(const nlohmann::json& v) {
  return v.is_string() ? v.get<std::string>() : v.is_null() ? std::string("-") : v.dump();
}

int dlq(const std::string& queue, const std::vector<std::string>& a, bool json) {
  if (a.empty()) return usage();
  const std::string verb = a[0];
  const std::vector<std::string> rest(a.begin() + 1, a.end());
  nlohmann::json req;
  if (verb == "list") {
    const Flags f = parse_flags(rest, {"--limit"}, {"--all"});
    if (f.bad || !f.positional.empty()) return usage();
    req = {{"op", "dlq.list"}, {"all", f.has("--all")}};
    if (const std::string* l = f.get("--limit")) {
      uint64_t n = 0;
      const auto r = std::from_chars(l->data(), l->data() + l->size(), n);
      if (r.ec != std::errc{} || r.ptr != l->data() + l->size() || n < 1 || n > 100) {
        return fail(json, perfq::Errc::kInvalidRequest, "limit must be an integer from 1 to 100");
      }
      req["limit"] = n;
    }
  } else if (verb == "show" || verb == "replay") {
    const Flags f = parse_flags(rest, {}, {});
    if (f.bad || f.positional.size() != 1) return usage();
    req = {{"op", "dlq." + verb}, {"id", f.positional[0]}};
  } else if (verb == "review") {
    const Flags f = parse_flags(rest, {"--resolution"}, {});
    if (f.bad || f.positional.size() != 1 || f.get("--resolution") == nullptr) return usage();
    req = {{"op", "dlq.review"}, {"id", f.positional[0]}, {"resolution", *f.get("--resolution")}};
  } else if (verb == "verify") {
    if (!rest.empty()) return usage();
    req = {{"op", "dlq.verify"}};
  } else {
    return usage();
  }
  nlohmann::json out;
  if (const int rc = admin(queue, req, json, out); rc != 0) return rc;
  if (json) {
    std::printf("%s\n", out.dump().c_str());
  } else if (verb == "list") {
    std::printf("%-8s %-16s %-12s %-16s %-8s %-18s %-8s %-24s %s\n", "DLQ ID", "REQUEST", "USER",
                "TYPE", "STATUS", "REASON", "ATTEMPTS", "LAST ATTEMPT", "REVIEWED");
    for (const auto& e : out["entries"]) {
      std::printf("%-8s %-16s %-12s %-16s %-8s %-18s %-8s %-24s %s\n", text(e["dlqId"]).c_str(),
                  text(e["originalRequestId"]).c_str(), text(e["userId"]).c_str(),
                  text(e["type"]).c_str(), text(e["status"]).c_str(),
                  text(e["failureReason"]).c_str(), text(e["attemptCount"]).c_str(),
                  text(e["lastAttemptAt"]).c_str(), e["reviewed"].get<bool>() ? "yes" : "no");
    }
    std::printf("%s unreviewed\n", text(out["unreviewed"]).c_str());
  } else if (verb == "show") {
    for (const auto& [k, v] : out.items()) {
      if (k == "errorHistory") continue;
      std::printf("%-18s %s\n", k.c_str(), text(v).c_str());
    }
    std::printf("errorHistory\n");
    for (const auto& h : out["errorHistory"]) {
      std::printf("  %s  %-18s %s\n", text(h["at"]).c_str(), text(h["code"]).c_str(),
                  text(h["message"]).c_str());
    }
  } else if (verb == "review") {
    std::printf("reviewed DLQ entry %s\n", text(out["dlqId"]).c_str());
  } else if (verb == "replay") {
    std::printf("replayed DLQ entry %s as request %s\n", text(out["dlqId"]).c_str(),
                text(out["replayedAs"]).c_str());
  } else {
    std::printf("%s segment(s), %s record(s): %s entries, %s reviews, %s replays, %s orphan(s)\n",
                text(out["segments"]).c_str(), text(out["records"]).c_str(),
                text(out["entries"]).c_str(), text(out["reviews"]).c_str(),
                text(out["replays"]).c_str(), text(out["orphans"]).c_str());
    for (const auto& p : out["problems"]) {
      std::printf("problem: %s at offset %s (%s bytes): %s\n", text(p["file"]).c_str(),
                  text(p["offset"]).c_str(), text(p["length"]).c_str(), text(p["what"]).c_str());
    }
    std::printf("%s\n", out["ok"].get<bool>() ? "ok" : "PROBLEMS FOUND");
  }
  // verify exits non-zero when it found a problem.
  return verb == "verify" && !out["ok"].get<bool>() ? 1 : 0;
}

int cancel(const std::string& queue, const std::vector<std::string>& a, bool json) {
  if (const Flags f = parse_flags(a, {"--user"}, {}); !f.bad && f.get("--user") == nullptr) {
    // No --user: an admin cancel through the agent, which audits it.
    if (f.positional.size() != 1) return usage();
    nlohmann::json out;
    if (const int rc = admin(queue, {{"op", "cancel"}, {"id", f.positional[0]}}, json, out);
        rc != 0)
      return rc;
    if (!json) std::printf("cancelled\n");
    return 0;
  }
  Target t;
  std::unique_ptr<perfq::Producer> p;
  if (const int rc = open_target(queue, a, json, t, p); rc != 0) return rc;
  if (auto r = p->cancel(t.id, perfq::shm::Caller{t.user, false}); !r) {
    return fail(json, r.error());
  }
  if (!json) std::printf("cancelled\n");
  return 0;
}

// `events`: follows the event ring straight from the segment, like any
// subscriber, so it needs no agent to attach (it prints what a running agent
// writes). Stops on SIGINT/SIGTERM, after --count events, or after
// --timeout-ms; running out of time before --count events is an error.
std::atomic<bool> g_events_stop{false};

bool parse_u64(const std::string& text, uint64_t& out) {
  const auto r = std::from_chars(text.data(), text.data() + text.size(), out);
  return r.ec == std::errc{} && r.ptr == text.data() + text.size();
}

int events(const std::string& queue, const std::vector<std::string>& a, bool json) {
  const Flags f = parse_flags(a, {"--count", "--timeout-ms"}, {});
  if (f.bad || !f.positional.empty()) return usage();
  uint64_t count = 0;  // 0: no limit
  uint64_t timeout_ms = 0;
  if (const std::string* c = f.get("--count");
      c != nullptr && (!parse_u64(*c, count) || count == 0)) {
    return fail(json, perfq::Errc::kInvalidRequest, "count must be a positive integer");
  }
  if (const std::string* t = f.get("--timeout-ms");
      t != nullptr && (!parse_u64(*t, timeout_ms) || timeout_ms == 0)) {
    return fail(json, perfq::Errc::kInvalidRequest, "timeout-ms must be a positive integer");
  }
  auto reader = perfq::EventReader::connect(queue);
  if (!reader) return fail(json, reader.error());
  // Without SA_RESTART: a signal cuts the poll interval's sleep short.
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_events_stop.store(true, std::memory_order_relaxed); };
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  // Readers see the events written after they start; the line tells a
  // script (or a test) that it may now make some.
  std::fprintf(stderr, "perfqctl: following the events of queue %s from position %llu\n",
               queue.c_str(), static_cast<unsigned long long>((*reader)->position()));
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // a line as it comes, also into a pipe
  perfq::agent::EventFeed feed(std::move(*reader), json ? perfq::agent::FeedFormat::kJsonLines
                                                        : perfq::agent::FeedFormat::kText);
  const uint64_t deadline =
      timeout_ms == 0 ? UINT64_MAX : perfq::mono_now_ns() + timeout_ms * 1'000'000;
  uint64_t printed = 0;
  std::string out;
  // Bounded by the signal, the count or the deadline; each pass drains what
  // the ring holds (up to its capacity) and then sleeps 50 ms.
  while (!g_events_stop.load(std::memory_order_relaxed)) {
    out.clear();
    const uint64_t left = count == 0 ? perfq::shm::kEventCapacity : count - printed;
    printed +=
        feed.next(out, static_cast<size_t>(std::min<uint64_t>(left, perfq::shm::kEventCapacity)));
    std::fwrite(out.data(), 1, out.size(), stdout);
    if (count != 0 && printed >= count) return 0;
    if (perfq::mono_now_ns() >= deadline) {
      if (count == 0) return 0;
      std::fflush(stdout);
      std::fprintf(stderr, "perfqctl: %llu of %llu events within %llu ms\n",
                   static_cast<unsigned long long>(printed), static_cast<unsigned long long>(count),
                   static_cast<unsigned long long>(timeout_ms));
      return 1;
    }
    const timespec pause{0, 50'000'000};
    nanosleep(&pause, nullptr);
  }
  return 0;
}

// `token create`: works on the tokens file alone (no queue, no agent). The
// token goes to stdout and nowhere else: FILE gets its hash, and the note
// for a human goes to stderr so that `$(perfqctl token create ...)` is the
// token.
int token(const std::vector<std::string>& a, bool json) {
  if (a.empty() || a[0] != "create") return usage();
  const std::vector<std::string> rest(a.begin() + 1, a.end());
  const Flags f = parse_flags(rest, {"--tokens", "--user", "--role"}, {"--json"});
  if (f.bad || !f.positional.empty() || f.get("--tokens") == nullptr ||
      f.get("--user") == nullptr || f.get("--role") == nullptr) {
    return usage();
  }
  json = json || f.has("--json");
  const std::string& path = *f.get("--tokens");
  const std::string& user = *f.get("--user");
  perfq::agent::Role role{};
  if (!perfq::agent::parse_role(*f.get("--role"), role)) {
    return fail(json, perfq::Errc::kInvalidRequest, "role must be user or admin");
  }
  auto t = perfq::agent::create_token(path, user, role);
  if (!t) return fail(json, t.error());
  const std::string_view role_text = perfq::agent::role_name(role);
  if (json) {
    std::printf("{\"token\":\"%s\",\"userId\":\"%s\",\"role\":\"%s\"}\n", json_escape(*t).c_str(),
                json_escape(user).c_str(), role_text.data());
  } else {
    std::printf("%s\n", t->c_str());
    std::fflush(stdout);  // the token line first, also when both streams share a pipe
    std::fprintf(stderr, "perfqctl: %s token for %s; %s holds its hash. It is not shown again.\n",
                 role_text.data(), user.c_str(), path.c_str());
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
  if (i >= args.size()) return usage();
  const std::string verb = args[i];
  std::vector<std::string> rest(args.begin() + static_cast<long>(i) + 1, args.end());
  // The only verb without a queue: it writes the agent's tokens file.
  if (verb == "token") return token(rest, json);
  if (queue.empty()) return usage();
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
  if (verb == "status") return status(queue, rest, json);
  if (verb == "cancel") return cancel(queue, rest, json);
  if (verb == "dlq") return dlq(queue, rest, json);
  if (verb == "events") return events(queue, rest, json);
  if (verb != "health") return usage();
  auto seg = perfq::shm::Segment::attach(queue);
  if (!seg) {
    std::fprintf(stderr, "perfqctl: %s\n", seg.error().message.c_str());
    return 1;
  }
  return health(**seg, json);
}
