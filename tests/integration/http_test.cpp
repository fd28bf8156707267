// The HTTP plane (SPEC §6) of the running agent: probes without auth, every
// route against no, bad, user and admin tokens, validation codes, 429 with
// Retry-After, the owner check, and limits (oversized bodies, slow clients)
// that never disturb other clients.
#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "harness.hpp"
#include "perfq/agent/auth.hpp"

namespace perfq {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace fs = std::filesystem;
using tcp = asio::ip::tcp;

struct Reply {
  int status = 0;
  std::string body;
  std::string retry_after;
  std::string www_authenticate;
  [[nodiscard]] json parsed() const { return json::parse(body, nullptr, false); }
};

tcp::endpoint endpoint_of(const std::string& address) {
  const auto colon = address.rfind(':');
  return {asio::ip::make_address(address.substr(0, colon)),
          static_cast<unsigned short>(std::stoi(address.substr(colon + 1)))};
}

// One request on its own connection, bounded by a 20 s deadline.
Reply call(const std::string& address, http::verb method, const std::string& target,
           const std::string& token = {}, const std::string& body = {}) {
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.expires_after(20s);
  stream.connect(endpoint_of(address));
  http::request<http::string_body> req(method, target, 11);
  req.set(http::field::host, "localhost");
  if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
  if (!body.empty()) {
    req.set(http::field::content_type, "application/json");
    req.body() = body;
  }
  req.prepare_payload();
  // The server may answer (413) before the body is all written; the answer
  // is read whatever the write reports.
  beast::error_code ec;
  http::write(stream, req, ec);
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(stream, buf, res, ec);
  Reply r;
  if (ec) return r;
  r.status = static_cast<int>(res.result_int());
  r.body = res.body();
  if (auto it = res.find(http::field::retry_after); it != res.end())
    r.retry_after = std::string(it->value());
  if (auto it = res.find(http::field::www_authenticate); it != res.end()) {
    r.www_authenticate = std::string(it->value());
  }
  return r;
}

class Http : public ::testing::Test {
 protected:
  void SetUp() override {
    cfg_ = test::test_config(q_.str());
    fs::remove_all(cfg_.data_dir);
    fs::create_directories(cfg_.data_dir);
    cfg_.tokens = cfg_.data_dir + "/tokens";
    auto u = agent::create_token(cfg_.tokens, "ann", agent::Role::kUser);
    auto b = agent::create_token(cfg_.tokens, "bob", agent::Role::kUser);
    auto a = agent::create_token(cfg_.tokens, "root-ops", agent::Role::kAdmin);
    ASSERT_TRUE(u.ok() && b.ok() && a.ok());
    user_ = *u;
    other_ = *b;
    admin_ = *a;
    cfg_.http = "127.0.0.1:0";
    cfg_.http_request_timeout_ms = 500;
  }
  void TearDown() override {
    if (daemon_.pid() > 0) {
      daemon_.kill(SIGTERM);
      (void)daemon_.wait(20s);
    }
    fs::remove_all(cfg_.data_dir);
  }
  void start() {
    daemon_ = test::spawn_daemon(cfg_);
    auto seg = shm::Segment::attach(q_.str());
    ASSERT_TRUE(seg.ok());
    seg_ = std::move(*seg);
    address_ = std::string(seg_->header().http_address);
    ASSERT_FALSE(address_.empty());
  }
  Reply get(const std::string& target, const std::string& token = {}) {
    return call(address_, http::verb::get, target, token);
  }
  Reply post(const std::string& target, const std::string& token, const std::string& body) {
    return call(address_, http::verb::post, target, token, body);
  }
  Reply submit(const std::string& token, const std::string& body) {
    return post("/performance-queue/submit", token, body);
  }

  test::QueueName q_;
  agent::Config cfg_;
  test::Child daemon_;
  std::unique_ptr<shm::Segment> seg_;
  std::string address_;
  std::string user_, other_, admin_;
};

TEST_F(Http, ProbesAnswerWithoutAuthAndRevealNothing) {
  start();
  const Reply live = get("/livez");
  EXPECT_EQ(live.status, 200);
  EXPECT_TRUE(live.body.empty());
  const Reply ready = get("/readyz");
  EXPECT_EQ(ready.status, 200);
  EXPECT_TRUE(ready.body.empty());
}

TEST_F(Http, EveryRouteAgainstNoBadUserAndAdminTokens) {
  start();
  // Something to look at: a request of ann's, and a DLQ entry.
  const Reply s = submit(user_, R"({"type":"nobody-serves-this","payload":{"m":"hi"}})");
  ASSERT_EQ(s.status, 201) << s.body;
  const std::string id = s.parsed()["requestId"];
  struct Route {
    http::verb method;
    std::string target;
    std::string body;
    bool admin_only;
  };
  const std::vector<Route> routes = {
      {http::verb::post, "/performance-queue/submit", R"({"type":"t"})", false},
      {http::verb::get, "/performance-queue/status/" + id, "", false},
      {http::verb::delete_, "/performance-queue/cancel/0000000000000001", "", false},
      {http::verb::get, "/performance-queue/dlq?limit=5", "", true},
      {http::verb::get, "/performance-queue/dlq/1", "", true},
      {http::verb::post, "/performance-queue/dlq/1/review", R"({"resolution":"x"})", true},
      {http::verb::post, "/performance-queue/dlq/1/replay", "", true},
  };
  for (const Route& r : routes) {
    SCOPED_TRACE(r.target);
    const Reply none = call(address_, r.method, r.target, "", r.body);
    EXPECT_EQ(none.status, 401);
    EXPECT_EQ(none.parsed()["error"], "UNAUTHORIZED");
    EXPECT_EQ(none.www_authenticate, "Bearer");
    const Reply bad = call(address_, r.method, r.target, "pq_not-a-real-token", r.body);
    EXPECT_EQ(bad.status, 401);
    const Reply user = call(address_, r.method, r.target, user_, r.body);
    if (r.admin_only) {
      EXPECT_EQ(user.status, 403);
      EXPECT_EQ(user.parsed()["error"], "FORBIDDEN");
    } else {
      EXPECT_NE(user.status, 401);
      EXPECT_NE(user.status, 403);
    }
    const Reply admin = call(address_, r.method, r.target, admin_, r.body);
    EXPECT_NE(admin.status, 401);
    EXPECT_NE(admin.status, 403);
  }
  // Auth failures are audited, never with the token.
  daemon_.kill(SIGTERM);
  ASSERT_EQ(daemon_.wait(20s), 0);
  std::ifstream in(cfg_.data_dir + "/audit.log");
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_NE(ss.str().find("\"event\":\"http.unauthorized\""), std::string::npos);
  EXPECT_EQ(ss.str().find("pq_not-a-real-token"), std::string::npos);
  EXPECT_EQ(ss.str().find(user_), std::string::npos);
}

TEST_F(Http, ValidationErrorsAre400) {
  start();
  for (const char* body : {R"({"type":"t","priority":0})", R"({"type":"t","priority":21})",
                           R"({"type":"t","mode":"lifo"})", R"({"priority":5})", "not json"}) {
    SCOPED_TRACE(body);
    const Reply r = submit(user_, body);
    EXPECT_EQ(r.status, 400);
    EXPECT_TRUE(r.parsed().contains("statusCode"));
  }
  for (const char* q : {"?limit=0", "?limit=101", "?limit=abc", "?limit=", "?all=yes"}) {
    SCOPED_TRACE(q);
    EXPECT_EQ(get(std::string("/performance-queue/dlq") + q, admin_).status, 400);
  }
  EXPECT_EQ(get("/performance-queue/status/xyz", user_).status, 400);
  EXPECT_EQ(get("/performance-queue/nothing-here", user_).status, 404);
}

TEST_F(Http, TheSixtyFirstSubmitIs429WithRetryAfter) {
  cfg_.max_requests_per_user_per_minute = 60;
  cfg_.rate_limit_table_entries = 64;
  start();
  for (int i = 0; i < 60; ++i) {
    ASSERT_EQ(submit(user_, R"({"type":"nobody-serves-this"})").status, 201) << i;
  }
  const Reply r = submit(user_, R"({"type":"nobody-serves-this"})");
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(r.parsed()["error"], "RATE_LIMIT_EXCEEDED");
  ASSERT_FALSE(r.retry_after.empty());
  EXPECT_GE(std::stoi(r.retry_after), 1);
  // Another user is not limited by ann's submits.
  EXPECT_EQ(submit(other_, R"({"type":"nobody-serves-this"})").status, 201);
}

TEST_F(Http, AnotherUsersRequestIsNotFoundButAnAdminSeesIt) {
  start();
  const Reply s = submit(user_, R"({"type":"nobody-serves-this","userId":"bob"})");
  ASSERT_EQ(s.status, 201);
  const std::string id = s.parsed()["requestId"];
  const Reply mine = get("/performance-queue/status/" + id, user_);
  ASSERT_EQ(mine.status, 200);
  EXPECT_EQ(mine.parsed()["userId"], "ann") << "the user comes from the token, not the body";
  EXPECT_EQ(get("/performance-queue/status/" + id, other_).status, 404);
  EXPECT_EQ(get("/performance-queue/status/" + id, admin_).status, 200);
  EXPECT_EQ(call(address_, http::verb::delete_, "/performance-queue/cancel/" + id, other_).status,
            404);
  EXPECT_EQ(call(address_, http::verb::delete_, "/performance-queue/cancel/" + id, user_).status,
            204);
}

TEST_F(Http, OversizedBodiesAndSlowClientsAreRefusedWithoutDisturbingOthers) {
  start();
  // A slow client: half a request line, then nothing.
  asio::io_context ioc;
  tcp::socket slow(ioc);
  slow.connect(endpoint_of(address_));
  asio::write(slow,
              asio::buffer(std::string("POST /performance-queue/submit HTTP/1.1\r\nHost: x")));
  // Others are served meanwhile.
  EXPECT_EQ(get("/livez").status, 200);
  EXPECT_EQ(submit(user_, R"({"type":"nobody-serves-this"})").status, 201);
  // An oversized body is 413, and so is a payload larger than a slot.
  const std::string huge = R"({"type":"t","payload":")" + std::string(2 << 20, 'x') + "\"}";
  EXPECT_EQ(submit(user_, huge).status, 413);
  const Reply big = submit(user_, R"({"type":"t","payload":")" + std::string(1000, 'x') + "\"}");
  EXPECT_EQ(big.status, 413);
  EXPECT_EQ(big.parsed()["error"], "PAYLOAD_TOO_LARGE");
  // A deeply nested payload is refused, not followed.
  const std::string deep =
      R"({"type":"t","payload":)" + std::string(20000, '[') + std::string(20000, ']') + "}";
  EXPECT_EQ(submit(user_, deep).status, 400);
  EXPECT_EQ(get("/livez").status, 200);
  // The slow client is cut off after http_request_timeout_ms: its socket
  // reads end of file (bounded wait on the event).
  slow.non_blocking(false);
  struct timeval tv {
    20, 0
  };
  ::setsockopt(slow.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char c;
  beast::error_code ec;
  const std::size_t n = slow.read_some(asio::buffer(&c, 1), ec);
  EXPECT_EQ(n, 0u);
  EXPECT_EQ(ec, asio::error::eof) << ec.message();
}

}  // namespace
}  // namespace perfq
