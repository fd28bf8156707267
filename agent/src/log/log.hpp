#pragma once
// The agent's log: timestamped, levelled lines on stderr or appended to a
// file, as text for people or as JSON objects (one a line) for collectors
// (journald, kubectl logs, Loki). Each line is an event: a name
// ("client.join"), a sentence for people, and fields for machines.
//
// Writing never blocks the caller: lines go through spdlog's asynchronous
// queue, which drops its oldest lines when it is full (a stalled stderr or a
// flood of events cannot stall the data plane).
//
// Callers pass ids, counts, names and codes only: never a payload, a token or
// an idempotency key.
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "perfq/core/result.hpp"

namespace perfq::agent::log {

enum class Level { kTrace, kDebug, kInfo, kWarn, kError, kOff };

struct Options {
  bool json = false;
  Level level = Level::kInfo;
  std::string file;  // empty: stderr
};

// "trace", "debug", "info", "warn", "error", "off".
[[nodiscard]] bool parse_level(std::string_view text, Level& out) noexcept;

// Applies `o` (the default, before any call: text on stderr at info).
// Fails, changing nothing, when the file cannot be opened.
[[nodiscard]] Result<void> configure(const Options& o);

// SIGHUP: the file opened again at its path (after logrotate moved it).
// Nothing to do on stderr.
[[nodiscard]] Result<void> reopen();

// Waits until the lines written so far are out (bounded by the queue).
void flush();

void write(Level level, std::string_view event, std::string_view message,
           const nlohmann::json& fields = nlohmann::json::object());

inline void info(std::string_view event, std::string_view message,
                 const nlohmann::json& fields = nlohmann::json::object()) {
  write(Level::kInfo, event, message, fields);
}
inline void warn(std::string_view event, std::string_view message,
                 const nlohmann::json& fields = nlohmann::json::object()) {
  write(Level::kWarn, event, message, fields);
}
inline void error(std::string_view event, std::string_view message,
                  const nlohmann::json& fields = nlohmann::json::object()) {
  write(Level::kError, event, message, fields);
}

}  // namespace perfq::agent::log
