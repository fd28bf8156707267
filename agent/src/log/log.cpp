#include "log/log.hpp"

#include <spdlog/async.h>
#include <spdlog/async_logger.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/dist_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <array>
#include <memory>
#include <mutex>

#include "perfq/core/clock.hpp"
#include "perfq/core/iso_time.hpp"

namespace perfq::agent::log {

namespace {

constexpr std::array<std::string_view, 6> kLevelNames = {"trace", "debug", "info",
                                                         "warn",  "error", "off"};
// Lines the asynchronous queue holds before it drops its oldest.
constexpr std::size_t kQueueLines = 8192;

spdlog::level::level_enum to_spdlog(Level l) {
  switch (l) {
    case Level::kTrace:
      return spdlog::level::trace;
    case Level::kDebug:
      return spdlog::level::debug;
    case Level::kInfo:
      return spdlog::level::info;
    case Level::kWarn:
      return spdlog::level::warn;
    case Level::kError:
      return spdlog::level::err;
    case Level::kOff:
      break;
  }
  return spdlog::level::off;
}

// A sink that writes the line as write() made it: the pattern adds nothing.
Result<std::shared_ptr<spdlog::sinks::sink>> open_sink(const std::string& file) {
  std::shared_ptr<spdlog::sinks::sink> sink;
  if (file.empty()) {
    sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  } else {
    try {
      sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(file, false);
    } catch (const spdlog::spdlog_ex& e) {
      return Error{Errc::kInternal, "log file " + file + ": " + e.what()};
    }
  }
  sink->set_pattern("%v");
  return sink;
}

// One logger for the life of the process; configure() swaps the sinks
// behind its dist_sink (under the sink's mutex), never the logger, so a
// thread that is writing never sees it change under it.
struct Log {
  std::shared_ptr<spdlog::details::thread_pool> pool =
      std::make_shared<spdlog::details::thread_pool>(kQueueLines, 1);
  std::shared_ptr<spdlog::sinks::dist_sink_mt> out =
      std::make_shared<spdlog::sinks::dist_sink_mt>();
  std::shared_ptr<spdlog::async_logger> logger;
  std::mutex mu;  // configure(), reopen()
  std::atomic<bool> json{false};
  std::string file;  // guarded by mu

  Log() {
    auto err = open_sink("");  // stderr: cannot fail
    out->set_sinks({std::move(*err)});
    logger = std::make_shared<spdlog::async_logger>("perfq-agent", out, pool,
                                                    spdlog::async_overflow_policy::overrun_oldest);
    // The line is made whole by write(): the pattern adds nothing.
    logger->set_pattern("%v");
    logger->set_level(spdlog::level::info);
    logger->flush_on(spdlog::level::trace);
  }
};

Log& the_log() {
  static Log* log = new Log();  // never destroyed: threads may log until exit
  return *log;
}

}  // namespace

bool parse_level(std::string_view text, Level& out) noexcept {
  for (std::size_t i = 0; i < kLevelNames.size(); ++i) {
    if (kLevelNames[i] == text) {
      out = static_cast<Level>(i);
      return true;
    }
  }
  return false;
}

Result<void> configure(const Options& o) {
  Log& log = the_log();
  std::lock_guard lock(log.mu);
  auto sink = open_sink(o.file);
  if (!sink) return sink.error();
  log.logger->flush();
  log.out->set_sinks({*sink});
  log.file = o.file;
  log.json.store(o.json, std::memory_order_relaxed);
  log.logger->set_level(to_spdlog(o.level));
  return {};
}

Result<void> reopen() {
  Log& log = the_log();
  std::lock_guard lock(log.mu);
  if (log.file.empty()) return {};
  auto sink = open_sink(log.file);
  if (!sink) return sink.error();  // the old file stays in use
  log.logger->flush();
  log.out->set_sinks({*sink});
  return {};
}

void flush() {
  the_log().logger->flush();
}

void write(Level level, std::string_view event, std::string_view message,
           const nlohmann::json& fields) {
  Log& log = the_log();
  const auto lvl = to_spdlog(level);
  if (!log.logger->should_log(lvl)) return;
  const std::string at = iso_time(unix_now_ns());
  const std::string_view name = kLevelNames[static_cast<std::size_t>(level)];
  std::string line;
  if (log.json.load(std::memory_order_relaxed)) {
    // time, level, event and message first, for people reading the stream.
    nlohmann::ordered_json j = {
        {"time", at}, {"level", name}, {"event", event}, {"message", message}};
    if (fields.is_object()) {
      for (const auto& [k, v] : fields.items()) j[k] = v;
    }
    line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    line.reserve(at.size() + message.size() + 32);
    line.append(at).append(" ").append(name).append(name.size() < 5 ? 6 - name.size() : 1, ' ');
    line.append("perfq-agent: ").append(message);
  }
  log.logger->log(lvl, line);
}

}  // namespace perfq::agent::log
