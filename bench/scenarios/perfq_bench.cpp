// perfq-bench: end-to-end scenarios of SPEC §8, each run beside the baselines
// it is judged against, in the same process invocation.
//
//   perfq-bench [all] [--quick] [--only GROUP]
//                                    every scenario and baseline, one report
//   perfq-bench demo --queue Q [--seconds N] [--producers N]
//                                    drive a running agent with producers and
//                                    a worker, with a live progress line
//   perfq-bench [SUBCOMMAND] --help, perfq-bench --version
//
// A bad command line is said on stderr, naming the argument, with exit code
// 64 (EX_USAGE); a run that fails exits 1.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "baselines/baselines.hpp"
#include "harness.hpp"
#include "journal/format.hpp"
#include "journal/writer.hpp"
#include "perfq/core/histogram.hpp"
#include "perfq/perfq.hpp"
#include "perfq/version.hpp"

namespace perfq::bench {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

uint64_t now_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
          .count());
}

struct Options {
  bool quick = false;
  std::string queue;
  int seconds = 10;
  int producers = 2;
  std::string only;  // run one group: baselines, submit, round-trip, throughput, journal
};

bool want(const Options& o, const char* group) {
  return o.only.empty() || o.only == group;
}

// ------------------------------------------------------------------ report

struct Row {
  std::string scenario;
  std::string figure;
  std::string target;
  std::string verdict;
};
std::vector<Row> g_rows;

void row(std::string scenario, std::string figure, std::string target = "",
         std::string verdict = "") {
  std::printf("  %-44s %-34s %s %s\n", scenario.c_str(), figure.c_str(), target.c_str(),
              verdict.c_str());
  std::fflush(stdout);
  g_rows.push_back({std::move(scenario), std::move(figure), std::move(target), std::move(verdict)});
}

std::string ns(uint64_t v) {
  char b[32];
  if (v < 10'000)
    std::snprintf(b, sizeof b, "%" PRIu64 " ns", v);
  else
    std::snprintf(b, sizeof b, "%.1f us", static_cast<double>(v) / 1000.0);
  return b;
}

std::string rate(double per_s) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f M/s", per_s / 1e6);
  return b;
}

std::string lat(const LogLinearHistogram& h) {
  return "p50 " + ns(h.percentile(0.5)) + "  p99 " + ns(h.percentile(0.99));
}

std::string lat(const LatencySummary& s) {
  return "p50 " + ns(s.p50_ns) + "  p99 " + ns(s.p99_ns);
}

const char* met(bool ok) {
  return ok ? "[met]" : "[NOT met]";
}

// ------------------------------------------------------------------ system

// What serves "noop": a worker that replies ok, a batch worker that replies
// ok to every item, or one whose every attempt fails for good.
enum class Serve : uint8_t { kOk, kBatchOk, kFail };

// An agent and one worker, each in its own process. With `journal` the agent
// is perfq-agent's whole daemon, its DLQ journal under /var/tmp (a disk, so
// fdatasync costs what it costs); otherwise the bare agent, whose dead
// letters go to memory.
struct System {
  test::QueueName queue;
  test::Child agent;
  test::Child worker;
  std::string data_dir;

  // `tune` adjusts the agent's settings.
  explicit System(IdleKind idle, uint64_t max_concurrent = 64,
                  const std::function<void(agent::Config&)>& tune = {}, Serve serve = Serve::kOk,
                  bool journal = false) {
    auto cfg = test::test_config(queue.str());
    cfg.slot_payload_bytes = 256;
    cfg.max_queue_depth = 32768;
    cfg.max_concurrent_workers = max_concurrent;
    cfg.idle = idle;
    cfg.liveness_interval_ms = 20;
    if (tune) tune(cfg);
    if (journal) {
      char dir[] = "/var/tmp/perfq-bench-agent-XXXXXX";
      if (::mkdtemp(dir) != nullptr) data_dir = dir;
      cfg.data_dir = data_dir;
      agent = test::spawn_daemon(cfg);
    } else {
      agent = test::spawn_agent(cfg);
    }
    test::Signal ready;
    if (serve == Serve::kFail) {
      worker = test::spawn_worker(
          queue.str(), "noop", [](const Job&) { return Reply::permanent_error("failed"); }, &ready,
          WorkerOptions{idle, 4096});
    } else if (serve == Serve::kBatchOk) {
      worker = test::spawn_batch_worker(
          queue.str(), "noop",
          [](std::span<const Job> jobs) { return std::vector<Reply>(jobs.size(), Reply::ok()); },
          &ready, WorkerOptions{idle, 4096});
    } else {
      worker = test::spawn_worker(
          queue.str(), "noop", [](const Job&) { return Reply::ok(); }, &ready,
          WorkerOptions{idle, 4096});
    }
    ready.close_write();
    if (ready.wait(10s) != 1) std::fprintf(stderr, "perfq-bench: worker did not start\n");
  }
  ~System() {
    worker.kill(SIGTERM);
    (void)worker.wait(10s);
    agent.kill(SIGTERM);
    (void)agent.wait(10s);
    if (!data_dir.empty()) std::filesystem::remove_all(data_dir);
  }
};

const std::string kPayload64(64, 'x');

RequestView noop_request() {
  return test::make_request("noop", "bench", kPayload64);
}

// Submit cost: each call timed on its own while the agent drains and the
// worker completes; a window of outstanding requests keeps slots flowing.
void submit_latency(const Options& o) {
  System sys(IdleKind::kPark);
  auto p = Producer::connect(sys.queue.str(), ProducerOptions{IdleKind::kPark});
  if (!p) return;
  LogLinearHistogram h;
  std::deque<Future> window;
  const uint64_t n = o.quick ? 200'000 : 1'000'000;
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t t0 = now_ns();
    auto s = (*p)->submit(noop_request());
    const uint64_t t1 = now_ns();
    if (!s) continue;
    h.record(t1 - t0);
    window.push_back(std::move(s->outcome));
    if (window.size() >= 4096) {
      window.front().get();
      window.pop_front();
      (*p)->poll();
    }
  }
  for (auto& f : window) f.get();
  // The clock itself, for reading the figure above.
  LogLinearHistogram clk;
  for (int i = 0; i < 100'000; ++i) {
    const uint64_t a = now_ns();
    clk.record(now_ns() - a);
  }
  row("submit, 64 B payload (per call, incl. clock)", lat(h), "p50 <= 150 ns",
      met(h.percentile(0.5) <= 150));
  row("  clock read overhead", "p50 " + ns(clk.percentile(0.5)));
}

// What the per-user rate limit and the idempotency table add to a submit:
// four kinds of submit, interleaved round by round in the same run (two
// agents: one without a limit, one with), each call timed on its own.
void submit_rules_cost(const Options& o) {
  constexpr uint32_t kUsers = 128;
  constexpr uint64_t kLimit = 16384;  // per user per minute: never reached here
  System bare(IdleKind::kPark, 64, [](agent::Config& c) {
    c.max_requests_per_user_per_minute = 0;
    c.idempotency_table_entries = 65536;
  });
  System limited(IdleKind::kPark, 64, [](agent::Config& c) {
    c.max_requests_per_user_per_minute = kLimit;
    c.rate_limit_table_entries = 512;
    c.idempotency_table_entries = 65536;
  });
  auto pb = Producer::connect(bare.queue.str());
  auto pl = Producer::connect(limited.queue.str());
  if (!pb || !pl) return;
  std::vector<std::string> users;
  for (uint32_t u = 0; u < kUsers; ++u) users.push_back("user-" + std::to_string(u));
  struct Kind {
    const char* name;
    Producer* p;
    bool key;
    LogLinearHistogram h;
    std::deque<Future> window;
  };
  Kind kinds[] = {{"bare submit", pb->get(), false, {}, {}},
                  {"+ rate limit", pl->get(), false, {}, {}},
                  {"+ idempotency key", pb->get(), true, {}, {}},
                  {"+ rate limit + idempotency key", pl->get(), true, {}, {}}};
  const uint64_t per_round = o.quick ? 20'000 : 100'000;
  const int rounds = 4;
  uint64_t seq = 0;
  uint64_t refused = 0;
  char key[32];
  for (int round = 0; round < rounds; ++round) {
    for (Kind& k : kinds) {
      for (uint64_t i = 0; i < per_round; ++i, ++seq) {
        RequestView r = test::make_request("noop", users[seq % kUsers], kPayload64);
        if (k.key) {
          std::snprintf(key, sizeof key, "k-%" PRIu64, seq);
          r.idempotency_key = key;
        }
        const uint64_t t0 = now_ns();
        auto s = k.p->submit(r);
        const uint64_t t1 = now_ns();
        if (!s) {
          ++refused;
          continue;
        }
        k.h.record(t1 - t0);
        k.window.push_back(std::move(s->outcome));
        if (k.window.size() >= 4096) {
          k.window.front().get();
          k.window.pop_front();
        }
      }
      for (auto& f : k.window) f.get();
      k.window.clear();
    }
  }
  const double base = static_cast<double>(kinds[0].h.percentile(0.5));
  for (const Kind& k : kinds) {
    char cmp[48];
    std::snprintf(cmp, sizeof cmp, "%.2fx bare p50",
                  static_cast<double>(k.h.percentile(0.5)) / base);
    row(std::string("submit cost: ") + k.name, lat(k.h), cmp);
  }
  if (refused != 0) row("  submits refused (should be none)", std::to_string(refused));
}

// A burst of `n` requests in batches of `batch` through submit_many, timed
// as a whole while the agent drains; then every outcome is awaited (with
// `forget`, collected by poll until the producer has none outstanding).
double submit_many_burst(Producer& p, uint64_t n, uint32_t batch, bool forget) {
  const std::vector<RequestView> rs(batch, noop_request());
  std::vector<Result<Submitted>> out;
  std::vector<Future> burst;
  burst.reserve(n);
  SubmitManyOptions opt;
  opt.forget = forget;
  uint64_t accepted = 0;
  const uint64_t t0 = now_ns();
  for (uint64_t i = 0; i < n; i += batch) {
    const auto k = static_cast<size_t>(std::min<uint64_t>(batch, n - i));
    accepted += p.submit_many(std::span(rs).first(k), out, opt);
    if (forget) continue;
    for (auto& a : out) {
      if (a) burst.push_back(std::move(a->outcome));
    }
  }
  const uint64_t t1 = now_ns();
  for (auto& f : burst) f.get();
  // Bounded: each poll waits nothing; the agent finishes within seconds.
  const uint64_t deadline = now_ns() + 60'000'000'000;
  while (p.outstanding() > 0 && now_ns() < deadline) {
    if (p.poll() == 0) sched_yield();
  }
  return static_cast<double>(accepted) * 1e9 / static_cast<double>(t1 - t0);
}

// Submit rate: a burst as large as the pool allows, timed as a whole, while
// the agent drains; then sustained submit+complete from one producer.
void submit_throughput(const Options& o) {
  System sys(IdleKind::kPark);
  auto p = Producer::connect(sys.queue.str());
  if (!p) return;
  std::vector<Future> burst;
  const uint64_t n = 30'000;
  burst.reserve(n);
  const uint64_t t0 = now_ns();
  for (uint64_t i = 0; i < n; ++i) {
    auto s = (*p)->submit(noop_request());
    if (s) burst.push_back(std::move(s->outcome));
  }
  const uint64_t t1 = now_ns();
  for (auto& f : burst) f.get();
  const double burst_rate = static_cast<double>(burst.size()) * 1e9 / static_cast<double>(t1 - t0);
  row("submit burst, one producer, agent draining", rate(burst_rate), ">= 10 M/s",
      met(burst_rate >= 10e6));
  // The same burst through submit_many, same agent and producer, right after.
  for (const uint32_t batch : {64u, 256u}) {
    const double many_rate = submit_many_burst(**p, n, batch, false);
    char name[64];
    char cmp[48];
    std::snprintf(name, sizeof name, "submit_many burst (batch %u), same run", batch);
    std::snprintf(cmp, sizeof cmp, ">= 10 M/s %s %.1fx submit",
                  many_rate >= 10e6 ? "[met]" : "[NOT met]", many_rate / std::max(1.0, burst_rate));
    row(name, rate(many_rate), cmp);
  }
  const double forget_rate = submit_many_burst(**p, n, 256, true);
  char cmp[48];
  std::snprintf(cmp, sizeof cmp, "%.1fx submit", forget_rate / std::max(1.0, burst_rate));
  row("submit_many burst (batch 256, forget)", rate(forget_rate), cmp);
  (void)o;
}

double end_to_end(const Options& o, IdleKind idle, uint32_t window_size, uint64_t* done_out,
                  Serve serve = Serve::kOk, bool journal = false, uint64_t count = 0) {
  System sys(idle, 4096, {}, serve, journal);
  auto p = Producer::connect(sys.queue.str(), ProducerOptions{idle});
  if (!p) return 0;
  std::deque<Future> window;
  const uint64_t n = count != 0 ? count : o.quick ? 300'000 : 2'000'000;
  uint64_t done = 0;
  const uint64_t t0 = now_ns();
  for (uint64_t i = 0; i < n; ++i) {
    auto s = (*p)->submit(noop_request());
    if (!s) {
      if (!window.empty()) {
        window.front().get();
        window.pop_front();
        ++done;
      }
      continue;
    }
    window.push_back(std::move(s->outcome));
    while (window.size() >= window_size || (!window.empty() && window.front().ready())) {
      window.front().get();
      window.pop_front();
      ++done;
    }
  }
  while (!window.empty()) {
    window.front().get();
    window.pop_front();
    ++done;
  }
  const uint64_t t1 = now_ns();
  *done_out = done;
  return static_cast<double>(done) * 1e9 / static_cast<double>(t1 - t0);
}

// Batch mode: batch_size 100 (SPEC default), batch_interval_ms 1 so the
// last partial batch does not wait a second; the worker's batch processor
// replies ok to every item.
double batch_end_to_end(const Options& o) {
  System sys(
      IdleKind::kPark, 4096,
      [](agent::Config& c) {
        c.batch_size = 100;
        c.batch_interval_ms = 1;
      },
      Serve::kBatchOk);
  auto p = Producer::connect(sys.queue.str());
  if (!p) return 0;
  std::deque<Future> window;
  const uint64_t n = o.quick ? 300'000 : 2'000'000;
  const RequestView r = test::make_request("noop", "bench", kPayload64, Mode::kBatch, 5);
  uint64_t done = 0;
  const uint64_t t0 = now_ns();
  for (uint64_t i = 0; i < n; ++i) {
    auto s = (*p)->submit(r);
    if (s) window.push_back(std::move(s->outcome));
    while (window.size() >= 8192 || (!window.empty() && window.front().ready())) {
      window.front().get();
      window.pop_front();
      ++done;
    }
  }
  for (auto& f : window) {
    f.get();
    ++done;
  }
  const uint64_t t1 = now_ns();
  return static_cast<double>(done) * 1e9 / static_cast<double>(t1 - t0);
}

// DLQ journal (SPEC §8: >= 200,000 durable records/s with group commit):
// dead letters of a realistic size (256-byte payload, three failed attempts)
// appended through the io_uring writer, 512 records per write + fdatasync,
// against one fdatasync per record, in the same run, on the same file
// system (the disk under /var/tmp).
void journal_throughput(const Options& o) {
  char dir[] = "/var/tmp/perfq-bench-journal-XXXXXX";
  if (::mkdtemp(dir) == nullptr) return;
  agent::JournalEntry e;
  e.letter.request_id = 0x0189'f2a4'c3d5'0001ull;
  e.letter.user_id = "user-42";
  e.letter.type = "chat.message";
  e.letter.mode = Mode::kPriority;
  e.letter.priority = 10;
  e.letter.payload.assign(256, std::byte{'x'});
  e.letter.metadata = R"({"room":"general"})";
  e.letter.status = Status::kFailed;
  e.letter.reason = Errc::kProcessorError;
  e.letter.attempt_count = 3;
  for (int k = 0; k < 3; ++k) {
    e.letter.history.push_back({1'700'000'000'000'000'000ull + static_cast<uint64_t>(k),
                                Errc::kProcessorError, "downstream service unavailable"});
  }
  auto body = agent::encode_dead_letter(e);
  if (!body) return;
  auto run = [&](const std::string& name, uint64_t n, uint32_t per_sync) -> double {
    auto w = agent::JournalWriter::open(std::string(dir) + "/" + name);
    if (!w) return 0;
    const uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < n; ++i) {
      if (!(*w)->append(agent::RecordType::kDeadLetter, *body)) return 0;
      if ((i + 1) % per_sync == 0 && !(per_sync == 1 ? (*w)->flush_each() : (*w)->flush())) {
        return 0;
      }
    }
    if (!(*w)->flush()) return 0;
    const uint64_t t1 = now_ns();
    return static_cast<double>(n) * 1e9 / static_cast<double>(t1 - t0);
  };
  const double group = run("group.jnl", o.quick ? 100'000 : 500'000, 512);
  const double each = run("each.jnl", o.quick ? 300 : 2'000, 1);
  char cmp[64];
  std::snprintf(cmp, sizeof cmp, ">= 200,000/s; %.0fx one sync per record",
                each > 0 ? group / each : 0.0);
  char fig[48];
  std::snprintf(fig, sizeof fig, "%.0f records/s (%zu B each)", group, body->size() + 16);
  row("DLQ journal, group commit (512 per fdatasync)", fig, cmp, met(group >= 200'000));
  std::snprintf(fig, sizeof fig, "%.0f records/s", each);
  row("DLQ journal, one fdatasync per record", fig);
  std::remove((std::string(dir) + "/group.jnl").c_str());
  std::remove((std::string(dir) + "/each.jnl").c_str());
  ::rmdir(dir);
}

LogLinearHistogram round_trip(const Options& o, IdleKind idle, Serve serve = Serve::kOk,
                              bool journal = false, uint64_t count = 0);

// What the journal adds to a request that fails: its outcome is delivered
// only once its dead letter is durable (one group commit, so at least one
// fdatasync). One request at a time, round trip as the producer sees it,
// against the same failing request with dead letters kept in memory, and a
// succeeding one on the same daemon.
void failing_latency(const Options& o) {
  const uint64_t n = o.quick ? 2'000 : 10'000;
  const LogLinearHistogram mem = round_trip(o, IdleKind::kPark, Serve::kFail, false, n);
  const LogLinearHistogram dur = round_trip(o, IdleKind::kPark, Serve::kFail, true, n);
  const LogLinearHistogram ok = round_trip(o, IdleKind::kPark, Serve::kOk, true, n);
  row("failing request, dead letter in memory", lat(mem));
  char cmp[96];
  std::snprintf(
      cmp, sizeof cmp, "+%s p50 (%.1fx) for the fdatasync",
      ns(dur.percentile(0.5) - std::min(dur.percentile(0.5), mem.percentile(0.5))).c_str(),
      static_cast<double>(dur.percentile(0.5)) /
          static_cast<double>(std::max<uint64_t>(1, mem.percentile(0.5))));
  row("failing request, dead letter journaled (durable)", lat(dur), cmp);
  row("succeeding request, same daemon", lat(ok));
  // Dead letters at full speed through the whole daemon: every request fails,
  // a window of 2048 outstanding; group commit amortizes the fdatasync.
  uint64_t done = 0;
  const uint64_t m = o.quick ? 50'000 : 200'000;
  const double fail_mem = end_to_end(o, IdleKind::kPark, 2048, &done, Serve::kFail, false, m);
  const double fail_dur = end_to_end(o, IdleKind::kPark, 2048, &done, Serve::kFail, true, m);
  row("failing requests end to end, dead letters in memory", rate(fail_mem));
  std::snprintf(cmp, sizeof cmp, "%.2fx in memory", fail_dur / std::max(1.0, fail_mem));
  row("failing requests end to end, journaled (durable)", rate(fail_dur), cmp);
}

LogLinearHistogram round_trip(const Options& o, IdleKind idle, Serve serve, bool journal,
                              uint64_t count) {
  System sys(idle, 64, {}, serve, journal);
  auto p = Producer::connect(sys.queue.str(), ProducerOptions{idle});
  LogLinearHistogram h;
  if (!p) return h;
  const uint64_t n = count != 0 ? count : o.quick ? 20'000 : 100'000;
  for (uint64_t i = 0; i < n + 1000; ++i) {
    const uint64_t t0 = now_ns();
    auto s = (*p)->submit(noop_request());
    if (!s) continue;
    s->outcome.get();
    const uint64_t t1 = now_ns();
    if (i >= 1000) h.record(t1 - t0);  // the first thousand warm up
  }
  return h;
}

int run_all(const Options& o) {
  const uint64_t rt = o.quick ? 20'000 : 100'000;
  std::printf("perfq-bench (%s): %ld online CPUs, payload 64 B, unpinned\n",
              o.quick ? "quick" : "full", sysconf(_SC_NPROCESSORS_ONLN));
  std::printf("\nbaselines (same run)\n");
  LatencySummary futex{};
  ThroughputSummary mq{};
  if (want(o, "baselines") || want(o, "round-trip") || want(o, "throughput")) {
    futex = futex_ping_pong(rt);
    row("baseline: futex ping-pong round trip", lat(futex));
    const LatencySummary spin = spin_ping_pong(rt);
    row("baseline: spin ping-pong round trip", lat(spin));
    const LatencySummary sock = unix_socket_ping_pong(rt);
    row("baseline: unix socket ping-pong round trip", lat(sock));
    const LatencySummary mq_rt = boost_mq_round_trip(rt);
    row("baseline: boost message_queue round trip", lat(mq_rt));
    mq = boost_mq_one_way(o.quick ? 300'000 : 2'000'000);
    row("baseline: boost message_queue one-way", rate(mq.per_second));
  }

  std::printf("\nperfq\n");
  char cmp[64];
  if (want(o, "submit")) {
    submit_latency(o);
    submit_throughput(o);
    submit_rules_cost(o);
  }
  if (want(o, "round-trip")) {
    const LogLinearHistogram rt_park = round_trip(o, IdleKind::kPark);
    std::snprintf(cmp, sizeof cmp, "<= futex p50 (%.2fx)",
                  static_cast<double>(rt_park.percentile(0.5)) / static_cast<double>(futex.p50_ns));
    row("round trip, idle=park", lat(rt_park), cmp, met(rt_park.percentile(0.5) <= futex.p50_ns));
    const LogLinearHistogram rt_backoff = round_trip(o, IdleKind::kBackoff);
    row("round trip, idle=backoff", lat(rt_backoff), "", "");
    const LogLinearHistogram rt_spin = round_trip(o, IdleKind::kBusySpin);
    row("round trip, idle=busy-spin", lat(rt_spin), "p50 <= 3 us",
        met(rt_spin.percentile(0.5) <= 3000));
  }
  if (want(o, "throughput")) {
    uint64_t done = 0;
    const double e2e = end_to_end(o, IdleKind::kPark, 2048, &done);
    std::snprintf(cmp, sizeof cmp, ">= 2 M/s; %.1fx boost mq (>= 10x)", e2e / mq.per_second);
    row("end to end, no-op processor, idle=park", rate(e2e), cmp,
        met(e2e >= 2e6 && e2e >= 10 * mq.per_second));
    const double e2e_spin = end_to_end(o, IdleKind::kBackoff, 2048, &done);
    std::snprintf(cmp, sizeof cmp, "%.1fx boost mq", e2e_spin / mq.per_second);
    row("end to end, no-op processor, idle=backoff", rate(e2e_spin), cmp, "");
    const double batch = batch_end_to_end(o);
    std::snprintf(cmp, sizeof cmp, ">= 5 M/s; %.1fx single, %.1fx boost mq", batch / e2e,
                  batch / mq.per_second);
    row("batch mode end to end, batch_size 100", rate(batch), cmp, met(batch >= 5e6));
  }
  if (want(o, "journal")) {
    journal_throughput(o);
    failing_latency(o);
  }
  std::printf(
      "\nsettings: agent, worker and producer in separate processes; max_concurrent_workers "
      "64 (latency) / 4096 (throughput); worker max_inflight 4096; window 2048; slots %u;\n"
      "no per-user rate limit except in 'submit cost: + rate limit' (16384 per user per minute,\n"
      "128 users round robin); batch mode: batch_size 100, batch_interval_ms 1, window 8192\n",
      test::test_config("x").slot_count());
  return 0;
}

// ------------------------------------------------------------------ demo

// Every kPoisonEvery-th message of a producer, its first included, is one the
// worker cannot deliver: the demo's dead letters, for `perfqctl dlq`
// afterwards (and what health counts in dlqSize and recentFailures).
constexpr uint64_t kPoisonEvery = 100'000;
constexpr const char* kDemoType = "chat.message";
constexpr const char* kPoisonReason = "message body cannot be decoded";

// What a producer sends back through its pipe (trivially copyable). The
// load's times are steady_clock (CLOCK_MONOTONIC), the same in every process.
struct DemoReport {
  uint64_t completed = 0;
  uint64_t failed = 0;
  uint64_t other = 0;
  uint64_t poisoned = 0;  // accepted poisoned submits
  uint64_t first_submit_ns = 0;
  uint64_t last_outcome_ns = 0;
  LogLinearHistogram rt;
};

int demo_producer(const std::string& queue, int index, int seconds, int fd) {
  auto p = Producer::connect(queue);
  if (!p) {
    std::fprintf(stderr, "demo producer: %s\n", p.error().message.c_str());
    return 3;
  }
  DemoReport rep;
  struct InFlight {
    Future f;
    uint64_t t0;
  };
  std::deque<InFlight> window;
  const std::string user = "demo-user-" + std::to_string(index);
  const uint64_t end = now_ns() + static_cast<uint64_t>(seconds) * 1'000'000'000ull;
  uint64_t i = 0;
  auto settle = [&] {
    InFlight& x = window.front();
    const Outcome& out = x.f.get();
    rep.last_outcome_ns = now_ns();
    rep.rt.record(rep.last_outcome_ns - x.t0);
    if (out.status == Status::kCompleted)
      ++rep.completed;
    else if (out.status == Status::kFailed)
      ++rep.failed;
    else
      ++rep.other;
    window.pop_front();
  };
  rep.first_submit_ns = now_ns();
  while (now_ns() < end) {
    const auto prio = static_cast<uint8_t>(1 + (i++ % 20));
    const bool poison = i % kPoisonEvery == 1;
    const std::string payload =
        "{\"conversationId\":\"" + std::to_string(i % 97) +
        (poison ? "\",\"message\":\"(unreadable)\"}" : "\",\"message\":\"Hello!\"}");
    auto r = test::make_request(kDemoType, user, payload, Mode::kPriority, prio);
    auto s = (*p)->submit(r);
    if (s) {
      window.push_back({std::move(s->outcome), now_ns()});
      if (poison) ++rep.poisoned;
    }
    while (window.size() >= 64 || (!window.empty() && window.front().f.ready())) settle();
  }
  while (!window.empty()) settle();
  return ::write(fd, &rep, sizeof rep) == static_cast<ssize_t>(sizeof rep) ? 0 : 4;
}

// Printed before the agent's health, which counts the poisoned requests
// (dlqSize, recentFailures): says how many there were and why.
void print_poison_note(const DemoReport& total) {
  std::printf("demo: poisoned on purpose: %" PRIu64
              " %s requests (each producer's first and every"
              " %" PRIu64 "th):\n",
              total.poisoned, kDemoType, kPoisonEvery);
  std::printf("      the worker fails them for good (\"%s\"), so they are the failed above,\n",
              kPoisonReason);
  std::printf("      the DLQ's entries and, past its limits, why health says degraded.\n");
}

// The producers' figures together. The rate is over the load alone, from the
// first submit to the last outcome, as the producers timed them: the
// agent's metrics divide the same counts by the whole time they cover.
void print_demo_summary(const std::vector<DemoReport>& reports) {
  DemoReport total;
  total.first_submit_ns = UINT64_MAX;
  for (const auto& r : reports) {
    total.completed += r.completed;
    total.failed += r.failed;
    total.other += r.other;
    total.poisoned += r.poisoned;
    total.first_submit_ns = std::min(total.first_submit_ns, r.first_submit_ns);
    total.last_outcome_ns = std::max(total.last_outcome_ns, r.last_outcome_ns);
    total.rt.merge(r.rt);
  }
  const double secs = total.last_outcome_ns > total.first_submit_ns
                          ? static_cast<double>(total.last_outcome_ns - total.first_submit_ns) / 1e9
                          : 0.0;
  const auto per_s = [secs](uint64_t n) { return secs > 0 ? static_cast<double>(n) / secs : 0.0; };
  std::printf("demo: %" PRIu64
              " requests in %.2f s of load (first submit to last outcome) = %.0f req/s"
              " (completed alone: %.0f/s)\n",
              total.rt.count(), secs, per_s(total.rt.count()), per_s(total.completed));
  std::printf(
      "demo: round trip submit -> worker -> outcome: p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n",
      ns(total.rt.percentile(0.5)).c_str(), ns(total.rt.percentile(0.9)).c_str(),
      ns(total.rt.percentile(0.99)).c_str(), ns(total.rt.percentile(0.999)).c_str(),
      ns(total.rt.max()).c_str());
  std::printf("demo: by status: completed %" PRIu64 "  failed %" PRIu64 "  other %" PRIu64 "\n",
              total.completed, total.failed, total.other);
  print_poison_note(total);
  if (total.failed != total.poisoned || total.other != 0) {
    std::printf("demo: NOTE %" PRIu64 " failed and %" PRIu64 " other outcomes beyond the %" PRIu64
                " poisoned: not the demo's doing\n",
                total.failed - std::min(total.failed, total.poisoned), total.other, total.poisoned);
  }
}

int run_demo(const Options& o) {
  auto seg = shm::Segment::attach(o.queue);
  if (!seg) {
    std::fprintf(stderr, "perfq-bench demo: %s\n", seg.error().message.c_str());
    return 1;
  }
  test::Signal ready;
  test::Child worker = test::spawn_worker(
      o.queue, kDemoType,
      [](const Job& j) {
        const std::string_view text(reinterpret_cast<const char*>(j.payload.data()),
                                    j.payload.size());
        if (text.find("(unreadable)") != std::string_view::npos) {
          return Reply::permanent_error(kPoisonReason);
        }
        // A small real job: checksum the message and answer with it.
        uint32_t sum = 0;
        for (std::byte b : j.payload) sum = sum * 31 + static_cast<uint32_t>(b);
        return Reply::ok("{\"delivered\":true,\"checksum\":" + std::to_string(sum) + "}");
      },
      &ready);
  ready.close_write();
  if (ready.wait(10s) != 1) return 1;
  std::vector<int> fds;
  std::vector<test::Child> producers;
  for (int i = 0; i < o.producers; ++i) {
    int pipefd[2];
    if (::pipe(pipefd) != 0) return 1;
    producers.emplace_back(
        [&, i, w = pipefd[1]] { return demo_producer(o.queue, i, o.seconds, w); });
    ::close(pipefd[1]);
    fds.push_back(pipefd[0]);
  }
  std::printf("demo: queue %s, %d producers, 1 worker, %d s (depth: CRITICAL/HIGH/NORMAL/LOW)\n",
              o.queue.c_str(), o.producers, o.seconds);
  const uint64_t start = now_ns();
  uint64_t last_done = 0;
  uint64_t last_t = start;
  std::vector<DemoReport> reports;
  std::vector<pollfd> pfds;
  for (int fd : fds) pfds.push_back({fd, POLLIN, 0});
  size_t got = 0;
  // The progress line ticks every half second until every producer reports.
  while (got < fds.size() &&
         now_ns() - start < static_cast<uint64_t>(o.seconds + 30) * 1'000'000'000ull) {
    if (::poll(pfds.data(), pfds.size(), 500) > 0) {
      for (auto& pf : pfds) {
        if (pf.fd >= 0 && (pf.revents & POLLIN) != 0) {
          DemoReport r;
          if (::read(pf.fd, &r, sizeof r) == static_cast<ssize_t>(sizeof r)) reports.push_back(r);
          ::close(pf.fd);
          pf.fd = -1;
          ++got;
        }
      }
    }
    const auto k = test::counters(**seg);
    const uint64_t t = now_ns();
    const double rps =
        static_cast<double>(k.completed - last_done) * 1e9 / static_cast<double>(t - last_t);
    last_done = k.completed;
    last_t = t;
    std::printf("\r  %4.1fs  done %9" PRIu64 "  in flight %3" PRIu64 "  depth %" PRIu64 "/%" PRIu64
                "/%" PRIu64 "/%" PRIu64 "  %7.0f req/s ",
                static_cast<double>(t - start) / 1e9, k.completed, k.inflight, k.band_depth[0],
                k.band_depth[1], k.band_depth[2], k.band_depth[3], rps);
    std::fflush(stdout);
  }
  std::printf("\n");
  for (auto& c : producers) (void)c.wait(10s);
  worker.kill(SIGTERM);
  (void)worker.wait(10s);
  print_demo_summary(reports);
  return reports.size() == fds.size() ? 0 : 1;
}

// ------------------------------------------------------------------ command line

constexpr int kUsageError = 64;  // EX_USAGE (sysexits.h)
constexpr int kSecondsMax = 86'400;
// One client record is the demo's worker.
constexpr int kProducersMax = static_cast<int>(shm::kMaxClientsLimit) - 1;

// A whole number in [lo, hi], checked on the text before CLI11 converts it,
// so the error names the value (CLI11 puts the option's name in front).
CLI::Validator whole_number(int lo, int hi) {
  const std::string range = std::to_string(lo) + " to " + std::to_string(hi);
  return {[lo, hi, range](std::string& text) -> std::string {
            int v = 0;
            const char* end = text.data() + text.size();
            const auto [at, ec] = std::from_chars(text.data(), end, v);
            if (text.empty() || at != end ||
                (ec != std::errc{} && ec != std::errc::result_out_of_range)) {
              return "'" + text + "' is not an integer";
            }
            if (ec == std::errc::result_out_of_range || v < lo || v > hi) {
              return "'" + text + "' is out of range (" + range + ")";
            }
            return {};
          },
          range};
}

// The options of the report, on the top level (no subcommand runs it) and on
// `all` alike; they fill the same Options.
struct ReportOptions {
  CLI::Option* quick;
  CLI::Option* only;
};

// CLI11 2.1 prints a description as given: the texts below are wrapped by
// hand to fit 80 columns beside the 30 of the option's name.
ReportOptions add_report_options(CLI::App& app, Options& o) {
  ReportOptions r{};
  r.quick = app.add_flag("--quick", o.quick,
                         "Fewer requests per scenario: a fifth to a seventh\n"
                         "of the full run's. Default: off, the full run");
  r.only =
      app.add_option("--only", o.only,
                     "Run one group of scenarios. Default: every group\n"
                     "  baselines   futex, spin, unix socket, boost mq\n"
                     "  submit      submit cost and submit rate\n"
                     "  round-trip  one request at a time, per idle\n"
                     "              strategy (with its baselines)\n"
                     "  throughput  end to end, batch mode (with its\n"
                     "              baselines)\n"
                     "  journal     the DLQ journal, failing requests")
          ->type_name("GROUP")
          ->check(CLI::IsMember({"baselines", "submit", "round-trip", "throughput", "journal"}));
  return r;
}

struct Commands {
  CLI::App* all;
  CLI::App* demo;
  ReportOptions top;  // the report's options given before any subcommand
};

constexpr const char* kExitCodes = "Exit codes: 0 done, 1 a run failed, 64 a bad command line.";

Commands describe(CLI::App& app, Options& o) {
  app.name("perfq-bench");
  app.description(
      "perfq's end-to-end scenarios (SPEC §8), each run beside the baselines it\n"
      "is judged against in the same invocation; or a chat load on a running agent.");
  app.footer(std::string("Without a subcommand, runs `all`. `perfq-bench SUBCOMMAND --help` for\n"
                         "its options. ") +
             kExitCodes);
  app.set_version_flag("--version", std::string("perfq-bench ") + kVersion,
                       "Print `perfq-bench VERSION` and exit");
  app.require_subcommand(0, 1);
  Commands c{};
  c.top = add_report_options(app, o);
  c.all = app.add_subcommand("all", "Every scenario beside its baselines, one report");
  c.all->footer(
      "Agent, worker and producer run in separate processes, unpinned, with 64 B\n"
      "payloads; each figure stands beside its SPEC target and its baseline from\n"
      "the same run.\n" +
      std::string(kExitCodes));
  (void)add_report_options(*c.all, o);
  c.demo = app.add_subcommand("demo", "A chat load on a running agent, with live progress");
  c.demo->footer(
      "Producer processes submit chat.message requests (priorities 1-20, 64\n"
      "outstanding each) as fast as they can to one worker process, with a live\n"
      "progress line; then throughput, round-trip percentiles and counts by\n"
      "status. Each producer's first request and every 100,000th after it are\n"
      "poisoned on purpose: the worker fails them for good, so they become dead\n"
      "letters and count in the agent's health (dlqSize, recentFailures).\n" +
      std::string(kExitCodes));
  // Required, but checked after the parse (check_after_parse) so that an
  // unknown argument beside a missing --queue is the one named.
  c.demo->add_option("--queue", o.queue, "The running agent's queue name. Required")
      ->envname("PERFQ_QUEUE")
      ->type_name("QUEUE");
  c.demo
      ->add_option("--seconds", o.seconds,
                   "How long the producers submit, in seconds.\nDefault: 10")
      ->type_name("SECONDS")
      ->check(whole_number(1, kSecondsMax));
  c.demo
      ->add_option("--producers", o.producers,
                   "How many producer processes submit, each as a\n"
                   "user of its own. Default: 2")
      ->type_name("COUNT")
      ->check(whole_number(1, kProducersMax));
  return c;
}

// What CLI11 does not check: --queue given to `demo`, and the report's
// options, which belong to the report, not given before `demo`.
void check_after_parse(const Commands& c, const Options& o) {
  if (!c.demo->parsed()) return;
  for (const CLI::Option* opt : {c.top.quick, c.top.only}) {
    if (opt->count() > 0) {
      throw CLI::ValidationError(opt->get_name() + " is an option of `all`, not of `demo`");
    }
  }
  if (c.demo->get_option("--queue")->count() == 0) throw CLI::RequiredError("--queue");
  if (o.queue.empty()) throw CLI::ValidationError("--queue", "the queue name is empty");
}

// --help and --version on stdout, exit 0; anything else wrong on stderr,
// naming the argument, exit 64.
int exit_for(const CLI::App& app, const Commands& c, const CLI::ParseError& e) {
  if (e.get_exit_code() == 0) return app.exit(e);
  std::fprintf(stderr, "perfq-bench: %s\nRun perfq-bench%s --help for the options.\n", e.what(),
               c.demo->parsed()  ? " demo"
               : c.all->parsed() ? " all"
                                 : "");
  return kUsageError;
}

}  // namespace
}  // namespace perfq::bench

int main(int argc, char** argv) {
  perfq::bench::Options o;
  CLI::App app;
  const perfq::bench::Commands cmd = perfq::bench::describe(app, o);
  try {
    app.parse(argc, argv);
    perfq::bench::check_after_parse(cmd, o);
  } catch (const CLI::ParseError& e) {
    return perfq::bench::exit_for(app, cmd, e);
  }
  if (cmd.demo->parsed()) return perfq::bench::run_demo(o);
  return perfq::bench::run_all(o);
}
