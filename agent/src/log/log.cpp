#include "log/log.hpp"

#include <spdlog/async.h>
#include <spdlog/async_logger.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/dist_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <condition_variable>
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

// The sinks behind the logger, swapped by configure() and reopen() under
// the sink's mutex; it counts the lines it wrote, for flush().
class Out : public spdlog::sinks::dist_sink_mt {
 public:
  // Waits until `lines` lines have been written or dropped (`dropped()`),
  // at most `bound`.
  template <typename Dropped>
  void await(uint64_t lines, std::chrono::milliseconds bound, Dropped dropped) {
    std::unique_lock lock(wait_mu_);
    (void)cv_.wait_for(lock, bound, [&] { return written_ + dropped() >= lines; });
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::sinks::dist_sink_mt::sink_it_(msg);
    std::lock_guard lock(wait_mu_);
    ++written_;
    cv_.notify_all();
  }

 private:
  std::mutex wait_mu_;
  std::condition_variable cv_;
  uint64_t written_ = 0;  // guarded by wait_mu_
};

// One logger per process, never destroyed (threads may log until exit);
// configure() swaps the sinks behind it, never the logger, so a thread that
// is writing never sees it change under it. A child forked after the
// parent made it has no queue thread: the child makes its own (the_log).
struct Log {
  const pid_t pid = ::getpid();
  std::shared_ptr<spdlog::details::thread_pool> pool =
      std::make_shared<spdlog::details::thread_pool>(kQueueLines, 1);
  std::shared_ptr<Out> out = std::make_shared<Out>();
  std::shared_ptr<spdlog::async_logger> logger;
  std::mutex mu;  // configure(), reopen()
  std::atomic<bool> json{false};
  std::atomic<uint64_t> posted{0};  // lines handed to the queue
  std::string file;                 // guarded by mu

  // With the settings of `parent` (a forked child's), or the defaults.
  explicit Log(Log* parent) {
    std::string from;
    spdlog::level::level_enum level = spdlog::level::info;
    if (parent != nullptr) {
      json.store(parent->json.load(std::memory_order_relaxed), std::memory_order_relaxed);
      level = parent->logger->level();
      from = parent->file;
    }
    auto sink = open_sink(from);
    if (!sink) sink = open_sink("");  // stderr: cannot fail
    file = sink.ok() && !from.empty() ? from : "";
    out->set_sinks({std::move(*sink)});
    logger = std::make_shared<spdlog::async_logger>("perfq-agent", out, pool,
                                                    spdlog::async_overflow_policy::overrun_oldest);
    logger->set_pattern("%v");  // write() makes the line whole
    logger->set_level(level);
    logger->flush_on(spdlog::level::trace);  // each line out at once
  }
};

Log& the_log() {
  static std::atomic<Log*> current{nullptr};
  static std::mutex made;
  Log* log = current.load(std::memory_order_acquire);
  if (log != nullptr && log->pid == ::getpid()) return *log;
  std::lock_guard lock(made);
  log = current.load(std::memory_order_acquire);
  if (log == nullptr || log->pid != ::getpid()) {
    log = new Log(log);
    current.store(log, std::memory_order_release);
  }
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
  Log& log = the_log();
  const uint64_t lines = log.posted.load(std::memory_order_relaxed);
  log.logger->flush();
  log.out->await(lines, std::chrono::seconds(2), [&] { return log.pool->overrun_counter(); });
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
  log.posted.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace perfq::agent::log
