#pragma once
// Intake: takes what producers published into the agent.
//
// Each duty cycle drains the four band rings and the cancel ring, a bounded
// number of cells each. A slot from a band ring is checked against the
// submit rules (everything a broken producer could have got wrong), moved
// QUEUED -> PENDING and queued in the scheduler; one that fails is rejected
// at once (DONE with INVALID_REQUEST). A slot from the cancel ring is
// finished as `cancelled`. A producer's claim left unpublished for
// ring_claim_timeout_ms is revoked, so nobody waits on a process that may
// be dead.
#include <cstdint>

#include "dataplane/counters.hpp"
#include "dataplane/cycle_clock.hpp"
#include "dataplane/emitter.hpp"
#include "dataplane/ledger.hpp"
#include "dataplane/scheduler.hpp"
#include "dataplane/settlement.hpp"
#include "perfq/agent/config.hpp"
#include "perfq/shm/layout.hpp"
#include "perfq/shm/metrics.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq::agent {

class Intake {
 public:
  Intake(shm::Segment& seg, const Config& cfg, const CycleClock& cycle, Scheduler& scheduler,
         Settlement& settlement, shm::MetricsWriter& metrics, Ledger& ledger, Emitter& emitter,
         Counters& counters) noexcept;

  // `check_claims`: look for claims left unpublished (on the liveness timer
  // only). Each returns the cells taken.
  int drain_bands(bool check_claims);
  int drain_cancels(bool check_claims);

 private:
  template <class Take>
  int drain_ring(uint8_t ring, bool check_claims, Take&& take);
  // Takes a published slot; false for a slot rejected or not waiting.
  bool accept(uint32_t slot);
  void take(uint32_t slot, uint32_t generation, uint8_t band);
  void reject(uint32_t slot, uint64_t ctl, SlotCtl c);
  void take_cancelled(uint32_t slot, uint64_t ctl);
  void rec_defaults(uint32_t slot);

  shm::Segment& seg_;
  const CycleClock& cycle_;
  Scheduler& scheduler_;
  Settlement& settlement_;
  shm::MetricsWriter& metrics_;
  Ledger& ledger_;
  Emitter& emitter_;
  Counters& counters_;
  const uint64_t claim_timeout_ns_;
  uint64_t stall_since_ns_[shm::kRingCount] = {};  // per MPSC ring: first seen stalled
  uint64_t stall_position_[shm::kRingCount] = {};
};

}  // namespace perfq::agent
