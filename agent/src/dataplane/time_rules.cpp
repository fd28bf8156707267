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

// SPEC §4 processing_timeout_ms counts from the attempt's start. When an
// attempt's dispatch deadline comes:
//   - never started (ASSIGNED): it is taken back uncounted and goes to the
//     front of its band, so a worker that holds more than it runs loses
//     what it could not start to a worker that can; the time it waited
//     counts against queue_timeout_ms, as any wait before a start does;
//   - started later than its dispatch: its deadline moves to its start;
//   - otherwise it is taken back and fails with PROCESSING_TIMEOUT.
// The slot is taken back first, so the worker's late result is dropped by
// the CAS that guards writing it.
int TimeRules::expire_attempts() {
  SlotPool& pool = seg_.pool();
  int n = 0;
  Timer t{};
  // Bounded by the deadlines queued: each pass pops one.
  while (scheduler_.pop_due_deadline(cycle_.now_ns, t)) {
    uint64_t ctl = 0;
    SlotCtl c{};
    if (!live_attempt(t, ctl, c)) continue;
    if (c.state == SlotState::kAssigned) {
      if (dispatcher_.return_unstarted(t.slot, ctl, c)) ++n;
      continue;
    }
    const uint64_t due =
        scheduler_.deadline_for(attempt_started_ns(seg_.record(t.slot), cycle_.now_ns));
    if (due > cycle_.now_ns) {
      scheduler_.defer_deadline(Timer{due, t.slot, t.generation, t.attempt});
      continue;
    }
    if (time_out(t.slot, ctl, c)) ++n;
  }
  // Bounded by the deferred deadlines: each pass pops one, and none is
  // deferred again.
  while (scheduler_.pop_due_deferred(cycle_.now_ns, t)) {
    uint64_t ctl = 0;
    SlotCtl c{};
    if (!live_attempt(t, ctl, c) || c.state != SlotState::kProcessing) continue;
    if (time_out(t.slot, ctl, c)) ++n;
  }
  scheduler_.trim_deadlines([&pool](const Timer& d) {
    const SlotCtl c = SlotCtl::unpack(pool.load(d.slot));
    return c.generation == d.generation && c.attempt == d.attempt &&
           (c.state == SlotState::kAssigned || c.state == SlotState::kProcessing ||
            c.state == SlotState::kReporting);
  });
  return n;
}

// Whether `t` is the deadline of the attempt in its slot now, held by a
// worker (ASSIGNED or PROCESSING).
bool TimeRules::live_attempt(const Timer& t, uint64_t& ctl, SlotCtl& c) const {
  ctl = seg_.pool().load(t.slot);
  c = SlotCtl::unpack(ctl);
  if (c.generation != t.generation || c.attempt != t.attempt ||
      c.owner >= seg_.geometry().max_clients ||
      (c.state != SlotState::kAssigned && c.state != SlotState::kProcessing)) {
    return false;  // settled already, or being reported right now
  }
  // A dispatch taken back unstarted keeps its attempt number; its timer
  // must not end the next dispatch of that attempt.
  return scheduler_.deadline_for(load_relaxed(seg_.record(t.slot).dispatched_mono_ns)) <= t.at_ns;
}

bool TimeRules::time_out(uint32_t slot, uint64_t ctl, SlotCtl c) {
  const SlotCtl back = with_state(c, SlotState::kReported, c.owner);
  if (!seg_.pool().transition(slot, ctl, back)) return false;
  settlement_.settle(slot, back.pack(), AttemptResult::kError, Errc::kProcessingTimeout);
  return true;
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
