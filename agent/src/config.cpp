#include "perfq/agent/config.hpp"

#include <toml++/toml.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>

#include "perfq/core/assert.hpp"
#include "perfq/version.hpp"
#include "regular_file.hpp"

namespace perfq::agent {

uint32_t Config::slot_count() const noexcept {
  const uint64_t n = slots != 0 ? slots : std::max<uint64_t>(1024, 2 * max_queue_depth);
  return static_cast<uint32_t>(std::min<uint64_t>(n, 1u << 22));
}

namespace {

using Setter = std::function<Result<void>(Config&, const std::string&)>;
using Shower = std::function<std::string(const Config&)>;

// One setting: how a value is taken, how it is shown (--help's default, the
// ignored-settings report), what it is for (--help), and its --help group.
struct Setting {
  Setter set;
  Shower show;
  std::string help;
  std::string group;
};

// A config file is a few kilobytes; anything near this is not one.
constexpr std::size_t kConfigMaxBytes = std::size_t{1} << 20;

Result<void> parse_u64(const std::string& text, uint64_t min, uint64_t max, uint64_t& out,
                       const std::string& name) {
  uint64_t v = 0;
  const auto* end = text.data() + text.size();
  const auto r = std::from_chars(text.data(), end, v);
  if (r.ec != std::errc{} || r.ptr != end || v < min || v > max) {
    return {Errc::kInvalidRequest, name + " must be an integer from " + std::to_string(min) +
                                       " to " + std::to_string(max) + ", not '" + text + "'"};
  }
  out = v;
  return {};
}

Shower show_u64(uint64_t Config::*field) {
  return [=](const Config& c) { return std::to_string(c.*field); };
}

Setting u64(uint64_t Config::*field, uint64_t min, uint64_t max, std::string name,
            std::string help) {
  return {[=](Config& c, const std::string& v) { return parse_u64(v, min, max, c.*field, name); },
          show_u64(field),
          std::move(help),
          {}};
}

// Table sizes: 0 (where allowed) or a power of two in range.
Setting pow2(uint64_t Config::*field, uint64_t min, uint64_t max, std::string name,
             std::string help) {
  return {[=](Config& c, const std::string& v) -> Result<void> {
            uint64_t n = 0;
            if (auto r = parse_u64(v, min, max, n, name); !r) return r;
            if ((n & (n - 1)) != 0)
              return {Errc::kInvalidRequest, name + " must be a power of two"};
            c.*field = n;
            return {};
          },
          show_u64(field),
          std::move(help),
          {}};
}

Setting str(std::string Config::*field, std::string help) {
  return {[=](Config& c, const std::string& v) -> Result<void> {
            c.*field = v;
            return {};
          },
          [=](const Config& c) { return c.*field; },
          std::move(help),
          {}};
}

// One of a few words.
Setting word(std::string Config::*field, std::vector<std::string> words, std::string name,
             std::string help) {
  return {[=](Config& c, const std::string& v) -> Result<void> {
            if (std::find(words.begin(), words.end(), v) == words.end()) {
              std::string all;
              for (const auto& w : words) all += (all.empty() ? "" : ", ") + w;
              return {Errc::kInvalidRequest, name + " must be one of " + all + ", not '" + v + "'"};
            }
            c.*field = v;
            return {};
          },
          [=](const Config& c) { return c.*field; },
          std::move(help),
          {}};
}

// A comma-separated list of numeric ids ("1000,1001"; empty: none).
Setting ids(std::vector<uint32_t> Config::*field, std::string name, std::string help) {
  return {
      [=](Config& c, const std::string& v) -> Result<void> {
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
      },
      [=](const Config& c) {
        std::string out;
        for (const uint32_t id : c.*field) out += (out.empty() ? "" : ",") + std::to_string(id);
        return out;
      },
      std::move(help),
      {}};
}

Setting jitter() {
  return {[](Config& c, const std::string& v) -> Result<void> {
            char* end = nullptr;
            const double d = std::strtod(v.c_str(), &end);
            // !isfinite: strtod takes "nan", which no comparison refuses.
            if (end == v.c_str() || *end != '\0' || !std::isfinite(d) || d < 0 || d > 1) {
              return {Errc::kInvalidRequest, "retry_jitter must be a number from 0 to 1"};
            }
            c.retry_jitter = d;
            return {};
          },
          [](const Config& c) {
            char b[32];
            std::snprintf(b, sizeof b, "%g", c.retry_jitter);
            return std::string(b);
          },
          "random share of each retry's backoff, 0..1",
          {}};
}

Setting idle() {
  return {[](Config& c, const std::string& v) -> Result<void> {
            if (!parse_idle(v, c.idle)) {
              return {Errc::kInvalidRequest, "idle must be busy-spin, backoff or park"};
            }
            return {};
          },
          [](const Config& c) { return std::string(idle_name(c.idle)); },
          "what the data plane does with no work: busy-spin, backoff or park",
          {}};
}

using Settings = std::map<std::string, Setting>;

// Sets the --help group of every setting of a part.
Settings grouped(std::string group, Settings part) {
  for (auto& [_, s] : part) s.group = group;
  return part;
}

// Names, places, listeners and logs.
Settings place_settings() {
  return grouped(
      "Queue, files and listeners",
      {
          {"queue", str(&Config::queue, "the queue's name: [A-Za-z0-9._-], 1..64 (required)")},
          {"data_dir",
           str(&Config::data_dir,
               "DLQ journal, audit log and admin socket (default: /var/lib/perfq/QUEUE as root, "
               "else $XDG_STATE_HOME/perfq/QUEUE or ~/.local/state/perfq/QUEUE)")},
          {"http", str(&Config::http, "the HTTP API's HOST:PORT (port 0: any free one), or off")},
          {"probe_listen",
           str(&Config::probe_listen,
               "HOST:PORT of the probe listener (/livez, /readyz, /metrics without auth), or off")},
          {"tokens", str(&Config::tokens, "bearer tokens file of the HTTP API (reread on SIGHUP)")},
          {"group", str(&Config::group,
                        "owner group of the segment (mode 0660); default: the "
                        "agent's")},
          {"log_format", word(&Config::log_format, {"text", "json"}, "log_format",
                              "log lines as text or as JSON objects")},
          {"log_level", word(&Config::log_level, {"trace", "debug", "info", "warn", "error", "off"},
                             "log_level", "the least level logged")},
          {"log_file", str(&Config::log_file,
                           "append the log to this file (reopened on SIGHUP); default: stderr")},
          {"drain_timeout_ms",
           u64(&Config::drain_timeout_ms, 0, 1ull << 40, "drain_timeout_ms",
               "ms: SIGTERM drains for up to this long before stopping; 0 stops at once")},
      });
}

// SPEC §4.
Settings spec_settings() {
  return grouped(
      "Queue behaviour (SPEC §4)",
      {
          {"max_queue_depth", u64(&Config::max_queue_depth, 1, 1u << 21, "max_queue_depth",
                                  "requests accepted and not final at once")},
          {"queue_timeout_ms", u64(&Config::queue_timeout_ms, 1, 1ull << 40, "queue_timeout_ms",
                                   "ms a request may wait for its first dispatch")},
          {"processing_timeout_ms", u64(&Config::processing_timeout_ms, 1, 1ull << 40,
                                        "processing_timeout_ms", "ms an attempt may run")},
          {"rope_drop_timeout_ms",
           u64(&Config::rope_drop_timeout_ms, 0, 1ull << 40, "rope_drop_timeout_ms",
               "ms a submit waits for room before QUEUE_FULL")},
          {"batch_size", u64(&Config::batch_size, 1, 65536, "batch_size",
                             "requests of a type that make a batch go")},
          {"batch_interval_ms",
           u64(&Config::batch_interval_ms, 0, 1ull << 40, "batch_interval_ms",
               "ms a batch's oldest request waits before the batch goes anyway")},
          {"max_concurrent_workers",
           u64(&Config::max_concurrent_workers, 1, 1u << 20, "max_concurrent_workers",
               "dispatches in flight across all workers")},
          {"worker_idle_timeout_ms",
           u64(&Config::worker_idle_timeout_ms, 1, 1ull << 40, "worker_idle_timeout_ms",
               "ms a silent worker lives before it is evicted")},
          {"max_retry_attempts", u64(&Config::max_retry_attempts, 1, 100, "max_retry_attempts",
                                     "attempts before a request is dead-lettered")},
          {"retry_backoff_ms", u64(&Config::retry_backoff_ms, 0, 1ull << 40, "retry_backoff_ms",
                                   "ms before the first retry, doubling for each")},
          {"retry_jitter", jitter()},
          {"max_requests_per_user_per_minute",
           u64(&Config::max_requests_per_user_per_minute, 0, 65536,
               "max_requests_per_user_per_minute",
               "accepted submits per user per rolling minute, 0: unlimited (fixed at creation)")},
          {"idempotency_ttl_ms",
           u64(&Config::idempotency_ttl_ms, 1, 1ull << 40, "idempotency_ttl_ms",
               "ms an idempotency key answers with its first request")},
          {"slot_payload_bytes",
           u64(&Config::slot_payload_bytes, 64, 1u << 20, "slot_payload_bytes",
               "bytes: the largest payload (fixed at creation)")},
          {"aging_ms", u64(&Config::aging_ms, 1, 1ull << 40, "aging_ms",
                           "ms a waiting request takes to rise one priority band")},
      });
}

// The segment's shape, its tables and the agent's mechanics.
Settings shape_settings() {
  return grouped(
      "Segment shape and mechanics (fixed at creation where said)",
      {
          {"status_table_entries",
           pow2(&Config::status_table_entries, 0, 1u << 24, "status_table_entries",
                "finished statuses kept, 0 or a power of two (fixed at creation)")},
          {"idempotency_table_entries",
           pow2(&Config::idempotency_table_entries, 4, 1u << 24, "idempotency_table_entries",
                "(userId, key) pairs kept, a power of two (fixed at creation)")},
          {"rate_limit_table_entries",
           pow2(&Config::rate_limit_table_entries, 4, 1u << 20, "rate_limit_table_entries",
                "users rate-limited at once, a power of two (fixed at creation)")},
          {"metrics_types", u64(&Config::metrics_types, 0, 64, "metrics_types",
                                "types with their own metrics column (fixed at creation)")},
          {"slots", u64(&Config::slots, 64, 1u << 22, "slots",
                        "request slots; default max(1024, 2 x max_queue_depth) (fixed at "
                        "creation)")},
          {"max_clients", u64(&Config::max_clients, 2, 1024, "max_clients",
                              "producers and workers attached at once (fixed at creation)")},
          {"ring_claim_timeout_ms",
           u64(&Config::ring_claim_timeout_ms, 1, 60000, "ring_claim_timeout_ms",
               "ms before a ring cell a producer claimed and left is skipped")},
          {"liveness_interval_ms",
           u64(&Config::liveness_interval_ms, 1, 60000, "liveness_interval_ms",
               "ms between the agent's checks of its clients and the segment")},
          {"idle", idle()},
      });
}

// Health thresholds, the DLQ journal and the admin socket.
Settings operator_settings() {
  return grouped(
      "Health, DLQ journal and admin socket",
      {
          {"health_degraded_utilization",
           u64(&Config::health_degraded_utilization, 0, 100, "health_degraded_utilization",
               "percent of max_queue_depth above which health is degraded")},
          {"health_unhealthy_utilization",
           u64(&Config::health_unhealthy_utilization, 0, 100, "health_unhealthy_utilization",
               "percent of max_queue_depth above which health is unhealthy")},
          {"health_degraded_failures",
           u64(&Config::health_degraded_failures, 0, 1ull << 40, "health_degraded_failures",
               "failures in the last hour above which health is degraded")},
          {"health_unhealthy_failures",
           u64(&Config::health_unhealthy_failures, 0, 1ull << 40, "health_unhealthy_failures",
               "failures in the last hour above which health is unhealthy")},
          {"health_degraded_dlq",
           u64(&Config::health_degraded_dlq, 0, 1ull << 40, "health_degraded_dlq",
               "unreviewed dead letters above which health is degraded")},
          {"health_unhealthy_dlq",
           u64(&Config::health_unhealthy_dlq, 0, 1ull << 40, "health_unhealthy_dlq",
               "unreviewed dead letters above which health is unhealthy")},
          {"dlq_segment_bytes",
           u64(&Config::dlq_segment_bytes, 4096, 256ull << 20, "dlq_segment_bytes",
               "bytes: a DLQ journal file rotates at this size")},
          {"dlq_retention_ms", u64(&Config::dlq_retention_ms, 0, 1ull << 40, "dlq_retention_ms",
                                   "ms reviewed dead letters are kept")},
          {"admin_uids", ids(&Config::admin_uids, "admin_uids",
                             "uids admitted to the admin socket besides the agent's and root")},
          {"admin_gids",
           ids(&Config::admin_gids, "admin_gids", "gids admitted to the admin socket")},
      });
}

// HTTP limits.
Settings http_settings() {
  return grouped(
      "HTTP limits",
      {
          {"http_request_timeout_ms",
           u64(&Config::http_request_timeout_ms, 1, 3'600'000, "http_request_timeout_ms",
               "ms a request has to arrive and its answer to be read")},
          {"http_max_connections", u64(&Config::http_max_connections, 1, 65536,
                                       "http_max_connections", "HTTP connections at once")},
          {"http_max_event_streams",
           u64(&Config::http_max_event_streams, 1, 65536, "http_max_event_streams",
               "server-sent event streams at once")},
          {"http_event_keep_alive_ms",
           u64(&Config::http_event_keep_alive_ms, 1, 3'600'000, "http_event_keep_alive_ms",
               "ms between keep-alive comments on an idle event stream")},
      });
}

// The parts in the order --help shows them.
const std::vector<Settings>& parts() {
  static const std::vector<Settings> all = {place_settings(), spec_settings(), shape_settings(),
                                            operator_settings(), http_settings()};
  return all;
}

// One table of settings serves flags (dashes), TOML keys (underscores) and
// environment variables (PERFQ_ and upper case).
const Settings& settings() {
  static const Settings table = [] {
    Settings all;
    for (Settings part : parts()) {
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
    if (auto r = it->second.set(cfg, text); !r) {
      return {Errc::kInvalidRequest, "config " + path + ": " + r.error().message};
    }
    cfg.given.insert(key);
  }
  return {};
}

namespace {

std::string to_flag(std::string key) {
  std::replace(key.begin(), key.end(), '_', '-');
  return "--" + key;
}

std::string to_env(std::string key) {
  std::transform(key.begin(), key.end(), key.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::toupper(ch)); });
  return "PERFQ_" + key;
}

// The command line: --config (PERFQ_CONFIG) first, then every setting as a
// flag or its environment variable. CLI11 runs the options' callbacks in the
// order they were added, after it has read the environment for those not on
// the command line: the file loads first, then each setting from its flag or
// else its variable, so defaults < file < environment < flags.
std::unique_ptr<CLI::App> make_app(Config& cfg) {
  auto app = std::make_unique<CLI::App>(
      "perfq-agent: owns one perfq queue's shared-memory segment, DLQ journal and admin "
      "socket, and runs its data plane.\nEvery setting is also a TOML key of --config (with "
      "underscores) and an environment variable (PERFQ_ and upper case); precedence: "
      "defaults < config file < environment < flags.",
      "perfq-agent");
  app->set_version_flag("--version", std::string("perfq-agent ") + kVersion,
                        "print the version and exit");
  app->get_formatter()->column_width(44);
  app->option_defaults()->always_capture_default();
  app->add_option_function<std::string>(
         "--config",
         [&cfg](const std::string& path) {
           if (auto r = load_toml(path, cfg); !r) throw CLI::ValidationError(r.error().message);
         },
         "TOML file of settings (keys with underscores), below the environment and flags")
      ->envname("PERFQ_CONFIG")
      ->type_name("FILE");
  const Config defaults;
  for (const Settings& part : parts()) {
    for (const auto& [key, setting] : part) {
      const std::string flag = to_flag(key);
      const Setter& set = setting.set;
      CLI::Option* o = app->add_option_function<std::string>(
          flag,
          [&cfg, &set, key = key, flag](const std::string& v) {
            if (auto r = set(cfg, v); !r) throw CLI::ValidationError(flag, r.error().message);
            cfg.given.insert(key);
          },
          setting.help);
      // A flag given twice takes its last value (a wrapper's defaults, then
      // its caller's).
      o->envname(to_env(key))->group(setting.group);
      o->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
      // The flag's own default: empty ones (queue, tokens, ...) are not shown.
      const std::string shown = key == "data_dir" || key == "slots" ? "" : setting.show(defaults);
      if (!shown.empty()) o->default_str(shown);
      o->type_name(key.size() > 3 && key.substr(key.size() - 3) == "_ms" ? "MS" : "VALUE");
    }
  }
  return app;
}

// After the command line: what no flag, file or variable can leave out.
Result<void> finish(Config& cfg) {
  if (cfg.queue.empty()) {
    return {Errc::kInvalidRequest, "--queue is required (or PERFQ_QUEUE, or queue in --config)"};
  }
  if (cfg.data_dir.empty()) cfg.data_dir = default_data_dir(cfg.queue);
  return {};
}

// CLI11 takes its arguments last first.
std::vector<std::string> reversed(const std::vector<std::string>& args) {
  return {args.rbegin(), args.rend()};
}

}  // namespace

Result<void> parse_args(const std::vector<std::string>& args, Config& cfg) {
  auto app = make_app(cfg);
  try {
    app->parse(reversed(args));
  } catch (const CLI::ParseError& e) {
    return {Errc::kInvalidRequest, e.what()};
  }
  return finish(cfg);
}

int command_line(const std::vector<std::string>& args, Config& cfg) {
  auto app = make_app(cfg);
  try {
    app->parse(reversed(args));
  } catch (const CLI::Success& e) {  // --help, --version
    return app->exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "perfq-agent: %s\nRun perfq-agent --help for the settings.\n", e.what());
    return kUsageExit;
  }
  if (auto r = finish(cfg); !r) {
    std::fprintf(stderr, "perfq-agent: %s\n", r.error().message.c_str());
    return kUsageExit;
  }
  return -1;
}

std::string setting_text(const Config& cfg, const std::string& key) {
  auto it = settings().find(key);
  return it == settings().end() ? std::string() : it->second.show(cfg);
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
  Config scratch;
  return make_app(scratch)->help();
}

}  // namespace perfq::agent
