#pragma once
// The agent's HTTP server (SPEC §6): Boost.Beast over one Asio thread for the
// connections, with handlers run on a small pool (a submit may wait out the
// rope-drop timeout, a review waits for its fdatasync; neither may hold up
// other clients). Limits, each answered with its status code:
//   - header bytes (431), body bytes (413), connections (503, then close);
//   - a client that does not finish sending its request within
//     request_timeout is disconnected (slow clients cannot pin a
//     connection); so is one that does not read its answer in that time.
// The server knows nothing of routes: HttpApi (http_api.hpp) answers.
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
  std::string remote;  // "127.0.0.1:51234"
};

struct HttpResponse {
  HttpResponse() = default;
  HttpResponse(int s, std::string b) : status(s), body(std::move(b)) {}

  int status = 200;
  std::string body;  // empty: no body
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
};

struct HttpOptions {
  std::string listen = "127.0.0.1:0";  // host:port; port 0 picks one
  std::size_t max_connections = 256;
  std::size_t header_limit = 8 * 1024;
  std::size_t body_limit = (std::size_t{1} << 20) + 64 * 1024;  // a 1 MiB payload and its JSON
  std::chrono::milliseconds request_timeout{10'000};
  unsigned handler_threads = 4;
  // Answered on the connection thread, never queued behind blocked handlers
  // (the probes: an orchestrator must not see a busy agent as dead).
  std::vector<std::string> inline_paths = {"/livez", "/readyz"};
};

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;

  // Binds and starts serving. kInvalidRequest for a bad listen address,
  // kInternal when the bind fails.
  [[nodiscard]] static Result<std::unique_ptr<HttpServer>> open(HttpOptions options,
                                                                Handler handler);
  // Stops accepting, lets running handlers finish and their answers go out
  // (bounded by request_timeout), then closes every connection.
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
