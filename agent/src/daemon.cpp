#include "perfq/agent/daemon.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>

#include "control/admin_ops.hpp"
#include "control/admin_socket.hpp"
#include "control/audit.hpp"
#include "data_dir_lock.hpp"
#include "dataplane/conductor.hpp"
#include "http/auth.hpp"
#include "http/routes.hpp"
#include "http/server.hpp"
#include "journal/journal.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq::agent {

namespace {

// Reload requests reach the daemon through a pipe, since a signal handler
// may only write(). The pipe is made once and never closed, so a handler
// that read the write end's number never writes into a descriptor reused
// for something else. -1 until the first daemon starts.
std::atomic<int> g_reload_write{-1};
std::atomic<int> g_reload_read{-1};

// Runs `reload` on a thread of its own for each request_reload(), until
// destroyed.
class Reloader {
 public:
  explicit Reloader(std::function<void()> reload) : reload_(std::move(reload)) {
    if (g_reload_read.load(std::memory_order_acquire) < 0) {
      int fds[2];
      if (::pipe2(fds, O_CLOEXEC) != 0) return;  // no reloads; the agent runs on
      // Never blocks a signal handler: a full pipe already holds a request.
      (void)::fcntl(fds[1], F_SETFL, O_NONBLOCK);
      g_reload_read.store(fds[0], std::memory_order_release);
      g_reload_write.store(fds[1], std::memory_order_release);
    }
    thread_ = std::thread([this] { run(); });
  }
  ~Reloader() {
    stopping_.store(true, std::memory_order_release);
    request_reload();  // wakes the thread, which sees stopping_
    if (thread_.joinable()) thread_.join();
  }
  Reloader(const Reloader&) = delete;
  Reloader& operator=(const Reloader&) = delete;

 private:
  void run() {
    const int fd = g_reload_read.load(std::memory_order_acquire);
    char buf[64];
    while (fd >= 0) {
      const ssize_t n = ::read(fd, buf, sizeof buf);  // requests that came together: one reload
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || stopping_.load(std::memory_order_acquire)) return;
      reload_();
    }
  }

  std::function<void()> reload_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

// A step that failed: its reason on stderr, and the exit code.
int failed(const Error& e) {
  std::fprintf(stderr, "perfq-agent: %s\n", e.message.c_str());
  return 1;
}

Result<std::unique_ptr<Journal>> open_journal(const Config& cfg, const DaemonHooks& hooks) {
  JournalOptions jo;
  jo.data_dir = cfg.data_dir;
  jo.segment_bytes = cfg.dlq_segment_bytes;
  jo.retention_ms = cfg.dlq_retention_ms;
  jo.seam = hooks.seam;
  if (hooks.journal_retry_ms != 0) jo.retry_ms = hooks.journal_retry_ms;
  return Journal::open(jo);
}

Result<std::unique_ptr<AdminServer>> open_admin(const Config& cfg, AdminOps& ops) {
  return AdminServer::open(
      cfg.data_dir + "/agent.sock", cfg.admin_uids, cfg.admin_gids,
      [&ops](const nlohmann::json& req, const Peer& p) { return ops.handle(req, p); },
      [&ops](const Peer& p) { ops.refused(p); });
}

// None without --tokens.
Result<std::optional<TokenStore>> load_tokens(const Config& cfg) {
  if (cfg.tokens.empty()) return std::optional<TokenStore>{};
  auto t = TokenStore::load(cfg.tokens);
  if (!t) return t.error();
  return std::optional<TokenStore>(std::move(*t));
}

// The HTTP plane (SPEC §6), on loopback by default; none with --http off.
// Clients find its address in the segment header.
Result<std::unique_ptr<HttpServer>> open_http(const Config& cfg, HttpApi& api, shm::Segment& seg) {
  if (cfg.http == "off") return std::unique_ptr<HttpServer>{};
  HttpOptions ho;
  ho.listen = cfg.http;
  ho.request_timeout = std::chrono::milliseconds(cfg.http_request_timeout_ms);
  ho.max_connections = cfg.http_max_connections;
  ho.max_streams = cfg.http_max_event_streams;
  // A submit's body is its payload plus a few fields; larger cannot fit a slot.
  ho.body_limit = seg.geometry().slot_payload_bytes + 64 * 1024;
  auto http = HttpServer::open(ho, [&api](const HttpRequest& r) { return api.handle(r); });
  if (!http) return http.error();
  // Written a byte at a time (relaxed atomics: the agent is running,
  // readers may look).
  char* field = seg.header().http_address;
  const std::string& a = (*http)->address();
  for (std::size_t i = 0; i < sizeof seg.header().http_address; ++i) {
    store_relaxed(field[i], i < a.size() && i + 1 < sizeof seg.header().http_address ? a[i] : '\0');
  }
  return http;
}

// First line: the segment is there (scripts wait for it); then HTTP.
void log_started(const Config& cfg, const Conductor& agent, shm::Segment& seg,
                 const HttpServer* http, bool tokens) {
  const auto& geo = seg.geometry();
  std::fprintf(stderr,
               "perfq-agent: queue %s %s segment /%s, %llu bytes (%u slots x %u B, %u clients), "
               "data dir %s, admin socket %s, idle %s\n",
               cfg.queue.c_str(), agent.reattached() ? "re-attached to" : "created",
               perfq::shm::segment_name(cfg.queue).c_str(),
               static_cast<unsigned long long>(geo.total_bytes), geo.slot_count, geo.slot.stride,
               geo.max_clients, cfg.data_dir.c_str(), seg.header().socket_path,
               perfq::idle_name(cfg.idle).data());
  if (!seg.header_rebuilt().empty()) {
    std::fprintf(stderr,
                 "perfq-agent: the segment's header failed validation (%s); it was rebuilt from "
                 "%s/segment.geometry and the queue kept what it held\n",
                 seg.header_rebuilt().c_str(), cfg.data_dir.c_str());
  }
  if (http != nullptr) {
    std::fprintf(stderr, "perfq-agent: http on %s%s\n", http->address().c_str(),
                 tokens ? "" : " (no --tokens: every route but the probes answers 401)");
  }
}

// What recovery found in the journal, and each problem in its files.
void log_journal(const Journal& journal) {
  const auto& rec = journal.recovery();
  std::fprintf(stderr,
               "perfq-agent: DLQ journal %s: %llu segment(s), %llu record(s), %llu entr%s "
               "(%llu unreviewed)\n",
               journal.dir().c_str(), static_cast<unsigned long long>(rec.segments),
               static_cast<unsigned long long>(rec.records),
               static_cast<unsigned long long>(rec.entries), rec.entries == 1 ? "y" : "ies",
               static_cast<unsigned long long>(journal.unreviewed()));
  for (const auto& p : rec.problems) {
    std::fprintf(stderr, "perfq-agent: DLQ journal %s at offset %llu (%llu bytes): %s\n",
                 p.file.c_str(), static_cast<unsigned long long>(p.offset),
                 static_cast<unsigned long long>(p.length), p.what.c_str());
  }
}

// SIGHUP: the tokens file again (kept as it was when it does not load), and
// the audit log reopened at its path. Said on stderr and in the audit log.
void reload(const Config& cfg, HttpApi& api, Journal& journal) {
  std::string tokens = "none configured";
  if (!cfg.tokens.empty()) {
    auto t = TokenStore::load(cfg.tokens);
    if (t) {
      tokens = std::to_string(t->size()) + " loaded";
      api.set_tokens(std::make_shared<const TokenStore>(std::move(*t)));
    } else {
      tokens = "kept the previous ones: " + t.error().message;
    }
  }
  journal.audit(audit_line("agent.reload", {{"pid", ::getpid()}, {"tokens", tokens}}));
  journal.reopen_audit();  // after the flush that writes the line above, or a later one
  std::fprintf(stderr, "perfq-agent: reload (SIGHUP): tokens %s; audit log reopened\n",
               tokens.c_str());
}

}  // namespace

void request_reload() noexcept {
  const int fd = g_reload_write.load(std::memory_order_acquire);
  if (fd >= 0) {
    const char b = 'R';
    (void)!::write(fd, &b, 1);
  }
}

// The order of the steps is the contract: the data dir's lock before
// anything in the data dir is opened (a second agent touches nothing), the
// journal next (a re-attaching
// agent hands it the letters a predecessor left SEALING), then the agent,
// the admin socket, HTTP; on stop the listeners close first, the agent
// stops, and the journal's last round writes the stop line and anything
// queued.
int run_daemon(const Config& cfg, const std::atomic<bool>& stop, const DaemonHooks& hooks) {
  // What can be checked without creating anything is checked first: a bad
  // --http or --tokens must not leave a new segment behind.
  if (cfg.http != "off") {
    if (auto r = check_listen_address(cfg.http); !r) return failed(r.error());
  }
  auto tokens = load_tokens(cfg);
  if (!tokens) return failed(tokens.error());
  auto dir_lock = DataDirLock::take(cfg.data_dir);  // held until return
  if (!dir_lock) return failed(dir_lock.error());
  auto journal = open_journal(cfg, hooks);
  if (!journal) return failed(journal.error());
  auto agent = Conductor::open(cfg, perfq::system_clock(), journal->get());
  if (!agent) return failed(agent.error());
  auto seg = (*agent)->segment();
  // A later step that fails (the port taken, the socket path) removes the
  // segment this agent made; one it re-attached to holds requests and stays.
  const bool made_segment = !(*agent)->reattached();
  auto failed_after_create = [&](const Error& e) {
    if (made_segment) (void)shm::Segment::remove(cfg.queue);
    return failed(e);
  };
  (*journal)->attach_view(&seg->header().journal);
  (*journal)->audit(audit_line(
      "agent.start",
      {{"pid", ::getpid()}, {"queue", cfg.queue}, {"reattached", (*agent)->reattached()}}));
  (*journal)->audit(audit_line("config.loaded", config_json(cfg)));
  AdminOps ops(**journal, seg, HealthLimits::from(cfg));
  auto admin = open_admin(cfg, ops);
  if (!admin) return failed_after_create(admin.error());
  HttpApi api(ops, *tokens ? &**tokens : nullptr, seg, cfg.http_event_keep_alive_ms);
  auto http = open_http(cfg, api, *seg);
  if (!http) return failed_after_create(http.error());
  log_started(cfg, **agent, *seg, http->get(), tokens->has_value());
  log_journal(**journal);
  auto reloader = std::make_unique<Reloader>([&] { reload(cfg, api, **journal); });
  if (hooks.ready) hooks.ready();

  (*agent)->run(stop);
  reloader.reset();

  api.stop();
  http->reset();
  admin->reset();
  // The listeners are closed: what their floods left coalesced is written.
  api.flush_audit();
  ops.flush_audit();
  (*journal)->attach_view(nullptr);
  (*journal)->audit(audit_line("agent.stop", {{"pid", ::getpid()}, {"queue", cfg.queue}}));
  agent->reset();
  journal->reset();  // one last round: the stop line and anything queued
  std::fprintf(stderr, "perfq-agent: queue %s stopped\n", cfg.queue.c_str());
  return 0;
}

}  // namespace perfq::agent
