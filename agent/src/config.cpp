#include "perfq/agent/config.hpp"

#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <map>

#include "perfq/core/assert.hpp"
#include "regular_file.hpp"

namespace perfq::agent {

uint32_t Config::slot_count() const noexcept {
  const uint64_t n = slots != 0 ? slots : std::max<uint64_t>(1024, 2 * max_queue_depth);
  return static_cast<uint32_t>(std::min<uint64_t>(n, 1u << 22));
}

namespace {

using Setter = std::function<Result<void>(Config&, const std::string&)>;

// A config file is a few kilobytes; anything near this is not one.
constexpr std::size_t kConfigMaxBytes = std::size_t{1} << 20;

Result<void> parse_u64(const std::string& text, uint64_t min, uint64_t max, uint64_t& out,
                       const std::string& name) {
  uint64_t v = 0;
  const auto* end = text.data() + text.size();
  const auto r = std::from_chars(text.data(), end, v);
  if (r.ec != std::errc{} || r.ptr != end || v < min || v > max) {
    return {Errc::kInvalidRequest, name + " must be an integer from " + std::to_string(min) +
                                       " to " + std::to_string(max)};
  }
  out = v;
  return {};
}

Setter u64(uint64_t Config::*field, uint64_t min, uint64_t max, std::string name) {
  return [=](Config& c, const std::string& v) { return parse_u64(v, min, max, c.*field, name); };
}

// Table sizes: 0 (where allowed) or a power of two in range.
Setter pow2(uint64_t Config::*field, uint64_t min, uint64_t max, std::string name) {
  return [=](Config& c, const std::string& v) -> Result<void> {
    uint64_t n = 0;
    if (auto r = parse_u64(v, min, max, n, name); !r) return r;
    if ((n & (n - 1)) != 0) return {Errc::kInvalidRequest, name + " must be a power of two"};
    c.*field = n;
    return {};
  };
}

Setter str(std::string Config::*field) {
  return [=](Config& c, const std::string& v) -> Result<void> {
    c.*field = v;
    return {};
  };
}

// A comma-separated list of numeric ids ("1000,1001"; empty: none).
Setter ids(std::vector<uint32_t> Config::*field, std::string name) {
  return [=](Config& c, const std::string& v) -> Result<void> {
    std::vector<uint32_t> out;
    std::size_t at = 0;
    while (at < v.size()) {
      const std::size_t comma = std::min(v.find(',', at), v.size());
      uint64_t id = 0;
      if (auto r = parse_u64(v.substr(at, comma - at), 0, UINT32_MAX - 1, id, name); !r) {
        return {Errc::kInvalidRequest, name + " must be a comma-separated list of numeric ids"};
      }
      out.push_back(static_cast<uint32_t>(id));
      at = comma + 1;
    }
    c.*field = std::move(out);
    return {};
  };
}

Setter jitter() {
  return [](Config& c, const std::string& v) -> Result<void> {
    char* end = nullptr;
    const double d = std::strtod(v.c_str(), &end);
    // !isfinite: strtod takes "nan", which no comparison refuses.
    if (end == v.c_str() || *end != '\0' || !std::isfinite(d) || d < 0 || d > 1) {
      return {Errc::kInvalidRequest, "retry_jitter must be a number from 0 to 1"};
    }
    c.retry_jitter = d;
    return {};
  };
}

Setter idle() {
  return [](Config& c, const std::string& v) -> Result<void> {
    if (!parse_idle(v, c.idle)) {
      return {Errc::kInvalidRequest, "idle must be busy-spin, backoff or park"};
    }
    return {};
  };
}

using Settings = std::map<std::string, Setter>;

// Names and places.
Settings place_settings() {
  return {
      {"queue", str(&Config::queue)}, {"data_dir", str(&Config::data_dir)},
      {"http", str(&Config::http)},   {"tokens", str(&Config::tokens)},
      {"group", str(&Config::group)},
  };
}

// SPEC §4.
Settings spec_settings() {
  return {
      {"max_queue_depth", u64(&Config::max_queue_depth, 1, 1u << 21, "max_queue_depth")},
      {"queue_timeout_ms", u64(&Config::queue_timeout_ms, 1, 1ull << 40, "queue_timeout_ms")},
      {"processing_timeout_ms",
       u64(&Config::processing_timeout_ms, 1, 1ull << 40, "processing_timeout_ms")},
      {"rope_drop_timeout_ms",
       u64(&Config::rope_drop_timeout_ms, 0, 1ull << 40, "rope_drop_timeout_ms")},
      {"batch_size", u64(&Config::batch_size, 1, 65536, "batch_size")},
      {"batch_interval_ms", u64(&Config::batch_interval_ms, 0, 1ull << 40, "batch_interval_ms")},
      {"max_concurrent_workers",
       u64(&Config::max_concurrent_workers, 1, 1u << 20, "max_concurrent_workers")},
      {"worker_idle_timeout_ms",
       u64(&Config::worker_idle_timeout_ms, 1, 1ull << 40, "worker_idle_timeout_ms")},
      {"max_retry_attempts", u64(&Config::max_retry_attempts, 1, 100, "max_retry_attempts")},
      {"retry_backoff_ms", u64(&Config::retry_backoff_ms, 0, 1ull << 40, "retry_backoff_ms")},
      {"retry_jitter", jitter()},
      {"max_requests_per_user_per_minute", u64(&Config::max_requests_per_user_per_minute, 0, 65536,
                                               "max_requests_per_user_per_minute")},
      {"idempotency_ttl_ms", u64(&Config::idempotency_ttl_ms, 1, 1ull << 40, "idempotency_ttl_ms")},
      {"slot_payload_bytes", u64(&Config::slot_payload_bytes, 64, 1u << 20, "slot_payload_bytes")},
      {"aging_ms", u64(&Config::aging_ms, 1, 1ull << 40, "aging_ms")},
  };
}

// The segment's shape, its tables and the agent's mechanics.
Settings shape_settings() {
  return {
      {"status_table_entries",
       pow2(&Config::status_table_entries, 0, 1u << 24, "status_table_entries")},
      {"idempotency_table_entries",
       pow2(&Config::idempotency_table_entries, 4, 1u << 24, "idempotency_table_entries")},
      {"rate_limit_table_entries",
       pow2(&Config::rate_limit_table_entries, 4, 1u << 20, "rate_limit_table_entries")},
      {"metrics_types", u64(&Config::metrics_types, 0, 64, "metrics_types")},
      {"slots", u64(&Config::slots, 64, 1u << 22, "slots")},
      {"max_clients", u64(&Config::max_clients, 2, 1024, "max_clients")},
      {"ring_claim_timeout_ms",
       u64(&Config::ring_claim_timeout_ms, 1, 60000, "ring_claim_timeout_ms")},
      {"liveness_interval_ms",
       u64(&Config::liveness_interval_ms, 1, 60000, "liveness_interval_ms")},
      {"idle", idle()},
  };
}

// Health thresholds, the DLQ journal and the admin socket.
Settings operator_settings() {
  return {
      {"health_degraded_utilization",
       u64(&Config::health_degraded_utilization, 0, 100, "health_degraded_utilization")},
      {"health_unhealthy_utilization",
       u64(&Config::health_unhealthy_utilization, 0, 100, "health_unhealthy_utilization")},
      {"health_degraded_failures",
       u64(&Config::health_degraded_failures, 0, 1ull << 40, "health_degraded_failures")},
      {"health_unhealthy_failures",
       u64(&Config::health_unhealthy_failures, 0, 1ull << 40, "health_unhealthy_failures")},
      {"health_degraded_dlq",
       u64(&Config::health_degraded_dlq, 0, 1ull << 40, "health_degraded_dlq")},
      {"health_unhealthy_dlq",
       u64(&Config::health_unhealthy_dlq, 0, 1ull << 40, "health_unhealthy_dlq")},
      {"dlq_segment_bytes",
       u64(&Config::dlq_segment_bytes, 4096, 256ull << 20, "dlq_segment_bytes")},
      {"dlq_retention_ms", u64(&Config::dlq_retention_ms, 0, 1ull << 40, "dlq_retention_ms")},
      {"admin_uids", ids(&Config::admin_uids, "admin_uids")},
      {"admin_gids", ids(&Config::admin_gids, "admin_gids")},
  };
}

// HTTP limits.
Settings http_settings() {
  return {
      {"http_request_timeout_ms",
       u64(&Config::http_request_timeout_ms, 1, 3'600'000, "http_request_timeout_ms")},
      {"http_max_connections",
       u64(&Config::http_max_connections, 1, 65536, "http_max_connections")},
      {"http_max_event_streams",
       u64(&Config::http_max_event_streams, 1, 65536, "http_max_event_streams")},
      {"http_event_keep_alive_ms",
       u64(&Config::http_event_keep_alive_ms, 1, 3'600'000, "http_event_keep_alive_ms")},
  };
}

// One table of settings serves flags (dashes) and TOML keys (underscores).
const Settings& settings() {
  static const Settings table = [] {
    Settings all;
    for (Settings part : {place_settings(), spec_settings(), shape_settings(), operator_settings(),
                          http_settings()}) {
      all.merge(part);
      PERFQ_ENFORCE(part.empty());  // merge leaves a key that two parts name
    }
    return all;
  }();
  return table;
}

// toml++ names the line, not the key: a value it cannot hold (an integer
// past 2^63) is reported with the key its line assigns, when there is one.
std::string parse_error_text(std::string_view text, const toml::parse_error& e) {
  const auto line_no = static_cast<std::size_t>(e.source().begin.line);
  std::string out = std::string(e.description()) + " (line " + std::to_string(line_no) + ")";
  std::size_t at = 0;
  for (std::size_t n = 1; n < line_no && at != std::string_view::npos; ++n) {
    at = text.find('\n', at);
    if (at != std::string_view::npos) ++at;
  }
  if (at == std::string_view::npos) return out;
  std::string_view line = text.substr(at, text.find('\n', at) - at);
  const std::size_t eq = line.find('=');
  if (eq == std::string_view::npos) return out;
  std::string_view key = line.substr(0, eq);
  while (!key.empty() && (key.front() == ' ' || key.front() == '\t')) key.remove_prefix(1);
  while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.remove_suffix(1);
  // Only a bare key the settings table knows: the line is not echoed.
  if (settings().count(std::string(key)) == 0) return out;
  std::string named = "'";
  named.append(key).append("': ").append(out);
  return named;
}

// The end of the string that opens at t[i] (a quote): the index of its
// last quote, or t.size() when it never closes. Counts the lines it spans.
std::size_t string_end(std::string_view t, std::size_t i, std::size_t& line) {
  const char q = t[i];
  const bool multi = t.substr(i, 3) == std::string(3, q);
  const std::size_t close = multi ? 3 : 1;
  for (std::size_t k = i + close; k < t.size(); ++k) {
    if (t[k] == '\n') {
      ++line;
      if (!multi) return k;  // a one-line string cannot go on
    } else if (q == '"' && t[k] == '\\') {
      ++k;  // the escaped byte
    } else if (t.substr(k, close) == std::string(close, q)) {
      return k + close - 1;
    }
  }
  return t.size();
}

// toml++ 3.3 (Debian 12) reaches __builtin_unreachable() for some non-ASCII
// code points where it expects whitespace (upstream #190, #295): the line
// of the first byte >= 0x80 outside a string or a comment, or 0. Such a
// file is refused before it reaches the parser; non-ASCII text in strings
// and comments is fine.
std::size_t non_ascii_outside_text(std::string_view t) {
  std::size_t line = 1;
  for (std::size_t i = 0; i < t.size(); ++i) {
    const char c = t[i];
    if (c == '\n') {
      ++line;
    } else if (c == '#') {
      while (i + 1 < t.size() && t[i + 1] != '\n') ++i;
    } else if (c == '"' || c == '\'') {
      i = string_end(t, i, line);
    } else if (static_cast<unsigned char>(c) >= 0x80) {
      return line;
    }
  }
  return 0;
}

std::string to_key(std::string flag) {
  std::replace(flag.begin(), flag.end(), '-', '_');
  return flag;
}

}  // namespace

Result<void> load_toml(const std::string& path, Config& cfg) {
  // Read first (a FIFO, a directory or /dev/zero is refused, not followed),
  // then parsed from memory.
  auto file = read_regular_file(path, kConfigMaxBytes, "config");
  if (!file) return file.error();
  if (const std::size_t line = non_ascii_outside_text(file->text); line != 0) {
    return {Errc::kInvalidRequest, "config " + path + ": a non-ASCII character outside a string " +
                                       "or a comment (line " + std::to_string(line) + ")"};
  }
  toml::table t;
  try {
    t = toml::parse(file->text, path);
  } catch (const toml::parse_error& e) {
    return {Errc::kInvalidRequest, "config " + path + ": " + parse_error_text(file->text, e)};
  }
  for (auto&& [k, node] : t) {
    const std::string key(k.str());
    auto it = settings().find(key);
    if (it == settings().end()) {
      return {Errc::kInvalidRequest, "config " + path + ": unknown key '" + key + "'"};
    }
    std::string text;
    if (auto s = node.value<std::string>(); s && node.is_string()) {
      text = *s;
    } else if (auto i = node.value<int64_t>(); i && node.is_integer()) {
      text = std::to_string(*i);
    } else if (auto d = node.value<double>(); d && node.is_floating_point()) {
      text = std::to_string(*d);
    } else {
      return {Errc::kInvalidRequest, "config " + path + ": '" + key + "' has the wrong type"};
    }
    if (auto r = it->second(cfg, text); !r) {
      return {Errc::kInvalidRequest, "config " + path + ": " + r.error().message};
    }
  }
  return {};
}

Result<void> parse_args(const std::vector<std::string>& args, Config& cfg) {
  // --config first, so flags override the file wherever they stand.
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--config") {
      if (i + 1 >= args.size()) return {Errc::kInvalidRequest, "--config needs a value"};
      if (auto r = load_toml(args[i + 1], cfg); !r) return r;
    }
  }
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("--", 0) != 0) return {Errc::kInvalidRequest, "unexpected argument '" + a + "'"};
    if (i + 1 >= args.size()) return {Errc::kInvalidRequest, a + " needs a value"};
    const std::string& v = args[++i];
    if (a == "--config") continue;
    auto it = settings().find(to_key(a.substr(2)));
    if (it == settings().end()) return {Errc::kInvalidRequest, "unknown flag " + a};
    if (auto r = it->second(cfg, v); !r) return r;
  }
  if (cfg.queue.empty()) return {Errc::kInvalidRequest, "--queue is required"};
  if (cfg.data_dir.empty()) cfg.data_dir = default_data_dir(cfg.queue);
  return {};
}

std::string default_data_dir(const std::string& queue) {
  if (::geteuid() == 0) return "/var/lib/perfq/" + queue;
  if (const char* x = std::getenv("XDG_STATE_HOME"); x != nullptr && *x != '\0') {
    return std::string(x) + "/perfq/" + queue;
  }
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : ".") + "/.local/state/perfq/" + queue;
}

std::string usage() {
  std::string u =
      "usage: perfq-agent --queue NAME [--config FILE] [--data-dir DIR] [--http HOST:PORT|off]\n"
      "                   [--tokens FILE] [--<setting> VALUE]...\n"
      "settings (TOML keys use underscores):\n";
  for (const auto& [k, _] : settings()) {
    std::string flag = k;
    std::replace(flag.begin(), flag.end(), '_', '-');
    u += "  --" + flag + "\n";
  }
  return u;
}

}  // namespace perfq::agent
