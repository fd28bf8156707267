// perfqctl: operate a queue (SPEC §6). Health, metrics, the DLQ and admin
// cancels go through the agent's admin socket; submit, status and a user's
// cancel act as a producer on the segment; events, top and (with the agent
// down) health read the segment directly.
#include <signal.h>
#include <time.h>
#include <unistd.h>

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

#include "control/admin.hpp"
#include "http/auth.hpp"
#include "control/event_feed.hpp"
#include "control/observe.hpp"
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
      "       perfqctl --queue NAME [--json] metrics [--period MINUTES]   (1..1440, default 60)\n"
      "       perfqctl --queue NAME [--json] top [--interval-ms N] [--iterations N]\n"
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

std::string text(const nlohmann::json& v) {
  return v.is_string() ? v.get<std::string>() : v.is_null() ? std::string("-") : v.dump();
}

// Band names in the order they are served (JSON objects sort their keys).
std::vector<std::string> bands_in_order() {
  std::vector<std::string> out;
  for (uint8_t b = 0; b < perfq::kBandCount; ++b) {
    out.emplace_back(perfq::band_name(static_cast<perfq::Band>(b)));
  }
  return out;
}

// The strings of a JSON array, comma-separated.
std::string joined(const nlohmann::json& array) {
  std::string out;
  for (const auto& v : array) {
    if (!out.empty()) out += ',';
    out += text(v);
  }
  return out;
}

// One request to the agent's admin socket (its path is in the segment).
// Prints the SPEC error body and returns 1 on error; 0 with `out` set.
int admin(perfq::shm::Segment& seg, const nlohmann::json& req, bool json, nlohmann::json& out) {
  const auto& h = seg.header();
  const std::string path(h.socket_path, strnlen(h.socket_path, sizeof h.socket_path));
  if (!seg.agent_alive()) {
    if (req.contains("op") && req["op"] == "dlq.verify") {
      // Nothing writes the journal while the agent is down: read it here.
      const std::string data_dir = std::filesystem::path(path).parent_path().string();
      auto rep = perfq::agent::verify_journal(data_dir);
      if (!rep) return fail(json, rep.error());
      out = perfq::agent::report_json(*rep);
      return 0;
    }
    return fail(json, perfq::Errc::kAgentUnavailable,
                "the agent of queue " + seg.queue() + " is not running");
  }
  auto r = perfq::agent::admin_call(path, req);
  if (!r) return fail(json, r.error());
  if (r->contains("statusCode")) {
    const std::string code = r->contains("error") ? text((*r)["error"]) : "INTERNAL";
    if (json) {
      std::printf("%s\n", r->dump().c_str());
    } else {
      std::fprintf(stderr, "perfqctl: %s: %s\n", code.c_str(),
                   r->contains("message") ? text((*r)["message"]).c_str() : "");
    }
    return 1;
  }
  out = std::move(*r);
  return 0;
}

int admin(const std::string& queue, const nlohmann::json& req, bool json, nlohmann::json& out) {
  auto seg = perfq::shm::Segment::attach(queue);
  if (!seg) return fail(json, seg.error());
  return admin(**seg, req, json, out);
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

double num(const nlohmann::json& v) {
  return v.is_number() ? v.get<double>() : 0.0;
}

// SPEC §5 health, from the agent's socket; from the segment when the agent
// is not running (then `unhealthy`, with the reason). Exit code 1 then.
int health(const std::string& queue, bool json) {
  auto seg = perfq::shm::Segment::attach(queue);
  if (!seg) return fail(json, seg.error());
  nlohmann::json h;
  const bool alive = (*seg)->agent_alive();
  if (alive) {
    if (admin(**seg, {{"op", "health"}}, json, h) != 0) return 1;
  } else {
    h = perfq::agent::health_json(**seg, perfq::agent::HealthLimits{}, perfq::unix_now_ns());
  }
  if (json) {
    std::printf("%s\n", h.dump().c_str());
    return alive ? 0 : 1;
  }
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
  return alive ? 0 : 1;
}

void metrics_row(const std::string& name, const nlohmann::json& m) {
  std::printf("%-24s %9s %9s %7s %7s %7s %7s %8.1f %9.3f %9.3f %9.3f %9.3f\n", name.c_str(),
              text(m["totalSubmitted"]).c_str(), text(m["totalCompleted"]).c_str(),
              text(m["totalFailed"]).c_str(), text(m["totalTimeout"]).c_str(),
              text(m["totalCancelled"]).c_str(), text(m["totalRetried"]).c_str(),
              num(m["successRate"]), num(m["averageWaitTime"]), num(m["processingTime"]["p50"]),
              num(m["processingTime"]["p99"]), num(m["processingTime"]["max"]));
}

// SPEC §5 metrics for the last N minutes, from the agent's socket.
int metrics(const std::string& queue, const std::vector<std::string>& a, bool json) {
  const Flags f = parse_flags(a, {"--period"}, {});
  if (f.bad || !f.positional.empty()) return usage();
  uint32_t period = 60;
  if (const std::string* p = f.get("--period")) {
    auto v = perfq::agent::parse_period(*p);
    if (!v) return fail(json, v.error());
    period = *v;
  }
  nlohmann::json m;
  if (admin(queue, {{"op", "metrics"}, {"period", period}}, json, m) != 0) return 1;
  if (json) {
    std::printf("%s\n", m.dump().c_str());
    return 0;
  }
  std::printf(
      "last %s  throughput %.3f/s  success %.1f%%  wait p50 %.3f p99 %.3f ms  "
      "processing p50 %.3f p99 %.3f p999 %.3f max %.3f ms\n",
      text(m["period"]).c_str(), num(m["throughput"]), num(m["successRate"]),
      num(m["waitTime"]["p50"]), num(m["waitTime"]["p99"]), num(m["processingTime"]["p50"]),
      num(m["processingTime"]["p99"]), num(m["processingTime"]["p999"]),
      num(m["processingTime"]["max"]));
  std::printf("%-24s %9s %9s %7s %7s %7s %7s %8s %9s %9s %9s %9s\n", "", "submitted", "completed",
              "failed", "timeout", "cancel", "retried", "success%", "wait ms", "proc p50",
              "proc p99", "proc max");
  metrics_row("total", m);
  for (const std::string& band : bands_in_order()) metrics_row("band " + band, m["byBand"][band]);
  for (const auto& [type, t] : m["byType"].items()) metrics_row("type " + type, t);
  return 0;
}

// A live view, redrawn in place: per-band depth, throughput since the last
// frame, latency percentiles of the current minute, workers. Reads the
// segment directly (no socket round trip, nothing audited), so it also
// shows a queue whose agent is down.
int top(const std::string& queue, const std::vector<std::string>& a, bool json) {
  const Flags f = parse_flags(a, {"--interval-ms", "--iterations"}, {});
  if (f.bad || !f.positional.empty()) return usage();
  uint64_t interval_ms = 1000;
  uint64_t iterations = 0;  // 0: until interrupted
  auto number_flag = [&](const char* name, uint64_t& out, uint64_t lo) {
    const std::string* v = f.get(name);
    if (v == nullptr) return true;
    const auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
    return ec == std::errc() && p == v->data() + v->size() && out >= lo;
  };
  if (!number_flag("--interval-ms", interval_ms, 10) ||
      !number_flag("--iterations", iterations, 1)) {
    return fail(json, perfq::Errc::kInvalidRequest,
                "--interval-ms must be at least 10 and --iterations at least 1");
  }
  auto seg = perfq::shm::Segment::attach(queue);
  if (!seg) return fail(json, seg.error());
  perfq::shm::Segment& s = **seg;
  const bool tty = !json && ::isatty(STDOUT_FILENO) != 0;
  uint64_t last_completed = 0;
  uint64_t last_ns = 0;
  for (uint64_t frame = 0; iterations == 0 || frame < iterations; ++frame) {
    const uint64_t now = perfq::unix_now_ns();
    const auto h = perfq::agent::health_json(s, perfq::agent::HealthLimits{}, now);
    const auto m = perfq::agent::metrics_json(s, 1, now);
    const uint64_t completed = h["counters"]["completed"].get<uint64_t>();
    const double rate = last_ns == 0 ? 0.0
                                     : static_cast<double>(completed - last_completed) * 1e9 /
                                           static_cast<double>(now - last_ns);
    last_completed = completed;
    last_ns = now;
    if (json) {
      std::printf("{\"health\":%s,\"lastMinute\":%s,\"completedPerSecond\":%.1f}\n",
                  h.dump().c_str(), m.dump().c_str(), rate);
    } else {
      if (tty) std::printf("\x1b[H\x1b[2J");  // home, clear: redrawn in place
      std::printf("perfq top  queue %s  %s  agent %s  up %.0f s\n", queue.c_str(),
                  text(h["status"]).c_str(), text(h["agent"]["state"]).c_str(),
                  num(h["agent"]["uptimeMs"]) / 1000.0);
      std::printf("%-9s %8s   %s\n", "band", "depth",
                  "last minute: wait p50/p99 ms  proc p50/p99 ms");
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
    std::fflush(stdout);
    if (iterations != 0 && frame + 1 >= iterations) break;
    // The refresh period of the view (not a wait for an event).
    ::usleep(static_cast<useconds_t>(interval_ms * 1000));
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
  if (verb == "metrics") return metrics(queue, rest, json);
  if (verb == "top") return top(queue, rest, json);
  if (verb == "events") return events(queue, rest, json);
  if (verb != "health") return usage();
  return health(queue, json);
}
