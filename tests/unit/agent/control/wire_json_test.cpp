// The JSON bodies the agent answers and perfqctl prints
// (agent/src/control/wire_json.hpp), built in one place for both.
#include "control/wire_json.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "perfq/client/producer.hpp"
#include "perfq/shm/status.hpp"

namespace perfq::agent {
namespace {

using nlohmann::json;

TEST(WireJson, ErrorBodyCarriesRetryAfterOnlyWhenTheErrorHasOne) {
  const json limited = error_body(Error{Errc::kRateLimitExceeded, "slow down", 1500});
  EXPECT_EQ(limited["statusCode"], 429);
  EXPECT_EQ(limited["error"], "RATE_LIMIT_EXCEEDED");
  EXPECT_EQ(limited["message"], "slow down");
  EXPECT_EQ(limited["retryAfterMs"], 1500);
  const json plain = error_body(Error{Errc::kNotFound, "no such request"});
  EXPECT_EQ(plain["statusCode"], 404);
  EXPECT_FALSE(plain.contains("retryAfterMs"));
  EXPECT_TRUE(is_error_body(plain));
  EXPECT_FALSE(is_error_body(reviewed_json(3)));
}

TEST(WireJson, TextReplacesBytesThatAreNotUtf8) {
  // A type or a processor's error text comes from shared memory: a stray
  // byte must not make the answer fail.
  const std::string text = wire_text(json{{"message", std::string("bad \xff byte")}});
  EXPECT_EQ(text, "{\"message\":\"bad \xef\xbf\xbd byte\"}");
}

TEST(WireJson, StatusHasFinishedAtOnceFinalAndErrorOnlyWhenSet) {
  shm::RequestStatus st;
  st.request_id = 0xab;
  st.status = Status::kPending;
  st.mode = Mode::kPriority;
  st.band = Band::kHigh;
  st.priority = 12;
  st.type = "t";
  st.user_id = "alice";
  st.created_at_unix_ns = 1'796'000'000'000'000'000;
  json j = status_json(st);
  EXPECT_EQ(j["requestId"], "00000000000000ab");
  EXPECT_EQ(j["band"], "HIGH");
  EXPECT_EQ(j["mode"], "priority");
  EXPECT_FALSE(j.contains("finishedAt"));
  EXPECT_FALSE(j.contains("error"));
  st.status = Status::kFailed;
  st.error = Errc::kProcessorError;
  st.finished_at_unix_ns = st.created_at_unix_ns + 1'000'000;
  j = status_json(st);
  EXPECT_TRUE(j["finishedAt"].is_string());
  EXPECT_EQ(j["error"], "PROCESSOR_ERROR");
}

TEST(WireJson, SubmittedSaysUnknownForADuplicateWhoseStatusIsGone) {
  Submitted s;
  s.request_id = 7;
  s.duplicate = true;
  s.status_known = false;
  const json j = submitted_json(s, "chat.message");
  EXPECT_EQ(j["status"], "unknown");
  EXPECT_EQ(j["duplicate"], true);
  EXPECT_EQ(j["type"], "chat.message");
  Submitted fresh;
  EXPECT_FALSE(submitted_json(fresh, "t").contains("duplicate"));
  EXPECT_EQ(submitted_json(fresh, "t")["status"], "pending");
}

}  // namespace
}  // namespace perfq::agent
