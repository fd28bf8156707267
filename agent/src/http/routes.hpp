#pragma once
// The HTTP API of SPEC §6, base /performance-queue, over HttpServer:
//
//   GET    /livez, /readyz                      no auth, no data
//   POST   /performance-queue/submit            201; user from the token
//   GET    /performance-queue/status/:id        the owner's (or an admin's) view
//   DELETE /performance-queue/cancel/:id        204
//   GET    /performance-queue/dlq?limit=N       admin
//   GET    /performance-queue/dlq/:id           admin
//   POST   /performance-queue/dlq/:id/review    admin; 204
//   POST   /performance-queue/dlq/:id/replay    admin; 201
//   GET    /performance-queue/events            admin; text/event-stream
//                                               (event_feed.hpp), from the
//                                               ring's head, or after
//                                               Last-Event-ID
//
// Every route but the probes needs `Authorization: Bearer <token>`: none or
// an unknown one is 401, a user token on an admin route 403. Each auth
// failure goes to the audit log (coalesced per remote address per second),
// and so does every admin route, through AdminOps. Errors are SPEC's
// {statusCode, message, error}; 429 carries Retry-After.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "control/admin.hpp"
#include "http/auth.hpp"
#include "http/server.hpp"
#include "perfq/client/producer.hpp"

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
  // Submits waiting for room give up (QUEUE_FULL) from now on: the agent stops.
  void stop() noexcept;

 private:
  HttpResponse submit(const HttpRequest& req, const Principal& who);
  HttpResponse status(uint64_t id, const Principal& who);
  HttpResponse cancel(uint64_t id, const Principal& who);
  HttpResponse events(const HttpRequest& req);
  HttpResponse admin(const nlohmann::json& op, const Principal& who, const HttpRequest& req,
                     int ok_status);
  void auth_failed(const HttpRequest& req, const char* why);

  AdminOps& ops_;
  const TokenStore* tokens_;
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
