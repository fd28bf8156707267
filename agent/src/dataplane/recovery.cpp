#include "dataplane/recovery.hpp"

#include <algorithm>

#include "dataplane/records.hpp"
#include "perfq/core/atomic.hpp"

namespace perfq::agent {

namespace {

// Accepted and not final: in the depth until finished.
bool live(SlotState s) noexcept {
  switch (s) {
    case SlotState::kPending:
    case SlotState::kAssigned:
    case SlotState::kProcessing:
    case SlotState::kReporting:
    case SlotState::kReported:
    case SlotState::kCancelling:
    case SlotState::kSealing:
      return true;
    default:
      return false;
  }
}

}  // namespace

void Recovery::run() {
  const uint32_t n = seg_.pool().count();
  for (uint32_t s = 0; s < n; ++s) recover(s);
  // Pending requests go back in request-id order: the order they were
  // submitted in, per band.
  for (auto& band : pending_) {
    std::sort(band.begin(), band.end(),
              [](const auto& x, const auto& y) { return x.first < y.first; });
    for (const auto& [id, p] : band) scheduler_.enqueue(p);
  }
  scheduler_.restore_deadlines(std::move(deadlines_));
  dispatcher_.invalidate_routes();
}

void Recovery::recover(uint32_t slot) {
  const uint64_t ctl = seg_.pool().load(slot);
  const SlotCtl c = SlotCtl::unpack(ctl);
  if (live(c.state)) {
    // The facts a previous agent validated are not kept: validated again,
    // made safe where they fail (the request is accepted; it finishes).
    Facts facts;
    (void)read_facts(seg_.record(slot), seg_.geometry().max_clients, facts);
    (void)ledger_.take(slot, facts);
  }
  switch (c.state) {
    case SlotState::kPending:
      queue_pending(slot, c);
      break;
    case SlotState::kAssigned:
    case SlotState::kProcessing:
    case SlotState::kReporting:
      adopt_attempt(slot, c);
      break;
    case SlotState::kReported:
      settle_reported(slot, ctl, c);
      break;
    case SlotState::kCancelling:
      settlement_.finish(slot, ctl, Status::kCancelled, Errc::kCancelled);
      break;
    case SlotState::kSealing:
      reseal(slot, ctl);
      break;
    case SlotState::kDone:
      redeliver(slot, ctl, c);
      break;
    default:
      break;
  }
}

void Recovery::queue_pending(uint32_t slot, SlotCtl c) {
  const RequestRecord& rec = seg_.record(slot);
  const uint64_t retry_at = load_relaxed(rec.retry_at_mono_ns);  // each field read once
  const uint8_t band = ledger_.facts(slot).band;
  if (retry_at != 0) {
    scheduler_.schedule_retry(Timer{retry_at, slot, c.generation, c.attempt});
  } else {
    pending_[band].push_back(
        {load_relaxed(rec.request_id),
         Pending{slot, c.generation, load_relaxed(rec.eligible_mono_ns), band}});
  }
}

// An attempt in flight: its worker is known before the first liveness pass
// (which must not start it afresh), it counts, and its deadline runs from
// its dispatch.
void Recovery::adopt_attempt(uint32_t slot, SlotCtl c) {
  if (c.owner >= seg_.geometry().max_clients) return;
  const RequestRecord& rec = seg_.record(slot);
  dispatcher_.adopt_worker(c.owner, load_relaxed(seg_.client(c.owner).incarnation));
  inflight_.open(slot, c.owner);
  deadlines_.push_back(
      Timer{scheduler_.deadline_for(rec.dispatched_mono_ns), slot, c.generation, c.attempt});
  // The previous agent may have died between assigning and pushing.
  const uint64_t ref = slot_ref(slot, c.generation);
  if (c.state == SlotState::kAssigned && !seg_.dispatch_ring(c.owner).contains_unread(ref)) {
    (void)seg_.dispatch_ring(c.owner).try_push(ref);
    wake_.worker(c.owner);
  }
}

void Recovery::settle_reported(uint32_t slot, uint64_t ctl, SlotCtl c) {
  // Counted as in flight so that settle's release balances.
  if (c.owner < seg_.geometry().max_clients) inflight_.open(slot, c.owner);
  settlement_.settle(slot, ctl, attempt_result(seg_.record(slot).result_kind),
                     Errc::kProcessorError);
}

// The previous agent decided failed/timeout and died before the letter was
// durable, or before it concluded: the letter is handed again (the sink
// drops a second copy of one it holds) and waited for.
void Recovery::reseal(uint32_t slot, uint64_t ctl) {
  const RequestRecord& rec = seg_.record(slot);
  const uint8_t st = rec.status;
  const uint8_t err = rec.error;
  const auto status =
      st == static_cast<uint8_t>(Status::kTimeout) ? Status::kTimeout : Status::kFailed;
  const Errc error = errc_valid(err) ? static_cast<Errc>(err) : Errc::kInternal;
  settlement_.seal(slot, ctl, status, error, /*recovered=*/true);
}

// A DONE slot a previous agent concluded: its facts were not kept, so the
// producer's incarnation is the record's (read once).
void Recovery::redeliver(uint32_t slot, uint64_t ctl, SlotCtl c) {
  const uint64_t ref = slot_ref(slot, c.generation);
  if (c.owner < seg_.geometry().max_clients &&
      !seg_.completion_ring(c.owner).contains_unread(ref)) {
    settlement_.deliver(slot, ctl, load_relaxed(seg_.record(slot).producer_incarnation));
  }
}

}  // namespace perfq::agent
