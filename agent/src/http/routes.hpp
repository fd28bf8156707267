#pragma once
// The HTTP API of SPEC §6, base /performance-queue, over HttpServer:
//
//   GET    /livez, /readyz                      no auth, no data
//   GET    /metrics                             admin; Prometheus text
//   POST   /performance-queue/submit            201; user from the token
//   GET    /performance-queue/status/:id        the owner's (or an admin's) view
//   DELETE /performance-queue/cancel/:id        204
//   GET    /performance-queue/health            admin; SPEC §5 health
//   GET    /performance-queue/metrics?period=N  admin; SPEC §5 metrics
//   GET    /performance-queue/dlq?limit=N&all=  admin
//   GET    /performance-queue/dlq/:id           admin
//   POST   /performance-queue/dlq/:id/review    admin; 204
//   POST   /performance-queue/dlq/:id/replay    admin; 201
//   GET    /performance-queue/events            admin; text/event-stream
//                                               (event_feed.hpp), from the
//                                               ring's head, or after
//                                               Last-Event-ID
//
// The table of these routes, with the role each needs, is HttpApi::routes()
// (routes.cpp). Every route but the probes needs `Authorization: Bearer
// <token>`, and so does any other path under /performance-queue/ or
// /metrics: none or an unknown one is 401 (before the path is looked at), a
// path no route has 404, a user token on an admin route 403. Each auth
// failure goes to the audit log (coalesced per remote address per second),
// and so does every admin route, through AdminOps. Errors are SPEC's
// {statusCode, message, error}; 429 carries Retry-After.
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

#include "control/admin_ops.hpp"
#include "http/auth.hpp"
#include "http/route_table.hpp"
#include "http/server.hpp"

namespace perfq::shm {
class Segment;
}

namespace perfq::agent {

class HttpApi {
 public:
  // `tokens` may be null: then every authenticated route answers 401. An
  // event stream with nothing to say sends a keep-alive comment every
  // `event_keep_alive_ms` (0: never).
  HttpApi(AdminOps& ops, const TokenStore* tokens, std::shared_ptr<shm::Segment> seg,
          uint64_t event_keep_alive_ms = 15'000);

  // Thread-safe: called from the HTTP handler pool.
  HttpResponse handle(const HttpRequest& req);
  // Thread-safe: the tokens every request from now on is checked against
  // (a reload); requests already running keep the store they took.
  void set_tokens(std::shared_ptr<const TokenStore> tokens);
  // Submits waiting for room give up (QUEUE_FULL) from now on: the agent stops.
  void stop() noexcept;
  // Writes the auth failures still coalesced; after the server is closed.
  void flush_audit();

 private:
  // One request on its route: who asks (nobody on an open route) and the
  // pattern's ":id" segment.
  struct Call {
    const HttpRequest& req;
    const Principal& who;
    std::string_view param;
  };
  using Handler = HttpResponse (HttpApi::*)(const Call&);
  static std::span<const Route<Handler>> routes();

  HttpResponse livez(const Call& c);
  HttpResponse readyz(const Call& c);
  HttpResponse prometheus(const Call& c);
  HttpResponse submit(const Call& c);
  HttpResponse status(const Call& c);
  HttpResponse cancel(const Call& c);
  HttpResponse health(const Call& c);
  HttpResponse metrics(const Call& c);
  HttpResponse events(const Call& c);
  HttpResponse dlq_list(const Call& c);
  HttpResponse dlq_show(const Call& c);
  HttpResponse dlq_review(const Call& c);
  HttpResponse dlq_replay(const Call& c);

  // An admin verb through AdminOps (which audits it), its answer as HTTP.
  HttpResponse admin(const nlohmann::json& op, const Call& c, int ok_status);
  void auth_failed(const HttpRequest& req, const char* why);

  AdminOps& ops_;
  [[nodiscard]] std::shared_ptr<const TokenStore> tokens() const;
  mutable std::mutex tokens_mu_;
  std::shared_ptr<const TokenStore> tokens_;  // null: none (401); under tokens_mu_
  std::shared_ptr<shm::Segment> seg_;
  uint64_t event_keep_alive_ms_;
  static constexpr int kMaxWaitingSubmits = 3;  // of the pool's 4 threads
  std::atomic<int> waiting_submits_{0};
  std::atomic<bool> stopping_{false};
  std::mutex mu_;  // auth_failures_
  struct Failures {
    uint64_t last_line_ns = 0;
    uint64_t suppressed = 0;
  };
  std::unordered_map<std::string, Failures> auth_failures_;  // by remote host
};

}  // namespace perfq::agent
