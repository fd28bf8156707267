#include "harness.hpp"

#include <fcntl.h>
#include <sys/prctl.h>

#include <cstdio>
#include <cstdlib>

#include "perfq/shm/futex.hpp"

namespace perfq::test {

namespace {
std::atomic<uint32_t> g_queue_seq{0};
uint32_t g_idle_word = 0;
}  // namespace

QueueName::QueueName() {
  char buf[48];
  std::snprintf(buf, sizeof buf, "t%d-%u", static_cast<int>(::getpid()),
                g_queue_seq.fetch_add(1, std::memory_order_relaxed));
  name_ = buf;
  shm::Segment::remove(name_);
}

QueueName::~QueueName() {
  shm::Segment::remove(name_);
}

Signal::Signal() {
  if (::pipe2(fds_, O_CLOEXEC) != 0) std::abort();
}

Signal::~Signal() {
  close_read();
  close_write();
}

void Signal::notify(uint8_t byte) noexcept {
  (void)!::write(fds_[1], &byte, 1);
}

int Signal::wait(std::chrono::milliseconds bound) noexcept {
  pollfd p{fds_[0], POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(bound.count())) <= 0) return -1;
  uint8_t b = 0;
  return ::read(fds_[0], &b, 1) == 1 ? b : -1;
}

void Signal::close_read() noexcept {
  if (fds_[0] >= 0) ::close(fds_[0]);
  fds_[0] = -1;
}

void Signal::close_write() noexcept {
  if (fds_[1] >= 0) ::close(fds_[1]);
  fds_[1] = -1;
}

Child::Child(const std::function<int()>& fn) {
  std::fflush(nullptr);
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ == 0) {
    // A test process that dies (a failed assertion in a sanitizer build, a
    // crash) takes its children along: an orphaned agent would hold the test
    // runner's output pipe open and stall it until its timeout.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(98);
    int rc = 1;
    try {
      rc = fn();
    } catch (...) {
      rc = 99;
    }
    std::fflush(nullptr);
    ::_exit(rc);
  }
  pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
}

Child& Child::operator=(Child&& o) noexcept {
  if (this != &o) {
    this->~Child();
    pid_ = o.pid_;
    pidfd_ = o.pidfd_;
    o.pid_ = -1;
    o.pidfd_ = -1;
  }
  return *this;
}

Child::~Child() {
  if (pid_ > 0) {
    kill(SIGKILL);
    (void)wait(std::chrono::seconds(10));
  }
  if (pidfd_ >= 0) ::close(pidfd_);
}

void Child::kill(int sig) noexcept {
  if (pid_ > 0) ::kill(pid_, sig);
}

int Child::wait(std::chrono::milliseconds bound) noexcept {
  if (pid_ <= 0) return -1;
  pollfd p{pidfd_, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(bound.count())) <= 0) return -1;
  int st = 0;
  if (::waitpid(pid_, &st, 0) != pid_) return -1;
  pid_ = -1;
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return -1;
}

agent::Config test_config(const std::string& queue) {
  agent::Config cfg;
  cfg.queue = queue;
  cfg.data_dir = "/tmp/perfq-test-" + queue;
  cfg.max_queue_depth = 4096;
  cfg.slot_payload_bytes = 256;
  cfg.max_clients = 16;
  cfg.liveness_interval_ms = 2;
  cfg.ring_claim_timeout_ms = 20;
  cfg.max_concurrent_workers = 64;
  cfg.retry_backoff_ms = 1;  // the backoff rules have their own tests on a manual clock
  // Tests submit thousands as one user; the limit has its own tests.
  cfg.max_requests_per_user_per_minute = 0;
  cfg.status_table_entries = 1024;
  cfg.idempotency_table_entries = 256;
  cfg.rate_limit_table_entries = 64;
  cfg.metrics_types = 2;
  return cfg;
}

AgentThread::AgentThread(const agent::Config& cfg) {
  auto a = agent::Conductor::open(cfg);
  if (!a) {
    std::fprintf(stderr, "agent: %s\n", a.error().message.c_str());
    std::abort();
  }
  agent_ = std::move(*a);
  thread_ = std::thread([this] { agent_->run(stop_); });
}

AgentThread::~AgentThread() {
  stop();
}

void AgentThread::stop() {
  stop_.store(true, std::memory_order_release);
  if (thread_.joinable()) thread_.join();
}

Child spawn_agent(const agent::Config& cfg, std::chrono::milliseconds bound) {
  Signal ready;
  Child c([&] {
    ready.close_read();
    auto a = agent::Conductor::open(cfg);
    if (!a) {
      std::fprintf(stderr, "agent: %s\n", a.error().message.c_str());
      return 3;
    }
    static std::atomic<bool> stop{false};
    struct sigaction sa {};
    sa.sa_handler = [](int) { stop.store(true); };
    sigaction(SIGTERM, &sa, nullptr);
    ready.notify();
    (*a)->run(stop);
    return 0;
  });
  ready.close_write();
  if (ready.wait(bound) != 1) std::fprintf(stderr, "agent child did not report ready\n");
  return c;
}

Tool::Tool(const std::vector<std::string>& argv) {
  int fds[2];
  if (::pipe(fds) != 0) return;
  child_ = Child([&] {
    ::dup2(fds[1], 1);
    ::dup2(fds[1], 2);
    ::close(fds[0]);
    std::vector<std::string> args = argv;
    std::vector<char*> cargv;
    for (auto& a : args) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    ::execv(cargv[0], cargv.data());
    return 127;
  });
  ::close(fds[1]);
  fd_ = fds[0];
}

Tool::~Tool() {
  if (fd_ >= 0) ::close(fd_);
}

bool Tool::read_some(std::chrono::milliseconds bound) {
  if (fd_ < 0) return false;
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(bound.count())) <= 0) return false;
  char buf[4096];
  const ssize_t n = ::read(fd_, buf, sizeof buf);
  if (n <= 0) return false;
  out_.append(buf, static_cast<size_t>(n));
  return true;
}

bool Tool::wait_for_output(std::string_view text, std::chrono::milliseconds bound) {
  const auto deadline = std::chrono::steady_clock::now() + bound;
  while (out_.find(text) == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || !read_some(left)) return out_.find(text) != std::string::npos;
  }
  return true;
}

ToolRun Tool::finish(std::chrono::milliseconds bound) {
  // Bounded: the output ends when the tool exits.
  while (read_some(bound)) {
  }
  ToolRun r;
  r.out = out_;
  r.exit = child_.wait(bound);
  return r;
}

ToolRun run_tool(const std::vector<std::string>& argv) {
  return Tool(argv).finish(std::chrono::seconds(30));
}

Child spawn_daemon(const agent::Config& cfg, const agent::DaemonHooks& hooks,
                   std::chrono::milliseconds bound) {
  Signal ready;
  Child c([&] {
    ready.close_read();
    static std::atomic<bool> stop{false};
    struct sigaction sa {};
    sa.sa_handler = [](int) { stop.store(true); };
    sigaction(SIGTERM, &sa, nullptr);
    agent::DaemonHooks h = hooks;
    h.ready = [&] { ready.notify(); };
    return agent::run_daemon(cfg, stop, h);
  });
  ready.close_write();
  if (ready.wait(bound) != 1) std::fprintf(stderr, "daemon child did not report ready\n");
  return c;
}

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds bound) {
  const auto deadline = std::chrono::steady_clock::now() + bound;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return pred();
    // A bounded park on a word nobody wakes: yields the core to the agent
    // and workers between checks of the condition.
    shm::futex_wait(&g_idle_word, 0, 200'000);
  }
  return true;
}

}  // namespace perfq::test

namespace perfq::test {

Child spawn_worker(const std::string& queue, const std::string& type, Processor fn, Signal* ready,
                   WorkerOptions opt) {
  return spawn_worker_with(
      queue, [&](Worker& w) { return w.register_processor(type, fn); }, ready, opt);
}

Child spawn_batch_worker(const std::string& queue, const std::string& type, BatchProcessor fn,
                         Signal* ready, WorkerOptions opt) {
  return spawn_worker_with(
      queue, [&](Worker& w) { return w.register_batch_processor(type, fn); }, ready, opt);
}

Child spawn_worker_with(const std::string& queue, const std::function<Result<void>(Worker&)>& setup,
                        Signal* ready, WorkerOptions opt) {
  return Child([&]() -> int {
    if (ready != nullptr) ready->close_read();
    static std::atomic<bool> stop{false};
    struct sigaction sa {};
    sa.sa_handler = [](int) { stop.store(true); };
    sigaction(SIGTERM, &sa, nullptr);
    auto w = Worker::connect(queue, opt);
    if (!w) {
      std::fprintf(stderr, "worker: %s\n", w.error().message.c_str());
      return 3;
    }
    if (!setup(**w)) return 4;
    if (ready != nullptr) ready->notify();
    (*w)->run(stop);
    return 0;
  });
}

RequestView make_request(std::string_view type, std::string_view user, std::string_view payload,
                         Mode mode, uint8_t priority) {
  RequestView r;
  r.type = type;
  r.user_id = user;
  r.payload = std::as_bytes(std::span(payload.data(), payload.size()));
  r.mode = mode;
  r.priority = priority;
  return r;
}

shm::AgentCounters counters(shm::Segment& seg) {
  shm::AgentCounters out{};
  const shm::AgentCounters& k = seg.header().counters;
  const auto* src = reinterpret_cast<const uint64_t*>(&k);
  auto* dst = reinterpret_cast<uint64_t*>(&out);
  for (size_t i = 0; i < sizeof(out) / 8; ++i) dst[i] = load_acquire(src[i]);
  return out;
}

}  // namespace perfq::test
