#include "dataplane/intake.hpp"

#include "dataplane/records.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/core/band_ring.hpp"

namespace perfq::agent {

namespace {

// Cells taken from one ring per duty cycle: large enough to amortise the
// cycle, small enough that a busy band cannot hold off settling results.
constexpr int kDrainBatch = 1024;

// Whether a published request follows the submit rules. Every field is read
// once from the shared record and only the copy is checked and used: the
// request's band comes back in `band`.
bool valid_request(const RequestRecord& rec, uint16_t owner, uint32_t payload_max,
                   uint8_t& band) noexcept {
  const uint8_t type_len = rec.type_len;
  const uint8_t user_len = rec.user_len;
  const uint8_t mode = rec.mode;
  const uint8_t priority = rec.priority;
  band = rec.band;
  return type_len >= 1 && type_len <= kTypeMaxBytes && valid_type({rec.type, type_len}) &&
         user_len >= 1 && user_len <= kUserIdMaxBytes && valid_user_id({rec.user_id, user_len}) &&
         rec.payload_len <= payload_max && mode < kModeCount && priority >= kPriorityMin &&
         priority <= kPriorityMax &&
         band == static_cast<uint8_t>(band_for(static_cast<Mode>(mode), priority)) &&
         rec.metadata_len <= kMetadataMaxBytes && rec.idem_len <= kIdempotencyKeyMaxBytes &&
         rec.producer == owner;
}

}  // namespace

Intake::Intake(shm::Segment& seg, const Config& cfg, const CycleClock& cycle, Scheduler& scheduler,
               Settlement& settlement, shm::MetricsWriter& metrics, Ledger& ledger,
               Emitter& emitter, Counters& counters) noexcept
    : seg_(seg),
      cycle_(cycle),
      scheduler_(scheduler),
      settlement_(settlement),
      metrics_(metrics),
      ledger_(ledger),
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
        ring.discard_corrupt(p.position);
        continue;
      case BandRing::PopKind::kStalled:
        if (stall_since_ns_[r] == 0 || stall_position_[r] != p.position) {
          stall_since_ns_[r] = cycle_.now_ns;
          stall_position_[r] = p.position;
        } else if (cycle_.now_ns - stall_since_ns_[r] >= claim_timeout_ns_) {
          if (ring.skip(p.position)) ++counters_.skipped;
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
  uint8_t band = 0;
  const bool valid =
      valid_request(seg_.record(slot), c.owner, seg_.geometry().slot_payload_bytes, band);
  ++counters_.submitted;
  rec_defaults(slot);
  if (!valid) {
    reject(slot, ctl, c);
    return false;
  }
  take(slot, c.generation, band);
  return true;
}

// Eligible from the moment the agent holds it (docs/DECISIONS.md): the
// agent's own clock, never a time a producer wrote.
void Intake::take(uint32_t slot, uint32_t generation, uint8_t band) {
  RequestRecord& rec = seg_.record(slot);
  const uint64_t eligible = cycle_.now_ns;
  rec.eligible_mono_ns = eligible;
  rec.retry_at_mono_ns = 0;
  metrics_.count(band, ledger_.take(slot), shm::Outcome::kSubmitted);
  scheduler_.enqueue(Pending{slot, generation, eligible, band});
  emitter_.emit(EventKind::kSubmitted, slot, Status::kPending);
}

// A request that fails the submit rules: DONE with INVALID_REQUEST, and its
// outcome goes to its producer.
void Intake::reject(uint32_t slot, uint64_t ctl, SlotCtl c) {
  ++counters_.rejected;
  RequestRecord& rec = seg_.record(slot);
  store_relaxed(rec.status, static_cast<uint8_t>(Status::kFailed));
  store_relaxed(rec.error, static_cast<uint8_t>(Errc::kInvalidRequest));
  rec.result_len = 0;
  const SlotCtl done = with_state(c, SlotState::kDone, c.owner);
  if (seg_.pool().transition(slot, ctl, done)) settlement_.deliver(slot, done.pack());
}

// A request cancelled before the agent took it from its band ring: counted
// as submitted and finished at once (its cell, met later, is stale).
void Intake::take_cancelled(uint32_t slot, uint64_t ctl) {
  ++counters_.submitted;
  const uint8_t column = ledger_.take(slot);
  rec_defaults(slot);
  metrics_.count(seg_.record(slot).band, column, shm::Outcome::kSubmitted);
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
