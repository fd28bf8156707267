#include "dataplane/time_rules.hpp"

#include "dataplane/records.hpp"

namespace perfq::agent {

int TimeRules::release_retries() {
  int n = 0;
  Timer t{};
  // Bounded by the heap: each pass pops one timer.
  while (scheduler_.pop_due_retry(cycle_.now_ns, t)) {
    const SlotCtl c = SlotCtl::unpack(seg_.pool().load(t.slot));
    if (c.state != SlotState::kPending || c.generation != t.generation) continue;
    RequestRecord& rec = seg_.record(t.slot);
    const uint8_t band = ledger_.facts(t.slot).band;
    if (load_relaxed(rec.retry_at_mono_ns) == 0) continue;
    rec.retry_at_mono_ns = 0;
    rec.eligible_mono_ns = cycle_.now_ns;
    scheduler_.enqueue(Pending{t.slot, t.generation, cycle_.now_ns, band});
    ++n;
  }
  return n;
}

// The slot is taken back first, so the worker's late result is dropped by
// the CAS that guards writing it.
int TimeRules::expire_attempts() {
  SlotPool& pool = seg_.pool();
  const uint32_t clients = seg_.geometry().max_clients;
  int n = 0;
  Timer t{};
  // Bounded by the deadlines queued: each pass pops one.
  while (scheduler_.pop_due_deadline(cycle_.now_ns, t)) {
    uint64_t ctl = pool.load(t.slot);
    const SlotCtl c = SlotCtl::unpack(ctl);
    if (c.generation != t.generation || c.attempt != t.attempt || c.owner >= clients ||
        (c.state != SlotState::kAssigned && c.state != SlotState::kProcessing)) {
      continue;  // settled already, or being reported right now
    }
    // A dispatch taken back unstarted keeps its attempt number; its timer
    // must not end the next dispatch of that attempt.
    if (scheduler_.deadline_for(seg_.record(t.slot).dispatched_mono_ns) > t.at_ns) continue;
    const SlotCtl back = with_state(c, SlotState::kReported, c.owner);
    if (!pool.transition(t.slot, ctl, back)) continue;
    settlement_.settle(t.slot, back.pack(), AttemptResult::kError, Errc::kProcessingTimeout);
    ++n;
  }
  scheduler_.trim_deadlines([&pool](const Timer& d) {
    const SlotCtl c = SlotCtl::unpack(pool.load(d.slot));
    return c.generation == d.generation && c.attempt == d.attempt &&
           (c.state == SlotState::kAssigned || c.state == SlotState::kProcessing ||
            c.state == SlotState::kReporting);
  });
  return n;
}

// Each queue is in eligible order, so only fronts are looked at.
int TimeRules::expire_pending(bool all_queues) {
  auto expired = [this](const Pending& p) { return expire(p); };
  int n = scheduler_.expire_bands(cycle_.now_ns, expired);
  n += dispatcher_.expire_gathered(cycle_.now_ns, scheduler_.queue_timeout_ns(), expired);
  if (all_queues) n += scheduler_.expire_waiting(cycle_.now_ns, expired);
  return n;
}

bool TimeRules::expire(const Pending& p) {
  const uint64_t ctl = seg_.pool().load(p.slot);
  const SlotCtl c = SlotCtl::unpack(ctl);
  if (c.state != SlotState::kPending || c.generation != p.generation) return false;
  settlement_.finish(p.slot, ctl, Status::kTimeout, Errc::kQueueTimeout);
  return true;
}

}  // namespace perfq::agent
