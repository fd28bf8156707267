#pragma once
// Settlement: how an attempt ends and how a request reaches its final state.
//
//   settle   an attempt's result (or its failure: timeout, worker died):
//            a failed attempt with attempts left goes back to PENDING behind
//            its backoff; anything else finishes.
//   finish   completed and cancelled requests conclude at once; failed and
//            timed-out ones go to SEALING and hand their dead letter to the
//            sink (seal), concluding once the sink says it is durable
//            (conclude_sealed, in ticket order).
//   conclude DONE: the status table, the events, the counters, then deliver
//            the outcome to its producer's completion ring (a full ring: the
//            outcome is delivered again next cycle).
//
//   REPORTED --settle--> PENDING (retry, after backoff)
//                   \--> finish --> DONE ------------------> deliver
//                               \-> SEALING --durable--> DONE -> deliver
#include <cstdint>
#include <deque>
#include <utility>
#include <vector>

#include "dataplane/counters.hpp"
#include "dataplane/cycle_clock.hpp"
#include "dataplane/emitter.hpp"
#include "dataplane/inflight.hpp"
#include "dataplane/ledger.hpp"
#include "dataplane/registrations.hpp"
#include "dataplane/scheduler.hpp"
#include "dataplane/wake_list.hpp"
#include "perfq/agent/config.hpp"
#include "perfq/agent/dead_letter.hpp"
#include "perfq/core/request.hpp"
#include "perfq/shm/metrics.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq::agent {

class Settlement {
 public:
  Settlement(shm::Segment& seg, const Config& cfg, const CycleClock& cycle, Scheduler& scheduler,
             Inflight& inflight, shm::MetricsWriter& metrics, Ledger& ledger, Registrations& regs,
             Emitter& emitter, Counters& counters, WakeList& wake, DeadLetterSink& sink);

  // The duty cycle's step: the result rings of `workers`, each up to its
  // capacity. Returns the attempts settled.
  int settle_results(const std::vector<uint32_t>& workers);

  // The attempt in `slot` (control word `ctl`, REPORTED or taken back) ended
  // with `kind`; `error` says why when it failed. Its dispatch is released.
  void settle(uint32_t slot, uint64_t ctl, AttemptResult kind, Errc error);
  // The final transition: writes the outcome, hands the slot to its
  // producer (a failure or timeout first through seal()).
  void finish(uint32_t slot, uint64_t ctl, Status status, Errc error);
  // Hands the letter to the sink; the request concludes once the sink says
  // its ticket is durable (now, for a sink that is durable at once).
  // `recovered`: a restarted agent found the slot SEALING.
  void seal(uint32_t slot, uint64_t sealing_ctl, Status status, Errc error, bool recovered);
  // Concludes, in ticket order, the sealed requests whose letters are
  // durable. Returns how many.
  int conclude_sealed();
  // Pushes a DONE outcome to its producer's completion ring.
  // `incarnation`: of the producer registration the outcome is for.
  void deliver(uint32_t slot, uint64_t done_ctl, uint16_t incarnation);
  // Outcomes whose completion ring was full, again.
  void redeliver();

  // Whether a sealed request could conclude now (the idle strategy's check).
  [[nodiscard]] bool sealed_durable() const noexcept {
    return !sealing_.empty() && sealing_.front().ticket <= sink_.durable();
  }

 private:
  // A failed or timed-out request in SEALING, until the sink makes its
  // letter durable.
  struct Sealing {
    uint64_t ticket;
    uint32_t slot;
    uint64_t ctl;  // the SEALING control word
    Status status;
    Errc error;
  };

  void schedule_retry(uint32_t slot, const SlotCtl& c);
  void conclude(uint32_t slot, uint64_t ctl, Status status, Errc error);
  void record_status(const RequestRecord& rec, const Facts& facts, Status status, Errc error);
  void count_final(uint32_t slot, uint8_t band, Status status, Errc error);
  void record_failure(uint32_t slot, Errc code);
  [[nodiscard]] uint64_t dead_letter(uint32_t slot, Status status, Errc reason, bool recovered);

  shm::Segment& seg_;
  const CycleClock& cycle_;
  Scheduler& scheduler_;
  Inflight& inflight_;
  shm::MetricsWriter& metrics_;
  Ledger& ledger_;
  Registrations& regs_;
  Emitter& emitter_;
  Counters& counters_;
  WakeList& wake_;
  DeadLetterSink& sink_;
  const uint64_t max_retry_attempts_;

  std::deque<Sealing> sealing_;  // in ticket order
  struct Undelivered {
    uint32_t slot;
    uint64_t done_ctl;
    uint16_t incarnation;
  };
  std::vector<Undelivered> undelivered_;  // the producer's completion ring was full
};

}  // namespace perfq::agent
