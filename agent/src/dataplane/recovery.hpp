#pragma once
// Recovery: rebuilds the agent's state from the slots a previous agent left,
// once, when an agent re-attaches to a segment.
//
// The slot states are the truth; the band rings still hold what it had not
// drained (a slot is taken from its cell before the cell is consumed).
//
//   PENDING              back in its band (in request-id order), or behind
//                        its backoff
//   ASSIGNED, PROCESSING,
//   REPORTING            an attempt in flight: counted, its deadline
//                        restored; an ASSIGNED ref missing from the worker's
//                        dispatch ring is pushed again
//   REPORTED             settled with its result
//   CANCELLING           finished as cancelled
//   SEALING              its letter handed to the sink again
//   DONE                 its outcome delivered again if missing from the
//                        producer's completion ring
#include <cstdint>
#include <utility>
#include <vector>

#include "dataplane/dispatcher.hpp"
#include "dataplane/inflight.hpp"
#include "dataplane/ledger.hpp"
#include "dataplane/pending.hpp"
#include "dataplane/scheduler.hpp"
#include "dataplane/settlement.hpp"
#include "dataplane/wake_list.hpp"
#include "perfq/core/slot_pool.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq::agent {

class Recovery {
 public:
  Recovery(shm::Segment& seg, Scheduler& scheduler, Inflight& inflight, Dispatcher& dispatcher,
           Settlement& settlement, Ledger& ledger, WakeList& wake) noexcept
      : seg_(seg),
        scheduler_(scheduler),
        inflight_(inflight),
        dispatcher_(dispatcher),
        settlement_(settlement),
        ledger_(ledger),
        wake_(wake) {}

  // Bounded by the slot count. Data-plane thread, before the first cycle.
  void run();

 private:
  void recover(uint32_t slot);
  void queue_pending(uint32_t slot, SlotCtl c);
  void adopt_attempt(uint32_t slot, SlotCtl c);
  void settle_reported(uint32_t slot, uint64_t ctl, SlotCtl c);
  void reseal(uint32_t slot, uint64_t ctl);
  void redeliver(uint32_t slot, uint64_t ctl, SlotCtl c);

  shm::Segment& seg_;
  Scheduler& scheduler_;
  Inflight& inflight_;
  Dispatcher& dispatcher_;
  Settlement& settlement_;
  Ledger& ledger_;
  WakeList& wake_;
  std::vector<std::pair<uint64_t, Pending>> pending_[kBandCount];  // {request id, entry}
  std::vector<Timer> deadlines_;
};

}  // namespace perfq::agent
