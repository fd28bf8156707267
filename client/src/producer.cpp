#include "perfq/client/producer.hpp"

#include <cstring>
#include <optional>
#include <thread>
#include <variant>

#include "future_state_pool.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/core/clock.hpp"
#include "perfq/core/slot_pool.hpp"
#include "perfq/shm/admission.hpp"
#include "perfq/shm/client_registry.hpp"
#include "perfq/shm/futex.hpp"
#include "perfq/shm/rejections.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq {

namespace detail {

void FutureStatePoolRetire::operator()(FutureStatePool* pool) const noexcept {
  pool->retire();
}

}  // namespace detail

namespace {

// How long one park may last before the waiter looks around again (a
// dropped wake-up can never cost more than this).
constexpr uint64_t kParkBoundNs = 20'000'000;

}  // namespace

// ---------------------------------------------------------------- Future

Future::Future(Future&& o) noexcept : p_(o.p_), st_(o.st_) {
  o.p_ = nullptr;
  o.st_ = nullptr;
}

Future& Future::operator=(Future&& o) noexcept {
  if (this != &o) {
    if (st_ != nullptr) st_->unref();
    p_ = o.p_;
    st_ = o.st_;
    o.p_ = nullptr;
    o.st_ = nullptr;
  }
  return *this;
}

Future::~Future() {
  if (st_ != nullptr) st_->unref();
}

bool Future::ready() const noexcept {
  // acquire: pairs with the release store in Producer::drain_locked.
  return st_ != nullptr && st_->ready.load(std::memory_order_acquire) != 0;
}

bool Future::wait_for(std::chrono::nanoseconds timeout) {
  if (st_ == nullptr) return false;
  return p_->wait(st_, std::chrono::steady_clock::now() + timeout);
}

const Outcome& Future::get() {
  while (!p_->wait(st_, std::chrono::steady_clock::now() + std::chrono::seconds(1))) {
  }
  return st_->outcome;
}

// ---------------------------------------------------------------- Producer

Producer::Producer(std::shared_ptr<shm::Segment> seg, uint32_t id, ProducerOptions opt)
    : seg_(std::move(seg)),
      id_(id),
      opt_(opt),
      clock_(opt.clock != nullptr ? *opt.clock : system_clock()) {
  const uint32_t n = seg_->geometry().slot_count;
  states_ = std::make_unique<std::atomic<detail::FutureState*>[]>(n);
  for (uint32_t i = 0; i < n; ++i) states_[i].store(nullptr, std::memory_order_relaxed);
  // One state per slot: every request in flight holds a slot (see
  // future_state_pool.hpp for the rest).
  futures_.reset(detail::FutureStatePool::create(n));
  // Spread producers over the pool so they rarely probe the same hint word.
  cursor_.store(id * 7919u, std::memory_order_relaxed);
  // createdAt is the monotonic clock shifted to wall time once, so a submit
  // reads one clock, not two.
  unix_offset_ns_ = unix_now_ns() - mono_now_ns();
  incarnation_ = static_cast<uint16_t>(load_relaxed(seg_->client(id_).incarnation));
}

Result<std::unique_ptr<Producer>> Producer::connect(std::string_view queue, ProducerOptions opt) {
  auto seg = shm::Segment::attach(queue);
  if (!seg) return seg.error();
  return connect(std::shared_ptr<shm::Segment>(std::move(seg.value())), opt);
}

Result<std::unique_ptr<Producer>> Producer::connect(std::shared_ptr<shm::Segment> seg,
                                                    ProducerOptions opt) {
  auto id = shm::join(*seg, shm::kRoleProducer);
  if (!id) return id.error();
  return std::unique_ptr<Producer>(new Producer(std::move(seg), *id, opt));
}

Producer::~Producer() {
  shm::close_client(*seg_, id_);
  shm::notify(seg_->header().doorbell);
  // Outcomes that never arrived stay unready; their Futures still own them.
  const uint32_t n = seg_->geometry().slot_count;
  for (uint32_t i = 0; i < n; ++i) {
    if (auto* st = states_[i].exchange(nullptr, std::memory_order_acquire)) st->unref();
  }
}

namespace {

// A submit's answer to its caller; a refusal is counted by its reason in
// the segment header (rejections.hpp). Only final answers come through
// here: a waiting submit's earlier attempts count for nothing.
Result<Submitted> answered(shm::Segment& seg, Result<Submitted> s) {
  if (!s) shm::count_rejection(seg.header(), s.error().code);
  return s;
}

}  // namespace

Result<Submitted> Producer::submit(const RequestView& r) {
  return answered(*seg_, submit_impl(r, true));
}

Result<Submitted> Producer::try_submit(const RequestView& r) {
  return answered(*seg_, submit_impl(r, false));
}

Result<Submitted> Producer::submit(const RequestView& r, const std::function<bool()>& give_up) {
  shm::Segment& seg = *seg_;
  const uint64_t timeout_ns = load_relaxed(seg.header().rope_drop_timeout_ms) * 1'000'000;
  const uint64_t deadline = mono_now_ns() + timeout_ns;
  WaitWord& room = seg.header().room;
  for (;;) {
    // Read before trying: room that appears after a refusal changes it, so
    // the wait below returns at once instead of missing the wake-up (the
    // futex compares it; try_submit reads the queue's state itself).
    const uint32_t seen = load_relaxed(room.seq);
    auto s = submit_impl(r, false);
    if (s || (s.error().code != Errc::kQueueFull && s.error().code != Errc::kConflict) ||
        (s.error().code == Errc::kQueueFull && shm::agent_draining(seg.header()))) {
      return answered(seg, std::move(s));
    }
    const uint64_t now = mono_now_ns();
    if (now >= deadline || give_up()) return answered(seg, std::move(s));
    // As a counted waiter (shm::park raises `waiters`), so the agent's
    // notify wakes it when room appears instead of at the end of the slice.
    (void)shm::park(room, std::min<uint64_t>(deadline - now, 20'000'000),
                    [&] { return load_relaxed(room.seq) != seen; });
  }
}

// SPEC §5 admission: while max_queue_depth requests are accepted and not
// final, wait up to rope_drop_timeout_ms for room (parked on the segment's
// `room` word, which the agent notifies as requests finish), then QUEUE_FULL.
// A draining agent admits nothing, at once.
Result<shm::Occupancy> Producer::admit(bool wait_for_room) {
  shm::Segment& seg = *seg_;
  auto draining = [&] {
    return Result<shm::Occupancy>(Errc::kQueueFull, std::string(refusal::kDraining));
  };
  if (shm::agent_draining(seg.header())) return draining();
  const uint64_t max = load_relaxed(seg.header().max_queue_depth);
  shm::Occupancy o = shm::occupancy(seg);
  if (max == 0) return o;  // no agent has run yet: the pool is the only bound
  auto full = [&] {
    o = shm::occupancy(seg);
    return !o.known || o.depth >= max;
  };
  if (o.known && o.depth < max) return o;
  auto queue_full = [&] {
    if (!o.known) {
      return Result<shm::Occupancy>(Errc::kQueueFull, std::string(refusal::kDepthUnknown));
    }
    return Result<shm::Occupancy>(Errc::kQueueFull, std::string(refusal::kQueueAtDepth));
  };
  if (!wait_for_room) return queue_full();
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(load_relaxed(seg.header().rope_drop_timeout_ms));
  // Bounded by the deadline; each park by kParkBoundNs.
  for (;;) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return queue_full();
    if (shm::agent_draining(seg.header())) return draining();
    const auto left_ns = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now).count());
    if (shm::park(seg.header().room, std::min(left_ns, kParkBoundNs), [&] { return !full(); })) {
      if (shm::agent_draining(seg.header())) return draining();
      return o;
    }
  }
}

Result<Submitted> Producer::submit_impl(const RequestView& r, bool wait_for_room) {
  shm::Segment& seg = *seg_;
  const Violation v = validate(r, seg.geometry().slot_payload_bytes);
  if (v.code != Errc::kOk) return Error{v.code, std::string(v.message)};
  const uint64_t id = aref(seg.header().next_request_id).fetch_add(1, std::memory_order_relaxed);
  shm::IdempotencyTable* idem = r.idempotency_key.empty() ? nullptr : seg.idempotency();
  shm::RateLimiter* rate = seg.rate_limiter();
  if (idem == nullptr && rate == nullptr) return enqueue(r, wait_for_room, id);

  const uint64_t now = clock_.now_mono_ns();
  // 1. Idempotency: a live (user, key) pair answers with its request and
  //    counts for nothing. A concurrent submit of the same pair waits for
  //    the first to be accepted or refused (bounded by the rope-drop wait).
  std::optional<shm::IdempotencyTable::Claim> claim;
  if (idem != nullptr) {
    // try_submit never waits: a key another submit is writing is CONFLICT.
    const uint64_t wait_ns =
        wait_for_room ? (load_relaxed(seg.header().rope_drop_timeout_ms) + 1000) * 1'000'000 : 0;
    auto found = idem->lookup_or_claim(r.user_id, r.idempotency_key, now, id_, wait_ns);
    if (auto* e = std::get_if<Error>(&found)) return *e;
    if (auto* o = std::get_if<shm::IdempotencyTable::Original>(&found)) {
      return duplicate_of(*o, r.user_id);
    }
    claim = std::get<shm::IdempotencyTable::Claim>(found);
  }
  // 2. Rate limit: refused submits are not counted.
  std::optional<shm::RateTicket> ticket;
  if (rate != nullptr) {
    auto t = rate->acquire(r.user_id, now, id_);
    if (!t) {
      if (claim) idem->abandon(*claim);
      return t.error();
    }
    ticket = *t;
  }
  // 3. Admission and enqueue. A submit refused here is not counted either.
  auto s = enqueue(r, wait_for_room, id);
  if (!s) {
    if (ticket) rate->refund(*ticket);
    if (claim) idem->abandon(*claim);
    return s;
  }
  if (claim) remember_key(*claim, r, id, s->created_at_unix_ns, s->band, now);
  return s;
}

Submitted Producer::duplicate_of(const shm::IdempotencyTable::Original& o,
                                 std::string_view user_id) {
  Submitted s;
  s.request_id = o.request_id;
  s.mode = static_cast<Mode>(o.mode < kModeCount ? o.mode : 0);
  s.priority = o.priority;
  s.band = static_cast<Band>(o.band < kBandCount ? o.band : 2);
  s.created_at_unix_ns = o.created_unix_ns;
  s.duplicate = true;
  auto st = shm::lookup_status(*seg_, o.request_id, shm::Caller{user_id, false});
  s.status_known = st.ok();  // the status table may have wrapped since
  if (st) s.status = st->status;
  return s;
}

void Producer::remember_key(const shm::IdempotencyTable::Claim& claim, const RequestView& r,
                            uint64_t id, uint64_t created_unix_ns, Band band,
                            uint64_t rules_now_ns) {
  shm::IdempotencyTable::Original o{};
  o.request_id = id;
  o.created_unix_ns = created_unix_ns;
  o.mode = static_cast<uint8_t>(r.mode);
  o.priority = r.priority;
  o.band = static_cast<uint8_t>(band);
  const uint64_t ttl_ns = load_relaxed(seg_->header().idempotency_ttl_ms) * 1'000'000;
  seg_->idempotency()->publish(claim, o, r.user_id, r.idempotency_key, r.type,
                               rules_now_ns + ttl_ns);
}

Result<Submitted> Producer::enqueue(const RequestView& r, bool wait_for_room, uint64_t id) {
  shm::Occupancy before{};
  const auto claim = claim_slot(wait_for_room, before);
  if (!claim) return claim.error();
  const uint32_t slot = claim.value().index;
  const Band band = band_for(r.mode, r.priority);
  const uint64_t enqueued = mono_now_ns();
  write_record(slot, r, id, band, enqueued);

  detail::FutureState* st = futures_->acquire(id);  // from the pool: no allocation
  // release: pairs with the acquire exchange in drain_locked (another thread
  // of this process may settle the request).
  states_[slot].store(st, std::memory_order_release);
  outstanding_.fetch_add(1, std::memory_order_relaxed);
  if (!publish(claim.value(), band)) {
    return Error{Errc::kQueueFull, std::string(refusal::kBandRingFull)};
  }
  shm::notify(seg_->header().doorbell);

  Submitted s;
  s.request_id = id;
  s.mode = r.mode;
  s.band = band;
  s.priority = r.priority;
  s.created_at_unix_ns = enqueued + unix_offset_ns_;
  // Requests in this band and the ones above it when it was admitted (an
  // estimate: aging can move an old lower-band request ahead of it).
  for (uint8_t b = 0; b <= static_cast<uint8_t>(band); ++b) s.queue_position += before.ahead[b];
  s.outcome = Future(this, st);
  return s;
}

// Admission, then a slot of the pool claimed for this producer; `before`
// is the queue's occupancy when it was admitted.
Result<SlotPool::Claim> Producer::claim_slot(bool wait_for_room, shm::Occupancy& before) {
  auto admitted = admit(wait_for_room);
  if (!admitted) return admitted.error();
  before = *admitted;

  uint32_t cursor = cursor_.load(std::memory_order_relaxed);
  const auto claim = seg_->pool().try_claim(static_cast<uint16_t>(id_), cursor);
  cursor_.store(cursor, std::memory_order_relaxed);
  if (!claim) return Error{Errc::kQueueFull, std::string(refusal::kNoFreeSlot)};
  if (opt_.hook != nullptr) opt_.hook(SubmitPoint::kSlotClaimed, opt_.hook_arg);
  return *claim;
}

// Fills the claimed slot's record and payload (nobody else reads them
// before the slot is published, except status lookups and cancels).
void Producer::write_record(uint32_t slot, const RequestView& r, uint64_t id, Band band,
                            uint64_t enqueued_mono_ns) {
  shm::Segment& seg = *seg_;
  RequestRecord& rec = seg.record(slot);
  // The fields a status lookup or a cancel may read while this slot is
  // being reused are stored atomically (see store_shared_text); the rest plainly.
  store_relaxed(rec.request_id, id);
  store_relaxed(rec.created_at_unix_ns, enqueued_mono_ns + unix_offset_ns_);
  thread_local uint64_t thread_seq = 0;
  rec.producer_seq = thread_seq++;
  rec.payload_len = static_cast<uint32_t>(r.payload.size());
  rec.metadata_len = static_cast<uint16_t>(r.metadata.size());
  rec.producer = static_cast<uint16_t>(id_);
  store_relaxed(rec.type_len, static_cast<uint8_t>(r.type.size()));
  store_relaxed(rec.user_len, static_cast<uint8_t>(r.user_id.size()));
  rec.idem_len = static_cast<uint8_t>(r.idempotency_key.size());
  store_relaxed(rec.mode, static_cast<uint8_t>(r.mode));
  store_relaxed(rec.priority, r.priority);
  store_relaxed(rec.band, static_cast<uint8_t>(band));
  rec.producer_incarnation = incarnation_;
  store_shared_text(rec.type, r.type.data(), r.type.size());
  store_shared_text(rec.user_id, r.user_id.data(), r.user_id.size());
  if (!r.idempotency_key.empty()) {
    std::memcpy(rec.idempotency_key, r.idempotency_key.data(), r.idempotency_key.size());
  }
  if (!r.metadata.empty()) std::memcpy(rec.metadata, r.metadata.data(), r.metadata.size());
  if (!r.payload.empty()) std::memcpy(seg.payload(slot), r.payload.data(), r.payload.size());
  rec.enqueued_mono_ns = enqueued_mono_ns;
}

// CLAIMED -> QUEUED, then into its band ring. False: not accepted, and
// the slot and its state are taken back.
bool Producer::publish(const SlotPool::Claim& claim, Band band) {
  shm::Segment& seg = *seg_;
  const uint16_t owner = static_cast<uint16_t>(id_);
  uint64_t expected = SlotCtl{claim.generation, SlotState::kClaimed, 0, owner}.pack();
  const bool queued = seg.pool().transition(
      claim.index, expected, SlotCtl{claim.generation, SlotState::kQueued, 0, owner});
  const auto pushed =
      queued ? seg.band(band).try_push(claim.index,
                                       [this](uint64_t) {
                                         if (opt_.hook != nullptr)
                                           opt_.hook(SubmitPoint::kRingClaimed, opt_.hook_arg);
                                       })
             : BandRing::PushResult::kContended;
  if (pushed == BandRing::PushResult::kOk) return true;
  take_back(claim, queued);
  return false;
}

// A slot that was not accepted: its state (no Future was made) and the
// slot go back. (With rings as large as the pool, only a broken segment
// gets here.)
void Producer::take_back(const SlotPool::Claim& claim, bool queued) {
  detail::FutureState* st = states_[claim.index].exchange(nullptr, std::memory_order_relaxed);
  if (st != nullptr) futures_->discard(st);  // both references are ours (none: forgotten)
  outstanding_.fetch_sub(1, std::memory_order_relaxed);
  const SlotState held = queued ? SlotState::kQueued : SlotState::kClaimed;
  (void)seg_->pool().release(claim.index,
                             SlotCtl{claim.generation, held, 0, static_cast<uint16_t>(id_)}.pack());
}

FutureStateStats Producer::future_states() const noexcept {
  return {futures_->capacity(), futures_->available(), futures_->overflowed()};
}

Result<shm::RequestStatus> Producer::status(uint64_t request_id, const shm::Caller& who) {
  return shm::lookup_status(*seg_, request_id, who);
}

Result<void> Producer::cancel(uint64_t request_id, std::string_view user_id) {
  return cancel(request_id, shm::Caller{user_id, false});
}

Result<void> Producer::cancel(uint64_t request_id, const shm::Caller& who) {
  shm::Segment& seg = *seg_;
  const std::string_view user_id = who.user_id;
  SlotPool& pool = seg.pool();
  auto not_found = [] { return Result<void>(Errc::kNotFound, "no such request"); };
  // Not live (any more): a finished request cannot be cancelled; one the
  // caller may not see, or an unknown one, is NOT_FOUND.
  auto not_live = [&]() -> Result<void> {
    if (shm::lookup_status(seg, request_id, who)) {
      return {Errc::kInvalidStatus, "only pending requests can be cancelled"};
    }
    return not_found();
  };
  for (uint32_t slot = 0; slot < pool.count(); ++slot) {
    uint64_t ctl = pool.load(slot);
    SlotCtl c = SlotCtl::unpack(ctl);
    if (c.state == SlotState::kFree || c.state == SlotState::kClaimed) continue;
    const RequestRecord& rec = seg.record(slot);
    if (load_relaxed(rec.request_id) != request_id) continue;
    // The id is read between two loads of the control word: the same word
    // means the slot still held this request while we looked.
    char owner_buf[kUserIdMaxBytes];
    const size_t owner_len = std::min<size_t>(load_relaxed(rec.user_len), kUserIdMaxBytes);
    load_shared_text(rec.user_id, owner_len, owner_buf);
    const bool mine = who.admin || std::string_view(owner_buf, owner_len) == user_id;
    const uint64_t again = pool.load(slot);
    if (SlotCtl::unpack(again).generation != c.generation) return not_live();  // finished meanwhile
    if (!mine) return not_found();  // SPEC §5: others get NOT_FOUND
    ctl = again;                    // the same request, perhaps one state on
    c = SlotCtl::unpack(ctl);
    // A few tries: the agent may move the slot QUEUED -> PENDING meanwhile.
    for (int tries = 0; tries < 8; ++tries) {
      if (c.state != SlotState::kQueued && c.state != SlotState::kPending) {
        return {Errc::kInvalidStatus, "only pending requests can be cancelled"};
      }
      SlotCtl next = c;
      next.state = SlotState::kCancelling;
      next.owner = kOwnerAgent;
      if (pool.transition(slot, ctl, next)) {
        // The agent finishes it: from the cancel ring, or when it meets the
        // slot in its band ring. Whichever comes first wins the CAS.
        (void)seg.cancel_ring().try_push(slot);
        shm::notify(seg.header().doorbell);
        return {};
      }
      // The failed CAS loaded the current word.
      if (SlotCtl::unpack(ctl).generation != c.generation) return not_live();
      c = SlotCtl::unpack(ctl);
    }
    return {Errc::kInvalidStatus, "the request kept changing state; try again"};
  }
  return not_live();
}

size_t Producer::drain_locked(std::vector<uint64_t>* settled_ids) {
  shm::Segment& seg = *seg_;
  SpscRing ring = seg.completion_ring(id_);
  const uint32_t n = seg.geometry().slot_count;
  size_t settled = 0;
  uint64_t ref = 0;
  // Bounded by the ring's capacity per call.
  for (uint32_t i = 0; i < ring.capacity() && ring.try_pop(ref); ++i) {
    const uint32_t slot = slot_ref_index(ref);
    if (slot >= n) continue;  // garbage from a broken writer: never followed
    const uint64_t ctl = seg.pool().load(slot);
    const SlotCtl c = SlotCtl::unpack(ctl);
    if (c.state != SlotState::kDone || c.owner != id_ || c.generation != slot_ref_generation(ref)) {
      continue;  // duplicate or stale entry (e.g. re-sent by a restarted agent)
    }
    detail::FutureState* st = states_[slot].exchange(nullptr, std::memory_order_acquire);
    if (st != nullptr) {
      const RequestRecord& rec = seg.record(slot);
      Outcome& o = st->outcome;
      o.status = static_cast<Status>(rec.status < kStatusCount ? rec.status : 4);
      o.error = errc_valid(rec.error) ? static_cast<Errc>(rec.error) : Errc::kInternal;
      o.attempts = rec.attempts;
      const uint32_t len = rec.result_len <= seg.geometry().slot_payload_bytes ? rec.result_len : 0;
      o.result.assign(seg.result(slot), seg.result(slot) + len);
      // The last attempt's start, if its worker wrote one within the
      // attempt; its dispatch otherwise. Waiting ends there.
      const uint64_t dispatched = rec.dispatched_mono_ns;
      const uint64_t finished = rec.finished_mono_ns;
      const uint64_t written = load_relaxed(rec.started_mono_ns);
      const uint64_t started = written >= dispatched && written <= finished ? written : dispatched;
      o.wait_ns = started > rec.enqueued_mono_ns ? started - rec.enqueued_mono_ns : 0;
      o.processing_ns = finished > started ? finished - started : 0;
    }
    if (seg.pool().release(slot, ctl)) {
      // Claim next near the slots just freed: their lines are still cached.
      cursor_.store(slot / 64, std::memory_order_relaxed);
    }
    ++settled;
    // A request submitted to be forgotten (submit_many) has no state: its
    // outcome is dropped here, and its slot is free now.
    outstanding_.fetch_sub(1, std::memory_order_relaxed);
    if (st != nullptr) {
      if (settled_ids != nullptr) settled_ids->push_back(st->outcome.request_id);
      // release: pairs with the acquire in Future::ready / wait.
      st->ready.store(1, std::memory_order_release);
      st->ready.notify_all();
      st->unref();
    }
  }
  return settled;
}

size_t Producer::poll() {
  std::unique_lock lock(drain_mu_, std::try_to_lock);
  if (!lock.owns_lock()) return 0;
  draining_.store(true, std::memory_order_relaxed);
  const size_t n = drain_locked();
  // release: a waiter that sees the ring free also sees what we settled.
  draining_.store(false, std::memory_order_release);
  lock.unlock();
  shm::notify(turn_);
  return n;
}

bool Producer::wait(detail::FutureState* st, std::chrono::steady_clock::time_point deadline) {
  auto left_ns = [&](std::chrono::steady_clock::time_point now) {
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now).count());
  };
  for (;;) {
    if (st->ready.load(std::memory_order_acquire) != 0) return true;
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    std::unique_lock lock(drain_mu_, std::try_to_lock);
    if (!lock.owns_lock()) {
      // Another thread drains the ring. It notifies turn_ after every pass
      // that settled something and when it lets go; the park re-checks after
      // announcing itself, so neither can be missed, and it is bounded by
      // our own deadline.
      shm::park(turn_, std::min(left_ns(now), kParkBoundNs), [&] {
        return st->ready.load(std::memory_order_acquire) != 0 ||
               !draining_.load(std::memory_order_acquire);
      });
      continue;
    }
    // This thread drains for everyone until its own outcome arrives.
    return drain_until(lock, deadline, nullptr,
                       [st] { return st->ready.load(std::memory_order_acquire) != 0; });
  }
}

bool Producer::drain_until(std::unique_lock<std::mutex>& lock,
                           std::chrono::steady_clock::time_point deadline,
                           std::vector<uint64_t>* settled, const std::function<bool()>& done) {
  shm::Segment& seg = *seg_;
  draining_.store(true, std::memory_order_relaxed);
  IdlePolicy idle(opt_.idle);
  bool ok = false;
  for (;;) {
    const size_t n = drain_locked(settled);
    if (n > 0) shm::notify(turn_);
    ok = done();
    const auto t = std::chrono::steady_clock::now();
    if (ok || t >= deadline) break;
    idle.idle(n, [&] {
      SpscRing ring = seg.completion_ring(id_);
      const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - t);
      shm::park(seg.client(id_).completion_wake,
                std::min(static_cast<uint64_t>(left.count()), kParkBoundNs),
                [&] { return ring.size_approx() > 0; });
    });
  }
  // release: a waiter that sees the ring free also sees what we settled.
  draining_.store(false, std::memory_order_release);
  lock.unlock();
  shm::notify(turn_);  // hand the ring over
  return ok;
}

size_t Producer::wait_any(std::chrono::nanoseconds timeout, std::vector<uint64_t>& settled) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const size_t before = settled.size();
  auto left_ns = [&](std::chrono::steady_clock::time_point now) {
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now).count());
  };
  for (;;) {
    const auto now = std::chrono::steady_clock::now();
    std::unique_lock lock(drain_mu_, std::try_to_lock);
    if (!lock.owns_lock()) {
      // A Future::wait_for on another thread drains; wait for it to let go.
      if (now >= deadline) return 0;
      shm::park(turn_, std::min(left_ns(now), kParkBoundNs),
                [&] { return !draining_.load(std::memory_order_acquire); });
      continue;
    }
    (void)drain_until(lock, deadline, &settled, [&] { return settled.size() > before; });
    return settled.size() - before;
  }
}

}  // namespace perfq
