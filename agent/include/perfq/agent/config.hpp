#pragma once
// Agent configuration: every constant of SPEC §4, with the seed's defaults.
// Each setting is a flag (--max-queue-depth), a TOML key (max_queue_depth)
// and an environment variable (PERFQ_MAX_QUEUE_DEPTH). Precedence: built-in
// defaults < TOML file (--config / PERFQ_CONFIG) < environment < flags.
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "perfq/core/idle_strategy.hpp"
#include "perfq/core/result.hpp"

namespace perfq::agent {

struct Config {
  std::string queue;
  std::string data_dir;  // empty: the default for the user (see default_data_dir)
  std::string http = "127.0.0.1:0";
  std::string tokens;
  std::string group;  // owner group of the segment; empty: the agent's
  // The probe and metrics listener (/livez, /readyz, /metrics; no auth)
  std::string probe_listen = "off";
  // Logging (agent/src/log.hpp): text or json lines, at this level and up,
  // on stderr or appended to log_file (reopened on SIGHUP)
  std::string log_format = "text";
  std::string log_level = "info";
  std::string log_file;
  // SIGTERM drains for up to this long before stopping; 0 stops at once
  uint64_t drain_timeout_ms = 0;

  // SPEC §4
  uint64_t max_queue_depth = 10000;
  uint64_t queue_timeout_ms = 30000;
  uint64_t processing_timeout_ms = 60000;
  uint64_t rope_drop_timeout_ms = 5000;
  uint64_t batch_size = 100;
  uint64_t batch_interval_ms = 1000;
  uint64_t max_concurrent_workers = 10;
  uint64_t worker_idle_timeout_ms = 30000;
  uint64_t max_retry_attempts = 3;
  uint64_t retry_backoff_ms = 1000;
  double retry_jitter = 0.1;
  uint64_t max_requests_per_user_per_minute = 60;
  uint64_t idempotency_ttl_ms = 86400000;
  uint64_t slot_payload_bytes = 4096;
  uint64_t aging_ms = 5000;

  // Shape and mechanics of this implementation (docs/CONFIG.md)
  uint64_t slots = 0;  // 0: 2 x max_queue_depth, at least 1024
  uint64_t max_clients = 64;
  // The tables behind SPEC §5 (docs/CONFIG.md; fixed when the segment is created)
  uint64_t status_table_entries = 32768;       // finished statuses kept, by request id
  uint64_t idempotency_table_entries = 16384;  // (userId, idempotencyKey) pairs
  uint64_t rate_limit_table_entries = 4096;    // users rate-limited at once
  uint64_t metrics_types = 8;                  // types with their own metrics column
  // The DLQ journal (docs/CONFIG.md, docs/DECISIONS.md "DLQ retention")
  uint64_t dlq_segment_bytes = uint64_t{64} << 20;  // a segment file rotates at this size
  uint64_t dlq_retention_ms = uint64_t{7} * 24 * 3600 * 1000;  // reviewed entries kept this long
  // HTTP limits (docs/CONFIG.md): a request must arrive, and its answer be
  // read, within this; more connections than http_max_connections get 503.
  uint64_t http_request_timeout_ms = 10000;
  uint64_t http_max_connections = 256;
  // Health (SPEC §5, the seed's thresholds): `degraded` above the first of
  // each pair, `unhealthy` above the second.
  uint64_t health_degraded_utilization = 70, health_unhealthy_utilization = 90;
  uint64_t health_degraded_failures = 50, health_unhealthy_failures = 100;
  uint64_t health_degraded_dlq = 20, health_unhealthy_dlq = 50;
  // Server-sent event streams (docs/CONFIG.md): at most this many at once
  // (each is also a connection); an idle one gets a keep-alive comment this
  // often, so a dead peer is found.
  uint64_t http_max_event_streams = 16;
  uint64_t http_event_keep_alive_ms = 15000;
  // Admitted to the admin socket besides the agent's uid and root (SO_PEERCRED)
  std::vector<uint32_t> admin_uids;
  std::vector<uint32_t> admin_gids;
  uint64_t ring_claim_timeout_ms = 50;
  uint64_t liveness_interval_ms = 5;
  IdleKind idle = IdleKind::kPark;

  // The settings (TOML keys) given by the file, the environment or a flag,
  // as opposed to left at their defaults: a re-attaching agent reports those
  // the existing segment cannot take.
  std::set<std::string> given;

  [[nodiscard]] uint32_t slot_count() const noexcept;
};

// Parses argv (without argv[0]) and the PERFQ_* environment on top of
// `cfg`, loading --config first. Unknown flags and bad values are errors
// naming the flag; --help and --version are errors here too (see
// command_line for a program's main).
[[nodiscard]] Result<void> parse_args(const std::vector<std::string>& args, Config& cfg);

// A program's command line: parses as parse_args does, and prints what a
// user asked for or got wrong (--help and --version on stdout, errors on
// stderr). Returns the exit code, or -1 when the agent is to run.
[[nodiscard]] int command_line(const std::vector<std::string>& args, Config& cfg);

[[nodiscard]] Result<void> load_toml(const std::string& path, Config& cfg);
[[nodiscard]] std::string default_data_dir(const std::string& queue);
// The --help text.
[[nodiscard]] std::string usage();

// The value of setting `key` (a TOML key) in `cfg`, as a flag would give it;
// empty for a key no setting has.
[[nodiscard]] std::string setting_text(const Config& cfg, const std::string& key);

// Exit code of a command line perfq-agent refuses (sysexits' EX_USAGE).
inline constexpr int kUsageExit = 64;

}  // namespace perfq::agent
