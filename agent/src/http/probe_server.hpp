#pragma once
// The probe and metrics listener (--probe-listen HOST:PORT, TOML
// probe_listen; off by default): a second HttpServer, apart from the API's,
// for what a kubelet and a Prometheus scraper ask, on the pod network.
//
//   GET /livez    200 "live" while the agent's duty cycle heart-beats;
//                 503 with the reason when its heartbeat is older than
//                 stall_ms ("duty cycle stalled: ..."; a kubelet restarts
//                 the container), or the agent stopped or is down
//   GET /readyz   200 "ready" while the agent accepts requests; 503 with the
//                 reason (those of /livez, starting, draining): the pod
//                 leaves its Services' endpoints
//   GET /metrics  the Prometheus text (observe.hpp), no token
//
// No route takes a token: this listener carries no admin data and changes
// nothing (docs/DECISIONS.md, "The probe listener"). Anything else is 404;
// a known path with another method 405.
//
// Never starved by API connections: its own io thread, its own one handler
// thread (for /metrics; the probes are answered on the io thread and never
// wait behind a scrape), its own small connection cap (over it, the oldest
// idle connection gives way, as in the API server), and short timeouts.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "control/observe.hpp"
#include "http/server.hpp"
#include "perfq/core/result.hpp"

namespace perfq::shm {
class Segment;
}

namespace perfq::agent {

struct ProbeOptions {
  std::string listen = "off";  // HOST:PORT (port 0 picks one), or "off"
  std::size_t max_connections = 16;
  std::chrono::milliseconds request_timeout{5'000};
  uint64_t stall_ms = kProbeStallMs;  // /livez and /readyz: the heartbeat's bound
};

// The three answers, shared with the API's own /livez, /readyz and /metrics
// (routes.cpp). Thread-safe; never block.
[[nodiscard]] HttpResponse livez_response(shm::Segment& seg, uint64_t stall_ms);
[[nodiscard]] HttpResponse readyz_response(shm::Segment& seg, uint64_t stall_ms);
[[nodiscard]] HttpResponse metrics_response(shm::Segment& seg, const HealthLimits& limits);

// The probe listener's answer to one request (its handler; tests call it).
[[nodiscard]] HttpResponse probe_answer(const HttpRequest& req, shm::Segment& seg,
                                        const HealthLimits& limits, uint64_t stall_ms);

class ProbeServer {
 public:
  // Whether `listen` is one open() takes ("off", or HOST:PORT with an IP
  // address), without binding: the agent checks before it creates anything.
  [[nodiscard]] static Result<void> check(const std::string& listen);
  // Binds and serves; null with listen "off". kInvalidRequest for a bad
  // address, kInternal when the bind fails.
  [[nodiscard]] static Result<std::unique_ptr<ProbeServer>> open(const ProbeOptions& options,
                                                                 std::shared_ptr<shm::Segment> seg,
                                                                 const HealthLimits& limits);
  // Stops serving (bounded by request_timeout; see ~HttpServer).
  ~ProbeServer();
  ProbeServer(const ProbeServer&) = delete;
  ProbeServer& operator=(const ProbeServer&) = delete;

  // The bound address, "0.0.0.0:9090".
  [[nodiscard]] const std::string& address() const noexcept;

 private:
  ProbeServer(std::shared_ptr<shm::Segment> seg, const HealthLimits& limits, uint64_t stall_ms)
      : seg_(std::move(seg)), limits_(limits), stall_ms_(stall_ms) {}

  std::shared_ptr<shm::Segment> seg_;
  HealthLimits limits_;
  uint64_t stall_ms_;
  std::unique_ptr<HttpServer> http_;  // last: it stops before what its handler uses goes
};

}  // namespace perfq::agent
