#pragma once
// Every JSON body the agent answers and perfqctl prints, built once, here:
// the HTTP routes, the admin socket's verbs and perfqctl's --json output
// call these and nothing else, so the three never drift apart. (health,
// metrics and the event feed build theirs beside the reads that fill them:
// control/observe.hpp, control/event_feed.hpp.)
//
//   error_body      SPEC §6 {statusCode, message, error}, plus retryAfterMs
//                   when the error carries one
//   submitted_json  SPEC §6 submit: HTTP 201 and `perfqctl submit`
//   status_json     SPEC §6 status/:id: HTTP and `perfqctl status`
//   dlq_json        SPEC §5 DLQ entry (ids as decimal strings, times ISO 8601)
//   report_json     dlq verify's answer
//
// Text goes out through wire_text(): bytes that are not UTF-8 (names from
// shared memory, a processor's error text) are replaced, never thrown on.
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

#include "perfq/core/result.hpp"

namespace perfq {
struct Submitted;
struct Outcome;
}  // namespace perfq
namespace perfq::shm {
struct RequestStatus;
}

namespace perfq::agent {

struct DlqSummary;
struct DlqEntry;
struct JournalReport;

// Parses a request body; a value nested deeper than kMaxJsonDepth is refused
// like malformed JSON (is_discarded()): writing it back out recurses.
inline constexpr int kMaxJsonDepth = 64;
[[nodiscard]] nlohmann::json parse_request_json(std::string_view text);

// One line of JSON text, compact, invalid UTF-8 replaced (U+FFFD).
[[nodiscard]] std::string wire_text(const nlohmann::json& body);

// SPEC §6 error body.
[[nodiscard]] nlohmann::json error_body(Errc code, const std::string& message);
// With "retryAfterMs" when e.retry_after_ms is set (RATE_LIMIT_EXCEEDED).
[[nodiscard]] nlohmann::json error_body(const Error& e);
// 413 for a body over its bound: `error` names the code (SPEC has no Errc
// for it), the status is 413 whatever the code's own status.
[[nodiscard]] nlohmann::json too_large_body(std::string_view error, const std::string& message);
// Whether an admin verb's answer is an error body.
[[nodiscard]] bool is_error_body(const nlohmann::json& body);

// A submit's answer; `type` as the caller gave it.
[[nodiscard]] nlohmann::json submitted_json(const Submitted& s, std::string_view type);
// A request's status, as its owner (or an admin) sees it.
[[nodiscard]] nlohmann::json status_json(const shm::RequestStatus& st);
// The outcome `perfqctl submit --wait` waited for.
[[nodiscard]] nlohmann::json outcome_json(const Outcome& o);
// The admin verbs' answers.
[[nodiscard]] nlohmann::json cancelled_json(uint64_t request_id);
[[nodiscard]] nlohmann::json reviewed_json(uint64_t dlq_id);
[[nodiscard]] nlohmann::json replayed_json(uint64_t dlq_id, uint64_t new_request_id);

[[nodiscard]] nlohmann::json dlq_json(const DlqSummary& s);
// With payload (parsed JSON when it is JSON text, else payloadBase64),
// metadata and errorHistory.
[[nodiscard]] nlohmann::json dlq_json(const DlqEntry& e);
[[nodiscard]] nlohmann::json report_json(const JournalReport& r);

// `perfqctl token create --json`: the token, shown this once.
[[nodiscard]] nlohmann::json token_json(std::string_view token, std::string_view user_id,
                                        std::string_view role);
// One frame of `perfqctl top --json`.
[[nodiscard]] nlohmann::json top_frame_json(nlohmann::json health, nlohmann::json last_minute,
                                            double completed_per_second);

// A request id as every verb prints and takes it: 16 hex digits.
[[nodiscard]] std::string request_id_text(uint64_t id);

}  // namespace perfq::agent
