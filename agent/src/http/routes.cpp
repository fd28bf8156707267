#include "http/routes.hpp"

#include <cctype>
#include <charconv>
#include <nlohmann/json.hpp>
#include <string_view>

#include "control/event_feed.hpp"
#include "control/observe.hpp"
#include "perfq/client/events.hpp"
#include "perfq/client/producer.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/core/clock.hpp"
#include "perfq/shm/futex.hpp"
#include "perfq/shm/layout.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq::agent {

using nlohmann::json;

namespace {

constexpr std::string_view kBase = "/performance-queue/";

HttpResponse json_response(int status, const json& body) {
  return {status, body.dump(-1, ' ', false, json::error_handler_t::replace)};
}

HttpResponse error_response(Errc code, const std::string& message, uint64_t retry_after_ms = 0) {
  json body = error_body(code, message);
  HttpResponse r = json_response(http_status(code), body);
  if (retry_after_ms != 0) {
    r.headers.emplace_back("Retry-After", std::to_string((retry_after_ms + 999) / 1000));
    body["retryAfterMs"] = retry_after_ms;
    r.body = body.dump();
  }
  return r;
}

HttpResponse error_response(const Error& e) {
  return error_response(e.code, e.message, e.retry_after_ms);
}

// The admin verbs answer SPEC's error body or a result; map it to HTTP.
HttpResponse from_admin(const json& resp, int ok_status) {
  if (resp.contains("statusCode")) {
    return json_response(resp.value("statusCode", 500), resp);
  }
  if (ok_status == 204) return {204, {}};
  return json_response(ok_status, resp);
}

// Splits "/path?query" and returns the value of `key` in the query, if any.
std::string_view path_of(std::string_view target) {
  return target.substr(0, target.find('?'));
}

bool query_value(std::string_view target, std::string_view key, std::string_view& out) {
  const auto q = target.find('?');
  if (q == std::string_view::npos) return false;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    const auto amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    const auto eq = pair.find('=');
    if (pair.substr(0, eq) == key) {
      out = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
      return true;
    }
    if (amp == std::string_view::npos) break;
    rest.remove_prefix(amp + 1);
  }
  return false;
}

std::string bearer_of(const std::string& header) {
  constexpr std::string_view kScheme = "Bearer ";
  if (header.size() <= kScheme.size()) return {};
  for (std::size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(header[i])) !=
        std::tolower(static_cast<unsigned char>(kScheme[i]))) {
      return {};
    }
  }
  return header.substr(kScheme.size());
}

json status_json(const shm::RequestStatus& st) {
  char id[17];
  format_request_id(st.request_id, id);
  json j = {{"requestId", id},
            {"status", status_name(st.status)},
            {"mode", mode_name(st.mode)},
            {"type", st.type},
            {"priority", st.priority},
            {"band", band_name(st.band)},
            {"userId", st.user_id},
            {"attempts", st.attempts},
            {"createdAt", iso_time(st.created_at_unix_ns)}};
  if (is_final(st.status)) j["finishedAt"] = iso_time(st.finished_at_unix_ns);
  if (st.error != Errc::kOk) j["error"] = errc_name(st.error);
  return j;
}

}  // namespace

HttpApi::HttpApi(AdminOps& ops, const TokenStore* tokens, std::shared_ptr<shm::Segment> seg,
                 uint64_t event_keep_alive_ms)
    : ops_(ops), tokens_(tokens), seg_(std::move(seg)), event_keep_alive_ms_(event_keep_alive_ms) {}

void HttpApi::auth_failed(const HttpRequest& req, const char* why) {
  const std::string host = req.remote.substr(0, req.remote.rfind(':'));
  const uint64_t now = mono_now_ns();
  json fields = {
      {"reason", why}, {"method", req.method}, {"path", std::string(path_of(req.target))}};
  {
    std::lock_guard lock(mu_);
    Failures& f = auth_failures_[host];
    if (f.last_line_ns != 0 && now - f.last_line_ns < 1'000'000'000ull) {
      ++f.suppressed;
      return;
    }
    if (f.suppressed > 0) fields["suppressed"] = f.suppressed;
    f = Failures{now, 0};
    if (auth_failures_.size() > 4096) auth_failures_.clear();
  }
  // Never the token: only that it was missing or unknown.
  ops_.audit("http.unauthorized", {{"remote", req.remote}}, std::move(fields));
}

HttpResponse HttpApi::handle(const HttpRequest& req) {
  const std::string_view path = path_of(req.target);
  if (path == "/livez" && req.method == "GET") return {200, {}};
  if (path == "/readyz" && req.method == "GET") {
    const bool running =
        seg_->agent_alive() && load_relaxed(seg_->header().agent_state) ==
                                   static_cast<uint32_t>(shm::AgentState::kRunning);
    return {running ? 200 : 503, {}};
  }
  const bool prometheus = path == "/metrics";
  if (!prometheus && path.substr(0, kBase.size()) != kBase) {
    return error_response(Errc::kNotFound, "no such route");
  }
  // Authentication before anything else is looked at.
  const std::string token = bearer_of(req.authorization);
  std::optional<Principal> who;
  if (!token.empty() && tokens_ != nullptr) who = tokens_->authenticate(token);
  if (!who) {
    auth_failed(req, token.empty() ? "no bearer token" : "unknown token");
    HttpResponse r = error_response(Errc::kUnauthorized, "a valid bearer token is required");
    r.headers.emplace_back("WWW-Authenticate", "Bearer");
    return r;
  }
  if (prometheus) {
    if (req.method != "GET") return error_response(Errc::kNotFound, "no such route");
    if (!who->admin()) {
      auth_failed(req, "admin role required");
      return error_response(Errc::kForbidden, "admin role required");
    }
    HttpResponse r{200, prometheus_text(*seg_, ops_.limits(), unix_now_ns())};
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    return r;
  }
  const std::string_view route = path.substr(kBase.size());
  auto id_after = [&](std::string_view prefix, std::string_view& rest) {
    if (route.substr(0, prefix.size()) != prefix) return false;
    rest = route.substr(prefix.size());
    return true;
  };
  std::string_view rest;
  if (route == "submit") {
    if (req.method != "POST") return error_response(Errc::kNotFound, "no such route");
    return submit(req, *who);
  }
  if (id_after("status/", rest) && req.method == "GET") {
    uint64_t id = 0;
    if (!parse_request_id(rest, id)) {
      return error_response(Errc::kInvalidRequest, "a request id is 16 hex digits");
    }
    return status(id, *who);
  }
  if (id_after("cancel/", rest) && req.method == "DELETE") {
    uint64_t id = 0;
    if (!parse_request_id(rest, id)) {
      return error_response(Errc::kInvalidRequest, "a request id is 16 hex digits");
    }
    return cancel(id, *who);
  }
  // Admin routes.
  const bool health = route == "health" && req.method == "GET";
  const bool metrics = route == "metrics" && req.method == "GET";
  const bool events_stream = route == "events" && req.method == "GET";
  const bool dlq_list = route == "dlq" && req.method == "GET";
  const bool dlq_item = id_after("dlq/", rest);
  if (!health && !metrics && !events_stream && !dlq_list && !dlq_item) {
    return error_response(Errc::kNotFound, "no such route");
  }
  if (!who->admin()) {
    auth_failed(req, "admin role required");
    return error_response(Errc::kForbidden, "admin role required");
  }
  if (health) return admin({{"op", "health"}}, *who, req, 200);
  if (metrics) {
    json op = {{"op", "metrics"}};
    std::string_view period;
    if (query_value(req.target, "period", period)) {
      auto p = parse_period(period);
      if (!p) return error_response(p.error());
      op["period"] = *p;
    }
    return admin(op, *who, req, 200);
  }
  // Reads only, like dlq.list: not audited.
  if (events_stream) return events(req);
  if (dlq_list) {
    json op = {{"op", "dlq.list"}};
    std::string_view limit;
    if (query_value(req.target, "limit", limit)) {
      uint64_t n = 0;
      const auto [p, ec] = std::from_chars(limit.data(), limit.data() + limit.size(), n);
      if (ec != std::errc() || p != limit.data() + limit.size() || n < 1 || n > 100) {
        return error_response(Errc::kInvalidRequest, "limit must be an integer from 1 to 100");
      }
      op["limit"] = n;
    }
    std::string_view all;
    if (query_value(req.target, "all", all)) {
      if (all != "true" && all != "false") {
        return error_response(Errc::kInvalidRequest, "all must be true or false");
      }
      op["all"] = all == "true";
    }
    return admin(op, *who, req, 200);
  }
  const auto slash = rest.find('/');
  const std::string id(rest.substr(0, slash));
  const std::string_view verb = slash == std::string_view::npos ? "" : rest.substr(slash + 1);
  if (verb.empty() && req.method == "GET")
    return admin({{"op", "dlq.show"}, {"id", id}}, *who, req, 200);
  if (verb == "review" && req.method == "POST") {
    const json body = parse_request_json(req.body);
    if (!body.is_object())
      return error_response(Errc::kInvalidRequest, "body must be a JSON object");
    json op = {{"op", "dlq.review"}, {"id", id}};
    if (auto it = body.find("resolution"); it != body.end() && it->is_string()) {
      op["resolution"] = *it;
    }
    return admin(op, *who, req, 204);
  }
  if (verb == "replay" && req.method == "POST") {
    return admin({{"op", "dlq.replay"}, {"id", id}}, *who, req, 201);
  }
  return error_response(Errc::kNotFound, "no such route");
}

HttpResponse HttpApi::admin(const json& op, const Principal& who, const HttpRequest& req,
                            int ok_status) {
  return from_admin(
      ops_.handle_as(op, {{"userId", who.user_id}, {"remote", req.remote}}, who.user_id),
      ok_status);
}

HttpResponse HttpApi::submit(const HttpRequest& req, const Principal& who) {
  const json body = parse_request_json(req.body);
  if (!body.is_object()) return error_response(Errc::kInvalidRequest, "body must be a JSON object");
  RequestView v;
  v.user_id = who.user_id;  // never from the body (SPEC §3)
  const auto type = body.find("type");
  if (type == body.end() || !type->is_string()) {
    return error_response(Errc::kInvalidRequest, "type must be a string");
  }
  const std::string type_text = type->get<std::string>();
  v.type = type_text;
  if (auto m = body.find("mode"); m != body.end()) {
    if (!m->is_string() || !parse_mode(m->get<std::string>(), v.mode)) {
      return error_response(Errc::kInvalidMode, "mode must be fifo, priority or batch");
    }
  }
  if (auto p = body.find("priority"); p != body.end()) {
    if (!p->is_number_integer() || p->get<int64_t>() < kPriorityMin ||
        p->get<int64_t>() > kPriorityMax) {
      return error_response(Errc::kInvalidPriority, "priority must be an integer from 1 to 20");
    }
    v.priority = static_cast<uint8_t>(p->get<int64_t>());
  }
  // The payload is whatever JSON value the client sent, stored as its text.
  std::string payload = "{}";
  if (auto p = body.find("payload"); p != body.end()) payload = p->dump();
  if (payload.size() > seg_->geometry().slot_payload_bytes) {
    json e = error_body(Errc::kInvalidRequest,
                        "payload larger than slot_payload_bytes (" +
                            std::to_string(seg_->geometry().slot_payload_bytes) + " bytes)");
    e["statusCode"] = 413;
    e["error"] = "PAYLOAD_TOO_LARGE";
    return json_response(413, e);
  }
  v.payload = std::as_bytes(std::span(payload.data(), payload.size()));
  std::string key;
  if (auto k = body.find("idempotencyKey"); k != body.end() && !k->is_null()) {
    if (!k->is_string())
      return error_response(Errc::kInvalidRequest, "idempotencyKey must be a string");
    key = k->get<std::string>();
  }
  v.idempotency_key = key;
  std::string metadata;
  if (auto m = body.find("metadata"); m != body.end() && !m->is_null()) {
    if (!m->is_object()) return error_response(Errc::kInvalidRequest, "metadata must be an object");
    metadata = m->dump();
  }
  v.metadata = metadata;
  auto p = ops_.producer();
  if (!p) return error_response(p.error());
  // A submit may wait for room; at most kMaxWaitingSubmits do at once, so the
  // handler pool always has a thread for everything else.
  if (waiting_submits_.fetch_add(1, std::memory_order_relaxed) >= kMaxWaitingSubmits) {
    waiting_submits_.fetch_sub(1, std::memory_order_relaxed);
    HttpResponse r = error_response(Errc::kQueueFull, "too many submits waiting for room");
    r.headers.emplace_back("Retry-After", "1");
    return r;
  }
  // The rope-drop wait in slices that notice a stopping server: its
  // shutdown never waits out a full rope_drop_timeout_ms.
  Result<Submitted> s =
      (*p)->submit(v, [this] { return stopping_.load(std::memory_order_relaxed); });
  waiting_submits_.fetch_sub(1, std::memory_order_relaxed);
  if (!s) return error_response(s.error());
  char id[17];
  format_request_id(s->request_id, id);
  json out = {{"requestId", id},
              {"status", s->status_known ? status_name(s->status) : std::string_view("unknown")},
              {"mode", mode_name(s->mode)},
              {"type", type_text},
              {"priority", s->priority},
              {"createdAt", iso_time(s->created_at_unix_ns)},
              {"queuePosition", s->queue_position}};
  if (s->duplicate) out["duplicate"] = true;
  return json_response(201, out);
}

// Server-sent events: the handler only sets the stream up; the HTTP server
// polls it on its io thread (http.hpp), so a stream holds no handler thread.
HttpResponse HttpApi::events(const HttpRequest& req) {
  auto reader = EventReader::connect(seg_);
  if (!reader) return error_response(reader.error());
  // A client resuming after the event it saw last: the ring may still hold
  // what came next; what it no longer holds is reported missed. Anything
  // but a decimal id starts at the head, like no header.
  uint64_t last = 0;
  const std::string& text = req.last_event_id;
  const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), last);
  if (!text.empty() && ec == std::errc() && p == text.data() + text.size() &&
      last < (*reader)->position()) {
    (*reader)->seek(last + 1);
  }
  auto feed =
      std::make_shared<EventFeed>(std::move(*reader), FeedFormat::kSse, event_keep_alive_ms_);
  HttpResponse r;
  r.content_type = "text/event-stream";
  r.headers.emplace_back("Cache-Control", "no-cache");
  // Proxies that buffer answers (nginx) would hold events back.
  r.headers.emplace_back("X-Accel-Buffering", "no");
  // Everything the ring holds fits one poll: a stream polled regularly
  // never falls behind through the bound.
  r.stream = [feed, cap = seg_->events().capacity()](std::string& out) {
    (void)feed->next(out, cap);
  };
  return r;
}

void HttpApi::stop() noexcept {
  stopping_.store(true, std::memory_order_relaxed);
}

HttpResponse HttpApi::status(uint64_t id, const Principal& who) {
  auto p = ops_.producer();
  if (!p) return error_response(p.error());
  auto st = (*p)->status(id, shm::Caller{who.user_id, who.admin()});
  if (!st) return error_response(st.error());
  return json_response(200, status_json(*st));
}

HttpResponse HttpApi::cancel(uint64_t id, const Principal& who) {
  auto p = ops_.producer();
  if (!p) return error_response(p.error());
  auto r = (*p)->cancel(id, shm::Caller{who.user_id, who.admin()});
  if (who.admin()) {
    char text[17];
    format_request_id(id, text);
    ops_.audit("cancel", {{"userId", who.user_id}},
               {{"requestId", text},
                {"result", r ? std::string("ok") : std::string(errc_name(r.error().code))}});
  }
  if (!r) return error_response(r.error());
  return {204, {}};
}

}  // namespace perfq::agent
