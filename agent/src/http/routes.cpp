#include "http/routes.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string_view>

#include "control/event_feed.hpp"
#include "control/observe.hpp"
#include "control/wire_json.hpp"
#include "http/probe_server.hpp"
#include "perfq/client/events.hpp"
#include "perfq/client/producer.hpp"
#include "perfq/core/clock.hpp"
#include "perfq/shm/layout.hpp"
#include "perfq/shm/rejections.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq::agent {

using nlohmann::json;

namespace {

constexpr std::string_view kBase = "/performance-queue/";

HttpResponse json_response(int status, const json& body) {
  return {status, wire_text(body)};
}

HttpResponse error_response(Errc code, const std::string& message) {
  return json_response(http_status(code), error_body(code, message));
}

// 429 (and any error with a retry time) says when in Retry-After too.
HttpResponse error_response(const Error& e) {
  HttpResponse r = json_response(http_status(e.code), error_body(e));
  if (e.retry_after_ms != 0) {
    r.headers.emplace_back("Retry-After", std::to_string((e.retry_after_ms + 999) / 1000));
  }
  return r;
}

HttpResponse not_found() {
  return error_response(Errc::kNotFound, "no such route");
}

// The paths behind a bearer token: a request for one is authenticated
// before it is routed, so an unknown path tells nothing to a stranger.
bool needs_token(std::string_view path) {
  return path == "/metrics" || path.substr(0, kBase.size()) == kBase;
}

// The admin verbs answer SPEC's error body or a result; map it to HTTP.
HttpResponse from_admin(const json& resp, int ok_status) {
  if (is_error_body(resp)) {
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

// A submit's body, checked, in the order SPEC §6 lists its fields; the
// strings the RequestView points into.
struct SubmitBody {
  std::string type;
  Mode mode = Mode::kFifo;
  uint8_t priority = kPriorityDefault;
  std::string payload = "{}";  // whatever JSON value the client sent, as its text
  std::string idempotency_key;
  std::string metadata;
};

// Fills `out` from `body`, or answers why not.
std::optional<HttpResponse> read_submit(const json& body, uint32_t max_payload, SubmitBody& out) {
  const auto type = body.find("type");
  if (type == body.end() || !type->is_string()) {
    return error_response(Errc::kInvalidRequest, "type must be a string");
  }
  out.type = type->get<std::string>();
  if (auto m = body.find("mode"); m != body.end()) {
    if (!m->is_string() || !parse_mode(m->get<std::string>(), out.mode)) {
      return error_response(Errc::kInvalidMode, "mode must be fifo, priority or batch");
    }
  }
  if (auto p = body.find("priority"); p != body.end()) {
    if (!p->is_number_integer() || p->get<int64_t>() < kPriorityMin ||
        p->get<int64_t>() > kPriorityMax) {
      return error_response(Errc::kInvalidPriority, "priority must be an integer from 1 to 20");
    }
    out.priority = static_cast<uint8_t>(p->get<int64_t>());
  }
  // SPEC §3: over HTTP (as in Node and Python) a payload is a JSON object;
  // absent or null is the empty object.
  if (auto p = body.find("payload"); p != body.end() && !p->is_null()) {
    if (!p->is_object())
      return error_response(Errc::kInvalidRequest, "payload must be a JSON object");
    out.payload = p->dump();
  }
  if (out.payload.size() > max_payload) {
    return json_response(
        413, too_large_body("PAYLOAD_TOO_LARGE", "payload larger than slot_payload_bytes (" +
                                                     std::to_string(max_payload) + " bytes)"));
  }
  if (auto k = body.find("idempotencyKey"); k != body.end() && !k->is_null()) {
    // The rule every entrance applies (core's valid_idempotency_key). A key
    // that is present must be one: "" is refused, not taken for none.
    if (!k->is_string() || !valid_idempotency_key(k->get_ref<const std::string&>())) {
      return error_response(Errc::kInvalidRequest,
                            "idempotencyKey must be 1..128 printable ASCII bytes");
    }
    out.idempotency_key = k->get<std::string>();
  }
  if (auto m = body.find("metadata"); m != body.end() && !m->is_null()) {
    if (!m->is_object()) return error_response(Errc::kInvalidRequest, "metadata must be an object");
    out.metadata = m->dump();
  }
  return std::nullopt;
}

// The request id of a status/:id or cancel/:id route.
std::optional<HttpResponse> read_request_id(std::string_view text, uint64_t& id) {
  if (parse_request_id(text, id)) return std::nullopt;
  return error_response(Errc::kInvalidRequest, "a request id is 16 hex digits");
}

}  // namespace

HttpApi::HttpApi(AdminOps& ops, const TokenStore* tokens, std::shared_ptr<shm::Segment> seg,
                 uint64_t event_keep_alive_ms)
    : ops_(ops),
      // Not owned: the caller keeps it for this object's life.
      tokens_(tokens != nullptr
                  ? std::shared_ptr<const TokenStore>(tokens, [](const TokenStore*) {})
                  : nullptr),
      seg_(std::move(seg)),
      event_keep_alive_ms_(event_keep_alive_ms) {}

void HttpApi::set_tokens(std::shared_ptr<const TokenStore> tokens) {
  std::lock_guard lock(tokens_mu_);
  tokens_ = std::move(tokens);
}

std::shared_ptr<const TokenStore> HttpApi::tokens() const {
  std::lock_guard lock(tokens_mu_);
  return tokens_;
}

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

std::span<const Route<HttpApi::Handler>> HttpApi::routes() {
  using A = Access;
  static constexpr Route<Handler> kRoutes[] = {
      {"GET", "/livez", A::kOpen, &HttpApi::livez},
      {"GET", "/readyz", A::kOpen, &HttpApi::readyz},
      {"GET", "/metrics", A::kAdmin, &HttpApi::prometheus},
      {"POST", "/performance-queue/submit", A::kUser, &HttpApi::submit},
      {"GET", "/performance-queue/status/:id", A::kUser, &HttpApi::status},
      {"DELETE", "/performance-queue/cancel/:id", A::kUser, &HttpApi::cancel},
      {"GET", "/performance-queue/health", A::kAdmin, &HttpApi::health},
      {"GET", "/performance-queue/metrics", A::kAdmin, &HttpApi::metrics},
      // Reads only, like dlq.list: not audited.
      {"GET", "/performance-queue/events", A::kAdmin, &HttpApi::events},
      {"GET", "/performance-queue/dlq", A::kAdmin, &HttpApi::dlq_list},
      {"GET", "/performance-queue/dlq/:id", A::kAdmin, &HttpApi::dlq_show},
      {"POST", "/performance-queue/dlq/:id/review", A::kAdmin, &HttpApi::dlq_review},
      {"POST", "/performance-queue/dlq/:id/replay", A::kAdmin, &HttpApi::dlq_replay},
  };
  return kRoutes;
}

HttpResponse HttpApi::handle(const HttpRequest& req) {
  static const Principal kNobody;
  const std::string_view path = path_of(req.target);
  std::string_view param;
  const Route<Handler>* route = find_route(routes(), req.method, path, param);
  if (route != nullptr && route->access == Access::kOpen) {
    return (this->*(route->handler))(Call{req, kNobody, param});
  }
  if (!needs_token(path)) return not_found();
  // Authentication before anything else is looked at.
  const std::string token = bearer_of(req.authorization);
  std::optional<Principal> who;
  if (!token.empty()) {
    if (const auto store = tokens()) who = store->authenticate(token);
  }
  if (!who) {
    auth_failed(req, token.empty() ? "no bearer token" : "unknown token");
    HttpResponse r = error_response(Errc::kUnauthorized, "a valid bearer token is required");
    r.headers.emplace_back("WWW-Authenticate", "Bearer");
    return r;
  }
  if (route == nullptr) return not_found();
  if (route->access == Access::kAdmin && !who->admin()) {
    auth_failed(req, "admin role required");
    return error_response(Errc::kForbidden, "admin role required");
  }
  return (this->*(route->handler))(Call{req, *who, param});
}

// The probes and /metrics answer as on the probe listener (probe_server.hpp).
HttpResponse HttpApi::livez(const Call&) {
  return livez_response(*seg_, kProbeStallMs);
}

HttpResponse HttpApi::readyz(const Call&) {
  return readyz_response(*seg_, kProbeStallMs);
}

HttpResponse HttpApi::prometheus(const Call&) {
  return metrics_response(*seg_, ops_.limits());
}

HttpResponse HttpApi::admin(const json& op, const Call& c, int ok_status) {
  return from_admin(
      ops_.handle_as(op, {{"userId", c.who.user_id}, {"remote", c.req.remote}}, c.who.user_id),
      ok_status);
}

HttpResponse HttpApi::health(const Call& c) {
  return admin({{"op", "health"}}, c, 200);
}

HttpResponse HttpApi::metrics(const Call& c) {
  json op = {{"op", "metrics"}};
  std::string_view period;
  if (query_value(c.req.target, "period", period)) {
    auto p = parse_period(period);
    if (!p) return error_response(p.error());
    op["period"] = *p;
  }
  return admin(op, c, 200);
}

HttpResponse HttpApi::dlq_list(const Call& c) {
  json op = {{"op", "dlq.list"}};
  std::string_view limit;
  if (query_value(c.req.target, "limit", limit)) {
    uint64_t n = 0;
    const auto [p, ec] = std::from_chars(limit.data(), limit.data() + limit.size(), n);
    if (ec != std::errc() || p != limit.data() + limit.size() || n < 1 || n > 100) {
      return error_response(Errc::kInvalidRequest, "limit must be an integer from 1 to 100");
    }
    op["limit"] = n;
  }
  std::string_view all;
  if (query_value(c.req.target, "all", all)) {
    if (all != "true" && all != "false") {
      return error_response(Errc::kInvalidRequest, "all must be true or false");
    }
    op["all"] = all == "true";
  }
  return admin(op, c, 200);
}

HttpResponse HttpApi::dlq_show(const Call& c) {
  return admin({{"op", "dlq.show"}, {"id", c.param}}, c, 200);
}

HttpResponse HttpApi::dlq_review(const Call& c) {
  const json body = parse_request_json(c.req.body);
  if (!body.is_object()) return error_response(Errc::kInvalidRequest, "body must be a JSON object");
  json op = {{"op", "dlq.review"}, {"id", c.param}};
  if (auto it = body.find("resolution"); it != body.end() && it->is_string()) {
    op["resolution"] = *it;
  }
  return admin(op, c, 204);
}

HttpResponse HttpApi::dlq_replay(const Call& c) {
  return admin({{"op", "dlq.replay"}, {"id", c.param}}, c, 201);
}

HttpResponse HttpApi::submit(const Call& c) {
  // A submit refused here, before it reaches the producer, is counted as
  // the producer counts its own refusals (rejections.hpp).
  const json body = parse_request_json(c.req.body);
  if (!body.is_object()) {
    shm::count_rejection(seg_->header(), Errc::kInvalidRequest);
    return error_response(Errc::kInvalidRequest, "body must be a JSON object");
  }
  SubmitBody b;
  if (auto refused = read_submit(body, seg_->geometry().slot_payload_bytes, b)) {
    // Each of read_submit's refusals is a request that breaks a rule.
    shm::count_rejection(seg_->header(), Errc::kInvalidRequest);
    return *refused;
  }
  RequestView v;
  v.user_id = c.who.user_id;  // never from the body (SPEC §3)
  v.type = b.type;
  v.mode = b.mode;
  v.priority = b.priority;
  v.payload = std::as_bytes(std::span(b.payload.data(), b.payload.size()));
  v.idempotency_key = b.idempotency_key;
  v.metadata = b.metadata;
  auto p = ops_.producer();
  if (!p) return error_response(p.error());
  // A submit may wait for room; at most kMaxWaitingSubmits do at once, so the
  // handler pool always has a thread for everything else.
  if (waiting_submits_.fetch_add(1, std::memory_order_relaxed) >= kMaxWaitingSubmits) {
    waiting_submits_.fetch_sub(1, std::memory_order_relaxed);
    shm::count_rejection(seg_->header(), Errc::kQueueFull);
    HttpResponse r = error_response(Errc::kQueueFull, "too many submits waiting for room");
    r.headers.emplace_back("Retry-After", "1");
    return r;
  }
  // The rope-drop wait in slices that notice a stopping server: its
  // shutdown never waits out a full rope_drop_timeout_ms. The producer
  // counts a refusal once, when it answers.
  Result<Submitted> s =
      (*p)->submit(v, [this] { return stopping_.load(std::memory_order_relaxed); });
  waiting_submits_.fetch_sub(1, std::memory_order_relaxed);
  if (!s) return error_response(s.error());
  return json_response(201, submitted_json(*s, b.type));
}

// Server-sent events: the handler only sets the stream up; the HTTP server
// polls it on its io thread (server.hpp), so a stream holds no handler thread.
HttpResponse HttpApi::events(const Call& c) {
  auto reader = EventReader::connect(seg_);
  if (!reader) return error_response(reader.error());
  // A client resuming after the event it saw last: the ring may still hold
  // what came next; what it no longer holds is reported missed. Anything
  // but a decimal id starts at the head, like no header.
  uint64_t last = 0;
  const std::string& text = c.req.last_event_id;
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

// Auth failures still coalesced, one line per remote host with their count
// (the server is closed: no handler runs any more).
void HttpApi::flush_audit() {
  std::lock_guard lock(mu_);
  for (const auto& [host, f] : auth_failures_) {
    if (f.suppressed == 0) continue;
    ops_.audit("http.unauthorized", {{"remote", host}},
               {{"suppressed", f.suppressed}, {"flushed", true}});
  }
  auth_failures_.clear();
}

void HttpApi::stop() noexcept {
  stopping_.store(true, std::memory_order_relaxed);
}

HttpResponse HttpApi::status(const Call& c) {
  uint64_t id = 0;
  if (auto bad = read_request_id(c.param, id)) return *bad;
  auto p = ops_.producer();
  if (!p) return error_response(p.error());
  auto st = (*p)->status(id, shm::Caller{c.who.user_id, c.who.admin()});
  if (!st) return error_response(st.error());
  return json_response(200, status_json(*st));
}

HttpResponse HttpApi::cancel(const Call& c) {
  uint64_t id = 0;
  if (auto bad = read_request_id(c.param, id)) return *bad;
  auto p = ops_.producer();
  if (!p) return error_response(p.error());
  auto r = (*p)->cancel(id, shm::Caller{c.who.user_id, c.who.admin()});
  if (c.who.admin()) {
    ops_.audit("cancel", {{"userId", c.who.user_id}},
               {{"requestId", request_id_text(id)},
                {"result", r ? std::string("ok") : std::string(errc_name(r.error().code))}});
  }
  if (!r) return error_response(r.error());
  return {204, {}};
}

}  // namespace perfq::agent
