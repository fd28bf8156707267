#include "http/probe_server.hpp"

#include <algorithm>
#include <string_view>
#include <utility>

#include "perfq/core/clock.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq::agent {

namespace {

// A probe's answer: a few words for a human with curl (a kubelet reads only
// the status), never cached by anything between.
HttpResponse text(int status, const std::string& words) {
  HttpResponse r{status, words + "\n"};
  r.content_type = "text/plain; charset=utf-8";
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

}  // namespace

HttpResponse livez_response(shm::Segment& seg, uint64_t stall_ms) {
  const ProbeVerdict v = liveness(seg, mono_now_ns(), stall_ms);
  return text(v.ok ? 200 : 503, v.reason);
}

HttpResponse readyz_response(shm::Segment& seg, uint64_t stall_ms) {
  const ProbeVerdict v = readiness(seg, mono_now_ns(), stall_ms);
  return text(v.ok ? 200 : 503, v.reason);
}

HttpResponse metrics_response(shm::Segment& seg, const HealthLimits& limits) {
  HttpResponse r{200, prometheus_text(seg, limits, unix_now_ns())};
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  return r;
}

HttpResponse probe_answer(const HttpRequest& req, shm::Segment& seg, const HealthLimits& limits,
                          uint64_t stall_ms) {
  const std::string_view path = std::string_view(req.target).substr(0, req.target.find('?'));
  const bool known = path == "/livez" || path == "/readyz" || path == "/metrics";
  if (!known) return text(404, "no such route; this listener serves /livez, /readyz, /metrics");
  if (req.method != "GET") {
    HttpResponse r = text(405, "only GET");
    r.headers.emplace_back("Allow", "GET");
    return r;
  }
  if (path == "/livez") return livez_response(seg, stall_ms);
  if (path == "/readyz") return readyz_response(seg, stall_ms);
  return metrics_response(seg, limits);
}

Result<void> ProbeServer::check(const std::string& listen) {
  if (listen == "off") return {};
  if (auto r = check_listen_address(listen); !r) {
    return Error{r.error().code, "probe_listen: " + r.error().message};
  }
  return {};
}

Result<std::unique_ptr<ProbeServer>> ProbeServer::open(const ProbeOptions& options,
                                                       std::shared_ptr<shm::Segment> seg,
                                                       const HealthLimits& limits) {
  if (options.listen == "off") return std::unique_ptr<ProbeServer>{};
  std::unique_ptr<ProbeServer> p(new ProbeServer(std::move(seg), limits, options.stall_ms));
  HttpOptions ho;
  ho.listen = options.listen;
  ho.max_connections = std::max<std::size_t>(1, options.max_connections);
  ho.header_limit = 8 * 1024;
  ho.body_limit = 1024;  // no route takes a body
  ho.request_timeout = options.request_timeout;
  // One thread for /metrics; the probes are answered on the io thread, so a
  // scrape never holds them up.
  ho.handler_threads = 1;
  ho.max_streams = 0;
  ho.inline_paths = {"/livez", "/readyz"};
  ProbeServer* self = p.get();
  // `self` outlives the server: http_ is its last member, destroyed first.
  auto http = HttpServer::open(std::move(ho), [self](const HttpRequest& r) {
    return probe_answer(r, *self->seg_, self->limits_, self->stall_ms_);
  });
  if (!http) return Error{http.error().code, "probe listener: " + http.error().message};
  p->http_ = std::move(*http);
  return p;
}

ProbeServer::~ProbeServer() = default;

const std::string& ProbeServer::address() const noexcept {
  return http_->address();
}

}  // namespace perfq::agent
