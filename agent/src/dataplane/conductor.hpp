#pragma once
// Conductor: owns a queue's segment and runs its data plane as a duty cycle.
//
// One data-plane thread calls do_work() in a loop inside an idle strategy.
// The conductor keeps the cycle's clock and the order of its steps; each
// step belongs to a collaborator that owns its state:
//
//   do_work()
//     heartbeat; every liveness_interval_ms: ClientWatch::pass, counters
//     Intake       drain band rings and the cancel ring into the Scheduler
//     Settlement   settle results from the workers' result rings
//     TimeRules    processing deadlines, ended backoffs, queue timeouts
//     Dispatcher   bands -> workers' dispatch rings (and batches)
//     Settlement   conclude sealed requests, deliver outcomes again
//     WakeList     one notify per client that got something
//
// Shared by reference among them: the CycleClock, Counters, the Ledger
// (queue depth), Inflight (dispatches out), the Emitter (events) and the
// WakeList. All of it is private to the data-plane thread; everything
// another process must see lives in the segment, so a restarted agent
// carries on from it (Recovery).
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>

#include "dataplane/client_watch.hpp"
#include "dataplane/counters.hpp"
#include "dataplane/cycle_clock.hpp"
#include "dataplane/dispatcher.hpp"
#include "dataplane/emitter.hpp"
#include "dataplane/inflight.hpp"
#include "dataplane/intake.hpp"
#include "dataplane/ledger.hpp"
#include "dataplane/registrations.hpp"
#include "dataplane/scheduler.hpp"
#include "dataplane/settlement.hpp"
#include "dataplane/time_rules.hpp"
#include "dataplane/wake_list.hpp"
#include "perfq/agent/config.hpp"
#include "perfq/agent/dead_letter.hpp"
#include "perfq/core/clock.hpp"
#include "perfq/core/result.hpp"
#include "perfq/shm/metrics.hpp"

namespace perfq::shm {
class Segment;
}  // namespace perfq::shm

namespace perfq::agent {

class IoLoop;

class Conductor {
 public:
  // Creates or re-attaches to the segment; fails if another agent runs.
  // `sink` receives every dead letter; none: a bounded in-memory list
  // (memory_dead_letters()).
  [[nodiscard]] static Result<std::unique_ptr<Conductor>> open(const Config& cfg,
                                                               const Clock& clock = system_clock(),
                                                               DeadLetterSink* sink = nullptr);
  ~Conductor();
  Conductor(const Conductor&) = delete;
  Conductor& operator=(const Conductor&) = delete;

  // One duty cycle. Returns how much it did (0: idle). Data-plane thread only.
  int do_work();

  // Runs duty cycles until `stop` (or, with drain_timeout_ms, until a drain
  // that `stop` starts ends), or until a drain ends, parking on the
  // doorbell when idle.
  void run(const std::atomic<bool>& stop);

  // Drain (any thread): the segment says kDraining, so producers admit
  // nothing new (QUEUE_FULL, "the agent is draining"); what is queued, in
  // flight or waiting for a retry is finished; run() returns once nothing
  // is left, or `timeout_ms` from the first request at the latest. Later
  // requests do not move the deadline.
  void request_drain(uint64_t timeout_ms) noexcept;

  // What a stop left in the segment (after run() returned).
  struct Left {
    bool drained = false;  // a drain ran and finished everything
    bool drain_timed_out = false;
    uint64_t depth = 0;      // accepted and not final: pending, retrying or in flight
    uint64_t in_flight = 0;  // of them, dispatched to a worker
  };
  [[nodiscard]] Left left() const noexcept { return left_; }

  // Marks the segment's agent as stopped (requests stay for the next agent).
  void shutdown() noexcept;

  [[nodiscard]] std::shared_ptr<shm::Segment> segment() const noexcept { return seg_; }
  [[nodiscard]] bool reattached() const noexcept { return reattached_; }
  [[nodiscard]] const Config& config() const noexcept { return cfg_; }
  // The default sink, when open() was given none.
  [[nodiscard]] const MemoryDeadLetters* memory_dead_letters() const noexcept {
    return own_sink_.get();
  }

 private:
  Conductor(const Config& cfg, const Clock& clock, std::shared_ptr<shm::Segment> seg,
            bool reattached, DeadLetterSink& sink, std::unique_ptr<MemoryDeadLetters> own_sink);
  void start();
  void publish_start();
  void roll_metrics(uint64_t now_ns);
  void liveness_tick(uint64_t now_ns);
  int restore_header();
  void publish_counters();
  [[nodiscard]] bool work_visible();
  // Whether a requested drain has begun here, and whether it is over.
  [[nodiscard]] bool drain_over(uint64_t now_ns);

  const Config cfg_;
  CycleClock cycle_;
  std::shared_ptr<shm::Segment> seg_;  // set before the collaborators, which hold *seg_
  const bool reattached_;
  std::unique_ptr<IoLoop> io_;
  std::unique_ptr<MemoryDeadLetters> own_sink_;

  // Shared among the collaborators (declared before them: they hold references).
  shm::MetricsWriter metrics_;
  Counters counters_;
  uint32_t pid_ = 0;  // this agent's, as published in the header
  uint64_t start_ticks_ = 0;
  uint64_t pid_ns_ = 0;
  std::array<char, sizeof(shm::SegmentHeader::socket_path)> socket_path_{};  // as published
  Ledger ledger_;
  Registrations regs_;
  Inflight inflight_;
  Emitter emitter_;
  WakeList wake_;
  // The collaborators, each owning its state.
  Scheduler scheduler_;
  Dispatcher dispatcher_;
  Settlement settlement_;
  ClientWatch watch_;
  Intake intake_;
  TimeRules time_rules_;

  uint64_t next_roll_ns_ = 0;  // monotonic time of the next minute boundary
  uint64_t next_liveness_ns_ = 0;
  bool was_full_ = false;  // for queue.full / queue.empty edges
  bool was_empty_ = true;
  // Drain: the deadline a request set (monotonic ns; 0: none), written by
  // any thread once; the state the header shows (kRunning, kDraining).
  std::atomic<uint64_t> drain_deadline_ns_{0};
  uint32_t state_ = static_cast<uint32_t>(shm::AgentState::kRunning);
  Left left_;
};

}  // namespace perfq::agent
