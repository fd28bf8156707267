#include "dataplane/settlement.hpp"

#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>

#include "dataplane/records.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/shm/status.hpp"

namespace perfq::agent {

Settlement::Settlement(shm::Segment& seg, const Config& cfg, const CycleClock& cycle,
                       Scheduler& scheduler, Inflight& inflight, shm::MetricsWriter& metrics,
                       Ledger& ledger, Registrations& regs, Emitter& emitter, Counters& counters,
                       WakeList& wake, DeadLetterSink& sink)
    : seg_(seg),
      cycle_(cycle),
      scheduler_(scheduler),
      inflight_(inflight),
      metrics_(metrics),
      ledger_(ledger),
      regs_(regs),
      emitter_(emitter),
      counters_(counters),
      wake_(wake),
      sink_(sink),
      max_retry_attempts_(cfg.max_retry_attempts) {}

int Settlement::settle_results(const std::vector<uint32_t>& workers) {
  SlotPool& pool = seg_.pool();
  int n = 0;
  for (const uint32_t w : workers) {
    SpscRing ring = seg_.result_ring(w);
    uint64_t ref = 0;
    for (uint32_t i = 0; i < ring.capacity() && ring.try_pop(ref); ++i) {
      const uint32_t slot = slot_ref_index(ref);
      if (slot >= pool.count()) {
        ++counters_.rejected;
        continue;
      }
      const uint64_t ctl = pool.load(slot);
      const SlotCtl c = SlotCtl::unpack(ctl);
      if (c.state != SlotState::kReported || c.owner != w ||
          c.generation != slot_ref_generation(ref)) {
        continue;  // a late or duplicate report
      }
      // The agent learns that an attempt ran together with its outcome.
      emitter_.emit(EventKind::kProcessing, slot, Status::kProcessing);
      settle(slot, ctl, attempt_result(seg_.record(slot).result_kind), Errc::kProcessorError);
      ++n;
    }
  }
  return n;
}

void Settlement::settle(uint32_t slot, uint64_t ctl, AttemptResult kind, Errc error) {
  PERFQ_ASSERT(slot < seg_.pool().count());
  const SlotCtl c = SlotCtl::unpack(ctl);
  (void)inflight_.release(slot);  // none when a previous agent dispatched it, or it was written off
  const RequestRecord& rec = seg_.record(slot);
  const uint8_t band = ledger_.facts(slot).band;
  metrics_.processed(band, ledger_.column(slot),
                     cycle_.since(attempt_started_ns(rec, cycle_.now_ns)));
  if (kind != AttemptResult::kOk) record_failure(slot, error);
  const bool retry = kind == AttemptResult::kError && c.attempt < max_retry_attempts_;
  if (retry) {
    const SlotCtl next = with_state(c, SlotState::kPending, kOwnerAgent);
    if (seg_.pool().transition(slot, ctl, next)) {
      ++counters_.retried;
      metrics_.count(band, ledger_.column(slot), shm::Outcome::kRetried);
      schedule_retry(slot, c);
      emitter_.emit(EventKind::kRetrying, slot, Status::kPending, error);
    }
    return;
  }
  if (kind == AttemptResult::kOk) {
    finish(slot, ctl, Status::kCompleted, Errc::kOk);
  } else {
    finish(slot, ctl, Status::kFailed, error);
  }
}

// SPEC §4: the delay after failed attempt k is retry_backoff_ms x 2^k. The
// record keeps the time, so a restarted agent honours the backoff.
void Settlement::schedule_retry(uint32_t slot, const SlotCtl& c) {
  const uint64_t at_ns = cycle_.now_ns + scheduler_.backoff_ns(c.attempt);
  seg_.record(slot).retry_at_mono_ns = at_ns;
  scheduler_.schedule_retry(Timer{at_ns, slot, c.generation, c.attempt});
}

// Appends one failed attempt to the slot's errorHistory. A processor's error
// text is its reply; the agent's own reasons get a fixed text.
void Settlement::record_failure(uint32_t slot, Errc code) {
  RequestRecord& rec = seg_.record(slot);
  const uint8_t failures = rec.failures;  // read once: a producer may scribble on it
  AttemptError& e = rec.history[failures % kAttemptHistory];
  e.at_unix_ns = cycle_.unix_now_ns();
  e.code = static_cast<uint8_t>(code);
  std::string_view text;
  if (code == Errc::kProcessorError) {
    const uint32_t len = std::min(rec.result_len, seg_.geometry().slot_payload_bytes);
    text = {reinterpret_cast<const char*>(seg_.result(slot)), len};
  } else if (code == Errc::kProcessingTimeout) {
    text = "attempt exceeded processing_timeout_ms";
  } else if (code == Errc::kWorkerDied) {
    text = "the worker running the attempt died";
  } else {
    text = errc_name(code);
  }
  e.len = static_cast<uint8_t>(std::min(text.size(), kAttemptMessageBytes));
  std::memcpy(e.message, text.data(), e.len);
  if (failures < 255) rec.failures = static_cast<uint8_t>(failures + 1);
}

void Settlement::finish(uint32_t slot, uint64_t ctl, Status status, Errc error) {
  RequestRecord& rec = seg_.record(slot);
  rec.finished_mono_ns = cycle_.now_ns;
  // Stored atomically: a status lookup may read them while the slot is
  // reused (it discards what it read; see store_shared_text).
  store_relaxed(rec.status, static_cast<uint8_t>(status));
  store_relaxed(rec.error, static_cast<uint8_t>(error));
  rec.retry_at_mono_ns = 0;
  if (status == Status::kFailed || status == Status::kTimeout) {
    // Not final yet: status lookups read SEALING as the step it was at.
    const SlotCtl held = with_state(SlotCtl::unpack(ctl), SlotState::kSealing, kOwnerAgent);
    if (!seg_.pool().transition(slot, ctl, held)) return;
    seal(slot, held.pack(), status, error, /*recovered=*/false);
    return;
  }
  conclude(slot, ctl, status, error);
}

void Settlement::seal(uint32_t slot, uint64_t sealing_ctl, Status status, Errc error,
                      bool recovered) {
  const uint64_t ticket = dead_letter(slot, status, error, recovered);
  sealing_.push_back(Sealing{ticket, slot, sealing_ctl, status, error});
  (void)conclude_sealed();
}

int Settlement::conclude_sealed() {
  if (sealing_.empty()) return 0;
  const uint64_t durable = sink_.durable();
  int n = 0;
  // Bounded by the sealed requests.
  while (!sealing_.empty() && sealing_.front().ticket <= durable) {
    const Sealing sealed = sealing_.front();
    sealing_.pop_front();
    conclude(sealed.slot, sealed.ctl, sealed.status, sealed.error);
    ++n;
  }
  return n;
}

// PROTOCOL §10: the status table has the outcome before the slot turns
// DONE, so before its producer can collect it and the slot be reused
// (status.hpp). The request's facts are the ones validated when it was
// taken, never the record's fields now.
void Settlement::conclude(uint32_t slot, uint64_t ctl, Status status, Errc error) {
  const Facts facts = ledger_.facts(slot);
  record_status(seg_.record(slot), facts, status, error);
  const SlotCtl done = with_state(SlotCtl::unpack(ctl), SlotState::kDone, facts.producer);
  if (!seg_.pool().transition(slot, ctl, done)) return;
  ledger_.conclude(slot);
  count_final(slot, facts.band, status, error);
  deliver(slot, done.pack(), facts.incarnation);
}

void Settlement::record_status(const RequestRecord& rec, const Facts& facts, Status status,
                               Errc error) {
  shm::StatusEntry e{};
  e.request_id = load_relaxed(rec.request_id);
  e.created_unix_ns = load_relaxed(rec.created_at_unix_ns);
  e.finished_unix_ns = cycle_.unix_now_ns();
  e.status = static_cast<uint8_t>(status);
  e.error = static_cast<uint8_t>(error);
  e.attempts = load_relaxed(rec.attempts);
  e.mode = facts.mode;
  e.priority = facts.priority;
  e.band = facts.band;
  copy_names(rec, e);
  shm::record_final(seg_, e);
}

// The final outcome's events, metrics and totals.
void Settlement::count_final(uint32_t slot, uint8_t band, Status status, Errc error) {
  emitter_.emit(status == Status::kCompleted   ? EventKind::kCompleted
                : status == Status::kTimeout   ? EventKind::kTimeout
                : status == Status::kCancelled ? EventKind::kCancelled
                                               : EventKind::kFailed,
                slot, status, error);
  if (status == Status::kFailed || status == Status::kTimeout) {
    emitter_.emit(EventKind::kDeadLettered, slot, status, error);
  }
  metrics_.count(band, ledger_.column(slot),
                 status == Status::kCompleted   ? shm::Outcome::kCompleted
                 : status == Status::kTimeout   ? shm::Outcome::kTimeout
                 : status == Status::kCancelled ? shm::Outcome::kCancelled
                                                : shm::Outcome::kFailed);
  switch (status) {
    case Status::kCompleted:
      ++counters_.completed;
      break;
    case Status::kTimeout:
      ++counters_.timed_out;
      break;
    case Status::kCancelled:
      ++counters_.cancelled;
      break;
    default:
      ++counters_.failed;
      break;
  }
}

// PROTOCOL §5: an outcome goes to the client that submitted the request,
// while that same registration is active and a producer (roles and
// incarnation as the agent copied them when it first saw the client
// active). Otherwise nobody will collect it, and the slot is released.
void Settlement::deliver(uint32_t slot, uint64_t done_ctl, uint16_t incarnation) {
  const SlotCtl c = SlotCtl::unpack(done_ctl);
  const uint32_t p = c.owner;
  // The agent's copy of the registration, not the record (registrations.hpp).
  if (!regs_.delivers_to(p, incarnation)) {
    (void)seg_.pool().release(slot, done_ctl);
    return;
  }
  const uint64_t ref = slot_ref(slot, c.generation);
  if (!seg_.completion_ring(p).try_push(ref)) undelivered_.push_back({slot, done_ctl, incarnation});
  wake_.producer(p);
}

void Settlement::redeliver() {
  if (undelivered_.empty()) return;
  std::vector<Undelivered> again;
  again.swap(undelivered_);
  for (const Undelivered& u : again) {
    // Only while the slot still holds that outcome (a producer may have
    // collected it through a duplicate entry, and the slot moved on).
    if (seg_.pool().load(u.slot) == u.done_ctl) deliver(u.slot, u.done_ctl, u.incarnation);
  }
}

// Hands a failed or timed-out request to the dead-letter sink, with every
// field SPEC §5 lists, and returns its ticket. Nothing of it is logged. The
// record is shared memory a broken producer may scribble on after the agent
// took it: each field is read once and nothing out of range reaches the
// journal.
uint64_t Settlement::dead_letter(uint32_t slot, Status status, Errc reason, bool recovered) {
  const RequestRecord& rec = seg_.record(slot);
  DeadLetter d;
  d.request_id = rec.request_id;
  d.user_id.assign(rec.user_id, std::min<size_t>(rec.user_len, kUserIdMaxBytes));
  d.type.assign(rec.type, std::min<size_t>(rec.type_len, kTypeMaxBytes));
  const Facts& facts = ledger_.facts(slot);
  d.mode = static_cast<Mode>(facts.mode);
  d.priority = facts.priority;
  const uint32_t len = std::min(rec.payload_len, seg_.geometry().slot_payload_bytes);
  d.payload.assign(seg_.payload(slot), seg_.payload(slot) + len);
  d.metadata.assign(rec.metadata, std::min<size_t>(rec.metadata_len, kMetadataMaxBytes));
  d.status = status;
  d.reason = reason;
  d.attempt_count = rec.attempts;
  d.first_attempt_unix_ns = rec.first_attempt_unix_ns;
  const uint8_t failures = rec.failures;
  const uint8_t kept = std::min<uint8_t>(failures, kAttemptHistory);
  for (uint8_t k = 0; k < kept; ++k) {
    const AttemptError& e = rec.history[(failures - kept + k) % kAttemptHistory];
    const uint8_t code = e.code;
    d.history.push_back(
        AttemptFailure{e.at_unix_ns, errc_valid(code) ? static_cast<Errc>(code) : Errc::kInternal,
                       std::string(e.message, std::min<size_t>(e.len, kAttemptMessageBytes))});
  }
  d.last_attempt_unix_ns = d.history.empty() ? 0 : d.history.back().at_unix_ns;
  return sink_.accept(std::move(d), recovered);
}

}  // namespace perfq::agent
