#include "dataplane/conductor.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <string>

#include "dataplane/io_loop.hpp"
#include "dataplane/recovery.hpp"
#include "log/log.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/core/idle_strategy.hpp"
#include "perfq/core/restore_word.hpp"
#include "perfq/shm/admission.hpp"
#include "perfq/shm/agent_version.hpp"
#include "perfq/shm/futex.hpp"
#include "perfq/shm/liveness.hpp"
#include "perfq/shm/segment.hpp"
#include "perfq/version.hpp"

namespace perfq::agent {

namespace {

// Longest park: the heartbeat and the liveness timer keep running.
constexpr uint64_t kMaxParkNs = 50'000'000;

}  // namespace

Conductor::Conductor(const Config& cfg, const Clock& clock, std::shared_ptr<shm::Segment> seg,
                     bool reattached, DeadLetterSink& sink,
                     std::unique_ptr<MemoryDeadLetters> own_sink)
    : cfg_(cfg),
      cycle_(clock),
      seg_(std::move(seg)),
      reattached_(reattached),
      io_(std::make_unique<IoLoop>()),
      own_sink_(std::move(own_sink)),
      ledger_(*seg_, metrics_),
      regs_(*seg_),
      emitter_(*seg_, clock),
      scheduler_(cfg_),
      dispatcher_(*seg_, cfg_, cycle_, scheduler_, inflight_, metrics_, ledger_, emitter_,
                  counters_, wake_),
      settlement_(*seg_, cfg_, cycle_, scheduler_, inflight_, metrics_, ledger_, regs_, emitter_,
                  counters_, wake_, sink),
      watch_(*seg_, cfg_, dispatcher_, settlement_, regs_, counters_, wake_),
      intake_(*seg_, cfg_, cycle_, scheduler_, settlement_, metrics_, ledger_, regs_, emitter_,
              counters_),
      time_rules_(*seg_, cycle_, scheduler_, dispatcher_, settlement_, ledger_) {}

Conductor::~Conductor() {
  shutdown();
}

Result<std::unique_ptr<Conductor>> Conductor::open(const Config& cfg, const Clock& clock,
                                                   DeadLetterSink* sink) {
  shm::CreateOptions o;
  o.slot_count = cfg.slot_count();
  o.slot_payload_bytes = static_cast<uint32_t>(cfg.slot_payload_bytes);
  o.max_clients = static_cast<uint32_t>(cfg.max_clients);
  o.status_entries = static_cast<uint32_t>(cfg.status_table_entries);
  o.idempotency_entries = static_cast<uint32_t>(cfg.idempotency_table_entries);
  o.rate_entries = static_cast<uint32_t>(cfg.rate_limit_table_entries);
  o.rate_limit = static_cast<uint32_t>(cfg.max_requests_per_user_per_minute);
  o.metrics_types = static_cast<uint32_t>(cfg.metrics_types);
  o.group = cfg.group;
  // The agent's own copy of the segment's shape, beside its journal.
  std::error_code ec;
  if (std::filesystem::is_directory(cfg.data_dir, ec)) {
    o.geometry_copy = cfg.data_dir + "/segment.geometry";
  }
  shm::Segment::Opened how{};
  auto seg = shm::Segment::open_for_agent(cfg.queue, o, how);
  if (!seg) return seg.error();
  std::unique_ptr<MemoryDeadLetters> own_sink;
  if (sink == nullptr) {
    own_sink = std::make_unique<MemoryDeadLetters>();
    sink = own_sink.get();
  }
  std::unique_ptr<Conductor> a(
      new Conductor(cfg, clock, std::shared_ptr<shm::Segment>(std::move(*seg)),
                    how == shm::Segment::Opened::kReattached, *sink, std::move(own_sink)));
  if (auto r = a->io_->init(); !r) return r.error();
  // The sink's thread rings the doorbell when letters become durable; the
  // segment stays mapped for it even after this agent is gone.
  sink->set_waker([seg = a->seg_] { shm::notify(seg->header().doorbell); });
  a->start();
  return a;
}

void Conductor::start() {
  shm::Segment& seg = *seg_;
  const uint32_t clients = seg.geometry().max_clients;
  const uint32_t slots = seg.geometry().slot_count;
  dispatcher_.resize(clients);
  wake_.resize(clients);
  inflight_.resize(clients, slots);
  ledger_.resize(slots);
  regs_.resize(clients);
  metrics_ = shm::MetricsWriter(seg, cycle_.unix_now_ns());
  publish_start();
  if (reattached_) {
    // Totals carry on across agent restarts.
    counters_.restore(seg.header().counters);
    // The sequence locks the dead agent may have left odd were repaired by
    // Segment::open_for_agent.
    Recovery(seg, scheduler_, inflight_, dispatcher_, settlement_, ledger_, wake_).run();
  }
  // release: clients that see kRunning see the facts above.
  aref(seg.header().agent_state)
      .store(static_cast<uint32_t>(shm::AgentState::kRunning), std::memory_order_release);
}

// Who the agent is and the settings clients read, in the header. relaxed:
// published by the release store of kRunning in start().
void Conductor::publish_start() {
  shm::SegmentHeader& h = seg_->header();
  aref(h.agent_state)
      .store(static_cast<uint32_t>(shm::AgentState::kStarting), std::memory_order_relaxed);
  pid_ = static_cast<uint32_t>(::getpid());
  start_ticks_ = shm::self_start_ticks();
  aref(h.agent_pid).store(pid_, std::memory_order_relaxed);
  aref(h.agent_start_ticks).store(start_ticks_, std::memory_order_relaxed);
  pid_ns_ = shm::self_pid_ns();
  aref(h.agent_pid_ns).store(pid_ns_, std::memory_order_relaxed);
  aref(h.agent_started_unix_ns).store(cycle_.unix_now_ns(), std::memory_order_relaxed);
  aref(h.agent_generation).fetch_add(1, std::memory_order_relaxed);
  aref(h.processing_timeout_ms).store(cfg_.processing_timeout_ms, std::memory_order_relaxed);
  aref(h.worker_idle_timeout_ms).store(cfg_.worker_idle_timeout_ms, std::memory_order_relaxed);
  aref(h.max_queue_depth).store(cfg_.max_queue_depth, std::memory_order_relaxed);
  aref(h.rope_drop_timeout_ms).store(cfg_.rope_drop_timeout_ms, std::memory_order_relaxed);
  aref(h.idempotency_ttl_ms).store(cfg_.idempotency_ttl_ms, std::memory_order_relaxed);
  (void)shm::write_agent_version(h, kVersion);
  // Kept: the liveness pass compares the header's copy with it.
  const std::string sock = cfg_.data_dir + "/agent.sock";
  socket_path_.fill(0);
  std::memcpy(socket_path_.data(), sock.data(), std::min(sock.size(), socket_path_.size() - 1));
  std::memcpy(h.socket_path, socket_path_.data(), socket_path_.size());
  // Only the agent parks on the doorbell; a predecessor that died parked
  // left its mark here.
  aref(h.doorbell.waiters).store(0, std::memory_order_relaxed);
  aref(h.heartbeat_mono_ns).store(cycle_.clock.now_mono_ns(), std::memory_order_relaxed);
}

void Conductor::shutdown() noexcept {
  if (!seg_) return;
  publish_counters();
  aref(seg_->header().agent_state)
      .store(static_cast<uint32_t>(shm::AgentState::kStopped), std::memory_order_release);
}

int Conductor::do_work() {
  const uint64_t now = cycle_.clock.now_mono_ns();
  cycle_.now_ns = now;
  aref(seg_->header().heartbeat_mono_ns).store(now, std::memory_order_relaxed);
  if (now >= next_roll_ns_) roll_metrics(now);
  const bool tick = now >= next_liveness_ns_;
  if (tick) liveness_tick(now);
  int n = intake_.drain_bands(tick);
  n += intake_.drain_cancels(tick);
  n += settlement_.settle_results(dispatcher_.active_workers());
  n += time_rules_.expire_attempts();
  n += time_rules_.release_retries();
  n += time_rules_.expire_pending(tick);
  n += dispatcher_.dispatch();
  n += settlement_.conclude_sealed();
  settlement_.redeliver();
  // The depth first: a producer woken by its outcome then finds the room
  // that outcome made (one that polls its ring may still be ahead of it:
  // the published depth is conservative, PROTOCOL §7).
  if (n > 0) publish_counters();
  wake_.notify(*seg_);
  return n;
}

// The metrics history moves to the next row once a minute: the wall clock
// is read then, not every duty cycle.
void Conductor::roll_metrics(uint64_t now_ns) {
  constexpr uint64_t kMinuteNs = 60'000'000'000ull;
  const uint64_t unix_now = cycle_.unix_now_ns();
  metrics_.roll(unix_now);
  next_roll_ns_ = now_ns + (kMinuteNs - unix_now % kMinuteNs);
}

void Conductor::liveness_tick(uint64_t now_ns) {
  counters_.rejected += static_cast<uint64_t>(restore_header());
  watch_.pass();
  (void)intake_.sweep_slots(cfg_.liveness_interval_ms);
  emitter_.refresh(mono_now_ns());
  publish_counters();
  next_liveness_ns_ = now_ns + cfg_.liveness_interval_ms * 1'000'000;
}

// Any member can write the header. What identifies the agent and the
// segment's geometry is rewritten from the agent's own copies wherever it
// differs (compared first: a sound header costs reads only), so a scribble
// there neither reports the agent down nor locks new clients out for longer
// than a liveness interval. Returns the words rewritten.
int Conductor::restore_header() {
  shm::SegmentHeader& h = seg_->header();
  int n = seg_->restore_header();
  n += restore_word(h.agent_pid, pid_);
  n += restore_word(h.agent_start_ticks, start_ticks_);
  n += restore_word(h.agent_pid_ns, pid_ns_);
  n += restore_word(h.agent_state, state_);
  n += restore_word(h.processing_timeout_ms, cfg_.processing_timeout_ms);
  n += restore_word(h.worker_idle_timeout_ms, cfg_.worker_idle_timeout_ms);
  n += restore_word(h.max_queue_depth, cfg_.max_queue_depth);
  n += restore_word(h.rope_drop_timeout_ms, cfg_.rope_drop_timeout_ms);
  n += restore_word(h.idempotency_ttl_ms, cfg_.idempotency_ttl_ms);
  n += shm::write_agent_version(h, kVersion);
  // Written by the agent alone (publish_start, here); a scribble by another
  // process is not ordered with anything, and no thread of ours writes it.
  if (std::memcmp(h.socket_path, socket_path_.data(), socket_path_.size()) != 0) {
    std::memcpy(h.socket_path, socket_path_.data(), socket_path_.size());
    ++n;
  }
  return n;
}

void Conductor::publish_counters() {
  shm::AgentCounters& k = seg_->header().counters;
  auto put = [](uint64_t& f, uint64_t v) { aref(f).store(v, std::memory_order_relaxed); };
  counters_.publish(k);
  put(k.inflight, inflight_.total());
  uint64_t waiting = 0;
  uint64_t band_depth[kBandCount] = {};
  for (uint8_t b = 0; b < kBandCount; ++b) {
    const uint64_t queued = scheduler_.band_size(b);
    put(k.band_depth[b], queued);
    waiting += scheduler_.waiting_for_worker(b);
    band_depth[b] = queued + scheduler_.waiting_for_worker(b) + dispatcher_.gathered(b);
  }
  put(k.waiting_for_worker, waiting);
  // The depth is the Ledger's count, not a sum over the queues (ledger.hpp).
  const uint64_t depth = ledger_.depth();
  shm::publish_admission(*seg_, depth, band_depth);
  const bool full = depth >= cfg_.max_queue_depth;
  if (full && !was_full_) emitter_.emit(EventKind::kQueueFull, UINT32_MAX, Status::kPending);
  if (depth == 0 && !was_empty_)
    emitter_.emit(EventKind::kQueueEmpty, UINT32_MAX, Status::kPending);
  was_full_ = full;
  was_empty_ = depth == 0;
  // Producers waiting for room (rope drop) are woken when there is some.
  if (depth < cfg_.max_queue_depth) shm::notify(seg_->header().room);
}

// Whether anything is waiting for the data plane: checked after announcing
// a park, so that work published meanwhile is not slept through.
bool Conductor::work_visible() {
  shm::Segment& seg = *seg_;
  // The agent's own view of each ring (its private head; a tail out of its
  // window counts as work, which the next drain repairs), the cancel ring
  // included.
  for (uint8_t r = 0; r < shm::kRingCount; ++r) {
    if (seg.ring(r).backlog() > 0) return true;
  }
  for (const uint32_t w : dispatcher_.active_workers()) {
    if (seg.result_ring(w).size_approx() > 0) return true;
  }
  return settlement_.sealed_durable();
}

void Conductor::run(const std::atomic<bool>& stop) {
  WaitWord& db = seg_->header().doorbell;
  IdlePolicy idle(cfg_.idle);
  for (;;) {
    if (stop.load(std::memory_order_acquire)) {
      if (cfg_.drain_timeout_ms == 0) break;
      request_drain(cfg_.drain_timeout_ms);  // SIGTERM drains first
    }
    if (drain_over(cycle_.clock.now_mono_ns())) break;
    const int n = do_work();
    idle.idle(static_cast<uint64_t>(n), [&] {
      publish_counters();
      // seq_cst: pairs with the fence in shm::notify (core/wait_word.hpp).
      aref(db.waiters).store(1, std::memory_order_seq_cst);
      const uint32_t s = aref(db.seq).load(std::memory_order_seq_cst);
      if (!work_visible()) {
        const uint64_t now = cycle_.clock.now_mono_ns();
        const uint64_t until_liveness = next_liveness_ns_ > now ? next_liveness_ns_ - now : 0;
        io_->park(&db.seq, s, std::min(std::max<uint64_t>(until_liveness, 100'000), kMaxParkNs));
      }
      aref(db.waiters).store(0, std::memory_order_relaxed);
    });
  }
  left_.depth = ledger_.depth();
  left_.in_flight = inflight_.total();
  shutdown();
}

void Conductor::request_drain(uint64_t timeout_ms) noexcept {
  uint64_t none = 0;
  const uint64_t deadline =
      cycle_.clock.now_mono_ns() + std::max<uint64_t>(timeout_ms, 1) * 1'000'000;
  // The first request sets the bound; the doorbell wakes a parked agent.
  if (drain_deadline_ns_.compare_exchange_strong(none, deadline, std::memory_order_acq_rel)) {
    shm::notify(seg_->header().doorbell);
  }
}

bool Conductor::drain_over(uint64_t now_ns) {
  const uint64_t deadline = drain_deadline_ns_.load(std::memory_order_acquire);
  if (deadline == 0) return false;
  if (state_ != static_cast<uint32_t>(shm::AgentState::kDraining)) {
    state_ = static_cast<uint32_t>(shm::AgentState::kDraining);
    // release: a producer that sees kDraining refuses; one that read
    // kRunning just before may still push, and the drain takes that too.
    aref(seg_->header().agent_state).store(state_, std::memory_order_release);
    log::info("drain.start",
              "draining: admitting nothing new, finishing " + std::to_string(ledger_.depth()) +
                  " request(s) within " +
                  std::to_string((deadline - std::min(deadline, now_ns)) / 1'000'000) + " ms",
              {{"depth", ledger_.depth()}, {"inFlight", inflight_.total()}});
  }
  if (ledger_.depth() == 0 && !work_visible()) {
    left_.drained = true;
    return true;
  }
  if (now_ns >= deadline) {
    left_.drain_timed_out = true;
    return true;
  }
  return false;
}

}  // namespace perfq::agent
