// perfq-agent: owns one queue's segment, its DLQ journal and admin socket,
// and runs its data plane (run_daemon).
#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "log/log.hpp"
#include "perfq/agent/config.hpp"
#include "perfq/agent/daemon.hpp"

namespace {

std::atomic<bool> g_stop{false};

extern "C" void on_signal(int) {
  g_stop.store(true, std::memory_order_release);
}

extern "C" void on_hangup(int) {
  perfq::agent::request_reload();
}

}  // namespace

int main(int argc, char** argv) {
  perfq::agent::Config cfg;
  if (const int rc = perfq::agent::command_line({argv + 1, argv + argc}, cfg); rc >= 0) return rc;
  namespace log = perfq::agent::log;
  log::Options lo;
  lo.json = cfg.log_format == "json";
  lo.file = cfg.log_file;
  (void)log::parse_level(cfg.log_level, lo.level);  // the parser took only valid names
  if (auto r = log::configure(lo); !r) {
    std::fprintf(stderr, "perfq-agent: %s\n", r.error().message.c_str());
    return 1;
  }
  std::error_code ec;
  std::filesystem::create_directories(cfg.data_dir, ec);
  if (ec) {
    log::error("agent.failed", "cannot create data dir " + cfg.data_dir + ": " + ec.message());
    log::flush();
    return 1;
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  // SIGHUP (systemctl reload, logrotate): reload, never stop.
  struct sigaction hup {};
  hup.sa_handler = on_hangup;
  sigemptyset(&hup.sa_mask);
  hup.sa_flags = SA_RESTART;
  sigaction(SIGHUP, &hup, nullptr);
  // Signals an operator may send by habit or by mistake do not kill it.
  std::signal(SIGUSR1, SIG_IGN);
  std::signal(SIGUSR2, SIG_IGN);
  std::signal(SIGPIPE, SIG_IGN);
  return perfq::agent::run_daemon(cfg, g_stop);
}
