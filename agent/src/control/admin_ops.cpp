#include "control/admin_ops.hpp"

#include <pwd.h>

#include <algorithm>
#include <array>
#include <charconv>

#include "control/audit.hpp"
#include "control/wire_json.hpp"
#include "journal/journal.hpp"
#include "perfq/client/producer.hpp"
#include "perfq/core/clock.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq::agent {

using nlohmann::json;

namespace {

json fail(const Error& e) {
  return error_body(e.code, e.message);
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

// A DLQ id: a decimal number or its decimal text.
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

// The DLQ id of a dlq.show/review/replay, also into the audit line.
Result<uint64_t> dlq_id(const json& req, json& detail) {
  auto id = id_field(req, "id");
  if (id) detail["dlqId"] = std::to_string(*id);
  return id;
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

// An op name as an audit field: at most 64 bytes of [A-Za-z0-9._-], the
// rest replaced, so a client cannot write an event name, a control
// character or a secret-sized string into the log.
std::string sanitized_op(const std::string& op) {
  constexpr std::size_t kMax = 64;
  std::string out;
  for (char c : op.substr(0, kMax)) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    out += ok ? c : '?';
  }
  if (op.size() > kMax) out += "...";
  return out;
}

json peer_json(const Peer& peer) {
  return {{"uid", peer.uid}, {"gid", peer.gid}, {"pid", peer.pid}};
}

}  // namespace

std::span<const AdminOps::Verb> AdminOps::verbs() {
  static constexpr std::array<Verb, 9> kVerbs = {{
      {"health", &AdminOps::health, false},
      {"metrics", &AdminOps::metrics, false},
      {"dlq.list", &AdminOps::dlq_list, false},
      {"dlq.verify", &AdminOps::dlq_verify, false},
      {"dlq.show", &AdminOps::dlq_show, true},
      {"dlq.review", &AdminOps::dlq_review, true},
      {"dlq.replay", &AdminOps::dlq_replay, true},
      {"cancel", &AdminOps::cancel, true},
      {"drain", &AdminOps::drain, true},
  }};
  return kVerbs;
}

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
    r.last = peer;
    return;
  }
  json fields = {{"reason", "not an admin (SO_PEERCRED)"}};
  if (r.suppressed > 0) fields["suppressed"] = r.suppressed;
  r = Refusals{now, 0, peer};
  if (refusals_.size() > 4096) flush_audit();  // bounded: the counts go out first
  audit("admin.refused", peer_json(peer), std::move(fields));
}

// Refusals still coalesced, one line per uid with their count: none is lost
// when the flood ends with the agent. Called once the socket's thread has
// stopped (refusals_ belongs to it).
void AdminOps::flush_audit() {
  for (const auto& [uid, r] : refusals_) {
    if (r.suppressed == 0) continue;
    // "flushed": this line is no refusal of its own, only the count.
    audit("admin.refused", peer_json(r.last),
          {{"reason", "not an admin (SO_PEERCRED)"},
           {"suppressed", r.suppressed},
           {"flushed", true}});
  }
  refusals_.clear();
}

json AdminOps::handle(const json& req, const Peer& peer) {
  return handle_as(req, peer_json(peer), user_name(peer.uid));
}

// Every request but the reads is audited with its outcome, refused ones
// included: a review that times out (its record still queued) says so too.
json AdminOps::handle_as(const json& req, const json& actor, const std::string& reviewer) {
  const auto op_it = req.find("op");
  if (op_it == req.end() || !op_it->is_string()) {
    return error_body(Errc::kInvalidRequest, "op must be a string");
  }
  const std::string op = op_it->get<std::string>();
  const auto all = verbs();
  const auto verb = std::find_if(all.begin(), all.end(), [&](const Verb& v) { return v.op == op; });
  json detail = json::object();
  const json resp = verb == all.end() ? error_body(Errc::kInvalidRequest, "unknown op")
                                      : (this->*(verb->run))(Call{req, reviewer, detail});
  if (verb == all.end() || verb->audited) {
    if (is_error_body(resp)) {
      detail["result"] = resp.value("error", std::string("INTERNAL"));
      detail["message"] = resp.value("message", std::string());
    } else {
      detail["result"] = "ok";
    }
    // The event is the verb's own name from the table, never the client's
    // text: an unknown op is one fixed event with the op as a field.
    if (verb == all.end()) {
      detail["op"] = sanitized_op(op);
      audit("admin.unknown_op", actor, std::move(detail));
    } else {
      audit(std::string(verb->op), actor, std::move(detail));
    }
  }
  return resp;
}

json AdminOps::health(const Call&) {
  json h = health_json(*seg_, limits_, unix_now_ns());
  h["ignoredSettings"] = ignored_;
  return h;
}

json AdminOps::metrics(const Call& c) {
  uint32_t period = 60;
  if (auto it = c.req.find("period"); it != c.req.end()) {
    if (!it->is_number_unsigned())
      return error_body(Errc::kInvalidRequest, "period must be 1..1440");
    auto p = parse_period(std::to_string(it->get<uint64_t>()));
    if (!p) return fail(p.error());
    period = *p;
  }
  return metrics_json(*seg_, period, unix_now_ns());
}

json AdminOps::dlq_list(const Call& c) {
  uint64_t limit = 50;
  if (auto it = c.req.find("limit"); it != c.req.end()) {
    if (!it->is_number_unsigned() || it->get<uint64_t>() < 1 || it->get<uint64_t>() > 100) {
      return error_body(Errc::kInvalidRequest, "limit must be 1..100");
    }
    limit = it->get<uint64_t>();
  }
  bool all = false;
  if (auto it = c.req.find("all"); it != c.req.end()) {
    if (!it->is_boolean()) return error_body(Errc::kInvalidRequest, "all must be true or false");
    all = it->get<bool>();
  }
  json entries = json::array();
  for (const DlqSummary& s : journal_.list(limit, all)) entries.push_back(dlq_json(s));
  return {{"entries", std::move(entries)}, {"unreviewed", journal_.unreviewed()}};
}

json AdminOps::dlq_verify(const Call&) {
  auto r = journal_.verify();
  if (!r) return fail(r.error());
  return report_json(*r);
}

json AdminOps::cancel(const Call& c) {
  auto id = request_id_field(c.req, "id");
  if (!id) return fail(id.error());
  c.detail["requestId"] = request_id_text(*id);
  auto p = producer();
  if (!p) return fail(p.error());
  auto r = (*p)->cancel(*id, shm::Caller{{}, /*admin=*/true});
  if (!r) return fail(r.error());
  return cancelled_json(*id);
}

// The bound is the caller's (perfqctl drain --timeout); a drain already
// under way keeps its own.
json AdminOps::drain(const Call& c) {
  if (!drain_) return error_body(Errc::kInternal, "this agent cannot drain");
  uint64_t timeout_ms = 30000;
  if (const auto it = c.req.find("timeoutMs"); it != c.req.end()) {
    if (!it->is_number_unsigned() || it->get<uint64_t>() == 0 ||
        it->get<uint64_t>() > (uint64_t{1} << 40)) {
      return error_body(Errc::kInvalidRequest, "timeoutMs must be a positive integer");
    }
    timeout_ms = it->get<uint64_t>();
  }
  c.detail["timeoutMs"] = timeout_ms;
  drain_(timeout_ms);
  return {{"draining", true}, {"timeoutMs", timeout_ms}};
}

json AdminOps::dlq_show(const Call& c) {
  auto id = dlq_id(c.req, c.detail);
  if (!id) return fail(id.error());
  auto e = journal_.show(*id);
  if (!e) return fail(e.error());
  return dlq_json(*e);
}

json AdminOps::dlq_review(const Call& c) {
  auto id = dlq_id(c.req, c.detail);
  if (!id) return fail(id.error());
  const auto it = c.req.find("resolution");
  if (it == c.req.end() || !it->is_string()) {
    return error_body(Errc::kInvalidRequest, "resolution must be a string");
  }
  const std::string resolution = it->get<std::string>();
  c.detail["reviewedBy"] = c.reviewer;
  c.detail["resolution"] = resolution;
  if (auto r = journal_.review(*id, c.reviewer, resolution); !r) return fail(r.error());
  return reviewed_json(*id);
}

// The letter goes back in as a new request of its user; the journal holds
// the entry in "replaying" until the new id is recorded, so two replays of
// one entry cannot both submit.
json AdminOps::dlq_replay(const Call& c) {
  auto id = dlq_id(c.req, c.detail);
  if (!id) return fail(id.error());
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
    return error_body(s.error());
  }
  c.detail["replayedAs"] = request_id_text(s->request_id);
  if (auto r = journal_.record_replay(*id, s->request_id); !r) return fail(r.error());
  return replayed_json(*id, s->request_id);
}

}  // namespace perfq::agent
