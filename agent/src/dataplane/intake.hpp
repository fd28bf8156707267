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
#include <unordered_map>

#include "dataplane/counters.hpp"
#include "dataplane/cycle_clock.hpp"
#include "dataplane/emitter.hpp"
#include "dataplane/ledger.hpp"
#include "dataplane/registrations.hpp"
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
         Settlement& settlement, shm::MetricsWriter& metrics, Ledger& ledger, Registrations& regs,
         Emitter& emitter, Counters& counters) noexcept;

  // `check_claims`: look for claims left unpublished (on the liveness timer
  // only). Each returns the cells taken.
  int drain_bands(bool check_claims);
  int drain_cancels(bool check_claims);
  // On the liveness timer: looks over the next share of the slot pool (the
  // whole pool about once a second, and at once after a ring was rebuilt)
  // for requests no ring will bring: a QUEUED slot whose cell a scribbler
  // destroyed, a CANCELLING one whose canceller died before its push. Such
  // a slot is taken when it is seen unchanged on two passes.
  int sweep_slots(uint64_t liveness_interval_ms);

 private:
  template <class Take>
  int drain_ring(uint8_t ring, bool check_claims, Take&& take);
  // Takes a published slot; false for a slot rejected or not waiting.
  bool accept(uint32_t slot);
  void take(uint32_t slot, uint32_t generation, const Facts& facts);
  void reject(uint32_t slot, uint64_t ctl, SlotCtl c);
  void take_cancelled(uint32_t slot, uint64_t ctl);
  void rec_defaults(uint32_t slot);
  // A ring's cells cannot be trusted any more: rebuilt empty, and its
  // requests are taken from the slot states instead.
  void resync(uint8_t ring);
  // One slot of a sweep: true when it was taken or finished.
  bool sweep_one(uint32_t slot, bool at_once);

  shm::Segment& seg_;
  const CycleClock& cycle_;
  Scheduler& scheduler_;
  Settlement& settlement_;
  shm::MetricsWriter& metrics_;
  Ledger& ledger_;
  Registrations& regs_;
  Emitter& emitter_;
  Counters& counters_;
  const uint64_t claim_timeout_ns_;
  // Per MPSC ring, the stall being timed: since when the position at head
  // was seen claimed and unpublished, and the tail then. Every position
  // below that tail had been claimed by then, so once the timeout has
  // passed, each of them still unpublished is revoked at once: a producer
  // that died holding a batch's claims (try_push_n) holds its band for one
  // timeout, not one per cell.
  uint64_t stall_since_ns_[shm::kRingCount] = {};
  uint64_t stall_position_[shm::kRingCount] = {};
  uint64_t stall_tail_[shm::kRingCount] = {};
  uint32_t sweep_next_ = 0;                          // next slot a sweep looks at
  bool sweep_all_ = false;                           // a ring was rebuilt: look at every slot now
  std::unordered_map<uint32_t, uint64_t> suspects_;  // slot -> control word seen last pass
};

}  // namespace perfq::agent
