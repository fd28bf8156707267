#pragma once
// Dispatcher: hands pending requests to workers.
//
// It routes by type (round-robin over the workers registered for the type
// that have room), moves a slot PENDING -> ASSIGNED and pushes its ref to the
// worker's dispatch ring, while fewer than max_concurrent_workers dispatches
// are out (Inflight counts them). Batch mode (SPEC §5): a batch request's
// first attempt gathers by type until batch_size wait or the oldest has
// waited batch_interval_ms, then goes as one dispatch (a header and the refs
// in one ring publish) to a worker with a batch processor for the type.
//
// The worker views are the agent's picture of each worker record (its
// incarnation, what it may hold, whether it is evicted); the client watch
// keeps them current and routes are rebuilt from them when they change.
#include <cstdint>
#include <string_view>
#include <vector>

#include "dataplane/counters.hpp"
#include "dataplane/cycle_clock.hpp"
#include "dataplane/emitter.hpp"
#include "dataplane/inflight.hpp"
#include "dataplane/ledger.hpp"
#include "dataplane/pending.hpp"
#include "dataplane/scheduler.hpp"
#include "dataplane/type_queues.hpp"
#include "dataplane/wake_list.hpp"
#include "perfq/agent/config.hpp"
#include "perfq/shm/metrics.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq::agent {

class Dispatcher {
 public:
  Dispatcher(shm::Segment& seg, const Config& cfg, const CycleClock& cycle, Scheduler& scheduler,
             Inflight& inflight, shm::MetricsWriter& metrics, const Ledger& ledger,
             Emitter& emitter, Counters& counters, WakeList& wake);

  void resize(uint32_t clients) { views_.assign(clients, WorkerView{}); }

  // The duty cycle's dispatch step: due batches, then bands in pick_band
  // order while dispatches may go out, then batches filled meanwhile.
  // Returns the requests dispatched.
  int dispatch();

  // ---- the worker views (client watch, recovery)
  // Record `id` is an active worker of `incarnation` with `type_count` types
  // registered. A new incarnation starts afresh: what an older one held is
  // written off (its slots settle without counting).
  void see_worker(uint32_t id, uint32_t incarnation, uint32_t type_count);
  // Recovery: record `id` holds attempts dispatched by a previous agent.
  void adopt_worker(uint32_t id, uint32_t incarnation) noexcept;
  // Alive but silent: no more dispatches; its results are still settled.
  void mark_evicted(uint32_t id) noexcept;
  // Closed or dead: its view and its dispatches are gone.
  void forget_worker(uint32_t id) noexcept;
  // An attempt its worker never started is not an attempt: the slot goes
  // back to the front of its band with its attempt number as before the
  // dispatch. False when the worker moved the slot on first.
  [[nodiscard]] bool return_unstarted(uint32_t slot, uint64_t ctl, SlotCtl c);
  void invalidate_routes() noexcept { routes_dirty_ = true; }
  void refresh_routes_if_dirty() {
    if (routes_dirty_) refresh_routes();
  }
  // The workers whose result rings are read (evicted ones too).
  [[nodiscard]] const std::vector<uint32_t>& active_workers() const noexcept {
    return active_workers_;
  }

  // ---- gathering batches (the time rules, the published depth)
  template <class Expired>
  int expire_gathered(uint64_t now_ns, uint64_t limit_ns, Expired&& expired) {
    return gathering_.expire(now_ns, limit_ns, expired);
  }
  [[nodiscard]] uint64_t gathered(uint8_t band) const noexcept { return gathering_.in_band(band); }

 private:
  static constexpr uint32_t kNoWorker = UINT32_MAX;
  struct WorkerView {
    uint32_t incarnation = 0;  // 0: not a known worker
    uint32_t type_count = 0;
    uint32_t max_inflight = 0;
    bool evicted = false;  // alive but silent: no dispatches, results still settled
  };
  struct TypeRoute {
    std::vector<uint32_t> workers;        // every worker that registered the type
    std::vector<uint32_t> batch_workers;  // those with a batch processor for it
    uint32_t next = 0;                    // round-robin cursors
    uint32_t batch_next = 0;
  };
  enum class Step : uint8_t { kDispatched, kMoved, kBlocked };

  // The front of `band`: dispatched, moved elsewhere (dropped as stale, to
  // the no-worker or gathering queue), or blocked (its workers are full).
  Step dispatch_front(int band);
  void gather(std::string_view type, const Pending& p);
  int flush_batches();
  int flush_batch(TypeQueues::Queue& g, TypeRoute& r);
  // Assigns up to batch_size items from the front of `g` to `worker`, into
  // batch_items_ and batch_refs_ (behind a header slot).
  void collect_batch(TypeQueues::Queue& g, uint32_t worker);
  [[nodiscard]] uint32_t pick_worker(const std::vector<uint32_t>& ws,
                                     uint32_t& cursor) const noexcept;
  // Writes the attempt into the slot and moves it PENDING -> ASSIGNED.
  bool assign(const Pending& p, uint64_t ctl, uint32_t worker);
  // Only a worker that corrupted its own ring gets here: the attempt is taken
  // back; the request keeps its place for the next cycle.
  void unassign(const Pending& p, uint32_t worker);
  void note_dispatched(const Pending& p, uint32_t worker, uint8_t attempt);
  void refresh_routes();
  void route_worker(uint32_t w);

  shm::Segment& seg_;
  const CycleClock& cycle_;
  Scheduler& scheduler_;
  Inflight& inflight_;
  shm::MetricsWriter& metrics_;
  const Ledger& ledger_;
  Emitter& emitter_;
  Counters& counters_;
  WakeList& wake_;
  const uint64_t max_concurrent_;
  const uint64_t batch_size_;
  const uint64_t batch_interval_ns_;

  std::vector<WorkerView> views_;  // by client id
  std::vector<uint32_t> active_workers_;
  TypeMap<TypeRoute> routes_;
  bool routes_dirty_ = true;
  TypeQueues gathering_;              // batch requests by type, in eligible order
  std::vector<Pending> batch_items_;  // flush_batch scratch: no allocation per dispatch
  std::vector<uint64_t> batch_refs_;
};

}  // namespace perfq::agent
