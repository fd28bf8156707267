#pragma once
// Agent: owns a queue's segment and runs its data plane as a duty cycle.
//
// One data-plane thread calls do_work() in a loop inside an idle strategy:
// drain the band rings into the scheduler, dispatch by band to workers'
// dispatch rings, settle results from their result rings, deliver outcomes
// to producers' completion rings, and on a timer watch the clients' liveness.
// All scheduling state is private to that thread; everything another process
// must see lives in the segment, so a restarted agent carries on from it.
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "perfq/agent/config.hpp"
#include "perfq/agent/dead_letter.hpp"
#include "perfq/core/clock.hpp"
#include "perfq/core/event_ring.hpp"
#include "perfq/core/request.hpp"
#include "perfq/core/result.hpp"
#include "perfq/core/slot_pool.hpp"
#include "perfq/shm/layout.hpp"
#include "perfq/shm/metrics.hpp"

namespace perfq::shm {
class Segment;
struct AgentCounters;
}  // namespace perfq::shm

namespace perfq::agent {

class IoLoop;

class Agent {
 public:
  // Creates or re-attaches to the segment; fails if another agent runs.
  // `sink` receives every dead letter; none: a bounded in-memory list
  // (memory_dead_letters()).
  [[nodiscard]] static Result<std::unique_ptr<Agent>> open(const Config& cfg,
                                                           const Clock& clock = system_clock(),
                                                           DeadLetterSink* sink = nullptr);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // One duty cycle. Returns how much it did (0: idle). Data-plane thread only.
  int do_work();

  // Runs duty cycles until `stop`, parking on the doorbell when idle.
  void run(const std::atomic<bool>& stop);

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
  struct WorkerView {
    uint32_t incarnation = 0;
    uint32_t type_count = 0;
    uint32_t inflight = 0;
    uint32_t max_inflight = 0;
    bool wake = false;
    bool evicted = false;  // alive but silent: no dispatches, results still settled
  };
  struct TypeRoute {
    std::vector<uint32_t> workers;        // every worker that registered the type
    std::vector<uint32_t> batch_workers;  // those with a batch processor for it
    uint32_t next = 0;                    // round-robin cursors
    uint32_t batch_next = 0;
  };
  // A batch dispatch in flight: it counts once against max_concurrent_workers
  // and its worker's max_inflight until its last item settles.
  struct OpenBatch {
    uint32_t worker;
    uint32_t remaining;
  };
  struct Pending {
    uint32_t slot;
    uint32_t generation;
    uint64_t eligible_ns;  // dispatchable since (queue timeout and aging count from here)
    uint8_t band;          // kept here: the slot may hold another request by the time a
                           // stale entry is dropped
  };
  // A failed attempt's backoff, or an attempt's processing deadline.
  struct Timer {
    uint64_t at_ns;
    uint32_t slot;
    uint32_t generation;
    uint8_t attempt;
    friend bool operator>(const Timer& a, const Timer& b) { return a.at_ns > b.at_ns; }
  };
  // Lets maps keyed by std::string be searched with a string_view (no
  // allocation per dispatch).
  struct TypeHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  template <class V>
  using TypeMap = std::unordered_map<std::string, V, TypeHash, std::equal_to<>>;

  Agent(const Config& cfg, const Clock& clock, std::shared_ptr<shm::Segment> seg, bool reattached);
  void start();
  void recover();
  template <class Take>
  int drain_ring(uint8_t ring, bool check_claims, Take&& take);
  int drain_bands(bool check_claims);
  int drain_cancels(bool check_claims);
  void take_cancelled(uint32_t slot, uint64_t ctl);
  void rec_defaults(uint32_t slot);
  int dispatch();
  // Batch mode (SPEC §5): batch requests of a type gather here until
  // batch_size of them wait or the oldest has waited batch_interval_ms.
  void gather(std::string_view type, const Pending& p);
  int flush_batches(bool due_only_full);
  int flush_batch(std::deque<Pending>& g, TypeRoute& r);
  void ungather(std::deque<Pending>& g);
  [[nodiscard]] static uint32_t pick_worker(const std::vector<uint32_t>& ws, uint32_t& cursor,
                                            const std::vector<WorkerView>& views) noexcept;
  // Writes the attempt into the slot and moves it PENDING -> ASSIGNED.
  bool assign(const Pending& p, uint64_t ctl, uint32_t worker);
  void unassign(const Pending& p, uint32_t worker);
  void note_dispatched(const Pending& p, uint32_t worker, uint8_t attempt);
  // An attempt settled or was taken back: its dispatch leaves the counts
  // once (a batch's, when its last item does).
  void release_dispatch(uint32_t slot, uint32_t worker);
  int settle_results();
  void deliver(uint32_t slot, uint64_t done_ctl);
  void settle(uint32_t slot, uint64_t ctl, AttemptResult kind, Errc error);
  void requeue(uint32_t slot, uint32_t generation, Band band, uint64_t eligible_ns);
  void schedule_retry(uint32_t slot, uint32_t generation, uint8_t attempt, uint64_t at_ns);
  void finish(uint32_t slot, uint64_t ctl, Status status, Errc error);
  void seal(uint32_t slot, uint64_t sealing_ctl, Status status, Errc error, bool recovered);
  int conclude_sealed();
  void conclude(uint32_t slot, uint64_t ctl, Status status, Errc error);
  void record_failure(uint32_t slot, Errc code);
  // Publishes an event if anyone reads them (a reader polled lately).
  void emit(EventKind kind, uint32_t slot, Status status, Errc error = Errc::kOk);
  [[nodiscard]] uint64_t dead_letter(uint32_t slot, Status status, Errc reason, bool recovered);
  int release_retries();
  int expire_attempts();
  int expire_pending(bool all_queues);
  [[nodiscard]] int pick_band(const bool blocked[kBandCount]) const noexcept;
  [[nodiscard]] uint64_t backoff_ns(uint8_t failed_attempt) noexcept;
  bool accept(uint32_t slot);
  void watch_clients(uint64_t now_ns);
  void reclaim_producer(uint32_t id);
  // `gone`: the process is dead or closed. Otherwise (eviction) attempts
  // being reported are left to finish.
  void reclaim_worker(uint32_t id, bool gone);
  void refresh_routes();
  [[nodiscard]] bool worker_silent(uint32_t id) noexcept;
  void evict_worker(uint32_t id);
  void wake_clients();
  void publish_counters();
  [[nodiscard]] std::string_view type_of(uint32_t slot) const noexcept;
  uint8_t note_column(uint32_t slot);

  Config cfg_;
  const Clock& clock_;
  std::shared_ptr<shm::Segment> seg_;
  bool reattached_ = false;
  std::unique_ptr<IoLoop> io_;
  std::unique_ptr<MemoryDeadLetters> own_sink_;
  DeadLetterSink* sink_ = nullptr;

  std::deque<Pending> bands_[kBandCount];  // each in eligible order
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> retries_;  // backoffs
  std::deque<Timer> attempts_;                // processing deadlines, in dispatch order
  uint64_t rng_ = 0x9e37'79b9'7f4a'7c15ull;   // retry jitter (xorshift64)
  TypeMap<std::deque<Pending>> no_worker_;    // by type
  uint64_t no_worker_band_[kBandCount] = {};  // entries of no_worker_ per band
  TypeMap<TypeRoute> routes_;
  TypeMap<std::deque<Pending>> gathering_;   // batch requests by type, in arrival order
  uint64_t gathered_band_[kBandCount] = {};  // entries of gathering_ per band
  std::vector<uint32_t> batch_of_;           // by slot: its open batch, 0 for none
  std::unordered_map<uint32_t, OpenBatch> open_batches_;
  uint32_t next_batch_ = 1;
  std::vector<Pending> batch_items_;  // flush_batch scratch
  std::vector<uint64_t> batch_refs_;
  std::vector<WorkerView> workers_;          // by client id
  std::vector<uint64_t> registering_since_;  // by client id: first seen kRegistering
  std::vector<uint32_t> active_workers_;     // ids with workers_[id].incarnation != 0
  std::vector<uint8_t> producer_wake_;       // by client id
  std::vector<uint32_t> to_wake_;            // producers and workers to notify this cycle
  uint64_t now_ns_ = 0;
  EventRing events_{};
  bool events_on_ = false;  // a reader polled within kEventReaderIdleNs
  bool was_full_ = false;   // for queue.full / queue.empty edges
  bool was_empty_ = true;   // CLOCK_MONOTONIC at the start of the cycle
  std::vector<std::pair<uint32_t, uint64_t>> undelivered_;  // {slot, DONE ctl}: ring was full
  // Failed/timed-out requests in SEALING, in ticket order, until the sink
  // makes their letters durable.
  struct Sealing {
    uint64_t ticket;
    uint32_t slot;
    uint64_t ctl;  // the SEALING control word
    Status status;
    Errc error;
  };
  std::deque<Sealing> sealing_;
  uint64_t inflight_ = 0;  // dispatches out (a batch counts once)
  uint64_t live_ = 0;      // accepted requests not yet final: the queue depth
  shm::MetricsWriter metrics_;
  uint64_t next_roll_ns_ = 0;      // monotonic time of the next minute boundary
  std::vector<uint8_t> column_;    // by slot: the request's metrics column
  std::vector<uint8_t> accepted_;  // by slot: counted in live_ (taken, not yet final)
  uint64_t stall_since_ns_[shm::kRingCount] = {};  // per MPSC ring: first seen stalled
  uint64_t stall_position_[shm::kRingCount] = {};
  uint64_t next_liveness_ns_ = 0;
  bool routes_dirty_ = true;

  static const std::pair<uint64_t Agent::*, uint64_t shm::AgentCounters::*> kTotals[14];
  // Counters, published to the segment header once per cycle.
  uint64_t submitted_ = 0, dispatched_ = 0, completed_ = 0, failed_ = 0, retried_ = 0;
  uint64_t rejected_ = 0, skipped_ = 0, reclaimed_ = 0, redispatched_ = 0, stale_cells_ = 0,
           timed_out_ = 0, evicted_ = 0, cancelled_ = 0, batches_ = 0;
};

}  // namespace perfq::agent
