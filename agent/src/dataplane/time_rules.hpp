#pragma once
// TimeRules: SPEC §4's timers applied to the slots, once per duty cycle.
//
//   release_retries   ended backoffs: the request goes back to its band
//   expire_attempts   processing_timeout_ms after an attempt's start: it is
//                     taken back and fails with PROCESSING_TIMEOUT; one
//                     not started processing_timeout_ms after its dispatch
//                     goes back to its band, uncounted
//   expire_pending    queue_timeout_ms after a request became eligible
//                     without being dispatched: it ends as `timeout`
//
// The scheduler holds the timers and queues; this checks each due entry
// against its slot (an entry whose request moved on is dropped) and acts
// through the settlement.
#include <cstdint>

#include "dataplane/cycle_clock.hpp"
#include "dataplane/dispatcher.hpp"
#include "dataplane/ledger.hpp"
#include "dataplane/pending.hpp"
#include "dataplane/scheduler.hpp"
#include "dataplane/settlement.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq::agent {

class TimeRules {
 public:
  TimeRules(shm::Segment& seg, const CycleClock& cycle, Scheduler& scheduler,
            Dispatcher& dispatcher, Settlement& settlement, const Ledger& ledger) noexcept
      : seg_(seg),
        cycle_(cycle),
        scheduler_(scheduler),
        dispatcher_(dispatcher),
        settlement_(settlement),
        ledger_(ledger) {}

  // Each returns how many requests it moved on.
  int release_retries();
  int expire_attempts();
  // `all_queues`: the queues of types without a worker too (on the liveness
  // timer only; the bands and gathering batches every cycle).
  int expire_pending(bool all_queues);

 private:
  bool expire(const Pending& p);
  [[nodiscard]] bool live_attempt(const Timer& t, uint64_t& ctl, SlotCtl& c) const;
  bool time_out(uint32_t slot, uint64_t ctl, SlotCtl c);

  shm::Segment& seg_;
  const CycleClock& cycle_;
  Scheduler& scheduler_;
  Dispatcher& dispatcher_;
  Settlement& settlement_;
  const Ledger& ledger_;
};

}  // namespace perfq::agent
