// The HTTP plane (SPEC §6) of the running agent: probes without auth, every
// route against no, bad, user and admin tokens, validation codes, 429 with
// Retry-After, the owner check, limits (oversized bodies, slow clients)
// that never disturb other clients, and server-sent events.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "daemon_test.hpp"
#include "harness.hpp"
#include "http/auth.hpp"
#include "http/probe_server.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/version.hpp"
#include "prometheus.hpp"

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

// One request on its own connection, each step bounded by 20 s.
Reply call(const std::string& address, http::verb method, const std::string& target,
           const std::string& token = {}, const std::string& body = {}) {
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.expires_after(20s);
  stream.connect(endpoint_of(address));
  // The deadline above bounds the connect only: Beast's synchronous reads
  // and writes do not see it. The socket's own timeouts bound them.
  struct timeval tv {
    20, 0
  };
  ::setsockopt(stream.socket().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(stream.socket().native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
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

// One block of a server-sent events stream: an event, or a comment.
struct SseEvent {
  std::string id;
  std::string event;
  std::string data;
  std::string comment;
  [[nodiscard]] json parsed() const { return json::parse(data, nullptr, false); }
};

// A client of GET /performance-queue/events. Every read is bounded: it polls
// the socket before reading what is there.
class SseClient {
 public:
  SseClient(const std::string& address, const std::string& token,
            const std::string& last_event_id = {}) {
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    beast::error_code ec;
    sock_.connect(endpoint_of(address), ec);
    if (ec) return;
    http::request<http::empty_body> req(http::verb::get, "/performance-queue/events", 11);
    req.set(http::field::host, "localhost");
    if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
    if (!last_event_id.empty()) req.set("Last-Event-ID", last_event_id);
    http::write(sock_, req, ec);
    if (ec) return;
    parser_.eager(true);
    parser_.body_limit(std::numeric_limits<std::uint64_t>::max());
    while (!parser_.is_header_done() && feed(deadline)) {
    }
  }

  [[nodiscard]] int status() const {
    return parser_.is_header_done() ? static_cast<int>(parser_.get().result_int()) : 0;
  }
  [[nodiscard]] std::string header(std::string_view name) const {
    const auto& m = parser_.get();
    auto it = m.find(beast::string_view(name.data(), name.size()));
    return it == m.end() ? std::string() : std::string(it->value());
  }
  [[nodiscard]] bool has_header(std::string_view name) const {
    return parser_.get().find(beast::string_view(name.data(), name.size())) != parser_.get().end();
  }
  // The body of a complete (non-stream) answer, such as a 503.
  [[nodiscard]] std::string body() {
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!parser_.is_done() && feed(deadline)) {
    }
    return text_;
  }

  // The next event or comment, waiting at most `bound`.
  bool next(SseEvent& out, std::chrono::milliseconds bound) {
    const auto deadline = std::chrono::steady_clock::now() + bound;
    for (;;) {
      const auto end = text_.find("\n\n");
      if (end != std::string::npos) {
        out = parse(text_.substr(0, end));
        text_.erase(0, end + 2);
        return true;
      }
      if (!feed(deadline)) return false;
    }
  }

  // Reads events until `want` holds for one, at most `bound`.
  bool next_where(const std::function<bool(const SseEvent&)>& want, std::chrono::milliseconds bound,
                  SseEvent* got = nullptr) {
    const auto deadline = std::chrono::steady_clock::now() + bound;
    SseEvent e;
    while (next(e, std::chrono::duration_cast<std::chrono::milliseconds>(
                       deadline - std::chrono::steady_clock::now()))) {
      if (want(e)) {
        if (got != nullptr) *got = e;
        return true;
      }
    }
    return false;
  }

  // Reads until the server ends the stream, at most `bound`; true when it
  // ended it properly (the last chunk).
  bool ended_cleanly(std::chrono::milliseconds bound) {
    const auto deadline = std::chrono::steady_clock::now() + bound;
    while (!parser_.is_done() && feed(deadline)) {
    }
    return parser_.is_done();
  }

  void close() {
    beast::error_code ignored;
    sock_.close(ignored);
  }

 private:
  static SseEvent parse(const std::string& block) {
    SseEvent e;
    std::istringstream in(block);
    std::string line;
    while (std::getline(in, line)) {
      const auto colon = line.find(':');
      const std::string field = line.substr(0, colon);
      std::string value = colon == std::string::npos ? "" : line.substr(colon + 1);
      if (!value.empty() && value[0] == ' ') value.erase(0, 1);
      if (field.empty()) e.comment = value;
      if (field == "id") e.id = value;
      if (field == "event") e.event = value;
      if (field == "data") e.data += value;
    }
    return e;
  }

  // One read of what the server sent, at most until `deadline`, through the
  // parser (which takes the chunks apart); false on timeout or end.
  bool feed(std::chrono::steady_clock::time_point deadline) {
    if (!sock_.is_open()) return false;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{sock_.native_handle(), POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    beast::error_code ec;
    const std::size_t n = sock_.read_some(buf_.prepare(4096), ec);
    if (ec) return false;
    buf_.commit(n);
    while (buf_.size() > 0 && !parser_.is_done()) {
      const std::size_t used = parser_.put(buf_.data(), ec);
      buf_.consume(used);
      if (ec == http::error::need_more) break;
      if (ec) return false;
    }
    text_ += parser_.get().body();
    parser_.get().body().clear();
    return true;
  }

  asio::io_context ioc_;
  tcp::socket sock_{ioc_};
  beast::flat_buffer buf_;
  http::response_parser<http::string_body> parser_;
  std::string text_;  // body not yet taken apart into events
};

class Http : public test::DaemonTest {
 protected:
  void SetUp() override {
    DaemonTest::SetUp();
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
  void start() {
    start_daemon();
    ASSERT_TRUE(seg_);
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
  // The agent writes events once it has seen a reader (its next liveness
  // pass). Submits probes until one reaches `s`: from then on every event
  // does. The probes wait for a worker that never comes, so they make no
  // more events.
  void wait_for_event_flow(SseClient& s) {
    for (int i = 0; i < 50; ++i) {
      const Reply r = submit(admin_, R"({"type":"probe-nobody-serves"})");
      ASSERT_EQ(r.status, 201) << r.body;
      const std::string id = r.parsed()["requestId"];
      if (s.next_where([&](const SseEvent& e) { return e.parsed()["requestId"] == id; }, 200ms)) {
        return;
      }
    }
    FAIL() << "no event reached the stream";
  }

  std::string address_;
  std::string user_, other_, admin_;
};

TEST_F(Http, ProbesAnswerWithoutAuthAndRevealNothing) {
  start();
  const Reply live = get("/livez");
  EXPECT_EQ(live.status, 200);
  EXPECT_EQ(live.body, "live\n");
  const Reply ready = get("/readyz");
  EXPECT_EQ(ready.status, 200);
  EXPECT_EQ(ready.body, "ready\n");
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
      {http::verb::get, "/performance-queue/health", "", true},
      {http::verb::get, "/performance-queue/metrics?period=5", "", true},
      {http::verb::get, "/metrics", "", true},
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
  // What the admin gets from the observability routes: ann's request and
  // the submits of the user and the admin above, none served.
  const Reply health = get("/performance-queue/health", admin_);
  ASSERT_EQ(health.status, 200);
  EXPECT_EQ(health.parsed()["pendingCount"], 3) << health.body;
  EXPECT_TRUE(health.parsed()["status"] == "healthy") << health.body;
  const Reply metrics = get("/performance-queue/metrics", admin_);
  ASSERT_EQ(metrics.status, 200);
  EXPECT_EQ(metrics.parsed()["period"], "60 minutes");  // the default
  EXPECT_EQ(metrics.parsed()["totalSubmitted"], 3) << metrics.body;
  const Reply prom = get("/metrics", admin_);
  ASSERT_EQ(prom.status, 200);
  EXPECT_NE(prom.body.find("# TYPE perfq_requests_submitted_total counter"), std::string::npos);
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
  for (const char* q : {"?period=0", "?period=1441", "?period=abc", "?period=", "?period=-1",
                        "?period=60m", "?period=99999"}) {
    SCOPED_TRACE(q);
    const Reply r = get(std::string("/performance-queue/metrics") + q, admin_);
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.parsed()["error"], "INVALID_REQUEST");
  }
  EXPECT_EQ(get("/performance-queue/metrics?period=1440", admin_).status, 200);
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

TEST_F(Http, AFullQueueIs503AfterTheRopeDropWait) {
  cfg_.max_queue_depth = 2;
  cfg_.rope_drop_timeout_ms = 100;
  start();
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(submit(user_, R"({"type":"nobody-serves-this"})").status, 201) << i;
  }
  // Nobody serves the type: no room comes, the submit waits out the rope
  // drop and is refused.
  const Reply r = submit(user_, R"({"type":"nobody-serves-this"})");
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_EQ(r.parsed()["error"], "QUEUE_FULL");
  // Other routes are served meanwhile and after.
  EXPECT_EQ(get("/performance-queue/health", admin_).parsed()["capacityUtilization"], 100);
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
  const Reply big =
      submit(user_, R"({"type":"t","payload":{"m":")" + std::string(1000, 'x') + "\"}}");
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

// ---- server-sent events (SPEC §5 events, §6)

TEST_F(Http, TheEventStreamIsForAdminsOnly) {
  start();
  // Through SseClient, whose reads are bounded even if a stream answers.
  SseClient none(address_, "");
  EXPECT_EQ(none.status(), 401);
  EXPECT_EQ(none.header("WWW-Authenticate"), "Bearer");
  EXPECT_EQ(SseClient(address_, "pq_not-a-real-token").status(), 401);
  SseClient user(address_, user_);
  EXPECT_EQ(user.status(), 403);
  EXPECT_NE(user.body().find("\"error\":\"FORBIDDEN\""), std::string::npos);
  EXPECT_EQ(call(address_, http::verb::post, "/performance-queue/events", admin_).status, 404)
      << "GET only";
  SseClient admin(address_, admin_);
  ASSERT_EQ(admin.status(), 200);
  EXPECT_EQ(admin.header("Content-Type"), "text/event-stream");
  EXPECT_EQ(admin.header("Cache-Control"), "no-cache");
  EXPECT_FALSE(admin.has_header("Content-Length"));
  EXPECT_EQ(admin.header("Transfer-Encoding"), "chunked");
}

TEST_F(Http, TheEventStreamDeliversARequestsEventsInOrderWithoutItsPayload) {
  start();
  test::Signal ready;
  test::Child worker = test::spawn_worker(
      q_.str(), "echo", [](const Job&) { return perfq::Reply::ok(); }, &ready);
  ASSERT_EQ(ready.wait(20s), 1);
  SseClient s(address_, admin_);
  ASSERT_EQ(s.status(), 200);
  ASSERT_NO_FATAL_FAILURE(wait_for_event_flow(s));

  const Reply r = submit(user_, R"({"type":"echo","payload":{"m":"secret-payload"}})");
  ASSERT_EQ(r.status, 201) << r.body;
  const std::string id = r.parsed()["requestId"];
  std::vector<SseEvent> mine;
  ASSERT_TRUE(s.next_where(
      [&](const SseEvent& e) {
        if (e.parsed()["requestId"] != id) return false;
        mine.push_back(e);
        return e.event == "request.completed";
      },
      20s));
  std::vector<std::string> names;
  for (const SseEvent& e : mine) names.push_back(e.event);
  EXPECT_EQ(names, (std::vector<std::string>{"request.submitted", "request.assigned",
                                             "request.processing", "request.completed"}));
  const std::vector<std::string> statuses = {"pending", "assigned", "processing", "completed"};
  for (std::size_t k = 0; k < mine.size(); ++k) {
    const json d = mine[k].parsed();
    EXPECT_EQ(d["event"], mine[k].event);
    EXPECT_EQ(d["id"].get<uint64_t>(), std::stoull(mine[k].id))
        << "the SSE id is the ring position";
    EXPECT_EQ(d["type"], "echo");
    EXPECT_EQ(d["userId"], "ann");
    if (k < statuses.size()) {
      EXPECT_EQ(d["status"], statuses[k]);
    }
    EXPECT_EQ(mine[k].data.find("secret-payload"), std::string::npos) << "never a payload";
    if (k > 0) {
      EXPECT_GT(std::stoull(mine[k].id), std::stoull(mine[k - 1].id));
    }
  }

  // A client that reconnects with Last-Event-ID resumes after that event:
  // the ring still holds the rest.
  ASSERT_FALSE(mine.empty());
  SseClient again(address_, admin_, mine[0].id);
  ASSERT_EQ(again.status(), 200);
  SseEvent first;
  ASSERT_TRUE(again.next_where([](const SseEvent& e) { return !e.id.empty(); }, 20s, &first));
  EXPECT_EQ(std::stoull(first.id), std::stoull(mine[0].id) + 1);
  std::vector<std::string> resumed;
  if (first.parsed()["requestId"] == id) resumed.push_back(first.event);
  ASSERT_TRUE(again.next_where(
      [&](const SseEvent& e) {
        if (e.parsed()["requestId"] != id) return false;
        resumed.push_back(e.event);
        return e.event == "request.completed";
      },
      20s));
  EXPECT_EQ(resumed, (std::vector<std::string>{"request.assigned", "request.processing",
                                               "request.completed"}));
}

TEST_F(Http, OtherClientsAreServedWhileMoreStreamsThanHandlerThreadsAreOpen) {
  start();
  // Five streams against a pool of four handler threads: a stream holds none.
  std::vector<std::unique_ptr<SseClient>> streams;
  for (int i = 0; i < 5; ++i) {
    streams.push_back(std::make_unique<SseClient>(address_, admin_));
    ASSERT_EQ(streams.back()->status(), 200) << i;
  }
  ASSERT_NO_FATAL_FAILURE(wait_for_event_flow(*streams[0]));
  EXPECT_EQ(get("/livez").status, 200);
  const Reply r = submit(user_, R"({"type":"nobody-serves-this"})");
  ASSERT_EQ(r.status, 201);
  const std::string id = r.parsed()["requestId"];
  EXPECT_EQ(get("/performance-queue/status/" + id, user_).status, 200);
  EXPECT_EQ(get("/performance-queue/dlq", admin_).status, 200);
  // And every stream carries the submit's event.
  for (auto& s : streams) {
    EXPECT_TRUE(s->next_where(
        [&](const SseEvent& e) {
          return e.event == "request.submitted" && e.parsed()["requestId"] == id;
        },
        20s));
  }
}

TEST_F(Http, StreamsBeyondTheCapAre503AndAClosedStreamFreesItsPlace) {
  cfg_.http_max_event_streams = 1;
  // No keep-alive write within the test: only reading the connection can
  // tell the server that the client left.
  cfg_.http_event_keep_alive_ms = 3'600'000;
  start();
  auto first = std::make_unique<SseClient>(address_, admin_);
  ASSERT_EQ(first->status(), 200);
  SseClient second(address_, admin_);
  EXPECT_EQ(second.status(), 503);
  EXPECT_FALSE(second.header("Retry-After").empty());
  EXPECT_NE(second.body().find("\"error\":\"SERVICE_UNAVAILABLE\""), std::string::npos);
  // The server sees the client leave (it reads the connection) and ends the
  // stream: a new one is admitted.
  first->close();
  EXPECT_TRUE(test::eventually([&] { return SseClient(address_, admin_).status() == 200; }, 20s));
}

TEST_F(Http, AnIdleStreamGetsKeepAliveComments) {
  cfg_.http_event_keep_alive_ms = 20;
  start();
  SseClient s(address_, admin_);
  ASSERT_EQ(s.status(), 200);
  EXPECT_TRUE(s.next_where([](const SseEvent& e) { return e.comment == "keep-alive"; }, 20s));
}

TEST_F(Http, TheAgentStopsCleanlyWithStreamsOpenAndEndsThem) {
  start();
  SseClient a(address_, admin_);
  SseClient b(address_, admin_);
  ASSERT_EQ(a.status(), 200);
  ASSERT_EQ(b.status(), 200);
  daemon_.kill(SIGTERM);
  EXPECT_EQ(daemon_.wait(20s), 0);
  EXPECT_TRUE(a.ended_cleanly(20s)) << "the last chunk, not a cut connection";
  EXPECT_TRUE(b.ended_cleanly(20s));
}

// ---- hostile clients (issue 13 points 16, 17, 20, 21)

// Descriptors the agent holds (its /proc/PID/fd entries).
std::size_t open_fds(pid_t pid) {
  std::size_t n = 0;
  std::error_code ec;
  for (auto it = fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
       !ec && it != fs::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

// A raw connection; its reads are bounded by SO_RCVTIMEO.
int raw_connect(const std::string& address) {
  const tcp::endpoint ep = endpoint_of(address);
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct timeval tv {
    20, 0
  };
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(fd, ep.data(), static_cast<socklen_t>(ep.size())) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Sends `request` as is, then reads until the server closes (or 20 s pass).
std::string raw_exchange(const std::string& address, const std::string& request) {
  const int fd = raw_connect(address);
  if (fd < 0) return {};
  (void)::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string got;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return got;
}

TEST_F(Http, AFloodOfIdleAndHalfSentConnectionsNeitherHoldsDescriptorsNorLocksOutProbes) {
  cfg_.http_max_connections = 8;
  cfg_.http_request_timeout_ms = 3'600'000;  // nothing is cut by a timeout here
  start();
  const std::size_t before = open_fds(daemon_.pid());
  std::vector<int> flood;
  for (int i = 0; i < 40; ++i) {
    const int fd = raw_connect(address_);
    ASSERT_GE(fd, 0);
    if (i % 2 == 1) {
      const std::string half = "GET /livez HTTP/1.1\r\nHo";
      ASSERT_EQ(::send(fd, half.data(), half.size(), MSG_NOSIGNAL),
                static_cast<ssize_t>(half.size()));
    }
    flood.push_back(fd);
  }
  // The probes answer through the flood.
  EXPECT_EQ(get("/livez").status, 200);
  EXPECT_EQ(get("/readyz").status, 200);
  // The agent holds at most the cap (a little slack for its own files).
  EXPECT_TRUE(test::eventually([&] { return open_fds(daemon_.pid()) <= before + 8 + 4; }, 20s))
      << open_fds(daemon_.pid()) << " descriptors, " << before << " before the flood";
  // The connections it let go were closed (end of file or reset), not left
  // hanging: wait for that, bounded, taking each closed one out of the set.
  std::vector<pollfd> open;
  for (int fd : flood) open.push_back({fd, POLLIN, 0});
  std::size_t closed = 0;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (closed < 40 - 8 && std::chrono::steady_clock::now() < deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (::poll(open.data(), open.size(), static_cast<int>(left.count()) + 1) <= 0) break;
    std::erase_if(open, [&](const pollfd& p) { return p.revents != 0 && ++closed > 0; });
  }
  for (int fd : flood) ::close(fd);
  EXPECT_GE(closed, 40u - 8u);
  EXPECT_EQ(get("/livez").status, 200);
}

TEST_F(Http, OverTheCapWithEveryConnectionBusyANewOneIsRefusedAtOnce) {
  cfg_.http_max_connections = 2;
  cfg_.http_request_timeout_ms = 3'600'000;
  cfg_.http_event_keep_alive_ms = 3'600'000;
  start();
  // Two event streams: busy connections, not evictable.
  SseClient a(address_, admin_);
  SseClient b(address_, admin_);
  ASSERT_EQ(a.status(), 200);
  ASSERT_EQ(b.status(), 200);
  const std::size_t busy = open_fds(daemon_.pid());
  // Clients that keep their end open: the agent must not hold its own.
  std::vector<int> refused;
  for (int i = 0; i < 20; ++i) {
    const int fd = raw_connect(address_);
    ASSERT_GE(fd, 0);
    refused.push_back(fd);
    std::string got;
    char buf[4096];
    for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) got.append(buf, n);
    EXPECT_EQ(got.rfind("HTTP/1.1 503", 0), 0u) << got;
  }
  // None of them is held.
  EXPECT_TRUE(test::eventually([&] { return open_fds(daemon_.pid()) <= busy; }, 20s))
      << open_fds(daemon_.pid()) << " descriptors, " << busy << " with the streams alone";
  for (int fd : refused) ::close(fd);
}

TEST_F(Http, MalformedRequestsAre400AndTheConnectionCloses) {
  start();
  using namespace std::string_literals;
  const std::string ok = "GET /livez HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(raw_exchange(address_, ok).rfind("HTTP/1.1 200", 0), 0u);
  const std::vector<std::string> bad = {
      "GET /livez HTTP/2.0\r\nHost: x\r\n\r\n"s,
      "GET /livez HTTP/1.2\r\nHost: x\r\n\r\n"s,
      "GET /livez HTTP/1.x\r\nHost: x\r\n\r\n"s,
      "GET /livez http/1.1\r\nHost: x\r\n\r\n"s,
      "GET /livez HTTP/1.1\rHost: x\r\n\r\n"s,               // bare CR
      "GET /livez HTTP/1.1\r\nHost: x\rX: y\r\n\r\n"s,       // bare CR in a header
      "GET /li\0vez HTTP/1.1\r\nHost: x\r\n\r\n"s,           // NUL in the path
      "GET /livez HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n"s,  // NUL in a value
      "GET /livez HTTP/1.1\r\nHo\0st: x\r\n\r\n"s,           // NUL in a name
      "POST /livez HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"s,
      "POST /livez HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 2\r\n\r\nab"s,
      "POST /livez HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"s,
      "POST /livez HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\nab"s,
      "POST /livez HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n"s,
      "POST /livez HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n"s,
      "POST /livez HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2;\x01\r\nab\r\n0\r\n\r\n"s,
      "POST /livez HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\nab\r\n0\r\n\r\n"s,
      "POST /livez HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nab"s,
      "POST /livez HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n"s,
      "GET /livez HTTP/1.1\r\nHost: x\r\n X: a\r\n\r\n"s,       // a folded first line
      "GET /livez HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n"s,  // obs-fold
      "GET /livez HTTP/1.1\r\nHost: x\r\nX: a\r\n\tb\r\n\r\n"s,
      "GET /livez HTTP/1.1\r\n Host: x\r\n\r\n"s,
      "GET /livez HTTP/1.1\r\nHost : x\r\n\r\n"s,
      "GET /livez HTTP/1.1\r\n: v\r\nHost: x\r\n\r\n"s,
      "GET /livez HTTP/1.1\r\n\r\n"s,                        // no Host
      "GET /livez HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"s,  // two
      "G@T /livez HTTP/1.1\r\nHost: x\r\n\r\n"s,
      "GET livez HTTP/1.1\r\nHost: x\r\n\r\n"s,
      "GET /li vez HTTP/1.1\r\nHost: x\r\n\r\n"s,
      "GET /livez HTTP/1.1\nHost: x\n\n"s,
  };
  for (const std::string& r : bad) {
    SCOPED_TRACE(testing::PrintToString(r));
    const std::string got = raw_exchange(address_, r);
    EXPECT_EQ(got.rfind("HTTP/1.1 400", 0), 0u) << got;
    EXPECT_NE(got.find("\"error\":\"INVALID_REQUEST\""), std::string::npos) << got;
  }
  EXPECT_EQ(get("/livez").status, 200);
}

TEST_F(Http, APayloadIsAJsonObjectAndAnIdempotencyKeyIsNeverEmpty) {
  start();
  for (const std::string& body : std::vector<std::string>{
           R"({"type":"t","payload":"just a string"})", R"({"type":"t","payload":[1,2,3]})",
           R"({"type":"t","payload":5})", R"({"type":"t","payload":true})",
           R"({"type":"t","idempotencyKey":""})", R"({"type":"t","idempotencyKey":7})",
           R"({"type":"t","idempotencyKey":")" + std::string(129, 'k') + "\"}"}) {
    SCOPED_TRACE(body);
    const Reply r = submit(user_, body);
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_EQ(r.parsed()["error"], "INVALID_REQUEST");
    EXPECT_EQ(r.body.find("just a string"), std::string::npos) << "the value is not echoed";
  }
  EXPECT_EQ(submit(user_, R"({"type":"nobody-serves-this","payload":{"a":[1]}})").status, 201);
  EXPECT_EQ(submit(user_, R"({"type":"nobody-serves-this","payload":null})").status, 201);
  const std::string keyed = R"({"type":"nobody-serves-this","idempotencyKey":"k1"})";
  const Reply first = submit(user_, keyed);
  ASSERT_EQ(first.status, 201);
  EXPECT_EQ(submit(user_, keyed).parsed()["requestId"], first.parsed()["requestId"]);
}

TEST_F(Http, ASubmitWaitingForRoomParksAsAWaiterAndTheRoomMadeWakesIt) {
  cfg_.max_queue_depth = 1;
  cfg_.rope_drop_timeout_ms = 600'000;  // the wait ends by the room, never the timeout
  start();
  const Reply first = submit(user_, R"({"type":"nobody-serves-this"})");
  ASSERT_EQ(first.status, 201);
  Reply waited;
  std::thread t([&] { waited = submit(user_, R"({"type":"nobody-serves-this"})"); });
  // The agent wakes only announced waiters (core/wait_word.hpp).
  WaitWord& room = seg_->header().room;
  EXPECT_TRUE(test::eventually([&] { return load_relaxed(room.waiters) >= 1; }, 20s))
      << "the HTTP submit never raised room.waiters";
  const std::string id = first.parsed()["requestId"];
  EXPECT_EQ(call(address_, http::verb::delete_, "/performance-queue/cancel/" + id, user_).status,
            204);
  t.join();
  EXPECT_EQ(waited.status, 201) << waited.body;
}

// Issue 13 point 18: an agent that cannot serve HTTP as asked exits without
// leaving a new segment behind (a bad address is found before anything is
// made; a port in use, after: the segment it made is removed).
TEST_F(Http, AnAgentThatCannotServeHttpLeavesNoSegmentBehind) {
  asio::io_context ioc;
  tcp::acceptor taken(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const std::string in_use = "127.0.0.1:" + std::to_string(taken.local_endpoint().port());
  for (const std::string& address : {std::string("localhost:80"), std::string("1.2.3.4"),
                                     std::string("127.0.0.1:99999"), in_use}) {
    SCOPED_TRACE(address);
    agent::Config cfg = cfg_;
    cfg.http = address;
    test::Child agent([&] {
      std::atomic<bool> stop{false};
      return agent::run_daemon(cfg, stop);
    });
    EXPECT_EQ(agent.wait(20s), 1);
    EXPECT_FALSE(shm::Segment::attach(q_.str()).ok()) << "the segment stayed";
  }
}

// Refusals over HTTP count as the producer's do (rejections.hpp): the ones
// the HTTP plane makes itself, and a waiting submit's once.
TEST_F(Http, RefusedSubmitsAreCountedByReason) {
  cfg_.max_queue_depth = 1;
  cfg_.rope_drop_timeout_ms = 50;
  start();
  auto rejected = [&](const char* reason) {
    const Reply m = get("/metrics", admin_);
    const test::Exposition x = test::parse_exposition(m.body);
    EXPECT_EQ(x.error, "") << m.body;
    return x.value("perfq_rejected_total", {{"reason", reason}});
  };
  EXPECT_EQ(submit(user_, R"({"type":"t","priority":0})").status, 400);
  EXPECT_EQ(submit(user_, "[1]").status, 400);
  EXPECT_EQ(rejected("invalid"), 2);
  ASSERT_EQ(submit(user_, R"({"type":"nobody-serves-this"})").status, 201);
  EXPECT_EQ(submit(user_, R"({"type":"nobody-serves-this"})").status, 503);
  EXPECT_EQ(rejected("queue_full"), 1);
}

// ---------------------------------------------------------- the probe listener
// (http/probe_server.hpp), opened here on the running agent's segment as
// the daemon opens it for --probe-listen.

class Probes : public Http {
 protected:
  void TearDown() override {
    probes_.reset();
    Http::TearDown();
  }
  void open_probes(agent::ProbeOptions o = {}) {
    auto seg = shm::Segment::attach(q_.str());
    ASSERT_TRUE(seg.ok()) << seg.error().message;
    o.listen = "127.0.0.1:0";
    auto p = agent::ProbeServer::open(o, std::shared_ptr<shm::Segment>(std::move(*seg)),
                                      agent::HealthLimits{});
    ASSERT_TRUE(p.ok()) << p.error().message;
    ASSERT_TRUE(*p);
    probes_ = std::move(*p);
  }
  Reply probe(const std::string& target, http::verb method = http::verb::get,
              const std::string& token = {}) {
    return call(probes_->address(), method, target, token);
  }

  std::unique_ptr<agent::ProbeServer> probes_;
};

TEST_F(Probes, TheyAnswerWhileTheApiIsAtItsConnectionCap) {
  cfg_.http_max_connections = 2;
  cfg_.http_request_timeout_ms = 3'600'000;
  cfg_.http_event_keep_alive_ms = 3'600'000;
  start();
  ASSERT_NO_FATAL_FAILURE(open_probes());
  // Two event streams: the API's every connection is busy, a new one is
  // refused at once.
  SseClient a(address_, admin_);
  SseClient b(address_, admin_);
  ASSERT_EQ(a.status(), 200);
  ASSERT_EQ(b.status(), 200);
  EXPECT_EQ(get("/livez").status, 503);
  // The probe listener has its own thread and cap.
  const Reply live = probe("/livez");
  EXPECT_EQ(live.status, 200);
  EXPECT_EQ(live.body, "live\n");
  const Reply ready = probe("/readyz");
  EXPECT_EQ(ready.status, 200);
  EXPECT_EQ(ready.body, "ready\n");
  const Reply metrics = probe("/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_EQ(test::parse_exposition(metrics.body).error, "");
}

TEST_F(Probes, MetricsNeedNoTokenAndNothingElseIsServed) {
  start();
  ASSERT_NO_FATAL_FAILURE(open_probes());
  const Reply m = probe("/metrics");
  ASSERT_EQ(m.status, 200);
  const test::Exposition x = test::parse_exposition(m.body);
  ASSERT_EQ(x.error, "") << m.body;
  EXPECT_EQ(x.value("perfq_build_info", {{"version", kVersion}}), 1) << m.body;
  EXPECT_EQ(x.value("perfq_health_status", {{"status", "healthy"}}), 1);
  if (fs::exists("/usr/bin/promtool")) {
    const std::string file = cfg_.data_dir + "/probe-metrics.txt";
    std::ofstream(file) << m.body;
    const test::ToolRun r =
        test::run_tool({"/bin/sh", "-c", "/usr/bin/promtool check metrics < " + file});
    EXPECT_EQ(r.exit, 0) << r.out;
  }
  // None of the API's routes, with a token or without; only GET.
  EXPECT_EQ(probe("/performance-queue/health").status, 404);
  EXPECT_EQ(probe("/performance-queue/dlq", http::verb::get, admin_).status, 404);
  EXPECT_EQ(probe("/performance-queue/submit", http::verb::post, user_).status, 404);
  EXPECT_EQ(probe("/metrics", http::verb::post).status, 405);
  // The API's own /metrics still wants an admin.
  EXPECT_EQ(get("/metrics").status, 401);
  EXPECT_EQ(get("/metrics", user_).status, 403);
}

TEST_F(Probes, ADrainingAgentIsLiveButNotReady) {
  // The test writes the agent's state word; the liveness pass would put it
  // back at once with the test settings.
  cfg_.liveness_interval_ms = 600'000;
  start();
  ASSERT_NO_FATAL_FAILURE(open_probes());
  EXPECT_EQ(probe("/readyz").status, 200);
  uint32_t& state = seg_->header().agent_state;
  store_relaxed(state, static_cast<uint32_t>(shm::AgentState::kDraining));
  const Reply ready = probe("/readyz");
  EXPECT_EQ(ready.status, 503);
  EXPECT_EQ(ready.body, "draining\n");
  EXPECT_EQ(probe("/livez").status, 200);
  // The API's probes answer the same.
  EXPECT_EQ(get("/readyz").status, 503);
  EXPECT_EQ(get("/livez").status, 200);
  store_relaxed(state, static_cast<uint32_t>(shm::AgentState::kRunning));
  EXPECT_EQ(probe("/readyz").status, 200);
  // A stopped agent is neither.
  daemon_.kill(SIGTERM);
  ASSERT_EQ(daemon_.wait(20s), 0);
  for (const char* path : {"/livez", "/readyz"}) {
    const Reply r = probe(path);
    EXPECT_EQ(r.status, 503) << path;
    EXPECT_EQ(r.body, "stopped\n") << path;
  }
}

TEST_F(Probes, AStalledDutyCycleFailsBothUntilItBeatsAgain) {
  start();
  agent::ProbeOptions o;
  o.stall_ms = 1000;
  ASSERT_NO_FATAL_FAILURE(open_probes(o));
  EXPECT_TRUE(test::eventually([&] { return probe("/livez").status == 200; }, 20s));
  // A stopped process holds its liveness lock: only the heartbeat tells.
  daemon_.kill(SIGSTOP);
  EXPECT_TRUE(test::eventually([&] { return probe("/livez").status == 503; }, 20s));
  const Reply ready = probe("/readyz");
  EXPECT_EQ(ready.status, 503);
  EXPECT_EQ(ready.body.rfind("duty cycle stalled: heartbeat ", 0), 0u) << ready.body;
  daemon_.kill(SIGCONT);
  EXPECT_TRUE(test::eventually([&] { return probe("/livez").status == 200; }, 20s));
  EXPECT_TRUE(test::eventually([&] { return probe("/readyz").status == 200; }, 20s));
}

TEST_F(Probes, AFloodOfIdleConnectionsDoesNotLockThemOut) {
  start();
  agent::ProbeOptions o;
  o.max_connections = 4;
  o.request_timeout = std::chrono::milliseconds(3'600'000);  // nothing is cut by a timeout
  ASSERT_NO_FATAL_FAILURE(open_probes(o));
  std::vector<int> flood;
  for (int i = 0; i < 20; ++i) {
    const int fd = raw_connect(probes_->address());
    ASSERT_GE(fd, 0);
    flood.push_back(fd);
  }
  EXPECT_EQ(probe("/livez").status, 200);
  EXPECT_EQ(probe("/readyz").status, 200);
  EXPECT_EQ(probe("/metrics").status, 200);
  for (int fd : flood) ::close(fd);
}

TEST(ProbeServer, TakesOffOrAnIpAddressAndPort) {
  EXPECT_TRUE(agent::ProbeServer::check("off").ok());
  EXPECT_TRUE(agent::ProbeServer::check("0.0.0.0:9090").ok());
  EXPECT_TRUE(agent::ProbeServer::check("[::]:9090").ok());
  for (const char* bad : {"", "9090", "localhost:9090", "0.0.0.0:99999", "on"}) {
    const auto r = agent::ProbeServer::check(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().message.rfind("probe_listen: ", 0), 0u) << r.error().message;
  }
  auto off = agent::ProbeServer::open({}, nullptr, agent::HealthLimits{});
  ASSERT_TRUE(off.ok());
  EXPECT_FALSE(*off);
}

}  // namespace
}  // namespace perfq
