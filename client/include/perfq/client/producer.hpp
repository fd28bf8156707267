#pragma once
// Producer: submits requests into a queue's band rings and receives their
// outcomes through its own completion ring (nobody polls the agent).
//
// Thread-safe: any number of threads may submit and wait at once. Waiting
// threads take turns draining the completion ring; the others wait on their
// own request's ready flag.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string_view>
#include <vector>

#include "perfq/client/outcome.hpp"
#include "perfq/client/refusals.hpp"
#include "perfq/core/clock.hpp"
#include "perfq/core/idle_strategy.hpp"
#include "perfq/core/request.hpp"
#include "perfq/core/result.hpp"
#include "perfq/core/slot_pool.hpp"
#include "perfq/core/wait_word.hpp"
#include "perfq/shm/admission.hpp"
#include "perfq/shm/status.hpp"
#include "perfq/shm/tables/idempotency.hpp"

namespace perfq::shm {
class Segment;
}

namespace perfq {

class Producer;

namespace detail {
struct FutureState;
class FutureStatePool;
// Lets go of the pool (it frees itself once its Futures are gone too).
struct FutureStatePoolRetire {
  void operator()(FutureStatePool* pool) const noexcept;
};
}  // namespace detail

// The outcome of one submitted request, available once the agent settles it.
class Future {
 public:
  Future() = default;
  Future(Future&& o) noexcept;
  Future& operator=(Future&& o) noexcept;
  Future(const Future&) = delete;
  Future& operator=(const Future&) = delete;
  ~Future();

  [[nodiscard]] bool valid() const noexcept { return st_ != nullptr; }
  [[nodiscard]] bool ready() const noexcept;
  // Blocks until the outcome arrives or the timeout passes; returns ready().
  bool wait_for(std::chrono::nanoseconds timeout);
  // Blocks until the outcome arrives (bounded waits inside, no busy loop).
  const Outcome& get();

 private:
  friend class Producer;
  Future(Producer* p, detail::FutureState* st) noexcept : p_(p), st_(st) {}
  Producer* p_ = nullptr;
  detail::FutureState* st_ = nullptr;
};

struct Submitted {
  uint64_t request_id = 0;
  Status status = Status::kPending;
  Mode mode = Mode::kFifo;
  Band band = Band::kNormal;
  uint8_t priority = kPriorityDefault;
  uint64_t created_at_unix_ns = 0;
  uint64_t queue_position = 0;  // requests that will be served before it (estimate, see docs)
  // An earlier submit of this user with the same idempotency key: the fields
  // above are that request's, and `outcome` is empty (status() tells it).
  bool duplicate = false;
  // A duplicate's status is the original's, if the status table still holds
  // it (docs/PROTOCOL.md §10); false: unknown, `status` means nothing.
  bool status_known = true;
  Future outcome;
};

// Test seams: where a crash test stops a producer. Production passes none.
enum class SubmitPoint : uint8_t { kSlotClaimed, kRingClaimed };
using SubmitHook = void (*)(SubmitPoint, void* arg);

// The producer's outcome states (see Producer::future_states).
struct FutureStateStats {
  uint32_t capacity = 0;    // preallocated: one per slot of the segment
  uint32_t available = 0;   // not held by a request or a Future now
  uint64_t overflowed = 0;  // ever taken from the heap because none was available
};

struct ProducerOptions {
  IdleKind idle = IdleKind::kPark;
  // The time the rate limiter and the idempotency table go by (tests share
  // a manual one between processes). Must outlive the producer.
  const Clock* clock = nullptr;  // nullptr: the system clock
  SubmitHook hook = nullptr;
  void* hook_arg = nullptr;
};

// How Producer::submit_many treats its batch.
struct SubmitManyOptions {
  // Wait for room as submit does (false: as try_submit, QUEUE_FULL at once).
  bool wait_for_room = true;
  // While waiting for room: asked after each slice of at most 20 ms, as by
  // submit(r, give_up); true ends the wait (the requests still without room
  // answer QUEUE_FULL). Empty: wait up to rope_drop_timeout_ms.
  std::function<bool()> give_up;
  // Fire and forget: no Future is made (Submitted::outcome is empty). The
  // outcomes are still collected, and their slots freed, by poll(),
  // wait_any() or any Future's wait, which drop them (wait_any does not
  // report them). A producer that only forgets must call poll() regularly.
  bool forget = false;
};

class Producer {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Producer>> connect(std::string_view queue,
                                                                 ProducerOptions opt = {});
  // Shares an existing mapping (in-process agent, tests).
  [[nodiscard]] static Result<std::unique_ptr<Producer>> connect(std::shared_ptr<shm::Segment> seg,
                                                                 ProducerOptions opt = {});
  ~Producer();
  Producer(const Producer&) = delete;
  Producer& operator=(const Producer&) = delete;

  // SPEC §5 submit, in order: validates (SPEC §3); with an idempotency key
  // seen from this user within idempotency_ttl_ms returns that request
  // (duplicate, not counted); refuses with RATE_LIMIT_EXCEEDED and
  // retry_after_ms past max_requests_per_user_per_minute; waits for room while the queue holds
  // max_queue_depth requests (at most rope_drop_timeout_ms, woken when room
  // appears; then QUEUE_FULL), claims a slot, publishes it to its band ring
  // and wakes the agent if it sleeps.
  [[nodiscard]] Result<Submitted> submit(const RequestView& r);
  // As submit, but never waits: QUEUE_FULL at once when the queue is full.
  [[nodiscard]] Result<Submitted> try_submit(const RequestView& r);
  // As submit, for callers that must notice a shutdown or a signal while
  // the queue is full (the HTTP server, the Node.js and Python bindings):
  // waits in slices of at most 20 ms, asks `give_up()` after each, and
  // answers QUEUE_FULL as soon as it says true. An equal key that another
  // submit is writing (CONFLICT) is waited out the same way.
  [[nodiscard]] Result<Submitted> submit(const RequestView& r,
                                         const std::function<bool()>& give_up);

  // Submits a batch, one answer per request: `out` is cleared (its capacity
  // is kept) and out[i] answers rs[i] exactly as submit(rs[i]) would, in
  // batch order. Each request is validated, looked up by its idempotency
  // key, rate limited and admitted on its own, so one refused for any
  // reason fails no other; a key repeated inside the batch answers as a
  // duplicate of its first accepted use. Returns how many out[i] are ok()
  // (accepted, or duplicates). Thread-safe like submit.
  //
  // When the queue fills part-way (max_queue_depth): the requests that fit
  // are published first (accepted, whatever follows); then, with
  // wait_for_room, it waits for room as submit does, but at most
  // rope_drop_timeout_ms for the whole batch, and every request still
  // without room after that answers QUEUE_FULL; without wait_for_room
  // (try_submit_many) they answer QUEUE_FULL at once. Requests are admitted
  // in batch order; a request for which no slot is free answers QUEUE_FULL
  // without waiting, as with submit.
  //
  // Cheaper than a loop of submit: one atomic add takes the batch's ids, the
  // queue's depth is read once per group of up to 64 admitted requests,
  // each band ring gets one claim per group (one CAS on its tail, then one
  // per cell: PROTOCOL §4), and the agent's doorbell rings once per call
  // (and before each wait for room). A group's requests get one createdAt.
  size_t submit_many(std::span<const RequestView> rs, std::vector<Result<Submitted>>& out,
                     const SubmitManyOptions& opt = {});
  // As submit_many without wait_for_room: never waits.
  size_t try_submit_many(std::span<const RequestView> rs, std::vector<Result<Submitted>>& out);

  // Cancels a request that is still pending (queued, waiting for a worker,
  // or waiting for a retry): it is never dispatched afterwards, and its
  // outcome becomes `cancelled`. NOT_FOUND unless `user_id` submitted it
  // (or the request is unknown); INVALID_STATUS once it was dispatched or
  // finished. Any producer may cancel any request of that user. Bounded:
  // one pass over the slots' control words.
  [[nodiscard]] Result<void> cancel(uint64_t request_id, std::string_view user_id);
  // As above, for an owner or (Caller::admin) any request.
  [[nodiscard]] Result<void> cancel(uint64_t request_id, const shm::Caller& who);

  // The request's status: live ones from their slot, finished ones from the
  // status table while it retains them. NOT_FOUND for other users' requests
  // (unless `who` is an admin) and for unknown ones.
  [[nodiscard]] Result<shm::RequestStatus> status(uint64_t request_id, const shm::Caller& who);

  // Settles every outcome waiting in the completion ring. Never blocks.
  size_t poll();

  // Waits until outcomes arrive or `timeout` passes, settles them, and
  // appends the ids of the requests they settled to `settled`; returns how
  // many it appended. For a binding that hands outcomes to its runtime from
  // one thread of its own (Node's completion thread): outcomes another
  // thread settles meanwhile (Future::wait_for) are not reported here.
  size_t wait_any(std::chrono::nanoseconds timeout, std::vector<uint64_t>& settled);

  [[nodiscard]] uint32_t client_id() const noexcept { return id_; }
  [[nodiscard]] shm::Segment& segment() noexcept { return *seg_; }
  [[nodiscard]] uint64_t outstanding() const noexcept {
    return outstanding_.load(std::memory_order_relaxed);
  }
  // A submit takes an outcome state from a pool preallocated with one per
  // slot and allocates nothing; the state goes back once the outcome is
  // collected (drained from the completion ring, or the producer closed)
  // and its Future is gone. Only a caller that keeps more settled Futures
  // than there are slots makes a submit fall back to the heap (overflowed).
  [[nodiscard]] FutureStateStats future_states() const noexcept;

 private:
  friend class Future;
  struct Staged;  // submit_many's request between claim and publish
  class Batch;    // one submit_many call (client/src/submit_many.cpp)
  Producer(std::shared_ptr<shm::Segment> seg, uint32_t id, ProducerOptions opt);
  bool wait(detail::FutureState* st, std::chrono::steady_clock::time_point deadline);
  [[nodiscard]] Result<Submitted> submit_impl(const RequestView& r, bool wait_for_room);
  [[nodiscard]] Result<shm::Occupancy> admit(bool wait_for_room);
  [[nodiscard]] Result<Submitted> enqueue(const RequestView& r, bool wait_for_room, uint64_t id);
  // enqueue's steps, in order.
  [[nodiscard]] Result<SlotPool::Claim> claim_slot(bool wait_for_room, shm::Occupancy& before);
  void write_record(uint32_t slot, const RequestView& r, uint64_t id, Band band,
                    uint64_t enqueued_mono_ns);
  [[nodiscard]] bool publish(const SlotPool::Claim& claim, Band band);
  void take_back(const SlotPool::Claim& claim, bool queued);
  // The answer to a submit whose key names an earlier request of its user.
  [[nodiscard]] Submitted duplicate_of(const shm::IdempotencyTable::Original& o,
                                       std::string_view user_id);
  // Once request `id` is accepted: its key answers with it until the TTL,
  // counted from `rules_now_ns` (the time its key was looked up).
  void remember_key(const shm::IdempotencyTable::Claim& claim, const RequestView& r, uint64_t id,
                    uint64_t created_unix_ns, Band band, uint64_t rules_now_ns);
  size_t drain_locked(std::vector<uint64_t>* settled_ids = nullptr);
  // Caller holds drain_mu_ (in `lock`): drains the ring for everyone,
  // parking while it is empty, until done() or the deadline; then lets the
  // ring go and wakes the waiters who did not drain. Returns done().
  bool drain_until(std::unique_lock<std::mutex>& lock,
                   std::chrono::steady_clock::time_point deadline, std::vector<uint64_t>* settled,
                   const std::function<bool()>& done);

  std::shared_ptr<shm::Segment> seg_;
  uint32_t id_;
  ProducerOptions opt_;
  const Clock& clock_;
  std::atomic<uint32_t> cursor_{0};
  uint64_t unix_offset_ns_ = 0;
  uint16_t incarnation_ = 0;  // of our client record: outcomes are for this registration only
  std::atomic<uint64_t> outstanding_{0};
  // One entry per slot: the state of the request this producer has in it.
  std::unique_ptr<std::atomic<detail::FutureState*>[]> states_;
  std::unique_ptr<detail::FutureStatePool, detail::FutureStatePoolRetire> futures_;
  std::mutex drain_mu_;                // held by the thread draining the ring
  std::atomic<bool> draining_{false};  // drain_mu_ is held (readable without it)
  WaitWord turn_{};                    // waiters that do not drain park here
};

}  // namespace perfq
