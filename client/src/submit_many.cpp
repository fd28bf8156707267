// Producer::submit_many: SPEC §5 submit for a batch, with the shared work
// done once per group instead of once per request.
//
//   per request:  rules (validate, idempotency, rate limit) -> room? -> slot
//                 claimed and its record written (CLAIMED)      |
//   per group:    CLAIMED -> QUEUED, one ring claim per band,   | no room:
//   (<= kGroup)   a CAS per cell, keys published                | publish the
//   per call:     one doorbell                                  | group, read
//                                                               | the depth again
//
// Every rule of submit holds per request (docs/DECISIONS.md, "Batched
// submit"); the crash-safety of claim -> publish is the one of PROTOCOL §4/§5:
// a producer that dies with a group staged leaves CLAIMED slots or QUEUED
// slots no ring holds, and ring claims the agent revokes.
#include <algorithm>
#include <cstring>
#include <limits>
#include <variant>

#include "future_state_pool.hpp"
#include "perfq/client/producer.hpp"
#include "perfq/core/assert.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/core/clock.hpp"
#include "perfq/shm/futex.hpp"
#include "perfq/shm/rejections.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq {

namespace {

// Requests staged before they are published together: bounds the stack
// space, how long a slot stays CLAIMED, and one ring claim (<= a ring's
// capacity is checked by the ring).
constexpr uint32_t kGroup = 64;
constexpr uint64_t kNoLimit = std::numeric_limits<uint64_t>::max();
constexpr uint64_t kSliceNs = 20'000'000;  // a park while waiting for room

}  // namespace

// One request between its claim and its publish.
struct Producer::Staged {
  uint32_t index = 0;  // in the batch
  SlotPool::Claim slot{};
  Band band = Band::kNormal;
  bool queued = false;
  bool refused = false;
  bool has_key = false;
  bool has_ticket = false;
  shm::IdempotencyTable::Claim key{};
  shm::RateTicket ticket{};
  uint64_t rules_now_ns = 0;  // the clock the key's TTL runs from
  uint64_t queue_position = 0;
  uint64_t enqueued_mono_ns = 0;
  detail::FutureState* st = nullptr;
};

// The state of one submit_many call (one thread, on the caller's stack).
class Producer::Batch {
 public:
  Batch(Producer& p, std::span<const RequestView> rs, std::vector<Result<Submitted>>& out,
        const SubmitManyOptions& opt)
      : p_(p), seg_(*p.seg_), rs_(rs), out_(out), opt_(opt) {}

  size_t run();

 private:
  // SPEC §5's first three steps for rs_[i]; false: out_[i] holds the answer.
  bool rules(uint32_t i, Staged& s);
  [[nodiscard]] std::variant<shm::IdempotencyTable::Original, shm::IdempotencyTable::Claim, Error>
  claim_key(const RequestView& r, uint64_t now);
  [[nodiscard]] bool key_staged(const RequestView& r) const;
  // Admission for one request; false: QUEUE_FULL (deadline passed or gave up).
  bool admit();
  void read_depth();
  bool wait_for_room();
  // Claims a slot and writes rs_[s.index] into it; false: no free slot.
  bool stage(Staged& s);
  // Publishes the staged group and answers each of its requests.
  void flush();
  void publish_band(Band band);
  void answer(Staged& s);
  // A request refused after the rules took a key or a rate ticket.
  void refuse(Staged& s, Errc code, std::string_view why);
  void ring_doorbell();

  Producer& p_;
  shm::Segment& seg_;
  std::span<const RequestView> rs_;
  std::vector<Result<Submitted>>& out_;
  const SubmitManyOptions& opt_;
  uint64_t first_id_ = 0;
  Staged staged_[kGroup];
  uint32_t n_staged_ = 0;
  // Admission: room left since the depth was last read, and the queue ahead
  // of each band then plus what this batch added since.
  uint64_t room_ = 0;
  bool depth_known_ = true;
  bool draining_ = false;  // the agent drains: refuse at once, wait for nothing
  shm::Occupancy before_{};
  uint64_t added_[kBandCount] = {};
  uint64_t deadline_ns_ = 0;  // of the wait for room: one for the whole batch
  bool stop_waiting_ = false;
  bool unrung_ = false;  // published since the doorbell last rang
  uint64_t group_now_ns_ = 0;
  size_t accepted_ = 0;
};

size_t Producer::submit_many(std::span<const RequestView> rs, std::vector<Result<Submitted>>& out,
                             const SubmitManyOptions& opt) {
  out.clear();
  if (rs.empty()) return 0;
  PERFQ_ENFORCE(rs.size() <= std::numeric_limits<uint32_t>::max());
  out.reserve(rs.size());
  for (size_t i = 0; i < rs.size(); ++i) out.emplace_back(Error{Errc::kInternal, {}});
  Batch b(*this, rs, out, opt);
  const size_t accepted = b.run();
  // Each refused request is counted by its reason (rejections.hpp), once.
  if (accepted < rs.size()) {
    for (const Result<Submitted>& s : out) {
      if (!s) shm::count_rejection(seg_->header(), s.error().code);
    }
  }
  return accepted;
}

size_t Producer::try_submit_many(std::span<const RequestView> rs,
                                 std::vector<Result<Submitted>>& out) {
  SubmitManyOptions opt;
  opt.wait_for_room = false;
  return submit_many(rs, out, opt);
}

size_t Producer::Batch::run() {
  // One add for the whole batch; a refused request leaves its id unused,
  // as a refused submit does.
  first_id_ = aref(seg_.header().next_request_id).fetch_add(rs_.size(), std::memory_order_relaxed);
  read_depth();
  for (uint32_t i = 0; i < rs_.size(); ++i) {
    // A local copy until it is staged: rules() and admit() may publish the
    // group (and so empty staged_) first.
    Staged s;
    s.index = i;
    if (!rules(i, s)) continue;
    if (!admit()) {
      refuse(s, Errc::kQueueFull,
             draining_      ? refusal::kDraining
             : depth_known_ ? refusal::kQueueAtDepth
                            : refusal::kDepthUnknown);
      continue;
    }
    if (!stage(s)) {
      refuse(s, Errc::kQueueFull, refusal::kNoFreeSlot);
      continue;
    }
    --room_;
    staged_[n_staged_++] = s;
    if (n_staged_ == kGroup) flush();
  }
  flush();
  ring_doorbell();
  return accepted_;
}

bool Producer::Batch::rules(uint32_t i, Staged& s) {
  const RequestView& r = rs_[i];
  const Violation v = validate(r, seg_.geometry().slot_payload_bytes);
  if (v.code != Errc::kOk) {
    out_[i] = Error{v.code, std::string(v.message)};
    return false;
  }
  shm::IdempotencyTable* idem = r.idempotency_key.empty() ? nullptr : seg_.idempotency();
  shm::RateLimiter* rate = seg_.rate_limiter();
  if (idem == nullptr && rate == nullptr) return true;
  s.rules_now_ns = p_.clock_.now_mono_ns();
  if (idem != nullptr) {
    // The same key earlier in this group: publish it first, so this one
    // finds it as a sequence of submits would (and waits on nobody).
    if (key_staged(r)) flush();
    auto found = claim_key(r, s.rules_now_ns);
    if (auto* e = std::get_if<Error>(&found)) {
      out_[i] = std::move(*e);
      return false;
    }
    if (auto* o = std::get_if<shm::IdempotencyTable::Original>(&found)) {
      out_[i] = p_.duplicate_of(*o, r.user_id);
      ++accepted_;
      return false;
    }
    s.key = std::get<shm::IdempotencyTable::Claim>(found);
    s.has_key = true;
  }
  if (rate != nullptr) {
    auto t = rate->acquire(r.user_id, s.rules_now_ns, p_.id_);
    if (!t) {
      if (s.has_key) idem->abandon(s.key);
      out_[i] = t.error();
      return false;
    }
    s.ticket = *t;
    s.has_ticket = true;
  }
  return true;
}

// As submit: a key another submit is writing is waited for (bounded), or
// CONFLICT at once without wait_for_room; with give_up, in slices.
std::variant<shm::IdempotencyTable::Original, shm::IdempotencyTable::Claim, Error>
Producer::Batch::claim_key(const RequestView& r, uint64_t now) {
  shm::IdempotencyTable& idem = *seg_.idempotency();
  const uint64_t wait_ns =
      opt_.wait_for_room ? (load_relaxed(seg_.header().rope_drop_timeout_ms) + 1000) * 1'000'000
                         : 0;
  if (!opt_.give_up || wait_ns == 0) {
    return idem.lookup_or_claim(r.user_id, r.idempotency_key, now, p_.id_, wait_ns);
  }
  const uint64_t deadline = mono_now_ns() + wait_ns;
  for (;;) {  // bounded by the deadline
    const uint64_t t = mono_now_ns();
    const uint64_t slice = t < deadline ? std::min(deadline - t, kSliceNs) : 0;
    auto found = idem.lookup_or_claim(r.user_id, r.idempotency_key, now, p_.id_, slice);
    auto* e = std::get_if<Error>(&found);
    if (e == nullptr || e->code != Errc::kConflict || slice == 0 || opt_.give_up()) return found;
  }
}

bool Producer::Batch::key_staged(const RequestView& r) const {
  for (uint32_t k = 0; k < n_staged_; ++k) {
    const RequestView& o = rs_[staged_[k].index];
    if (staged_[k].has_key && o.idempotency_key == r.idempotency_key && o.user_id == r.user_id) {
      return true;
    }
  }
  return false;
}

// Room is counted down from one read of the depth; when it runs out, the
// group is published (so the rings count it) and the depth read again.
bool Producer::Batch::admit() {
  for (;;) {  // bounded: each turn waits a slice, until the deadline
    if (room_ > 0) return true;
    flush();
    read_depth();
    if (room_ > 0) return true;
    if (draining_ || !wait_for_room()) return false;
  }
}

void Producer::Batch::read_depth() {
  const uint64_t max = load_relaxed(seg_.header().max_queue_depth);
  before_ = shm::occupancy(seg_);
  std::fill(std::begin(added_), std::end(added_), 0);
  depth_known_ = before_.known;
  draining_ = shm::agent_draining(seg_.header());
  if (draining_) {
    room_ = 0;  // nothing is admitted, and not waited for
  } else if (max == 0) {
    room_ = kNoLimit;  // no agent has run yet: the pool is the only bound
  } else {
    room_ = before_.known && before_.depth < max ? max - before_.depth : 0;
  }
}

// One slice of the wait for room (SPEC §5 rope-drop, once for the batch);
// false when the deadline has passed or give_up said so.
bool Producer::Batch::wait_for_room() {
  if (!opt_.wait_for_room || stop_waiting_) return false;
  const uint64_t now = mono_now_ns();
  if (deadline_ns_ == 0) {
    deadline_ns_ = now + load_relaxed(seg_.header().rope_drop_timeout_ms) * 1'000'000;
  }
  if (now >= deadline_ns_ || (opt_.give_up && opt_.give_up())) {
    stop_waiting_ = true;
    return false;
  }
  ring_doorbell();  // what this batch published is the agent's before we sleep
  const uint64_t max = load_relaxed(seg_.header().max_queue_depth);
  // As a counted waiter, woken by the agent's notify of `room`.
  (void)shm::park(seg_.header().room, std::min(deadline_ns_ - now, kSliceNs), [&] {
    const shm::Occupancy o = shm::occupancy(seg_);
    return o.known && o.depth < max;
  });
  return true;
}

bool Producer::Batch::stage(Staged& s) {
  const RequestView& r = rs_[s.index];
  uint32_t cursor = p_.cursor_.load(std::memory_order_relaxed);
  const auto claim = seg_.pool().try_claim(static_cast<uint16_t>(p_.id_), cursor);
  p_.cursor_.store(cursor, std::memory_order_relaxed);
  if (!claim) return false;
  if (p_.opt_.hook != nullptr) p_.opt_.hook(SubmitPoint::kSlotClaimed, p_.opt_.hook_arg);
  s.slot = *claim;
  s.band = band_for(r.mode, r.priority);
  // One clock read per group: its requests are written within microseconds.
  if (n_staged_ == 0) group_now_ns_ = mono_now_ns();
  s.enqueued_mono_ns = group_now_ns_;
  p_.write_record(s.slot.index, r, first_id_ + s.index, s.band, s.enqueued_mono_ns);
  if (!opt_.forget) {
    s.st = p_.futures_->acquire(first_id_ + s.index);  // from the pool: no allocation
    // release: pairs with the acquire exchange in drain_locked.
    p_.states_[s.slot.index].store(s.st, std::memory_order_release);
  }
  p_.outstanding_.fetch_add(1, std::memory_order_relaxed);
  // The requests of this band and the ones above it when it was admitted,
  // this batch's earlier ones included (an estimate, as for submit).
  const auto b = static_cast<uint8_t>(s.band);
  for (uint8_t c = 0; c <= b; ++c) s.queue_position += before_.ahead[c] + added_[c];
  ++added_[b];
  return true;
}

void Producer::Batch::flush() {
  if (n_staged_ == 0) return;
  const uint16_t owner = static_cast<uint16_t>(p_.id_);
  for (uint32_t k = 0; k < n_staged_; ++k) {
    Staged& s = staged_[k];
    uint64_t expected = SlotCtl{s.slot.generation, SlotState::kClaimed, 0, owner}.pack();
    s.queued = seg_.pool().transition(s.slot.index, expected,
                                      SlotCtl{s.slot.generation, SlotState::kQueued, 0, owner});
  }
  for (uint8_t b = 0; b < kBandCount; ++b) publish_band(static_cast<Band>(b));
  for (uint32_t k = 0; k < n_staged_; ++k) answer(staged_[k]);
  n_staged_ = 0;
}

// The group's requests of one band, in batch order: one claim of as many
// ring positions (BandRing::try_push_n), then one CAS per cell.
void Producer::Batch::publish_band(Band band) {
  uint32_t values[kGroup];
  uint32_t which[kGroup];
  uint32_t n = 0;
  for (uint32_t k = 0; k < n_staged_; ++k) {
    if (staged_[k].band != band || !staged_[k].queued) continue;
    values[n] = staged_[k].slot.index;
    which[n++] = k;
  }
  if (n == 0) return;
  const SubmitHook hook = p_.opt_.hook;
  void* arg = p_.opt_.hook_arg;
  (void)seg_.band(band).try_push_n(
      values, n,
      [hook, arg](uint64_t) {
        if (hook != nullptr) hook(SubmitPoint::kRingClaimed, arg);
      },
      [&](uint32_t j) { staged_[which[j]].refused = true; });
}

void Producer::Batch::answer(Staged& s) {
  if (!s.queued || s.refused) {
    p_.take_back(s.slot, s.queued);
    s.st = nullptr;  // take_back gave it back
    refuse(s, Errc::kQueueFull, refusal::kBandRingFull);
    return;
  }
  unrung_ = true;
  ++accepted_;
  const RequestView& r = rs_[s.index];
  const uint64_t id = first_id_ + s.index;
  Submitted sub;
  sub.request_id = id;
  sub.mode = r.mode;
  sub.band = s.band;
  sub.priority = r.priority;
  sub.created_at_unix_ns = s.enqueued_mono_ns + p_.unix_offset_ns_;
  sub.queue_position = s.queue_position;
  if (s.st != nullptr) sub.outcome = Future(&p_, s.st);
  if (s.has_key) {
    p_.remember_key(s.key, r, id, sub.created_at_unix_ns, s.band, s.rules_now_ns);
  }
  out_[s.index] = std::move(sub);
}

void Producer::Batch::refuse(Staged& s, Errc code, std::string_view why) {
  if (s.has_ticket) seg_.rate_limiter()->refund(s.ticket);
  if (s.has_key) seg_.idempotency()->abandon(s.key);
  s.has_ticket = false;
  s.has_key = false;
  out_[s.index] = Error{code, std::string(why)};
}

void Producer::Batch::ring_doorbell() {
  if (!unrung_) return;
  unrung_ = false;
  shm::notify(seg_.header().doorbell);
}

}  // namespace perfq
