#include "dataplane/intake.hpp"

#include <algorithm>

#include "dataplane/records.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/core/band_ring.hpp"

namespace perfq::agent {

namespace {

// Cells taken from one ring per duty cycle: large enough to amortise the
// cycle, small enough that a busy band cannot hold off settling results.
constexpr int kDrainBatch = 1024;

// Whether a published request follows the submit rules. Every field is read
// once from the shared record and only the copy is checked and used: what
// the agent decides with comes back in `facts`.
bool valid_request(const RequestRecord& rec, uint16_t owner, const shm::Geometry& geo,
                   Facts& facts) noexcept {
  const uint8_t type_len = load_relaxed(rec.type_len);
  const uint8_t user_len = load_relaxed(rec.user_len);
  const bool facts_ok = read_facts(rec, geo.max_clients, facts);
  return facts_ok && facts.producer == owner && type_len >= 1 && type_len <= kTypeMaxBytes &&
         valid_type({rec.type, type_len}) && user_len >= 1 && user_len <= kUserIdMaxBytes &&
         valid_user_id({rec.user_id, user_len}) &&
         load_relaxed(rec.payload_len) <= geo.slot_payload_bytes &&
         load_relaxed(rec.metadata_len) <= kMetadataMaxBytes &&
         load_relaxed(rec.idem_len) <= kIdempotencyKeyMaxBytes;
}

}  // namespace

Intake::Intake(shm::Segment& seg, const Config& cfg, const CycleClock& cycle, Scheduler& scheduler,
               Settlement& settlement, shm::MetricsWriter& metrics, Ledger& ledger,
               Registrations& regs, Emitter& emitter, Counters& counters) noexcept
    : seg_(seg),
      cycle_(cycle),
      scheduler_(scheduler),
      settlement_(settlement),
      metrics_(metrics),
      ledger_(ledger),
      regs_(regs),
      emitter_(emitter),
      counters_(counters),
      claim_timeout_ns_(cfg.ring_claim_timeout_ms * 1'000'000) {}

int Intake::drain_bands(bool check_claims) {
  int n = 0;
  for (uint8_t b = 0; b < kBandCount; ++b) {
    n += drain_ring(b, check_claims, [this](uint32_t slot) { (void)accept(slot); });
  }
  return n;
}

void Intake::resync(uint8_t r) {
  seg_.ring(r).resync();
  ++counters_.resynced;
  stall_since_ns_[r] = 0;
  sweep_all_ = true;
}

int Intake::sweep_slots(uint64_t liveness_interval_ms) {
  for (uint8_t r = 0; r < shm::kRingCount; ++r) {
    if (!seg_.ring(r).repair_ahead()) resync(r);
  }
  const uint32_t count = seg_.pool().count();
  const bool all = sweep_all_;
  sweep_all_ = false;
  // The whole pool about once a second: count / (1000 / interval) per tick.
  const uint64_t per_tick =
      std::max<uint64_t>(256, uint64_t{count} * std::max<uint64_t>(liveness_interval_ms, 1) / 1000);
  const uint32_t n = all ? count : static_cast<uint32_t>(std::min<uint64_t>(per_tick, count));
  int taken = 0;
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t slot = sweep_next_;
    sweep_next_ = sweep_next_ + 1 < count ? sweep_next_ + 1 : 0;
    if (sweep_one(slot, all)) ++taken;
  }
  return taken;
}

bool Intake::sweep_one(uint32_t slot, bool at_once) {
  const uint64_t ctl = seg_.pool().load(slot);
  const SlotState st = SlotCtl::unpack(ctl).state;
  if (st != SlotState::kQueued && st != SlotState::kCancelling) {
    if (!suspects_.empty()) suspects_.erase(slot);
    return false;
  }
  auto [it, fresh] = suspects_.try_emplace(slot, ctl);
  if (!at_once && (fresh || it->second != ctl)) {
    it->second = ctl;  // first seen like this: a ring may still bring it
    return false;
  }
  suspects_.erase(it);
  ++counters_.swept;
  if (st == SlotState::kQueued) return accept(slot);
  if (!ledger_.counted(slot)) {
    take_cancelled(slot, ctl);
  } else {
    settlement_.finish(slot, ctl, Status::kCancelled, Errc::kCancelled);
  }
  return true;
}

// Requests cancelled while pending: finish them (the entries that still
// name them in the agent's queues and timers are dropped when reached).
int Intake::drain_cancels(bool check_claims) {
  return drain_ring(shm::kCancelRing, check_claims, [this](uint32_t slot) {
    if (slot >= seg_.pool().count()) return;
    const uint64_t ctl = seg_.pool().load(slot);
    if (SlotCtl::unpack(ctl).state != SlotState::kCancelling) return;  // already finished
    if (!ledger_.counted(slot)) {
      take_cancelled(slot, ctl);  // still behind others in its band ring
    } else {
      settlement_.finish(slot, ctl, Status::kCancelled, Errc::kCancelled);
    }
  });
}

// One pass over an MPSC ring (a band, or the cancel ring): peek, hand the
// slot to `take`, then consume the cell, so an agent that dies in between
// leaves the slot either in its old state with its cell still in the ring,
// or taken (recovered from the slot states) with a stale cell the next agent
// ignores. Bounded by kDrainBatch cells.
template <class Take>
int Intake::drain_ring(uint8_t r, bool check_claims, Take&& take) {
  BandRing& ring = seg_.ring(r);
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
        ++counters_.rejected;
        ring.discard_corrupt(p);
        continue;
      case BandRing::PopKind::kDesync:
        resync(r);
        return n;
      case BandRing::PopKind::kStalled:
        if (stall_since_ns_[r] == 0 || p.position < stall_position_[r] ||
            p.position >= stall_tail_[r]) {
          stall_since_ns_[r] = cycle_.now_ns;
          stall_position_[r] = p.position;
          stall_tail_[r] = ring.tail_position();
        } else if (cycle_.now_ns - stall_since_ns_[r] >= claim_timeout_ns_) {
          // Claimed before the stall was first seen: as old as the timeout.
          if (ring.skip(p.position)) ++counters_.skipped;
          continue;
        }
        return n;
      case BandRing::PopKind::kEmpty:
        return n;
    }
  }
  return n;
}

bool Intake::accept(uint32_t slot) {
  SlotPool& pool = seg_.pool();
  if (slot >= pool.count()) {
    ++counters_.rejected;
    return false;
  }
  uint64_t ctl = pool.load(slot);
  const SlotCtl c = SlotCtl::unpack(ctl);
  if (c.state == SlotState::kCancelling) {
    // Cancelled before the agent took it: it finishes here, never queued.
    take_cancelled(slot, ctl);
    return false;
  }
  if (c.state != SlotState::kQueued || c.owner >= seg_.geometry().max_clients) {
    // A cell left by an agent that died after taking its slot, or one a
    // broken producer wrote: the slot is not waiting to be taken.
    ++counters_.stale_cells;
    return false;
  }
  const SlotCtl pending = with_state(c, SlotState::kPending, kOwnerAgent);
  if (!pool.transition(slot, ctl, pending)) {
    ++counters_.stale_cells;
    return false;
  }
  ctl = pending.pack();
  Facts facts;
  const bool valid = valid_request(seg_.record(slot), c.owner, seg_.geometry(), facts);
  ++counters_.submitted;
  rec_defaults(slot);
  if (!valid) {
    reject(slot, ctl, c);
    return false;
  }
  // The producer's registration is copied now, while its record is known
  // good, so that a record scribbled before the outcome is settled is
  // rewritten from the copy rather than freed with the outcome lost.
  (void)regs_.adopt(c.owner);
  take(slot, c.generation, facts);
  return true;
}

// Eligible from the moment the agent holds it (docs/DECISIONS.md): the
// agent's own clock, never a time a producer wrote.
void Intake::take(uint32_t slot, uint32_t generation, const Facts& facts) {
  RequestRecord& rec = seg_.record(slot);
  const uint64_t eligible = cycle_.now_ns;
  rec.eligible_mono_ns = eligible;
  rec.retry_at_mono_ns = 0;
  metrics_.count(facts.band, ledger_.take(slot, facts), shm::Outcome::kSubmitted);
  scheduler_.enqueue(Pending{slot, generation, eligible, facts.band});
  emitter_.emit(EventKind::kSubmitted, slot, Status::kPending);
}

// A request that fails the submit rules: DONE with INVALID_REQUEST, and its
// outcome goes to the producer that published it (the slot's owner, as it
// is registered now).
void Intake::reject(uint32_t slot, uint64_t ctl, SlotCtl c) {
  ++counters_.rejected;
  RequestRecord& rec = seg_.record(slot);
  store_relaxed(rec.status, static_cast<uint8_t>(Status::kFailed));
  store_relaxed(rec.error, static_cast<uint8_t>(Errc::kInvalidRequest));
  rec.result_len = 0;
  const SlotCtl done = with_state(c, SlotState::kDone, c.owner);
  const auto incarnation = static_cast<uint16_t>(load_relaxed(seg_.client(c.owner).incarnation));
  if (seg_.pool().transition(slot, ctl, done)) {
    settlement_.deliver(slot, done.pack(), incarnation);
  }
}

// A request cancelled before the agent took it from its band ring: counted
// as submitted and finished at once (its cell, met later, is stale).
void Intake::take_cancelled(uint32_t slot, uint64_t ctl) {
  ++counters_.submitted;
  Facts facts;
  (void)read_facts(seg_.record(slot), seg_.geometry().max_clients, facts);  // made safe if not
  const uint8_t column = ledger_.take(slot, facts);
  rec_defaults(slot);
  metrics_.count(facts.band, column, shm::Outcome::kSubmitted);
  settlement_.finish(slot, ctl, Status::kCancelled, Errc::kCancelled);
}

// The agent-written fields of a record the agent has just taken. status and
// error are stored atomically: a status lookup may read them while the slot
// is reused (it discards what it read; see store_shared_text).
void Intake::rec_defaults(uint32_t slot) {
  RequestRecord& rec = seg_.record(slot);
  store_relaxed(rec.status, static_cast<uint8_t>(Status::kPending));
  store_relaxed(rec.error, static_cast<uint8_t>(Errc::kOk));
  rec.attempts = 0;
  rec.result_len = 0;
  rec.result_kind = static_cast<uint8_t>(AttemptResult::kNone);
  rec.first_attempt_unix_ns = 0;
  rec.failures = 0;
  rec.retry_at_mono_ns = 0;
}

}  // namespace perfq::agent
