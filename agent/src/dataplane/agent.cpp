#include "dataplane/agent.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <thread>
#include <unordered_set>

#include "dataplane/io_loop.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/core/band_ring.hpp"
#include "perfq/core/idle_strategy.hpp"
#include "perfq/shm/admission.hpp"
#include "perfq/shm/client_registry.hpp"
#include "perfq/shm/futex.hpp"
#include "perfq/shm/liveness.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq::agent {

namespace {

// Cells taken from one band ring per duty cycle: large enough to amortise
// the cycle, small enough that a busy band cannot hold off settling results.
constexpr int kDrainBatch = 1024;
// Events are written while some reader polled the ring this recently.
constexpr uint64_t kEventReaderIdleNs = 10'000'000'000;
// How long a client record may stay kRegistering before the agent takes it
// back (registering is a handful of stores).
constexpr uint64_t kRegistrationBoundNs = 1'000'000'000;
// Longest park: the heartbeat and the liveness timer keep running.
constexpr uint64_t kMaxParkNs = 50'000'000;

// A result kind read from the segment; anything unknown counts as an error.
AttemptResult attempt_result(uint8_t raw) noexcept {
  switch (raw) {
    case static_cast<uint8_t>(AttemptResult::kOk):
    case static_cast<uint8_t>(AttemptResult::kError):
    case static_cast<uint8_t>(AttemptResult::kPermanentError):
      return static_cast<AttemptResult>(raw);
    default:
      return AttemptResult::kError;
  }
}

// A request's type and userId into an event or a status entry (never more
// than their fields hold, whatever a broken producer wrote as lengths).
template <class To>
void copy_names(const RequestRecord& rec, To& to) noexcept {
  to.type_len = static_cast<uint8_t>(std::min<size_t>(rec.type_len, kTypeMaxBytes));
  to.user_len = static_cast<uint8_t>(std::min<size_t>(rec.user_len, kUserIdMaxBytes));
  std::memcpy(to.type, rec.type, to.type_len);
  std::memcpy(to.user_id, rec.user_id, to.user_len);
}

SlotCtl with_state(SlotCtl c, SlotState s, uint16_t owner) noexcept {
  c.state = s;
  c.owner = owner;
  return c;
}

}  // namespace

Agent::Agent(const Config& cfg, const Clock& clock, std::shared_ptr<shm::Segment> seg,
             bool reattached)
    : cfg_(cfg),
      clock_(clock),
      seg_(std::move(seg)),
      reattached_(reattached),
      io_(std::make_unique<IoLoop>()) {}

Agent::~Agent() {
  shutdown();
}

Result<std::unique_ptr<Agent>> Agent::open(const Config& cfg, const Clock& clock,
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
  shm::Segment::Opened how{};
  auto seg = shm::Segment::open_for_agent(cfg.queue, o, how);
  if (!seg) return seg.error();
  std::unique_ptr<Agent> a(new Agent(cfg, clock, std::shared_ptr<shm::Segment>(std::move(*seg)),
                                     how == shm::Segment::Opened::kReattached));
  if (auto r = a->io_->init(); !r) return r.error();
  if (sink == nullptr) {
    a->own_sink_ = std::make_unique<MemoryDeadLetters>();
    sink = a->own_sink_.get();
  }
  a->sink_ = sink;
  // The sink's thread rings the doorbell when letters become durable; the
  // segment stays mapped for it even after this agent is gone.
  sink->set_waker([seg = a->seg_] { shm::notify(seg->header().doorbell); });
  a->start();
  return a;
}

void Agent::start() {
  shm::Segment& seg = *seg_;
  shm::SegmentHeader& h = seg.header();
  const uint32_t n = seg.geometry().max_clients;
  workers_.assign(n, WorkerView{});
  registering_since_.assign(n, 0);
  producer_wake_.assign(n, 0);
  batch_of_.assign(seg.geometry().slot_count, 0);
  accepted_.assign(seg.geometry().slot_count, 0);
  column_.assign(seg.geometry().slot_count, 0);
  metrics_ = shm::MetricsWriter(seg, clock_.now_unix_ns());
  aref(h.agent_state)
      .store(static_cast<uint32_t>(shm::AgentState::kStarting), std::memory_order_relaxed);
  aref(h.agent_pid).store(static_cast<uint32_t>(::getpid()), std::memory_order_relaxed);
  aref(h.agent_start_ticks).store(shm::self_start_ticks(), std::memory_order_relaxed);
  aref(h.agent_started_unix_ns).store(clock_.now_unix_ns(), std::memory_order_relaxed);
  aref(h.agent_generation).fetch_add(1, std::memory_order_relaxed);
  aref(h.processing_timeout_ms).store(cfg_.processing_timeout_ms, std::memory_order_relaxed);
  aref(h.worker_idle_timeout_ms).store(cfg_.worker_idle_timeout_ms, std::memory_order_relaxed);
  aref(h.max_queue_depth).store(cfg_.max_queue_depth, std::memory_order_relaxed);
  aref(h.rope_drop_timeout_ms).store(cfg_.rope_drop_timeout_ms, std::memory_order_relaxed);
  aref(h.idempotency_ttl_ms).store(cfg_.idempotency_ttl_ms, std::memory_order_relaxed);
  const std::string sock = cfg_.data_dir + "/agent.sock";
  std::memset(h.socket_path, 0, sizeof h.socket_path);
  std::memcpy(h.socket_path, sock.data(), std::min(sock.size(), sizeof h.socket_path - 1));
  // Only the agent parks on the doorbell; a predecessor that died parked
  // left its mark here.
  aref(h.doorbell.waiters).store(0, std::memory_order_relaxed);
  aref(h.heartbeat_mono_ns).store(clock_.now_mono_ns(), std::memory_order_relaxed);
  events_ = seg.events();
  if (reattached_) {
    // Totals carry on across agent restarts.
    for (const auto& [mine, published] : kTotals) this->*mine = load_relaxed(h.counters.*published);
    shm::repair_status_table(seg);
    recover();
  }
  // release: clients that see kRunning see the facts above.
  aref(h.agent_state)
      .store(static_cast<uint32_t>(shm::AgentState::kRunning), std::memory_order_release);
}

// The totals the agent publishes, and takes back when it re-attaches.
const std::pair<uint64_t Agent::*, uint64_t shm::AgentCounters::*> Agent::kTotals[] = {
    {&Agent::submitted_, &shm::AgentCounters::submitted},
    {&Agent::dispatched_, &shm::AgentCounters::dispatched},
    {&Agent::completed_, &shm::AgentCounters::completed},
    {&Agent::failed_, &shm::AgentCounters::failed},
    {&Agent::retried_, &shm::AgentCounters::retried},
    {&Agent::rejected_, &shm::AgentCounters::rejected_invalid},
    {&Agent::skipped_, &shm::AgentCounters::ring_claims_skipped},
    {&Agent::reclaimed_, &shm::AgentCounters::slots_reclaimed},
    {&Agent::redispatched_, &shm::AgentCounters::attempts_redispatched},
    {&Agent::stale_cells_, &shm::AgentCounters::stale_cells},
    {&Agent::timed_out_, &shm::AgentCounters::timed_out},
    {&Agent::evicted_, &shm::AgentCounters::workers_evicted},
    {&Agent::cancelled_, &shm::AgentCounters::cancelled},
    {&Agent::batches_, &shm::AgentCounters::batches},
};

void Agent::shutdown() noexcept {
  if (!seg_) return;
  publish_counters();
  aref(seg_->header().agent_state)
      .store(static_cast<uint32_t>(shm::AgentState::kStopped), std::memory_order_release);
}

// Rebuilds the scheduler from the slots a previous agent left. The slot
// states are the truth; the band rings still hold what it had not drained.
void Agent::recover() {
  shm::Segment& seg = *seg_;
  SlotPool& pool = seg.pool();
  const uint32_t n = pool.count();
  const uint32_t clients = seg.geometry().max_clients;
  std::vector<std::pair<uint64_t, Pending>> pending[kBandCount];
  std::vector<Timer> deadlines;
  for (uint32_t s = 0; s < n; ++s) {
    const uint64_t ctl = pool.load(s);
    const SlotCtl c = SlotCtl::unpack(ctl);
    const RequestRecord& rec = seg.record(s);
    switch (c.state) {
      case SlotState::kPending:
      case SlotState::kAssigned:
      case SlotState::kProcessing:
      case SlotState::kReporting:
      case SlotState::kReported:
      case SlotState::kCancelling:
      case SlotState::kSealing:
        ++live_;  // accepted and not final: in the depth until finished
        accepted_[s] = 1;
        note_column(s);
        break;
      default:
        break;
    }
    switch (c.state) {
      case SlotState::kPending:
        if (rec.retry_at_mono_ns != 0) {
          retries_.push(Timer{rec.retry_at_mono_ns, s, c.generation, c.attempt});
        } else if (rec.band < kBandCount) {
          pending[rec.band].push_back(
              {rec.request_id, Pending{s, c.generation, rec.eligible_mono_ns, rec.band}});
        }
        break;
      case SlotState::kAssigned:
      case SlotState::kProcessing:
      case SlotState::kReporting:
        if (c.owner < clients) {
          // Known before the first liveness pass, which must not reset it.
          const uint32_t inc = load_relaxed(seg.client(c.owner).incarnation);
          workers_[c.owner].incarnation = inc == 0 ? 1 : inc;
          ++workers_[c.owner].inflight;
          ++inflight_;
          deadlines.push_back(Timer{rec.dispatched_mono_ns + cfg_.processing_timeout_ms * 1'000'000,
                                    s, c.generation, c.attempt});
          // The previous agent may have died between assigning and pushing.
          const uint64_t ref = slot_ref(s, c.generation);
          if (c.state == SlotState::kAssigned && !seg.dispatch_ring(c.owner).contains_unread(ref)) {
            (void)seg.dispatch_ring(c.owner).try_push(ref);
            workers_[c.owner].wake = true;
            to_wake_.push_back(c.owner);
          }
        }
        break;
      case SlotState::kReported:
        if (c.owner < clients) {
          // Counted as in flight so that settle's decrement balances.
          ++workers_[c.owner].inflight;
          ++inflight_;
        }
        settle(s, ctl, attempt_result(rec.result_kind), Errc::kProcessorError);
        break;
      case SlotState::kCancelling:
        finish(s, ctl, Status::kCancelled, Errc::kCancelled);
        break;
      case SlotState::kSealing: {
        // The previous agent decided failed/timeout and died before the
        // letter was durable, or before it concluded: hand the letter again
        // (the sink drops a second copy of one it holds) and wait for it.
        const uint8_t st = rec.status;
        const auto status =
            st == static_cast<uint8_t>(Status::kTimeout) ? Status::kTimeout : Status::kFailed;
        const Errc error = errc_valid(rec.error) ? static_cast<Errc>(rec.error) : Errc::kInternal;
        seal(s, ctl, status, error, /*recovered=*/true);
        break;
      }
      case SlotState::kDone: {
        const uint64_t ref = slot_ref(s, c.generation);
        if (c.owner < clients && !seg.completion_ring(c.owner).contains_unread(ref)) {
          deliver(s, ctl);
        }
        break;
      }
      default:
        break;
    }
  }
  for (uint8_t b = 0; b < kBandCount; ++b) {
    std::sort(pending[b].begin(), pending[b].end(),
              [](const auto& x, const auto& y) { return x.first < y.first; });
    for (const auto& [id, p] : pending[b]) bands_[b].push_back(p);
  }
  std::sort(deadlines.begin(), deadlines.end(),
            [](const Timer& x, const Timer& y) { return x.at_ns < y.at_ns; });
  attempts_.assign(deadlines.begin(), deadlines.end());
  routes_dirty_ = true;
}

std::string_view Agent::type_of(uint32_t slot) const noexcept {
  const RequestRecord& rec = seg_->record(slot);
  return {rec.type, std::min<size_t>(rec.type_len, kTypeMaxBytes)};
}

// The metrics column of the request in `slot`, looked up once when the agent
// takes it and kept by slot.
// A type that fails the submit rules (a request cancelled before the agent
// validated it) never takes a column: it counts as "other".
uint8_t Agent::note_column(uint32_t slot) {
  const std::string_view type = type_of(slot);
  column_[slot] = valid_type(type) ? metrics_.column(type) : metrics_.other_column();
  return column_[slot];
}

// The agent-written fields of a record the agent has just taken. status and
// error are stored atomically: a status lookup may read them while the slot
// is reused (it discards what it read; see store_shared_text).
void Agent::rec_defaults(uint32_t slot) {
  RequestRecord& rec = seg_->record(slot);
  store_relaxed(rec.status, static_cast<uint8_t>(Status::kPending));
  store_relaxed(rec.error, static_cast<uint8_t>(Errc::kOk));
  rec.attempts = 0;
  rec.result_len = 0;
  rec.result_kind = static_cast<uint8_t>(AttemptResult::kNone);
  rec.first_attempt_unix_ns = 0;
  rec.failures = 0;
  rec.retry_at_mono_ns = 0;
}

// Requests cancelled while pending: finish them (the entries that still
// name them in the agent's queues and timers are dropped when reached).
int Agent::drain_cancels(bool check_claims) {
  shm::Segment& seg = *seg_;
  return drain_ring(shm::kCancelRing, check_claims, [&](uint32_t slot) {
    if (slot >= seg.pool().count()) return;
    const uint64_t ctl = seg.pool().load(slot);
    if (SlotCtl::unpack(ctl).state != SlotState::kCancelling) return;  // already finished
    if (accepted_[slot] == 0) {
      take_cancelled(slot, ctl);  // still behind others in its band ring
    } else {
      finish(slot, ctl, Status::kCancelled, Errc::kCancelled);
    }
  });
}

// A request cancelled before the agent took it from its band ring: counted
// as submitted and finished at once (its cell, met later, is stale).
void Agent::take_cancelled(uint32_t slot, uint64_t ctl) {
  ++submitted_;
  ++live_;
  accepted_[slot] = 1;
  rec_defaults(slot);
  metrics_.count(seg_->record(slot).band, note_column(slot), shm::Outcome::kSubmitted);
  finish(slot, ctl, Status::kCancelled, Errc::kCancelled);
}

// Takes a published slot into the scheduler, checking everything a broken
// producer could have got wrong. Returns false for a rejected slot.
bool Agent::accept(uint32_t slot) {
  shm::Segment& seg = *seg_;
  SlotPool& pool = seg.pool();
  if (slot >= pool.count()) {
    ++rejected_;
    return false;
  }
  uint64_t ctl = pool.load(slot);
  const SlotCtl c = SlotCtl::unpack(ctl);
  if (c.state == SlotState::kCancelling) {
    // Cancelled before the agent took it: it finishes here, never queued.
    take_cancelled(slot, ctl);
    return false;
  }
  if (c.state != SlotState::kQueued || c.owner >= seg.geometry().max_clients) {
    // A cell left by an agent that died after taking its slot, or one a
    // broken producer wrote: the slot is not waiting to be taken.
    ++stale_cells_;
    return false;
  }
  if (!pool.transition(slot, ctl, with_state(c, SlotState::kPending, kOwnerAgent))) {
    ++stale_cells_;
    return false;
  }
  ctl = with_state(c, SlotState::kPending, kOwnerAgent).pack();
  RequestRecord& rec = seg.record(slot);
  const bool valid =
      rec.type_len >= 1 && rec.type_len <= kTypeMaxBytes && valid_type({rec.type, rec.type_len}) &&
      rec.user_len >= 1 && rec.user_len <= kUserIdMaxBytes &&
      valid_user_id({rec.user_id, rec.user_len}) &&
      rec.payload_len <= seg.geometry().slot_payload_bytes && rec.mode < kModeCount &&
      rec.priority >= kPriorityMin && rec.priority <= kPriorityMax &&
      rec.band == static_cast<uint8_t>(band_for(static_cast<Mode>(rec.mode), rec.priority)) &&
      rec.metadata_len <= kMetadataMaxBytes && rec.idem_len <= kIdempotencyKeyMaxBytes &&
      rec.producer == c.owner;
  ++submitted_;
  rec_defaults(slot);
  if (!valid) {
    ++rejected_;
    store_relaxed(rec.status, static_cast<uint8_t>(Status::kFailed));
    store_relaxed(rec.error, static_cast<uint8_t>(Errc::kInvalidRequest));
    rec.result_len = 0;
    SlotCtl done = with_state(c, SlotState::kDone, c.owner);
    if (pool.transition(slot, ctl, done)) deliver(slot, done.pack());
    return false;
  }
  // Eligible from the moment the agent holds it (docs/DECISIONS.md): the
  // agent's own clock, never a time a producer wrote.
  const uint64_t eligible = now_ns_;
  rec.eligible_mono_ns = eligible;
  rec.retry_at_mono_ns = 0;
  ++live_;
  accepted_[slot] = 1;
  metrics_.count(rec.band, note_column(slot), shm::Outcome::kSubmitted);
  bands_[rec.band].push_back(Pending{slot, c.generation, eligible, rec.band});
  emit(EventKind::kSubmitted, slot, Status::kPending);
  return true;
}

// One pass over an MPSC ring (a band, or the cancel ring): peek, hand the
// slot to `take`, then consume the cell, so an agent that dies in between
// leaves the slot either in its old state with its cell still in the ring,
// or taken (recovered from the slot states) with a stale cell the next agent
// ignores. A claim left unpublished for ring_claim_timeout_ms is revoked, so
// nobody waits on a process that may be dead (looked for on the liveness
// timer only). Bounded by kDrainBatch cells.
template <class Take>
int Agent::drain_ring(uint8_t r, bool check_claims, Take&& take) {
  BandRing& ring = seg_->ring(r);
  const auto claims = check_claims ? BandRing::Claims::kReport : BandRing::Claims::kIgnore;
  int n = 0;
  for (int i = 0; i < kDrainBatch; ++i) {
    const BandRing::Pop p = ring.peek(claims);
    switch (p.kind) {
      case BandRing::PopKind::kValue:
        stall_since_ns_[r] = 0;
        take(p.value);
        ring.consume(p.position);
        ++n;
        continue;
      case BandRing::PopKind::kSkipped:
        ring.consume(p.position);
        continue;
      case BandRing::PopKind::kCorrupt:
        ++rejected_;
        ring.discard_corrupt(p.position);
        continue;
      case BandRing::PopKind::kStalled:
        if (stall_since_ns_[r] == 0 || stall_position_[r] != p.position) {
          stall_since_ns_[r] = now_ns_;
          stall_position_[r] = p.position;
        } else if (now_ns_ - stall_since_ns_[r] >= cfg_.ring_claim_timeout_ms * 1'000'000) {
          if (ring.skip(p.position)) ++skipped_;
          stall_since_ns_[r] = 0;
          continue;
        }
        return n;
      case BandRing::PopKind::kEmpty:
        return n;
    }
  }
  return n;
}

int Agent::drain_bands(bool check_claims) {
  int n = 0;
  for (uint8_t b = 0; b < kBandCount; ++b) {
    n += drain_ring(b, check_claims, [this](uint32_t slot) { accept(slot); });
  }
  return n;
}

void Agent::requeue(uint32_t slot, uint32_t generation, Band band, uint64_t eligible_ns) {
  bands_[static_cast<uint8_t>(band)].push_back(
      Pending{slot, generation, eligible_ns, static_cast<uint8_t>(band)});
}

// SPEC §4: the delay after failed attempt k is retry_backoff_ms x 2^k, spread
// by +- retry_jitter so that requests that failed together do not return
// together.
uint64_t Agent::backoff_ns(uint8_t failed_attempt) noexcept {
  const uint32_t k = std::min<uint32_t>(failed_attempt, 30);
  const double base =
      static_cast<double>(cfg_.retry_backoff_ms) * 1e6 * static_cast<double>(1u << k);
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  const double u = static_cast<double>(rng_ >> 11) * 0x1.0p-53;  // [0, 1)
  const double spread = 1.0 + cfg_.retry_jitter * (2.0 * u - 1.0);
  return static_cast<uint64_t>(base * spread);
}

void Agent::schedule_retry(uint32_t slot, uint32_t generation, uint8_t attempt, uint64_t at_ns) {
  seg_->record(slot).retry_at_mono_ns = at_ns;
  retries_.push(Timer{at_ns, slot, generation, attempt});
}

int Agent::release_retries() {
  shm::Segment& seg = *seg_;
  int n = 0;
  // Bounded by the heap: each pass pops one timer.
  while (!retries_.empty() && retries_.top().at_ns <= now_ns_) {
    const Timer t = retries_.top();
    retries_.pop();
    const SlotCtl c = SlotCtl::unpack(seg.pool().load(t.slot));
    if (c.state != SlotState::kPending || c.generation != t.generation) continue;
    RequestRecord& rec = seg.record(t.slot);
    if (rec.retry_at_mono_ns == 0 || rec.band >= kBandCount) continue;
    rec.retry_at_mono_ns = 0;
    rec.eligible_mono_ns = now_ns_;
    requeue(t.slot, t.generation, static_cast<Band>(rec.band), now_ns_);
    ++n;
  }
  return n;
}

// SPEC §4 processing_timeout_ms: an attempt not finished this long after
// dispatch fails with PROCESSING_TIMEOUT. Its slot is taken back first, so
// the worker's late result is dropped by the CAS that guards writing it.
int Agent::expire_attempts() {
  shm::Segment& seg = *seg_;
  SlotPool& pool = seg.pool();
  int n = 0;
  while (!attempts_.empty() && attempts_.front().at_ns <= now_ns_) {
    const Timer t = attempts_.front();
    attempts_.pop_front();
    uint64_t ctl = pool.load(t.slot);
    const SlotCtl c = SlotCtl::unpack(ctl);
    if (c.generation != t.generation || c.attempt != t.attempt || c.owner >= workers_.size() ||
        (c.state != SlotState::kAssigned && c.state != SlotState::kProcessing)) {
      continue;  // settled already, or being reported right now
    }
    // A dispatch taken back unstarted keeps its attempt number; its timer
    // must not end the next dispatch of that attempt.
    if (seg.record(t.slot).dispatched_mono_ns + cfg_.processing_timeout_ms * 1'000'000 > t.at_ns) {
      continue;
    }
    const SlotCtl back = with_state(c, SlotState::kReported, c.owner);
    if (!pool.transition(t.slot, ctl, back)) continue;
    settle(t.slot, back.pack(), AttemptResult::kError, Errc::kProcessingTimeout);
    ++n;
  }
  // Settled attempts stay in the deque until their deadline; keep it within
  // a bound by dropping them once it is much longer than what can be in flight.
  if (attempts_.size() > 2 * cfg_.max_concurrent_workers + 1024) {
    std::deque<Timer> live;
    for (const Timer& t : attempts_) {
      const SlotCtl c = SlotCtl::unpack(pool.load(t.slot));
      if (c.generation == t.generation && c.attempt == t.attempt &&
          (c.state == SlotState::kAssigned || c.state == SlotState::kProcessing ||
           c.state == SlotState::kReporting)) {
        live.push_back(t);
      }
    }
    attempts_.swap(live);
  }
  return n;
}

// SPEC §4 queue_timeout_ms: a request not dispatched this long after it
// became eligible ends as `timeout`. Each queue is in eligible order, so only
// fronts are looked at; the queues of types without a worker only on the
// liveness timer.
int Agent::expire_pending(bool all_queues) {
  shm::Segment& seg = *seg_;
  const uint64_t limit_ns = cfg_.queue_timeout_ms * 1'000'000;
  int n = 0;
  auto expire = [&](std::deque<Pending>& q, uint64_t* waiting_in_band) {
    while (!q.empty() && now_ns_ - std::min(q.front().eligible_ns, now_ns_) >= limit_ns) {
      const Pending p = q.front();
      q.pop_front();
      if (waiting_in_band != nullptr) {
        const uint8_t b = p.band;
        if (b < kBandCount && waiting_in_band[b] > 0) --waiting_in_band[b];
      }
      const uint64_t ctl = seg.pool().load(p.slot);
      const SlotCtl c = SlotCtl::unpack(ctl);
      if (c.state != SlotState::kPending || c.generation != p.generation) continue;
      finish(p.slot, ctl, Status::kTimeout, Errc::kQueueTimeout);
      ++n;
    }
  };
  for (auto& q : bands_) expire(q, nullptr);
  for (auto& [_, g] : gathering_) expire(g, gathered_band_);
  if (all_queues) {
    for (auto& [_, q] : no_worker_) expire(q, no_worker_band_);
  }
  return n;
}

// Aging (SPEC §5): a front that has waited aging_ms is served before younger
// fronts of higher bands, oldest first; otherwise bands in order. Bands whose
// workers are full this cycle are passed over.
int Agent::pick_band(const bool blocked[kBandCount]) const noexcept {
  const uint64_t aging_ns = cfg_.aging_ms * 1'000'000;
  int first = -1;
  int aged = -1;
  for (int b = 0; b < kBandCount; ++b) {
    if (blocked[b] || bands_[b].empty()) continue;
    if (first < 0) first = b;
    const uint64_t e = bands_[b].front().eligible_ns;
    if (now_ns_ - std::min(e, now_ns_) >= aging_ns &&
        (aged < 0 || e < bands_[aged].front().eligible_ns)) {
      aged = b;
    }
  }
  return aged >= 0 ? aged : first;
}

uint32_t Agent::pick_worker(const std::vector<uint32_t>& ws, uint32_t& cursor,
                            const std::vector<WorkerView>& views) noexcept {
  for (size_t k = 0; k < ws.size(); ++k) {
    const uint32_t w = ws[(cursor + k) % ws.size()];
    if (views[w].inflight < views[w].max_inflight) {
      cursor = static_cast<uint32_t>((cursor + k + 1) % ws.size());
      return w;
    }
  }
  return UINT32_MAX;
}

bool Agent::assign(const Pending& p, uint64_t ctl, uint32_t worker) {
  RequestRecord& rec = seg_->record(p.slot);
  const SlotCtl c = SlotCtl::unpack(ctl);
  const auto attempt = static_cast<uint8_t>(c.attempt + 1);
  rec.attempts = attempt;
  rec.dispatched_mono_ns = now_ns_;
  if (attempt == 1) rec.first_attempt_unix_ns = clock_.now_unix_ns();
  SlotCtl next = c;
  next.state = SlotState::kAssigned;
  next.attempt = attempt;
  next.owner = static_cast<uint16_t>(worker);
  return seg_->pool().transition(p.slot, ctl, next);
}

// Only a worker that corrupted its own ring gets here: take the attempt
// back; the request keeps its place for the next cycle.
void Agent::unassign(const Pending& p, uint32_t worker) {
  SlotPool& pool = seg_->pool();
  uint64_t ctl = pool.load(p.slot);
  SlotCtl c = SlotCtl::unpack(ctl);
  if (c.state != SlotState::kAssigned || c.owner != worker || c.generation != p.generation) return;
  SlotCtl back = with_state(c, SlotState::kPending, kOwnerAgent);
  back.attempt = static_cast<uint8_t>(c.attempt - 1);
  if (pool.transition(p.slot, ctl, back)) seg_->record(p.slot).attempts = back.attempt;
}

void Agent::note_dispatched(const Pending& p, uint32_t worker, uint8_t attempt) {
  metrics_.waited(p.band, column_[p.slot], now_ns_ - std::min(p.eligible_ns, now_ns_));
  attempts_.push_back(
      Timer{now_ns_ + cfg_.processing_timeout_ms * 1'000'000, p.slot, p.generation, attempt});
  emit(EventKind::kAssigned, p.slot, Status::kAssigned);
  if (!workers_[worker].wake) {
    workers_[worker].wake = true;
    to_wake_.push_back(worker);
  }
  ++dispatched_;
}

void Agent::release_dispatch(uint32_t slot, uint32_t worker) {
  uint32_t& batch = batch_of_[slot];
  if (batch != 0) {
    auto it = open_batches_.find(batch);
    batch = 0;
    if (it == open_batches_.end()) return;  // its worker is gone and was written off
    worker = it->second.worker;
    if (--it->second.remaining > 0) return;  // the batch is still out
    open_batches_.erase(it);
  }
  if (worker < workers_.size() && workers_[worker].inflight > 0) {
    --workers_[worker].inflight;
    if (inflight_ > 0) --inflight_;
  }
}

int Agent::dispatch() {
  if (routes_dirty_) refresh_routes();
  shm::Segment& seg = *seg_;
  SlotPool& pool = seg.pool();
  // Due batches first: their requests have waited batch_interval_ms (or
  // filled a batch) and no longer take part in band order and aging.
  int n = flush_batches(false);
  bool blocked[kBandCount] = {};
  // Bounded: each pass pops a request or blocks a band.
  while (inflight_ < cfg_.max_concurrent_workers) {
    const int b = pick_band(blocked);
    if (b < 0) break;
    auto& q = bands_[b];
    const Pending p = q.front();
    const uint64_t ctl = pool.load(p.slot);
    const SlotCtl c = SlotCtl::unpack(ctl);
    if (c.state != SlotState::kPending || c.generation != p.generation) {
      q.pop_front();  // no longer ours (e.g. reclaimed)
      continue;
    }
    const std::string_view type = type_of(p.slot);
    auto route = routes_.find(type);
    if (route == routes_.end() || route->second.workers.empty()) {
      auto waiting = no_worker_.find(type);
      if (waiting == no_worker_.end()) {
        waiting = no_worker_.emplace(std::string(type), std::deque<Pending>{}).first;
      }
      waiting->second.push_back(p);
      ++no_worker_band_[b];
      q.pop_front();
      continue;
    }
    TypeRoute& r = route->second;
    const RequestRecord& rec = seg.record(p.slot);
    // A batch request's first attempt waits for its batch; a failed item is
    // retried on its own (SPEC §5), like a request of any other mode.
    if (rec.mode == static_cast<uint8_t>(Mode::kBatch) && rec.failures == 0 &&
        !r.batch_workers.empty()) {
      q.pop_front();
      gather(type, p);
      continue;
    }
    const uint32_t chosen = pick_worker(r.workers, r.next, workers_);
    if (chosen == UINT32_MAX) {
      blocked[b] = true;  // this type's workers are full: other bands go on
      continue;
    }
    if (!assign(p, ctl, chosen)) {
      q.pop_front();
      continue;
    }
    if (!seg.dispatch_ring(chosen).try_push(slot_ref(p.slot, p.generation))) {
      unassign(p, chosen);
      blocked[b] = true;
      continue;
    }
    note_dispatched(p, chosen, static_cast<uint8_t>(c.attempt + 1));
    ++workers_[chosen].inflight;
    ++inflight_;
    q.pop_front();
    ++n;
  }
  return n + flush_batches(false);
}

void Agent::gather(std::string_view type, const Pending& p) {
  auto g = gathering_.find(type);
  if (g == gathering_.end()) g = gathering_.emplace(std::string(type), std::deque<Pending>{}).first;
  // Kept in eligible order (requests arrive from several bands), so the
  // front is the oldest: the interval and the queue timeout look only there.
  // Usually an append; bounded by the gathered requests of the type.
  std::deque<Pending>& q = g->second;
  auto at = q.end();
  while (at != q.begin() && std::prev(at)->eligible_ns > p.eligible_ns) --at;
  q.insert(at, p);
  const uint8_t band = p.band;
  if (band < kBandCount) ++gathered_band_[band];
  // A full batch goes now, not at the end of the cycle.
  if (g->second.size() >= cfg_.batch_size) {
    auto route = routes_.find(type);
    if (route != routes_.end()) (void)flush_batch(g->second, route->second);
  }
}

// Dispatches the batches that are due: batch_size items wait, or the
// oldest has waited batch_interval_ms since it became eligible.
int Agent::flush_batches(bool full_only) {
  const uint64_t interval_ns = cfg_.batch_interval_ms * 1'000'000;
  int n = 0;
  for (auto& [type, g] : gathering_) {
    if (g.empty()) continue;
    auto route = routes_.find(type);
    if (route == routes_.end()) continue;
    // Bounded: each flush takes items or returns 0.
    while (!g.empty()) {
      const bool full = g.size() >= cfg_.batch_size;
      const bool due = now_ns_ - std::min(g.front().eligible_ns, now_ns_) >= interval_ns;
      if (!full && (full_only || !due)) break;
      const int sent = flush_batch(g, route->second);
      if (sent == 0) break;
      n += sent;
    }
  }
  return n;
}

// One batch dispatch of up to batch_size items from the front of `g`.
// Returns the items sent (0: no capacity, or nothing valid left).
int Agent::flush_batch(std::deque<Pending>& g, TypeRoute& r) {
  if (inflight_ >= cfg_.max_concurrent_workers) return 0;
  const uint32_t w = pick_worker(r.batch_workers, r.batch_next, workers_);
  if (w == UINT32_MAX) return 0;
  shm::Segment& seg = *seg_;
  SlotPool& pool = seg.pool();
  const size_t want = std::min<size_t>(g.size(), std::max<uint64_t>(cfg_.batch_size, 1));
  // Scratch kept across batches: no allocation per dispatch.
  std::vector<Pending>& items = batch_items_;
  std::vector<uint64_t>& refs = batch_refs_;
  items.clear();
  refs.clear();
  refs.push_back(0);  // the header, once the count is known
  // Bounded by `want` items taken from the front.
  for (size_t k = 0; k < want && !g.empty(); ++k) {
    const Pending p = g.front();
    g.pop_front();
    const uint8_t band = p.band;
    if (band < kBandCount && gathered_band_[band] > 0) --gathered_band_[band];
    const uint64_t ctl = pool.load(p.slot);
    const SlotCtl c = SlotCtl::unpack(ctl);
    if (c.state != SlotState::kPending || c.generation != p.generation) continue;
    if (!assign(p, ctl, w)) continue;
    items.push_back(p);
    refs.push_back(slot_ref(p.slot, p.generation));
  }
  if (items.empty()) return 0;
  SpscRing ring = seg.dispatch_ring(w);
  const bool single = items.size() == 1;
  refs[0] = batch_header(static_cast<uint32_t>(items.size()));
  const bool pushed = single ? ring.try_push(refs[1])
                             : ring.try_push_n(refs.data(), static_cast<uint32_t>(refs.size()));
  if (!pushed) {
    for (auto it = items.rbegin(); it != items.rend(); ++it) {
      unassign(*it, w);
      g.push_front(*it);
      const uint8_t band = it->band;
      if (band < kBandCount) ++gathered_band_[band];
    }
    return 0;
  }
  const uint32_t batch = single ? 0 : next_batch_++;
  if (next_batch_ == 0) next_batch_ = 1;
  for (const Pending& p : items) {
    batch_of_[p.slot] = batch;
    note_dispatched(p, w, seg.record(p.slot).attempts);
  }
  if (batch != 0) {
    open_batches_[batch] = OpenBatch{w, static_cast<uint32_t>(items.size())};
    ++batches_;
  }
  ++workers_[w].inflight;
  ++inflight_;
  return static_cast<int>(items.size());
}

// The type lost its batch workers: its gathered requests go back to the
// front of their bands, oldest first.
void Agent::ungather(std::deque<Pending>& g) {
  for (auto p = g.rbegin(); p != g.rend(); ++p) {
    const uint8_t band = p->band;
    if (band >= kBandCount) continue;
    bands_[band].push_front(*p);
    if (gathered_band_[band] > 0) --gathered_band_[band];
  }
  g.clear();
}

void Agent::deliver(uint32_t slot, uint64_t done_ctl) {
  shm::Segment& seg = *seg_;
  const SlotCtl c = SlotCtl::unpack(done_ctl);
  const uint32_t p = c.owner;
  const bool live =
      p < seg.geometry().max_clients &&
      static_cast<shm::ClientState>(load_acquire(seg.client(p).state)) == shm::ClientState::kActive;
  if (!live) {
    // Its producer is gone: nobody will collect the outcome.
    (void)seg.pool().release(slot, done_ctl);
    return;
  }
  const uint64_t ref = slot_ref(slot, c.generation);
  if (!seg.completion_ring(p).try_push(ref)) undelivered_.push_back({slot, done_ctl});
  if (producer_wake_[p] == 0) {
    producer_wake_[p] = 1;
    to_wake_.push_back(p);
  }
}

void Agent::settle(uint32_t slot, uint64_t ctl, AttemptResult kind, Errc error) {
  shm::Segment& seg = *seg_;
  SlotPool& pool = seg.pool();
  const SlotCtl c = SlotCtl::unpack(ctl);
  release_dispatch(slot, c.owner);
  const RequestRecord& rec = seg.record(slot);
  metrics_.processed(rec.band, column_[slot], now_ns_ - std::min(rec.dispatched_mono_ns, now_ns_));
  if (kind != AttemptResult::kOk) record_failure(slot, error);
  const bool retry = kind == AttemptResult::kError && c.attempt < cfg_.max_retry_attempts;
  if (retry) {
    const SlotCtl next = with_state(c, SlotState::kPending, kOwnerAgent);
    if (pool.transition(slot, ctl, next)) {
      ++retried_;
      metrics_.count(rec.band, column_[slot], shm::Outcome::kRetried);
      schedule_retry(slot, c.generation, c.attempt, now_ns_ + backoff_ns(c.attempt));
      emit(EventKind::kRetrying, slot, Status::kPending, error);
    }
    return;
  }
  if (kind == AttemptResult::kOk) {
    finish(slot, ctl, Status::kCompleted, Errc::kOk);
  } else {
    finish(slot, ctl, Status::kFailed, error);
  }
}

// Appends one failed attempt to the slot's errorHistory. A processor's error
// text is its reply; the agent's own reasons get a fixed text.
void Agent::record_failure(uint32_t slot, Errc code) {
  shm::Segment& seg = *seg_;
  RequestRecord& rec = seg.record(slot);
  AttemptError& e = rec.history[rec.failures % kAttemptHistory];
  e.at_unix_ns = clock_.now_unix_ns();
  e.code = static_cast<uint8_t>(code);
  std::string_view text;
  if (code == Errc::kProcessorError) {
    const uint32_t len = std::min(rec.result_len, seg.geometry().slot_payload_bytes);
    text = {reinterpret_cast<const char*>(seg.result(slot)), len};
  } else if (code == Errc::kProcessingTimeout) {
    text = "attempt exceeded processing_timeout_ms";
  } else if (code == Errc::kWorkerDied) {
    text = "the worker running the attempt died";
  } else {
    text = errc_name(code);
  }
  e.len = static_cast<uint8_t>(std::min(text.size(), kAttemptMessageBytes));
  std::memcpy(e.message, text.data(), e.len);
  if (rec.failures < 255) ++rec.failures;
}

// Hands a failed or timed-out request to the dead-letter sink, with every
// field SPEC §5 lists, and returns its ticket. Nothing of it is logged.
uint64_t Agent::dead_letter(uint32_t slot, Status status, Errc reason, bool recovered) {
  shm::Segment& seg = *seg_;
  const RequestRecord& rec = seg.record(slot);
  DeadLetter d;
  d.request_id = rec.request_id;
  d.user_id.assign(rec.user_id, std::min<size_t>(rec.user_len, kUserIdMaxBytes));
  d.type.assign(rec.type, std::min<size_t>(rec.type_len, kTypeMaxBytes));
  d.mode = static_cast<Mode>(rec.mode < kModeCount ? rec.mode : 0);
  // The record is shared memory a broken producer may scribble on after the
  // agent took it: nothing out of range reaches the journal.
  d.priority = rec.priority >= kPriorityMin && rec.priority <= kPriorityMax ? rec.priority
                                                                            : kPriorityDefault;
  const uint32_t len = std::min(rec.payload_len, seg.geometry().slot_payload_bytes);
  d.payload.assign(seg.payload(slot), seg.payload(slot) + len);
  d.metadata.assign(rec.metadata, std::min<size_t>(rec.metadata_len, kMetadataMaxBytes));
  d.status = status;
  d.reason = reason;
  d.attempt_count = rec.attempts;
  d.first_attempt_unix_ns = rec.first_attempt_unix_ns;
  const uint8_t kept = std::min<uint8_t>(rec.failures, kAttemptHistory);
  for (uint8_t k = 0; k < kept; ++k) {
    const AttemptError& e = rec.history[(rec.failures - kept + k) % kAttemptHistory];
    d.history.push_back(AttemptFailure{
        e.at_unix_ns, errc_valid(e.code) ? static_cast<Errc>(e.code) : Errc::kInternal,
        std::string(e.message, std::min<size_t>(e.len, kAttemptMessageBytes))});
  }
  d.last_attempt_unix_ns = d.history.empty() ? 0 : d.history.back().at_unix_ns;
  return sink_->accept(std::move(d), recovered);
}

void Agent::emit(EventKind kind, uint32_t slot, Status status, Errc error) {
  if (!events_on_) return;
  Event ev{};
  ev.at_unix_ns = clock_.now_unix_ns();
  ev.kind = static_cast<uint8_t>(kind);
  ev.status = static_cast<uint8_t>(status);
  ev.error = static_cast<uint8_t>(error);
  if (slot != UINT32_MAX) {
    const RequestRecord& rec = seg_->record(slot);
    ev.request_id = rec.request_id;
    ev.priority = rec.priority;
    ev.attempt = rec.attempts;
    ev.mode = rec.mode;
    copy_names(rec, ev);
  }
  events_.publish(ev);
}

// The final transition: writes the outcome, hands the slot to its producer.
// A failure or timeout first goes to SEALING until its dead letter is
// durable (seal), then concludes here too.
void Agent::finish(uint32_t slot, uint64_t ctl, Status status, Errc error) {
  shm::Segment& seg = *seg_;
  RequestRecord& rec = seg.record(slot);
  rec.finished_mono_ns = now_ns_;
  store_relaxed(rec.status, static_cast<uint8_t>(status));
  store_relaxed(rec.error, static_cast<uint8_t>(error));
  rec.retry_at_mono_ns = 0;
  if (status == Status::kFailed || status == Status::kTimeout) {
    // Not final yet: status lookups read SEALING as the step it was at.
    const SlotCtl held = with_state(SlotCtl::unpack(ctl), SlotState::kSealing, kOwnerAgent);
    if (!seg.pool().transition(slot, ctl, held)) return;
    seal(slot, held.pack(), status, error, /*recovered=*/false);
    return;
  }
  conclude(slot, ctl, status, error);
}

// Hands the letter to the sink; the request concludes once the sink says its
// ticket is durable (now, for a sink that is durable at once).
void Agent::seal(uint32_t slot, uint64_t sealing_ctl, Status status, Errc error, bool recovered) {
  const uint64_t ticket = dead_letter(slot, status, error, recovered);
  sealing_.push_back(Sealing{ticket, slot, sealing_ctl, status, error});
  (void)conclude_sealed();
}

// Concludes, in ticket order, the sealed requests whose letters are durable.
int Agent::conclude_sealed() {
  if (sealing_.empty()) return 0;
  const uint64_t durable = sink_->durable();
  int n = 0;
  while (!sealing_.empty() && sealing_.front().ticket <= durable) {
    const Sealing sealed = sealing_.front();
    sealing_.pop_front();
    conclude(sealed.slot, sealed.ctl, sealed.status, sealed.error);
    ++n;
  }
  return n;
}

void Agent::conclude(uint32_t slot, uint64_t ctl, Status status, Errc error) {
  shm::Segment& seg = *seg_;
  RequestRecord& rec = seg.record(slot);
  const SlotCtl done = with_state(SlotCtl::unpack(ctl), SlotState::kDone, rec.producer);
  if (!seg.pool().transition(slot, ctl, done)) return;
  if (accepted_[slot] != 0) {
    accepted_[slot] = 0;
    if (live_ > 0) --live_;
  }
  // The status table has it before the outcome is delivered, so before the
  // slot can be released (status.hpp).
  shm::StatusEntry e{};
  e.request_id = rec.request_id;
  e.created_unix_ns = rec.created_at_unix_ns;
  e.finished_unix_ns = clock_.now_unix_ns();
  e.status = static_cast<uint8_t>(status);
  e.error = static_cast<uint8_t>(error);
  e.attempts = rec.attempts;
  e.mode = rec.mode;
  e.priority = rec.priority;
  e.band = rec.band;
  copy_names(rec, e);
  shm::record_final(seg, e);
  emit(status == Status::kCompleted   ? EventKind::kCompleted
       : status == Status::kTimeout   ? EventKind::kTimeout
       : status == Status::kCancelled ? EventKind::kCancelled
                                      : EventKind::kFailed,
       slot, status, error);
  if (status == Status::kFailed || status == Status::kTimeout) {
    emit(EventKind::kDeadLettered, slot, status, error);
  }
  metrics_.count(rec.band, column_[slot],
                 status == Status::kCompleted   ? shm::Outcome::kCompleted
                 : status == Status::kTimeout   ? shm::Outcome::kTimeout
                 : status == Status::kCancelled ? shm::Outcome::kCancelled
                                                : shm::Outcome::kFailed);
  switch (status) {
    case Status::kCompleted:
      ++completed_;
      break;
    case Status::kTimeout:
      ++timed_out_;
      break;
    case Status::kCancelled:
      ++cancelled_;
      break;
    default:
      ++failed_;
      break;
  }
  deliver(slot, done.pack());
}

int Agent::settle_results() {
  shm::Segment& seg = *seg_;
  SlotPool& pool = seg.pool();
  int n = 0;
  for (const uint32_t w : active_workers_) {
    SpscRing ring = seg.result_ring(w);
    uint64_t ref = 0;
    for (uint32_t i = 0; i < ring.capacity() && ring.try_pop(ref); ++i) {
      const uint32_t slot = slot_ref_index(ref);
      if (slot >= pool.count()) {
        ++rejected_;
        continue;
      }
      const uint64_t ctl = pool.load(slot);
      const SlotCtl c = SlotCtl::unpack(ctl);
      if (c.state != SlotState::kReported || c.owner != w ||
          c.generation != slot_ref_generation(ref)) {
        continue;  // a late or duplicate report
      }
      // The agent learns that an attempt ran together with its outcome.
      emit(EventKind::kProcessing, slot, Status::kProcessing);
      settle(slot, ctl, attempt_result(seg.record(slot).result_kind), Errc::kProcessorError);
      ++n;
    }
  }
  return n;
}

void Agent::refresh_routes() {
  routes_dirty_ = false;
  shm::Segment& seg = *seg_;
  for (auto& [_, r] : routes_) {
    r.workers.clear();
    r.batch_workers.clear();
  }
  active_workers_.clear();
  for (uint32_t w = 0; w < workers_.size(); ++w) {
    if (workers_[w].incarnation == 0) continue;
    active_workers_.push_back(w);  // results are settled even from an evicted worker
    if (workers_[w].evicted) continue;
    shm::ClientRecord& rec = seg.client(w);
    // acquire: pairs with the release store of type_count in add_client_type.
    const uint32_t tc = std::min(load_acquire(rec.type_count), shm::kMaxTypesPerWorker);
    workers_[w].type_count = tc;
    workers_[w].max_inflight = std::clamp<uint32_t>(load_relaxed(rec.max_inflight), 1,
                                                    seg.geometry().client_ring_capacity);
    for (uint32_t k = 0; k < tc; ++k) {
      const shm::TypeName& t = rec.types[k];
      const std::string_view name(t.text, std::min<size_t>(t.len, kTypeMaxBytes));
      if (!valid_type(name)) continue;
      TypeRoute& r = routes_[std::string(name)];
      r.workers.push_back(w);
      if (t.batch != 0) r.batch_workers.push_back(w);
    }
  }
  for (auto& [type, g] : gathering_) {
    auto r = routes_.find(type);
    if (r == routes_.end() || r->second.batch_workers.empty()) ungather(g);
  }
  // Requests that waited for a worker go back to the front of their bands,
  // oldest first, now that their type may have one.
  for (auto it = no_worker_.begin(); it != no_worker_.end();) {
    auto r = routes_.find(it->first);
    if (r == routes_.end() || r->second.workers.empty()) {
      ++it;
      continue;
    }
    for (auto p = it->second.rbegin(); p != it->second.rend(); ++p) {
      const uint8_t band = p->band;
      if (band < kBandCount) {
        bands_[band].push_front(*p);
        if (no_worker_band_[band] > 0) --no_worker_band_[band];
      }
    }
    it = no_worker_.erase(it);
  }
}

void Agent::reclaim_producer(uint32_t id) {
  shm::Segment& seg = *seg_;
  SlotPool& pool = seg.pool();
  // Slots this producer published are accepted requests and stay; slots it
  // claimed but never published were never accepted and are freed.
  std::unordered_set<uint32_t> published;
  for (uint8_t b = 0; b < kBandCount; ++b) {
    seg.band(static_cast<Band>(b)).for_each_published([&](uint32_t v) { published.insert(v); });
  }
  for (uint32_t s = 0; s < pool.count(); ++s) {
    const uint64_t ctl = pool.load(s);
    const SlotCtl c = SlotCtl::unpack(ctl);
    if (c.owner != id) continue;
    const bool orphan = c.state == SlotState::kClaimed || c.state == SlotState::kDone ||
                        (c.state == SlotState::kQueued && !published.contains(s));
    if (orphan && pool.release(s, ctl)) ++reclaimed_;
  }
  // Table ways it was writing (a submit it died in) are free again, before
  // its client id can be reused.
  if (auto* t = seg.idempotency()) (void)t->release_writer(id);
  if (auto* t = seg.rate_limiter()) (void)t->release_writer(id);
}

void Agent::reclaim_worker(uint32_t id, bool gone) {
  shm::Segment& seg = *seg_;
  SlotPool& pool = seg.pool();
  for (uint32_t s = 0; s < pool.count(); ++s) {
    // A worker that closed may still be finishing an attempt: each lost CAS
    // means it moved the slot one state on, so a few tries settle it.
    for (int tries = 0; tries < 8; ++tries) {
      uint64_t ctl = pool.load(s);
      const SlotCtl c = SlotCtl::unpack(ctl);
      if (c.owner != id) break;
      if (c.state == SlotState::kReported) {
        settle(s, ctl, attempt_result(seg.record(s).result_kind), Errc::kProcessorError);
        break;
      }
      if (c.state == SlotState::kAssigned) {
        // Never started: not an attempt. Back to the front of its band.
        SlotCtl back = with_state(c, SlotState::kPending, kOwnerAgent);
        back.attempt = static_cast<uint8_t>(c.attempt > 0 ? c.attempt - 1 : 0);
        RequestRecord& rec = seg.record(s);
        if (!pool.transition(s, ctl, back)) continue;
        rec.attempts = back.attempt;
        release_dispatch(s, id);
        if (rec.band < kBandCount) {
          bands_[rec.band].push_front(Pending{s, c.generation, rec.eligible_mono_ns, rec.band});
        }
        break;
      }
      if (c.state != SlotState::kProcessing && (c.state != SlotState::kReporting || !gone)) {
        break;  // a live worker writing its result finishes it
      }
      // The attempt failed with its worker. Take the slot back first, so a
      // worker that was only slow cannot report into it any more.
      const SlotCtl back = with_state(c, SlotState::kReported, id);
      if (!pool.transition(s, ctl, back)) continue;
      ++redispatched_;
      settle(s, back.pack(), AttemptResult::kError, Errc::kWorkerDied);
      break;
    }
  }
  routes_dirty_ = true;
  if (!gone) return;  // its REPORTING attempts still count until they settle
  // Whatever settle() did not already give back.
  inflight_ -= std::min<uint64_t>(inflight_, workers_[id].inflight);
  std::erase_if(open_batches_, [id](const auto& kv) { return kv.second.worker == id; });
  workers_[id] = WorkerView{};
}

// SPEC §4 worker_idle_timeout_ms: a worker whose heartbeat (its own thread,
// every quarter of the timeout) is older than the timeout is stopped or
// starved. Heartbeats are CLOCK_MONOTONIC of the host, whatever clock the
// agent's time rules run on.
bool Agent::worker_silent(uint32_t id) noexcept {
  const uint64_t hb = load_relaxed(seg_->client(id).heartbeat_mono_ns);
  const uint64_t now = mono_now_ns();
  return now > hb && now - hb > cfg_.worker_idle_timeout_ms * 1'000'000;
}

// A silent but living worker: no more dispatches, and the attempts it holds
// are taken back (never started: back to their band; started: failed with
// WORKER_DIED). Its record stays until the worker notices and closes it, or
// its process dies.
void Agent::evict_worker(uint32_t id) {
  uint32_t expected = static_cast<uint32_t>(shm::ClientState::kActive);
  if (!aref(seg_->client(id).state)
           .compare_exchange_strong(expected, static_cast<uint32_t>(shm::ClientState::kEvicted),
                                    std::memory_order_acq_rel, std::memory_order_relaxed)) {
    return;
  }
  ++evicted_;
  workers_[id].evicted = true;
  reclaim_worker(id, false);
}

void Agent::watch_clients(uint64_t now_ns) {
  shm::Segment& seg = *seg_;
  const uint32_t n = seg.geometry().max_clients;
  for (uint32_t id = 0; id < n; ++id) {
    shm::ClientRecord& c = seg.client(id);
    const auto st = static_cast<shm::ClientState>(load_acquire(c.state));
    if (st != shm::ClientState::kRegistering) registering_since_[id] = 0;
    if (st == shm::ClientState::kFree) continue;
    if (st == shm::ClientState::kRegistering) {
      // Registration takes microseconds. A registrant that died, or stalled
      // past the bound, loses the record (its activate CAS then fails and
      // it registers again), so no record is held by a dead process.
      if (registering_since_[id] == 0) registering_since_[id] = now_ns;
      // acquire: pairs with register_client's release store of pid.
      const uint32_t pid = load_acquire(c.pid);
      const bool dead = pid != 0 && !shm::process_alive(pid, load_relaxed(c.start_ticks));
      if (dead || now_ns - registering_since_[id] > kRegistrationBoundNs) {
        if (shm::take_back_registering(seg, id)) registering_since_[id] = 0;
      }
      continue;
    }
    const uint32_t roles = load_relaxed(c.roles);
    const bool worker = (roles & shm::kRoleWorker) != 0;
    if (!shm::client_gone(seg, id)) {
      if (worker) {
        const uint32_t inc = load_relaxed(c.incarnation);
        if (workers_[id].incarnation != inc || workers_[id].incarnation == 0) {
          workers_[id] = WorkerView{};
          workers_[id].incarnation = inc == 0 ? 1 : inc;
          routes_dirty_ = true;
        }
        if (load_acquire(c.type_count) != workers_[id].type_count) routes_dirty_ = true;
        if (st == shm::ClientState::kEvicted) {
          workers_[id].evicted = true;
        } else if (worker_silent(id)) {
          evict_worker(id);
        }
      }
      continue;
    }
    // Closed or dead: take back everything it held, then free the record.
    if (worker) reclaim_worker(id, true);
    if ((roles & shm::kRoleProducer) != 0) reclaim_producer(id);
    producer_wake_[id] = 0;
    // Our last reads of this record's rings happen before a new client
    // resets them (free_client stores kFree with release).
    shm::free_client(seg, id);
  }
  (void)now_ns;
  const uint64_t last_poll = events_.last_reader_poll();
  const uint64_t host_now = mono_now_ns();
  events_on_ = last_poll != 0 && host_now >= last_poll && host_now - last_poll < kEventReaderIdleNs;
  seg.pool().repair_hints();
  if (routes_dirty_) refresh_routes();
}

void Agent::wake_clients() {
  shm::Segment& seg = *seg_;
  for (const uint32_t id : to_wake_) {
    if (producer_wake_[id] != 0) {
      producer_wake_[id] = 0;
      shm::notify(seg.client(id).completion_wake);
    }
    if (workers_[id].wake) {
      workers_[id].wake = false;
      shm::notify(seg.client(id).dispatch_wake);
    }
  }
  to_wake_.clear();
}

void Agent::publish_counters() {
  shm::AgentCounters& k = seg_->header().counters;
  auto put = [](uint64_t& f, uint64_t v) { aref(f).store(v, std::memory_order_relaxed); };
  for (const auto& [mine, published] : kTotals) put(k.*published, this->*mine);
  put(k.inflight, inflight_);
  uint64_t waiting = 0;
  uint64_t band_depth[kBandCount] = {};
  for (uint8_t b = 0; b < kBandCount; ++b) waiting += no_worker_band_[b];
  // Depth is counted, not summed from the queues: a request cancelled or
  // finished while an entry still names it in a queue or timer leaves the
  // depth at once (the stale entry is dropped later, when reached).
  const uint64_t depth = live_;
  for (uint8_t b = 0; b < kBandCount; ++b) {
    put(k.band_depth[b], bands_[b].size());
    band_depth[b] = bands_[b].size() + no_worker_band_[b] + gathered_band_[b];
  }
  put(k.waiting_for_worker, waiting);
  shm::publish_admission(*seg_, depth, band_depth);
  const bool full = depth >= cfg_.max_queue_depth;
  if (full && !was_full_) emit(EventKind::kQueueFull, UINT32_MAX, Status::kPending);
  if (depth == 0 && !was_empty_) emit(EventKind::kQueueEmpty, UINT32_MAX, Status::kPending);
  was_full_ = full;
  was_empty_ = depth == 0;
  // Producers waiting for room (rope drop) are woken when there is some.
  if (depth < cfg_.max_queue_depth) shm::notify(seg_->header().room);
}

int Agent::do_work() {
  const uint64_t now = clock_.now_mono_ns();
  now_ns_ = now;
  aref(seg_->header().heartbeat_mono_ns).store(now, std::memory_order_relaxed);
  if (now >= next_roll_ns_) {
    // The metrics history moves to the next row once a minute: the wall
    // clock is read then, not every duty cycle.
    constexpr uint64_t kMinuteNs = 60'000'000'000ull;
    const uint64_t unix_now = clock_.now_unix_ns();
    metrics_.roll(unix_now);
    next_roll_ns_ = now + (kMinuteNs - unix_now % kMinuteNs);
  }
  int n = 0;
  const bool tick = now >= next_liveness_ns_;
  if (tick) {
    watch_clients(now);
    publish_counters();
    next_liveness_ns_ = now + cfg_.liveness_interval_ms * 1'000'000;
  }
  n += drain_bands(tick);
  n += drain_cancels(tick);
  n += settle_results();
  n += expire_attempts();
  n += release_retries();
  n += expire_pending(tick);
  n += dispatch();
  n += conclude_sealed();
  if (!undelivered_.empty()) {
    std::vector<std::pair<uint32_t, uint64_t>> retry;
    retry.swap(undelivered_);
    for (const auto& [slot, done_ctl] : retry) {
      // Only while the slot still holds that outcome (a producer may have
      // collected it through a duplicate entry, and the slot moved on).
      if (seg_->pool().load(slot) == done_ctl) deliver(slot, done_ctl);
    }
  }
  wake_clients();
  if (n > 0) publish_counters();
  return n;
}

void Agent::run(const std::atomic<bool>& stop) {
  shm::Segment& seg = *seg_;
  WaitWord& db = seg.header().doorbell;
  IdlePolicy idle(cfg_.idle);
  auto work_visible = [&] {
    for (uint8_t b = 0; b < kBandCount; ++b) {
      if (seg.band(static_cast<Band>(b)).size_approx() > 0) return true;
    }
    for (const uint32_t w : active_workers_) {
      if (seg.result_ring(w).size_approx() > 0) return true;
    }
    return !sealing_.empty() && sealing_.front().ticket <= sink_->durable();
  };
  while (!stop.load(std::memory_order_acquire)) {
    const int n = do_work();
    idle.idle(static_cast<uint64_t>(n), [&] {
      publish_counters();
      // seq_cst: pairs with the fence in shm::notify (core/wait_word.hpp).
      aref(db.waiters).store(1, std::memory_order_seq_cst);
      const uint32_t s = aref(db.seq).load(std::memory_order_seq_cst);
      if (!work_visible()) {
        const uint64_t now = clock_.now_mono_ns();
        const uint64_t until_liveness = next_liveness_ns_ > now ? next_liveness_ns_ - now : 0;
        io_->park(&db.seq, s, std::min(std::max<uint64_t>(until_liveness, 100'000), kMaxParkNs));
      }
      aref(db.waiters).store(0, std::memory_order_relaxed);
    });
  }
  shutdown();
}

}  // namespace perfq::agent
