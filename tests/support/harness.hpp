#pragma once
// Test harness: unique queues, forked processes with bounded waits, and an
// agent in a thread or in a child process. Every wait here has a bound and
// waits on an event (a pipe byte, a process exit, a ring), never on time.
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "dataplane/conductor.hpp"
#include "perfq/agent/daemon.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq::test {

// A queue name no other test (or test run) uses; its segment is removed
// when the object goes away.
class QueueName {
 public:
  QueueName();
  ~QueueName();
  [[nodiscard]] const std::string& str() const noexcept { return name_; }

 private:
  std::string name_;
};

// A one-shot event between processes: a pipe.
class Signal {
 public:
  Signal();
  ~Signal();
  void notify(uint8_t byte = 1) noexcept;
  // Waits up to `bound` for a byte; returns it, or -1 on timeout/EOF.
  int wait(std::chrono::milliseconds bound) noexcept;
  void close_read() noexcept;
  void close_write() noexcept;

 private:
  int fds_[2] = {-1, -1};
};

// A forked child running `fn`; its exit code is fn's return value.
class Child {
 public:
  Child() = default;
  explicit Child(const std::function<int()>& fn);
  Child(Child&& o) noexcept : pid_(o.pid_), pidfd_(o.pidfd_) {
    o.pid_ = -1;
    o.pidfd_ = -1;
  }
  Child& operator=(Child&& o) noexcept;
  ~Child();  // kills and reaps a child still running

  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  void kill(int sig = SIGKILL) noexcept;
  // Waits up to `bound` for exit; returns the exit status (128+sig when
  // killed) or -1 on timeout.
  int wait(std::chrono::milliseconds bound) noexcept;

 private:
  pid_t pid_ = -1;
  int pidfd_ = -1;
};

// Default settings for test agents: small, fast liveness.
agent::Config test_config(const std::string& queue);

// An agent running in a thread of this process, sharing one mapping with
// in-process clients (so ThreadSanitizer sees every shared access).
class AgentThread {
 public:
  explicit AgentThread(const agent::Config& cfg);
  ~AgentThread();
  [[nodiscard]] std::shared_ptr<shm::Segment> segment() const { return agent_->segment(); }
  void stop();

 private:
  std::unique_ptr<agent::Conductor> agent_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// An agent in a child process; returns once the agent reports it is running.
Child spawn_agent(const agent::Config& cfg,
                  std::chrono::milliseconds bound = std::chrono::seconds(10));

// A command run to its end, bounded: its exit code and its stdout and
// stderr together.
struct ToolRun {
  int exit = -1;
  std::string out;
};
// Runs argv (argv[0] a path) in a child process; waits at most 30 s for
// output and exit.
ToolRun run_tool(const std::vector<std::string>& argv);

// A command (argv[0] a path) running in a child process, its stdout and
// stderr on one pipe, read while it runs: for tools that follow something
// (`perfqctl events`). Killed if still running when the object goes away.
class Tool {
 public:
  explicit Tool(const std::vector<std::string>& argv);
  ~Tool();
  Tool(const Tool&) = delete;
  Tool& operator=(const Tool&) = delete;

  // Reads until the output holds `text`, at most `bound`; whether it does.
  bool wait_for_output(std::string_view text, std::chrono::milliseconds bound);
  // Reads to the end of the output, then waits for the exit, each at most
  // `bound`: the exit code and all the output.
  ToolRun finish(std::chrono::milliseconds bound);
  [[nodiscard]] const std::string& output() const noexcept { return out_; }

 private:
  // One read of what the tool wrote, waiting at most `bound`; false at the
  // end of its output or on timeout.
  bool read_some(std::chrono::milliseconds bound);

  int fd_ = -1;
  Child child_;
  std::string out_;
};

// The whole agent as perfq-agent runs it (DLQ journal, audit log, admin
// socket) in a child process; returns once it runs and its socket listens.
// SIGTERM stops it cleanly, SIGKILL as a crash.
Child spawn_daemon(const agent::Config& cfg, const agent::DaemonHooks& hooks = {},
                   std::chrono::milliseconds bound = std::chrono::seconds(10));

// Waits until `pred` holds, re-checking each time `wake` (a shared word that
// changes with progress) moves or a short bounded park ends; returns pred().
bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds bound);

}  // namespace perfq::test

#include "perfq/perfq.hpp"

namespace perfq::test {

// A worker in a child process: registers `fn` for `type` and runs until
// SIGTERM. `ready` (if given) gets a byte once the worker is registered.
Child spawn_worker(const std::string& queue, const std::string& type, Processor fn,
                   Signal* ready = nullptr, WorkerOptions opt = {});
// The same with a batch processor.
Child spawn_batch_worker(const std::string& queue, const std::string& type, BatchProcessor fn,
                         Signal* ready = nullptr, WorkerOptions opt = {});
// A worker whose processors `setup` registers.
Child spawn_worker_with(const std::string& queue, const std::function<Result<void>(Worker&)>& setup,
                        Signal* ready = nullptr, WorkerOptions opt = {});

// A request whose views point at the given strings.
RequestView make_request(std::string_view type, std::string_view user, std::string_view payload,
                         Mode mode = Mode::kFifo, uint8_t priority = kPriorityDefault);

// The agent's published counters (fresh after each liveness tick).
shm::AgentCounters counters(shm::Segment& seg);

}  // namespace perfq::test
