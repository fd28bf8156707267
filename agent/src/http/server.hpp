#pragma once
// The agent's HTTP server (SPEC §6): Boost.Beast over one Asio thread for the
// connections, with handlers run on a small pool (a submit may wait out the
// rope-drop timeout, a review waits for its fdatasync; neither may hold up
// other clients). Limits, each answered with its status code:
//   - header bytes (431), body bytes (413);
//   - connections: at most max_connections hold a descriptor. Over the cap a
//     new connection takes the place of the oldest one that is only waiting
//     (for its request, or lingering after its answer), so a flood of idle
//     or half-sent sockets cannot keep the probes out; when every one is
//     busy (a handler or a stream) the new one gets 503 at once and is
//     closed. Out of descriptors, the listener rests briefly (no spinning);
//   - a request Beast cannot parse, or one HTTP/1.1 forbids (a version but
//     1.0/1.1, no or two Host headers, obs-fold, Transfer-Encoding not
//     ending in chunked, a target that is not a path), is answered 400 and
//     closed;
//   - a client that does not finish sending its request within
//     request_timeout is disconnected (slow clients cannot pin a
//     connection); so is one that does not read its answer in that time;
//   - streamed answers (server-sent events): max_streams at once (503), each
//     also a connection.
// The server knows nothing of routes: HttpApi (routes.hpp) answers.
//
// A streamed answer holds no handler thread: the handler returns at once
// with a `stream` source, and the connection's strand on the io thread
// polls it every stream_poll_interval, writing what it returns, until the
// client leaves (a read on the connection sees it go), a write is not read
// within request_timeout, or the server stops (the stream ends cleanly).
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "perfq/core/result.hpp"

namespace perfq::agent {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path and query, as sent
  std::string authorization;
  std::string body;
  std::string remote;         // "127.0.0.1:51234"
  std::string last_event_id;  // the Last-Event-ID header (an SSE client resuming)
};

// The source of a streamed answer: called on the io thread, one call at a
// time, every stream_poll_interval; appends the bytes to send next (nothing
// when nothing is new). Must not block.
using HttpStreamSource = std::function<void(std::string& out)>;

struct HttpResponse {
  HttpResponse() = default;
  HttpResponse(int s, std::string b) : status(s), body(std::move(b)) {}

  int status = 200;
  std::string body;  // empty: no body
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  // Set: a streamed answer. The head goes out without Content-Length
  // (chunked for HTTP/1.1, else until close), then what `stream` produces;
  // `body` is not sent. The connection ends with the stream.
  HttpStreamSource stream;
};

struct HttpOptions {
  std::string listen = "127.0.0.1:0";  // host:port; port 0 picks one
  std::size_t max_connections = 256;
  std::size_t header_limit = 8 * 1024;
  std::size_t body_limit = (std::size_t{1} << 20) + 64 * 1024;  // a 1 MiB payload and its JSON
  std::chrono::milliseconds request_timeout{10'000};
  unsigned handler_threads = 4;
  std::size_t max_streams = 16;
  std::chrono::milliseconds stream_poll_interval{50};
  // Answered on the connection thread, never queued behind blocked handlers
  // (the probes: an orchestrator must not see a busy agent as dead).
  std::vector<std::string> inline_paths = {"/livez", "/readyz"};
};

// Checks a listen address as HttpServer::open would take it (HOST:PORT, an
// IP address and 0..65535), without binding: the agent checks before it
// creates anything.
[[nodiscard]] Result<void> check_listen_address(const std::string& listen);

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;

  // Binds and starts serving. kInvalidRequest for a bad listen address,
  // kInternal when the bind fails.
  [[nodiscard]] static Result<std::unique_ptr<HttpServer>> open(HttpOptions options,
                                                                Handler handler);
  // Stops accepting, lets running handlers finish and their answers go out,
  // ends every stream (bounded by request_timeout), then closes every
  // connection.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The bound address, "127.0.0.1:34567".
  [[nodiscard]] const std::string& address() const noexcept;

  struct Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace perfq::agent
