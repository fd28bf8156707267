#include "perfq/agent/daemon.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>

#include "control/admin_ops.hpp"
#include "control/admin_socket.hpp"
#include "control/audit.hpp"
#include "control/observe.hpp"
#include "data_dir_lock.hpp"
#include "dataplane/conductor.hpp"
#include "http/auth.hpp"
#include "http/probe_server.hpp"
#include "http/routes.hpp"
#include "http/server.hpp"
#include "journal/journal.hpp"
#include "log/log.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/core/clock.hpp"
#include "perfq/shm/segment.hpp"
#include "perfq/version.hpp"

namespace perfq::agent {

namespace {

// Reload requests reach the daemon through a pipe, since a signal handler
// may only write(). The pipe is made once and never closed, so a handler
// that read the write end's number never writes into a descriptor reused
// for something else. -1 until the first daemon starts.
std::atomic<int> g_reload_write{-1};
std::atomic<int> g_reload_read{-1};

// A thread of the daemon's own: runs `reload` for each request_reload(),
// and `tick` about once a second, until destroyed.
class Housekeeper {
 public:
  Housekeeper(std::function<void()> reload, std::function<void()> tick)
      : reload_(std::move(reload)), tick_(std::move(tick)) {
    if (g_reload_read.load(std::memory_order_acquire) < 0) {
      int fds[2];
      if (::pipe2(fds, O_CLOEXEC) != 0) return;  // no reloads; the agent runs on
      // Never blocks a signal handler: a full pipe already holds a request.
      (void)::fcntl(fds[1], F_SETFL, O_NONBLOCK);
      (void)::fcntl(fds[0], F_SETFL, O_NONBLOCK);
      g_reload_read.store(fds[0], std::memory_order_release);
      g_reload_write.store(fds[1], std::memory_order_release);
    }
    thread_ = std::thread([this] { run(); });
  }
  ~Housekeeper() {
    stopping_.store(true, std::memory_order_release);
    request_reload();  // wakes the thread, which sees stopping_
    if (thread_.joinable()) thread_.join();
  }
  Housekeeper(const Housekeeper&) = delete;
  Housekeeper& operator=(const Housekeeper&) = delete;

 private:
  void run() {
    const int fd = g_reload_read.load(std::memory_order_acquire);
    if (fd < 0) return;
    char buf[64];
    while (!stopping_.load(std::memory_order_acquire)) {
      pollfd p{fd, POLLIN, 0};
      const int r = ::poll(&p, 1, kTickMs);
      if (stopping_.load(std::memory_order_acquire)) return;
      if (r > 0) {
        bool asked = false;  // requests that came together: one reload
        while (::read(fd, buf, sizeof buf) > 0) asked = true;
        if (asked) reload_();
      }
      tick_();
    }
  }

  static constexpr int kTickMs = 1000;
  std::function<void()> reload_;
  std::function<void()> tick_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

// What the housekeeper watches: health and the journal's files, logged when
// they change.
class Watch {
 public:
  Watch(shm::Segment& seg, HealthLimits limits) : seg_(seg), limits_(limits) {}

  void tick() {
    const nlohmann::json h = health_json(seg_, limits_, unix_now_ns());
    const std::string status = h.value("status", "");
    if (status != status_) {
      nlohmann::json reasons = h.contains("reasons") ? h["reasons"] : nlohmann::json::array();
      std::string why;
      for (const auto& r : reasons) why += (why.empty() ? "" : "; ") + r.get<std::string>();
      const std::string msg = "health " +
                              (status_.empty() ? std::string("is ") : status_ + " -> ") + status +
                              (why.empty() ? "" : ": " + why);
      const nlohmann::json f = {{"status", status}, {"previous", status_}, {"reasons", reasons}};
      if (status == "healthy") {
        log::info("health.change", msg, f);
      } else {
        log::warn("health.change", msg, f);
      }
      status_ = status;
    }
    file_state("journal", "DLQ journal", h["journal"]);
    file_state("auditLog", "audit log", h["auditLog"]);
  }

 private:
  // A file's state (healthy, failing, off) as health reports it.
  void file_state(const std::string& key, const std::string& name, const nlohmann::json& v) {
    const std::string state = v.is_object() ? v.value("state", "") : "";
    std::string& was = files_[key];
    if (state == was) return;
    const std::string err = v.is_object() ? v.value("lastError", "") : "";
    if (state == "failing") {
      log::error(key + ".failing", name + " cannot write: " + err, {{"error", err}});
    } else if (was == "failing") {
      log::info(key + ".recovered", name + " writes again", {{"state", state}});
    }
    was = state;
  }

  shm::Segment& seg_;
  HealthLimits limits_;
  std::string status_;
  std::map<std::string, std::string> files_;
};

// A step that failed: its reason on stderr, and the exit code.
int failed(const Error& e) {
  log::error("agent.failed", e.message);
  log::flush();
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

// The probe listener (none with probe_listen "off").
Result<std::unique_ptr<ProbeServer>> open_probes(const Config& cfg,
                                                 std::shared_ptr<shm::Segment> seg) {
  ProbeOptions po;
  po.listen = cfg.probe_listen;
  return ProbeServer::open(po, std::move(seg), HealthLimits::from(cfg));
}

void audit_start(Journal& journal, const Config& cfg, bool reattached) {
  journal.audit(audit_line(
      "agent.start", {{"pid", ::getpid()}, {"queue", cfg.queue}, {"reattached", reattached}}));
  journal.audit(audit_line("config.loaded", config_json(cfg)));
}

// First line: the segment is there (scripts wait for it); then HTTP.
void log_started(const Config& cfg, const Conductor& agent, shm::Segment& seg,
                 const HttpServer* http, const ProbeServer* probes, bool tokens) {
  const auto& geo = seg.geometry();
  std::string segment(1, '/');  // (GCC 12 misreads "/" + string: -Wrestrict)
  segment += perfq::shm::segment_name(cfg.queue);
  log::info("agent.start",
            "queue " + cfg.queue + " " + (agent.reattached() ? "re-attached to" : "created") +
                " segment " + segment + ", " + std::to_string(geo.total_bytes) + " bytes (" +
                std::to_string(geo.slot_count) + " slots x " + std::to_string(geo.slot.stride) +
                " B, " + std::to_string(geo.max_clients) + " clients), data dir " + cfg.data_dir +
                ", admin socket " + seg.header().socket_path + ", idle " +
                std::string(perfq::idle_name(cfg.idle)) + ", version " + kVersion,
            {{"version", kVersion},
             {"queue", cfg.queue},
             {"pid", ::getpid()},
             {"reattached", agent.reattached()},
             {"segment", segment},
             {"segmentBytes", geo.total_bytes},
             {"dataDir", cfg.data_dir}});
  if (!seg.header_rebuilt().empty()) {
    log::warn("segment.rebuilt", "the segment's header failed validation (" + seg.header_rebuilt() +
                                     "); it was rebuilt from " + cfg.data_dir +
                                     "/segment.geometry and the queue kept what it held");
  }
  if (http != nullptr) {
    log::info("http.listen",
              "http on " + http->address() +
                  (tokens ? "" : " (no --tokens: every route but the probes answers 401)"),
              {{"address", http->address()}, {"tokens", tokens}});
  }
  if (probes != nullptr) {
    log::info("probe.listen",
              "probes on " + probes->address() + " (/livez, /readyz, /metrics; no token)",
              {{"address", probes->address()}});
  }
}

// What recovery found in the journal, and each problem in its files.
void log_journal(const Journal& journal) {
  const auto& rec = journal.recovery();
  log::info("journal.open",
            "DLQ journal " + journal.dir() + ": " + std::to_string(rec.segments) + " segment(s), " +
                std::to_string(rec.records) + " record(s), " + std::to_string(rec.entries) +
                (rec.entries == 1 ? " entry (" : " entries (") +
                std::to_string(journal.unreviewed()) + " unreviewed)",
            {{"segments", rec.segments},
             {"records", rec.records},
             {"entries", rec.entries},
             {"unreviewed", journal.unreviewed()}});
  for (const auto& p : rec.problems) {
    log::warn("journal.problem",
              "DLQ journal " + p.file + " at offset " + std::to_string(p.offset) + " (" +
                  std::to_string(p.length) + " bytes): " + p.what,
              {{"file", p.file}, {"offset", p.offset}, {"length", p.length}});
  }
}

// Settings given (file, environment, flag) that the segment an agent
// re-attached to cannot take: its shape is fixed when it is created.
nlohmann::json ignored_settings(const Config& cfg, const shm::Segment& seg) {
  const auto& geo = seg.geometry();
  const auto& h = seg.header();
  const std::pair<const char*, uint64_t> kept[] = {
      {"slots", geo.slot_count},
      {"slot_payload_bytes", geo.slot_payload_bytes},
      {"max_clients", geo.max_clients},
      {"status_table_entries", h.status_entries},
      {"idempotency_table_entries", h.idempotency_entries},
      {"rate_limit_table_entries", h.rate_entries},
      {"max_requests_per_user_per_minute", h.rate_limit},
      {"metrics_types", h.metrics_types},
  };
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [key, value] : kept) {
    const std::string asked =
        std::string(key) == "slots" ? std::to_string(cfg.slot_count()) : setting_text(cfg, key);
    if (cfg.given.count(key) == 0 || asked == std::to_string(value)) continue;
    out.push_back({{"setting", key},
                   {"asked", asked},
                   {"inEffect", std::to_string(value)},
                   {"apply", "stop the agent, perfqctl --queue " + cfg.queue +
                                 " destroy (loses what the queue holds), start it again"}});
  }
  return out;
}

void log_ignored(const nlohmann::json& ignored) {
  for (const auto& i : ignored) {
    log::warn("settings.ignored",
              "setting " + i["setting"].get<std::string>() + " = " + i["asked"].get<std::string>() +
                  " is not applied: the existing segment keeps " +
                  i["inEffect"].get<std::string>() +
                  " (fixed when it was created); to apply it: " + i["apply"].get<std::string>(),
              i);
  }
}

// What a stop left behind, said on every stop.
void log_left(const Config& cfg, const Conductor::Left& left) {
  const nlohmann::json f = {{"queue", cfg.queue},
                            {"left", left.depth},
                            {"inFlight", left.in_flight},
                            {"drained", left.drained},
                            {"drainTimedOut", left.drain_timed_out}};
  if (left.depth == 0) {
    log::info("agent.stop",
              "queue " + cfg.queue + " stopped" +
                  (left.drained ? " after a drain: nothing left" : ": nothing left"),
              f);
    return;
  }
  log::warn("agent.stop",
            "queue " + cfg.queue + " stopped" +
                (left.drain_timed_out ? " at the end of its drain bound" : "") + " with " +
                std::to_string(left.depth) + " request(s) left (" + std::to_string(left.in_flight) +
                " in flight); they stay in the segment for the next agent on it, and are lost "
                "if the segment is removed",
            f);
}

// SIGHUP: the tokens file again (kept as it was when it does not load), and
// the audit log reopened at its path. Said on stderr and in the audit log.
void reload(const Config& cfg, HttpApi& api, Journal& journal) {
  // (The tokens' contents never reach the log: only how many loaded.)
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
  std::string logs = "log reopened";
  if (auto r = log::reopen(); !r) logs = "log kept open: " + r.error().message;
  log::info("agent.reload", "reload (SIGHUP): tokens " + tokens + "; audit log reopened; " + logs,
            {{"tokens", tokens}});
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
  if (auto r = ProbeServer::check(cfg.probe_listen); !r) return failed(r.error());
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
  audit_start(**journal, cfg, (*agent)->reattached());
  const nlohmann::json ignored =
      (*agent)->reattached() ? ignored_settings(cfg, *seg) : nlohmann::json::array();
  AdminOps ops(**journal, seg, HealthLimits::from(cfg));
  ops.set_ignored_settings(ignored);
  Conductor* conductor = agent->get();
  ops.set_drain([conductor](uint64_t timeout_ms) { conductor->request_drain(timeout_ms); });
  auto admin = open_admin(cfg, ops);
  if (!admin) return failed_after_create(admin.error());
  HttpApi api(ops, *tokens ? &**tokens : nullptr, seg, cfg.http_event_keep_alive_ms);
  auto http = open_http(cfg, api, *seg);
  if (!http) return failed_after_create(http.error());
  auto probes = open_probes(cfg, seg);
  if (!probes) return failed_after_create(probes.error());
  log_started(cfg, **agent, *seg, http->get(), probes->get(), tokens->has_value());
  log_journal(**journal);
  log_ignored(ignored);
  Watch watch(*seg, ops.limits());
  auto housekeeper =
      std::make_unique<Housekeeper>([&] { reload(cfg, api, **journal); }, [&] { watch.tick(); });
  if (hooks.ready) hooks.ready();

  (*agent)->run(stop);
  housekeeper.reset();
  const Conductor::Left left = (*agent)->left();

  api.stop();
  probes->reset();
  http->reset();
  admin->reset();
  // The listeners are closed: what their floods left coalesced is written.
  api.flush_audit();
  ops.flush_audit();
  (*journal)->attach_view(nullptr);
  (*journal)->audit(audit_line("agent.stop", {{"pid", ::getpid()},
                                              {"queue", cfg.queue},
                                              {"left", left.depth},
                                              {"drained", left.drained}}));
  agent->reset();
  journal->reset();  // one last round: the stop line and anything queued
  log_left(cfg, left);
  log::flush();
  return 0;
}

}  // namespace perfq::agent
