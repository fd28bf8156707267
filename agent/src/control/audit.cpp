#include "control/audit.hpp"

#include <nlohmann/json.hpp>

#include "perfq/agent/config.hpp"
#include "perfq/core/clock.hpp"
#include "perfq/core/idle_strategy.hpp"
#include "perfq/core/iso_time.hpp"

namespace perfq::agent {

using nlohmann::json;

std::string audit_line(const std::string& event, const json& fields) {
  // "at" and "event" first, for people reading the file.
  nlohmann::ordered_json line = {{"at", iso_time(unix_now_ns())}, {"event", event}};
  for (const auto& [k, v] : fields.items()) line[k] = v;
  return line.dump(-1, ' ', false, json::error_handler_t::replace);
}

json config_json(const Config& c) {
  json ids_u = c.admin_uids;
  json ids_g = c.admin_gids;
  return {{"queue", c.queue},
          {"dataDir", c.data_dir},
          {"http", c.http},
          {"tokensFile", c.tokens},
          {"group", c.group},
          {"max_queue_depth", c.max_queue_depth},
          {"queue_timeout_ms", c.queue_timeout_ms},
          {"processing_timeout_ms", c.processing_timeout_ms},
          {"rope_drop_timeout_ms", c.rope_drop_timeout_ms},
          {"batch_size", c.batch_size},
          {"batch_interval_ms", c.batch_interval_ms},
          {"max_concurrent_workers", c.max_concurrent_workers},
          {"worker_idle_timeout_ms", c.worker_idle_timeout_ms},
          {"max_retry_attempts", c.max_retry_attempts},
          {"retry_backoff_ms", c.retry_backoff_ms},
          {"retry_jitter", c.retry_jitter},
          {"max_requests_per_user_per_minute", c.max_requests_per_user_per_minute},
          {"idempotency_ttl_ms", c.idempotency_ttl_ms},
          {"slot_payload_bytes", c.slot_payload_bytes},
          {"aging_ms", c.aging_ms},
          {"slots", c.slot_count()},
          {"max_clients", c.max_clients},
          {"dlq_segment_bytes", c.dlq_segment_bytes},
          {"dlq_retention_ms", c.dlq_retention_ms},
          {"admin_uids", ids_u},
          {"admin_gids", ids_g},
          {"idle", idle_name(c.idle)}};
}

}  // namespace perfq::agent
