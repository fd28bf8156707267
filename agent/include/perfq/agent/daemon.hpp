#pragma once
// The agent as perfq-agent runs it: the DLQ journal and audit log, the data
// plane, and the admin socket, wired together. main() parses flags and
// installs signal handlers; tests run the same thing in a child process.
#include <atomic>
#include <functional>

#include "perfq/agent/config.hpp"

namespace perfq::agent {

class IoSeam;

struct DaemonHooks {
  std::function<void()> ready;    // called once the agent runs and the socket listens
  IoSeam* seam = nullptr;         // fault injection for the DLQ files (tests)
  uint64_t journal_retry_ms = 0;  // 0: the journal's default first retry wait
};

// Runs until `stop`; returns the process exit code (0, or 1 with the reason
// on stderr). cfg.data_dir must be set.
int run_daemon(const Config& cfg, const std::atomic<bool>& stop, const DaemonHooks& hooks = {});

// Async-signal-safe (main's SIGHUP handler calls it): asks the running
// daemon to reload what can change under it: the tokens file (a file that
// does not load keeps the old tokens, and says why), and the audit log,
// reopened at its path (logrotate moved it). Nothing happens when no daemon
// runs.
void request_reload() noexcept;

}  // namespace perfq::agent
