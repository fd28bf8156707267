#include "control/admin.hpp"

#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>

#include "perfq/agent/config.hpp"
#include "perfq/client/producer.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq::agent {

using nlohmann::json;

namespace {

// A request line larger than this is refused (413): a review resolution is
// at most kJournalResolutionMax bytes.
constexpr std::size_t kMaxRequestBytes = 64 * 1024;
constexpr int kIoTimeoutMs = 5000;  // a client that stalls this long is dropped

std::string base64(std::span<const std::byte> in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t v = std::to_integer<uint32_t>(in[i]) << 16 |
                       std::to_integer<uint32_t>(in[i + 1]) << 8 |
                       std::to_integer<uint32_t>(in[i + 2]);
    out += kAlphabet[v >> 18 & 63];
    out += kAlphabet[v >> 12 & 63];
    out += kAlphabet[v >> 6 & 63];
    out += kAlphabet[v & 63];
  }
  if (i < in.size()) {
    uint32_t v = std::to_integer<uint32_t>(in[i]) << 16;
    if (i + 1 < in.size()) v |= std::to_integer<uint32_t>(in[i + 1]) << 8;
    out += kAlphabet[v >> 18 & 63];
    out += kAlphabet[v >> 12 & 63];
    out += i + 1 < in.size() ? kAlphabet[v >> 6 & 63] : '=';
    out += '=';
  }
  return out;
}

std::string request_id_text(uint64_t id) {
  char b[17];
  format_request_id(id, b);
  return b;
}

// A request id: 16 hex digits, as every other verb prints and takes it.
Result<uint64_t> request_id_field(const json& req, const char* key) {
  const auto it = req.find(key);
  uint64_t v = 0;
  if (it == req.end() || !it->is_string() || !parse_request_id(it->get<std::string>(), v)) {
    return {Errc::kInvalidRequest, "a request id is 16 hex digits"};
  }
  return v;
}

json time_or_null(uint64_t unix_ns) {
  return unix_ns == 0 ? json(nullptr) : json(iso_time(unix_ns));
}

// Reads up to a newline. False on EOF, error, timeout or an oversized line.
bool read_line(int fd, std::string& line, std::size_t max, bool& too_big) {
  too_big = false;
  char buf[4096];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kIoTimeoutMs);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    const char* nl = static_cast<const char*>(std::memchr(buf, '\n', static_cast<std::size_t>(n)));
    line.append(buf,
                nl != nullptr ? static_cast<std::size_t>(nl - buf) : static_cast<std::size_t>(n));
    if (line.size() > max) {
      too_big = true;
      return false;
    }
    if (nl != nullptr) return true;
  }
}

bool write_all(int fd, std::string_view s) {
  while (!s.empty()) {
    pollfd p{fd, POLLOUT, 0};
    const int r = ::poll(&p, 1, kIoTimeoutMs);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    const ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    s.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

Result<uint64_t> id_field(const json& req, const char* key) {
  const auto it = req.find(key);
  if (it == req.end()) return {Errc::kInvalidRequest, std::string(key) + " is required"};
  if (it->is_number_unsigned()) return it->get<uint64_t>();
  if (it->is_string()) {
    const std::string s = it->get<std::string>();
    uint64_t v = 0;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec == std::errc() && p == s.data() + s.size() && !s.empty()) return v;
  }
  return {Errc::kInvalidRequest, std::string(key) + " must be a decimal id"};
}

// The reviewer: the peer's login name, or "uid:N".
std::string user_name(uint32_t uid) {
  passwd pw{};
  passwd* found = nullptr;
  char buf[1024];
  if (::getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found != nullptr) {
    return found->pw_name;
  }
  return "uid:" + std::to_string(uid);
}

}  // namespace

json report_json(const JournalReport& r) {
  json problems = json::array();
  for (const JournalProblem& p : r.problems) {
    problems.push_back(
        {{"file", p.file}, {"offset", p.offset}, {"length", p.length}, {"what", p.what}});
  }
  return {{"segments", r.segments}, {"records", r.records},    {"entries", r.entries},
          {"reviews", r.reviews},   {"replays", r.replays},    {"orphans", r.orphans},
          {"problems", problems},   {"ok", r.problems.empty()}};
}

json parse_request_json(std::string_view text) {
  int depth = 0;
  bool too_deep = false;
  json::parser_callback_t cb = [&](int d, json::parse_event_t, json&) {
    if (d > kMaxJsonDepth) too_deep = true;
    depth = std::max(depth, d);
    return true;
  };
  json j = json::parse(text, cb, /*allow_exceptions=*/false);
  if (too_deep) return json(json::value_t::discarded);
  return j;
}

json error_body(Errc code, const std::string& message) {
  return {{"statusCode", http_status(code)}, {"message", message}, {"error", errc_name(code)}};
}

json dlq_json(const DlqSummary& s) {
  return {
      {"dlqId", std::to_string(s.dlq_id)},
      {"originalRequestId", request_id_text(s.request_id)},
      {"userId", s.user_id},
      {"type", s.type},
      {"mode", mode_name(s.mode)},
      {"priority", s.priority},
      {"status", status_name(s.status)},
      {"failureReason", errc_name(s.reason)},
      {"attemptCount", s.attempt_count},
      {"firstAttemptAt", time_or_null(s.first_attempt_unix_ns)},
      {"lastAttemptAt", time_or_null(s.last_attempt_unix_ns)},
      {"reviewed", s.reviewed},
      {"reviewedBy", s.reviewed ? json(s.reviewed_by) : json(nullptr)},
      {"reviewedAt", s.reviewed ? time_or_null(s.reviewed_at_unix_ns) : json(nullptr)},
      {"resolution", s.reviewed ? json(s.resolution) : json(nullptr)},
      {"replayedAs", s.replayed_as != 0 ? json(request_id_text(s.replayed_as)) : json(nullptr)}};
}

json dlq_json(const DlqEntry& e) {
  json j = dlq_json(e.summary);
  const auto* b = reinterpret_cast<const char*>(e.letter.payload.data());
  json payload = json::parse(b, b + e.letter.payload.size(), nullptr, /*allow_exceptions=*/false);
  if (payload.is_discarded()) {
    j["payloadBase64"] = base64(e.letter.payload);
  } else {
    j["payload"] = std::move(payload);
  }
  json metadata = json::parse(e.letter.metadata, nullptr, false);
  j["metadata"] = e.letter.metadata.empty() ? json(nullptr)
                  : metadata.is_discarded() ? json(e.letter.metadata)
                                            : metadata;
  json history = json::array();
  for (const AttemptFailure& f : e.letter.history) {
    // The processor's own error text is part of the entry an operator reviews;
    // invalid UTF-8 in it is replaced, not refused.
    history.push_back(
        {{"at", iso_time(f.at_unix_ns)}, {"code", errc_name(f.code)}, {"message", f.message}});
  }
  j["errorHistory"] = std::move(history);
  return j;
}

std::string audit_line(const std::string& event, const json& fields) {
  // "at" and "event" first, for people reading the file.
  nlohmann::ordered_json line = {{"at", iso_time(unix_now_ns())}, {"event", event}};
  for (const auto& [k, v] : fields.items()) line[k] = v;
  return line.dump(-1, ' ', false, json::error_handler_t::replace);
}

json config_json(const Config& c) {
  json ids_u = c.admin_uids;
  json ids_g = c.admin_gids;
  return {{"queue", c.queue},
          {"dataDir", c.data_dir},
          {"http", c.http},
          {"tokensFile", c.tokens},
          {"group", c.group},
          {"max_queue_depth", c.max_queue_depth},
          {"queue_timeout_ms", c.queue_timeout_ms},
          {"processing_timeout_ms", c.processing_timeout_ms},
          {"rope_drop_timeout_ms", c.rope_drop_timeout_ms},
          {"batch_size", c.batch_size},
          {"batch_interval_ms", c.batch_interval_ms},
          {"max_concurrent_workers", c.max_concurrent_workers},
          {"worker_idle_timeout_ms", c.worker_idle_timeout_ms},
          {"max_retry_attempts", c.max_retry_attempts},
          {"retry_backoff_ms", c.retry_backoff_ms},
          {"retry_jitter", c.retry_jitter},
          {"max_requests_per_user_per_minute", c.max_requests_per_user_per_minute},
          {"idempotency_ttl_ms", c.idempotency_ttl_ms},
          {"slot_payload_bytes", c.slot_payload_bytes},
          {"aging_ms", c.aging_ms},
          {"slots", c.slot_count()},
          {"max_clients", c.max_clients},
          {"dlq_segment_bytes", c.dlq_segment_bytes},
          {"dlq_retention_ms", c.dlq_retention_ms},
          {"admin_uids", ids_u},
          {"admin_gids", ids_g},
          {"idle", idle_name(c.idle)}};
}

// ---------------------------------------------------------------- server

Result<std::unique_ptr<AdminServer>> AdminServer::open(const std::string& path,
                                                       std::vector<uint32_t> admin_uids,
                                                       std::vector<uint32_t> admin_gids,
                                                       Handler handler, Refused refused) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    return {Errc::kInvalidRequest, "admin socket path longer than " +
                                       std::to_string(sizeof addr.sun_path - 1) +
                                       " bytes: " + path};
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  std::unique_ptr<AdminServer> s(new AdminServer());
  s->path_ = path;
  s->admin_uids_ = std::move(admin_uids);
  s->admin_gids_ = std::move(admin_gids);
  s->handler_ = std::move(handler);
  s->refused_ = std::move(refused);
  s->listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s->listen_fd_ < 0)
    return {Errc::kInternal, std::string("admin socket: ") + std::strerror(errno)};
  // Only one agent runs per queue (the segment says so), so a socket file
  // left here is a dead agent's.
  ::unlink(path.c_str());
  if (::bind(s->listen_fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    return {Errc::kInternal, "admin socket bind " + path + ": " + std::strerror(errno)};
  }
  ::chmod(path.c_str(), 0666);  // the gate is SO_PEERCRED (see the header)
  if (::listen(s->listen_fd_, 16) != 0) {
    return {Errc::kInternal, std::string("admin socket listen: ") + std::strerror(errno)};
  }
  s->stop_fd_ = ::eventfd(0, EFD_CLOEXEC);
  if (s->stop_fd_ < 0) return {Errc::kInternal, std::string("eventfd: ") + std::strerror(errno)};
  s->thread_ = std::thread([p = s.get()] { p->run(); });
  return s;
}

AdminServer::~AdminServer() {
  if (stop_fd_ >= 0) {
    const uint64_t one = 1;
    (void)!::write(stop_fd_, &one, sizeof one);
  }
  if (thread_.joinable()) thread_.join();
  if (listen_fd_ >= 0) {
    ::close(listen_fd_);
    ::unlink(path_.c_str());
  }
  if (stop_fd_ >= 0) ::close(stop_fd_);
}

bool AdminServer::admitted(const Peer& p) const noexcept {
  if (p.uid == 0 || p.uid == ::geteuid()) return true;
  if (std::find(admin_uids_.begin(), admin_uids_.end(), p.uid) != admin_uids_.end()) return true;
  if (admin_gids_.empty()) return false;
  auto admin_gid = [&](gid_t g) {
    return std::find(admin_gids_.begin(), admin_gids_.end(), g) != admin_gids_.end();
  };
  if (admin_gid(p.gid)) return true;
  // Supplementary groups of the peer's user (SO_PEERCRED has the primary only).
  passwd pw{};
  passwd* found = nullptr;
  char buf[1024];
  if (::getpwuid_r(p.uid, &pw, buf, sizeof buf, &found) != 0 || found == nullptr) return false;
  gid_t groups[256];
  int n = 256;
  if (::getgrouplist(found->pw_name, found->pw_gid, groups, &n) < 0) n = 256;
  for (int i = 0; i < n; ++i) {
    if (admin_gid(groups[i])) return true;
  }
  return false;
}

void AdminServer::run() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    const int r = ::poll(fds, 2, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if ((fds[1].revents & POLLIN) != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    serve(fd);
    ::close(fd);
  }
}

// One request, one response. Requests are served one at a time: the verbs
// are operator actions, and a client that stalls is dropped after
// kIoTimeoutMs.
void AdminServer::serve(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return;
  const Peer peer{cred.uid, cred.gid, cred.pid};
  if (!admitted(peer)) {
    if (refused_) refused_(peer);
    (void)write_all(fd, error_body(Errc::kForbidden, "not an admin of this queue").dump() + "\n");
    return;
  }
  std::string line;
  bool too_big = false;
  if (!read_line(fd, line, kMaxRequestBytes, too_big)) {
    if (too_big) {
      json e = error_body(Errc::kInvalidRequest,
                          "request larger than " + std::to_string(kMaxRequestBytes) + " bytes");
      e["statusCode"] = 413;
      (void)write_all(fd, e.dump() + "\n");
    }
    return;
  }
  json req = parse_request_json(line);
  json resp;
  try {
    resp = req.is_object() ? handler_(req, peer)
                           : error_body(Errc::kInvalidRequest, "request must be a JSON object");
  } catch (const std::exception& e) {
    // A request the handler did not expect must not take the agent down.
    resp = error_body(Errc::kInternal, std::string("request failed: ") + e.what());
  }
  (void)write_all(fd, resp.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
}

// ---------------------------------------------------------------- verbs

AdminOps::AdminOps(Journal& journal, std::shared_ptr<shm::Segment> seg, HealthLimits limits)
    : journal_(journal), seg_(std::move(seg)), limits_(limits) {}

AdminOps::~AdminOps() = default;

Result<Producer*> AdminOps::producer() {
  std::lock_guard lock(mu_);
  if (!producer_) {
    auto p = Producer::connect(seg_);
    if (!p) return p.error();
    producer_ = std::move(*p);
  }
  producer_->poll();  // outcomes of earlier replays nobody waits for
  return producer_.get();
}

void AdminOps::audit(const std::string& event, const json& actor, json fields) {
  fields["peer"] = actor;
  journal_.audit(audit_line(event, fields));
}

// One line per uid per second: a flood of refused connections is counted in
// the next line ("suppressed"), not written out one by one.
void AdminOps::refused(const Peer& peer) {
  const uint64_t now = mono_now_ns();
  Refusals& r = refusals_[peer.uid];
  if (r.last_line_ns != 0 && now - r.last_line_ns < 1'000'000'000ull) {
    ++r.suppressed;
    return;
  }
  json fields = {{"reason", "not an admin (SO_PEERCRED)"}};
  if (r.suppressed > 0) fields["suppressed"] = r.suppressed;
  r = Refusals{now, 0};
  if (refusals_.size() > 4096) refusals_.clear();  // bounded; costs at most extra lines
  audit("admin.refused", {{"uid", peer.uid}, {"gid", peer.gid}, {"pid", peer.pid}},
        std::move(fields));
}

// Every request is audited with its outcome, refused ones included: a
// review that times out (its record still queued) says so too.
json AdminOps::handle(const json& req, const Peer& peer) {
  return handle_as(req, {{"uid", peer.uid}, {"gid", peer.gid}, {"pid", peer.pid}},
                   user_name(peer.uid));
}

json AdminOps::handle_as(const json& req, const json& actor, const std::string& reviewer) {
  const auto op_it = req.find("op");
  if (op_it == req.end() || !op_it->is_string()) {
    return error_body(Errc::kInvalidRequest, "op must be a string");
  }
  const std::string op = op_it->get<std::string>();
  json detail = json::object();
  json resp = dispatch(op, req, reviewer, detail);
  if (op != "dlq.list" && op != "dlq.verify" && op != "health" && op != "metrics") {
    // The reads change nothing and show no payload (a scraper would fill
    // the log); everything else is an admin action.
    if (resp.contains("statusCode")) {
      detail["result"] = resp.value("error", std::string("INTERNAL"));
      detail["message"] = resp.value("message", std::string());
    } else {
      detail["result"] = "ok";
    }
    audit(op, actor, std::move(detail));
  }
  return resp;
}

json AdminOps::dispatch(const std::string& op, const json& req, const std::string& reviewer,
                        json& detail) {
  auto fail = [](const Error& e) { return error_body(e.code, e.message); };
  if (op == "health") return health_json(*seg_, limits_, unix_now_ns());
  if (op == "metrics") {
    uint32_t period = 60;
    if (auto it = req.find("period"); it != req.end()) {
      if (!it->is_number_unsigned())
        return error_body(Errc::kInvalidRequest, "period must be 1..1440");
      auto p = parse_period(std::to_string(it->get<uint64_t>()));
      if (!p) return fail(p.error());
      period = *p;
    }
    return metrics_json(*seg_, period, unix_now_ns());
  }
  if (op == "dlq.list") {
    uint64_t limit = 50;
    if (auto it = req.find("limit"); it != req.end()) {
      if (!it->is_number_unsigned() || it->get<uint64_t>() < 1 || it->get<uint64_t>() > 100) {
        return error_body(Errc::kInvalidRequest, "limit must be 1..100");
      }
      limit = it->get<uint64_t>();
    }
    bool all = false;
    if (auto it = req.find("all"); it != req.end()) {
      if (!it->is_boolean()) return error_body(Errc::kInvalidRequest, "all must be true or false");
      all = it->get<bool>();
    }
    json entries = json::array();
    for (const DlqSummary& s : journal_.list(limit, all)) entries.push_back(dlq_json(s));
    return {{"entries", std::move(entries)}, {"unreviewed", journal_.unreviewed()}};
  }
  if (op == "dlq.verify") {
    auto r = journal_.verify();
    if (!r) return fail(r.error());
    return report_json(*r);
  }
  if (op == "cancel") {
    auto id = request_id_field(req, "id");
    if (!id) return fail(id.error());
    detail["requestId"] = request_id_text(*id);
    auto p = producer();
    if (!p) return fail(p.error());
    auto r = (*p)->cancel(*id, shm::Caller{{}, /*admin=*/true});
    if (!r) return fail(r.error());
    return {{"requestId", request_id_text(*id)}, {"status", "cancelled"}};
  }
  if (op != "dlq.show" && op != "dlq.review" && op != "dlq.replay") {
    return error_body(Errc::kInvalidRequest, "unknown op");
  }
  auto id = id_field(req, "id");
  if (!id) return fail(id.error());
  detail["dlqId"] = std::to_string(*id);
  if (op == "dlq.show") {
    auto e = journal_.show(*id);
    if (!e) return fail(e.error());
    return dlq_json(*e);
  }
  if (op == "dlq.review") {
    const auto it = req.find("resolution");
    if (it == req.end() || !it->is_string()) {
      return error_body(Errc::kInvalidRequest, "resolution must be a string");
    }
    const std::string& by = reviewer;
    const std::string resolution = it->get<std::string>();
    detail["reviewedBy"] = by;
    detail["resolution"] = resolution;
    if (auto r = journal_.review(*id, by, resolution); !r) return fail(r.error());
    return {{"dlqId", std::to_string(*id)}, {"reviewed", true}};
  }
  // dlq.replay
  if (auto r = journal_.begin_replay(*id); !r) return fail(r.error());
  auto e = journal_.show(*id);
  auto p = producer();
  if (!e || !p) {
    journal_.abandon_replay(*id);
    return fail(!e ? e.error() : p.error());
  }
  const DeadLetter& d = e->letter;
  RequestView v;
  v.type = d.type;
  v.user_id = d.user_id;
  v.mode = d.mode;
  v.priority = d.priority;
  v.payload = d.payload;
  v.metadata = d.metadata;
  auto s = (*p)->try_submit(v);
  if (!s) {
    journal_.abandon_replay(*id);
    json body = fail(s.error());
    if (s.error().retry_after_ms != 0) body["retryAfterMs"] = s.error().retry_after_ms;
    return body;
  }
  const uint64_t new_id = s->request_id;
  detail["replayedAs"] = request_id_text(new_id);
  if (auto r = journal_.record_replay(*id, new_id); !r) return fail(r.error());
  return {{"dlqId", std::to_string(*id)}, {"replayedAs", request_id_text(new_id)}};
}

// ---------------------------------------------------------------- client

Result<json> admin_call(const std::string& socket_path, const json& request, uint64_t timeout_ms) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof addr.sun_path) {
    return {Errc::kAgentUnavailable, "no admin socket path"};
  }
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return {Errc::kInternal, std::string("socket: ") + std::strerror(errno)};
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    ::close(fd);
    return {Errc::kAgentUnavailable,
            "cannot reach the agent at " + socket_path + ": " + std::strerror(err)};
  }
  Result<json> out{Errc::kAgentUnavailable, "the agent closed the admin connection"};
  // A refused peer may be answered (and closed on) before its request is
  // written: read the answer whether or not the write went through.
  (void)write_all(fd, request.dump() + "\n");
  {
    // The answer may take as long as a journal round; wait up to timeout_ms.
    std::string line;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    char buf[4096];
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            deadline - std::chrono::steady_clock::now())
                            .count();
      if (left <= 0) break;
      pollfd p{fd, POLLIN, 0};
      const int r = ::poll(&p, 1, static_cast<int>(left));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      line.append(buf, static_cast<std::size_t>(n));
      if (line.find('\n') != std::string::npos) break;
    }
    json resp = json::parse(line.substr(0, line.find('\n')), nullptr, false);
    if (!resp.is_discarded() && resp.is_object()) out = std::move(resp);
  }
  ::close(fd);
  return out;
}

}  // namespace perfq::agent
