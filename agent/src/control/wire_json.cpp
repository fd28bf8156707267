#include "control/wire_json.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <nlohmann/json.hpp>
#include <span>

#include "journal/files.hpp"
#include "journal/journal.hpp"
#include "perfq/client/outcome.hpp"
#include "perfq/client/producer.hpp"
#include "perfq/core/iso_time.hpp"
#include "perfq/shm/status.hpp"

namespace perfq::agent {

using nlohmann::json;

namespace {

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

json time_or_null(uint64_t unix_ns) {
  return unix_ns == 0 ? json(nullptr) : json(iso_time(unix_ns));
}

}  // namespace

std::string request_id_text(uint64_t id) {
  char b[17];
  format_request_id(id, b);
  return b;
}

json parse_request_json(std::string_view text) {
  bool too_deep = false;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t, json&) {
    if (depth > kMaxJsonDepth) too_deep = true;
    return true;
  };
  json j = json::parse(text, cb, /*allow_exceptions=*/false);
  if (too_deep) return json(json::value_t::discarded);
  return j;
}

std::string wire_text(const json& body) {
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

json error_body(Errc code, const std::string& message) {
  return {{"statusCode", http_status(code)}, {"message", message}, {"error", errc_name(code)}};
}

json error_body(const Error& e) {
  json body = error_body(e.code, e.message);
  if (e.retry_after_ms != 0) body["retryAfterMs"] = e.retry_after_ms;
  return body;
}

json too_large_body(std::string_view error, const std::string& message) {
  return {{"statusCode", 413}, {"message", message}, {"error", error}};
}

bool is_error_body(const json& body) {
  return body.contains("statusCode");
}

json submitted_json(const Submitted& s, std::string_view type) {
  json j = {{"requestId", request_id_text(s.request_id)},
            {"status", s.status_known ? status_name(s.status) : std::string_view("unknown")},
            {"mode", mode_name(s.mode)},
            {"type", type},
            {"priority", s.priority},
            {"createdAt", iso_time(s.created_at_unix_ns)},
            {"queuePosition", s.queue_position}};
  if (s.duplicate) j["duplicate"] = true;
  return j;
}

json status_json(const shm::RequestStatus& st) {
  json j = {{"requestId", request_id_text(st.request_id)},
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

json outcome_json(const Outcome& o) {
  return {{"requestId", request_id_text(o.request_id)},
          {"status", status_name(o.status)},
          {"attempts", o.attempts}};
}

json cancelled_json(uint64_t request_id) {
  return {{"requestId", request_id_text(request_id)}, {"status", "cancelled"}};
}

json reviewed_json(uint64_t dlq_id) {
  return {{"dlqId", std::to_string(dlq_id)}, {"reviewed", true}};
}

json replayed_json(uint64_t dlq_id, uint64_t new_request_id) {
  return {{"dlqId", std::to_string(dlq_id)}, {"replayedAs", request_id_text(new_request_id)}};
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

json token_json(std::string_view token, std::string_view user_id, std::string_view role) {
  return {{"token", token}, {"userId", user_id}, {"role", role}};
}

json top_frame_json(json health, json last_minute, double completed_per_second) {
  // One decimal, as the human view prints it.
  return {{"health", std::move(health)},
          {"lastMinute", std::move(last_minute)},
          {"completedPerSecond", std::round(completed_per_second * 10.0) / 10.0}};
}

}  // namespace perfq::agent
