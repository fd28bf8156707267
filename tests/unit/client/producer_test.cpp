// The producer against a segment and no agent: this test plays the agent
// (pops the band rings, marks slots DONE, hands them to the completion
// ring), so every step of a submit and of collecting its outcome is in view.
#include "perfq/client/producer.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "perfq/core/atomic.hpp"
#include "perfq/shm/futex.hpp"
#include "perfq/shm/segment.hpp"

// ---------------------------------------------------------------- allocations
// Counts the allocations of the thread inside an AllocationCount scope.
// The replaced operators pair malloc with free; GCC, once it inlines them at
// -O1, takes the pairing for a new/free mismatch.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace {
thread_local bool t_counting = false;
thread_local uint64_t t_allocations = 0;

void* counted_alloc(std::size_t n) {
  if (t_counting) ++t_allocations;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
}  // namespace

void* operator new(std::size_t n) {
  return counted_alloc(n);
}
void* operator new[](std::size_t n) {
  return counted_alloc(n);
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  if (t_counting) ++t_allocations;
  return std::malloc(n == 0 ? 1 : n);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}

namespace perfq {
namespace {

class AllocationCount {
 public:
  AllocationCount() {
    t_allocations = 0;
    t_counting = true;
  }
  ~AllocationCount() { t_counting = false; }
  AllocationCount(const AllocationCount&) = delete;
  AllocationCount& operator=(const AllocationCount&) = delete;
  [[nodiscard]] uint64_t count() const noexcept { return t_allocations; }
};

constexpr uint32_t kSlots = 16;

// A queue name used by this test only; its segment is removed on both ends.
class TestQueue {
 public:
  TestQueue() {
    static std::atomic<uint32_t> seq{0};
    char name[48];
    std::snprintf(name, sizeof name, "u%d-prod%u", static_cast<int>(::getpid()),
                  seq.fetch_add(1, std::memory_order_relaxed));
    name_ = name;
    shm::Segment::remove(name_);
  }
  ~TestQueue() { shm::Segment::remove(name_); }
  TestQueue(const TestQueue&) = delete;
  TestQueue& operator=(const TestQueue&) = delete;
  [[nodiscard]] const std::string& str() const { return name_; }

 private:
  std::string name_;
};

shm::CreateOptions small(uint32_t rate_limit = 0) {
  shm::CreateOptions o;
  o.slot_count = kSlots;
  o.slot_payload_bytes = 64;
  o.max_clients = 4;
  o.rate_limit = rate_limit;
  o.rate_entries = rate_limit == 0 ? 0 : 4;
  return o;
}

// A segment as the agent creates it (no agent runs: max_queue_depth 0, so
// admission bounds nothing but the slots), and a producer on it.
struct Queue {
  explicit Queue(const shm::CreateOptions& opt = small()) {
    shm::Segment::Opened how{};
    auto s = shm::Segment::open_for_agent(name.str(), opt, how);
    if (!s) {
      ADD_FAILURE() << "open_for_agent: " << s.error().message;
      std::abort();
    }
    seg = std::shared_ptr<shm::Segment>(std::move(s.value()));
    auto p = Producer::connect(seg);
    if (!p) {
      ADD_FAILURE() << "connect: " << p.error().message;
      std::abort();
    }
    producer = std::move(p.value());
  }

  // Plays the agent: every request in the band rings is settled with
  // `status` and `result` and handed to its producer. Returns how many.
  size_t settle_all(Status status = Status::kCompleted, std::string_view result = "ok") {
    size_t n = 0;
    for (uint8_t b = 0; b < kBandCount; ++b) {
      BandRing& ring = seg->band(static_cast<Band>(b));
      for (uint32_t i = 0; i <= ring.capacity(); ++i) {  // bounded: one lap
        const BandRing::Pop pop = ring.try_pop(BandRing::Claims::kIgnore);
        if (pop.kind != BandRing::PopKind::kValue) break;
        settle(pop.value, status, result);
        ++n;
      }
    }
    return n;
  }

  void settle(uint32_t slot, Status status, std::string_view result) {
    uint64_t ctl = seg->pool().load(slot);
    const SlotCtl c = SlotCtl::unpack(ctl);
    ASSERT_EQ(c.state, SlotState::kQueued);
    RequestRecord& rec = seg->record(slot);
    rec.status = static_cast<uint8_t>(status);
    rec.error = static_cast<uint8_t>(Errc::kOk);
    rec.attempts = 1;
    rec.result_len = static_cast<uint32_t>(result.size());
    std::memcpy(seg->result(slot), result.data(), result.size());
    ASSERT_TRUE(
        seg->pool().transition(slot, ctl, SlotCtl{c.generation, SlotState::kDone, 0, c.owner}));
    ASSERT_TRUE(seg->completion_ring(c.owner).try_push(slot_ref(slot, c.generation)));
  }

  TestQueue name;
  std::shared_ptr<shm::Segment> seg;
  std::unique_ptr<Producer> producer;
};

RequestView request(std::string_view payload = "{}") {
  RequestView r;
  r.type = "echo";
  r.user_id = "u1";
  r.payload = {reinterpret_cast<const std::byte*>(payload.data()), payload.size()};
  return r;
}

// ---------------------------------------------------------------- pool reuse

TEST(Producer, ASubmitAllocatesNothing) {
  Queue q;
  const RequestView r = request();
  for (int round = 0; round < 3; ++round) {  // later rounds reuse the states
    for (uint32_t i = 0; i < kSlots; ++i) {
      AllocationCount count;
      auto s = q.producer->try_submit(r);
      const uint64_t allocations = count.count();
      ASSERT_TRUE(s.ok()) << s.error().message;
      EXPECT_EQ(allocations, 0u) << "round " << round << ", submit " << i;
    }
    ASSERT_EQ(q.settle_all(), kSlots);
    (void)q.producer->poll();
  }
}

TEST(Producer, SubmitsAndCollectsManyTimesTheSlotsWithoutGrowing) {
  Queue q;
  const RequestView r = request();
  for (uint32_t round = 0; round < 5; ++round) {
    std::vector<Submitted> subs;
    for (uint32_t i = 0; i < kSlots; ++i) {
      auto s = q.producer->submit(r);
      ASSERT_TRUE(s.ok()) << s.error().message;
      subs.push_back(std::move(s.value()));
    }
    EXPECT_EQ(q.producer->future_states().available, 0u);
    ASSERT_EQ(q.settle_all(Status::kCompleted, "done"), kSlots);
    for (Submitted& s : subs) {
      const Outcome& o = s.outcome.get();
      EXPECT_EQ(o.request_id, s.request_id);
      EXPECT_EQ(o.status, Status::kCompleted);
      EXPECT_EQ(o.result_text(), "done");
    }
  }
  const FutureStateStats st = q.producer->future_states();
  EXPECT_EQ(st.capacity, kSlots);
  EXPECT_EQ(st.available, kSlots);
  EXPECT_EQ(st.overflowed, 0u);
}

TEST(Producer, AStateComesBackOnceItsOutcomeIsCollectedAndItsFutureDropped) {
  Queue q;
  {
    auto s = q.producer->submit(request());
    ASSERT_TRUE(s.ok());
    EXPECT_EQ(q.producer->future_states().available, kSlots - 1);
    ASSERT_EQ(q.settle_all(), 1u);
    ASSERT_TRUE(s->outcome.wait_for(std::chrono::seconds(5)));
    EXPECT_EQ(q.producer->future_states().available, kSlots - 1);  // the Future holds it
  }
  EXPECT_EQ(q.producer->future_states().available, kSlots);
  EXPECT_EQ(q.producer->outstanding(), 0u);
}

// Forget: a Future dropped before its outcome arrives; the state comes back
// when the outcome is collected, and the next request gets a clean one.
TEST(Producer, AForgottenRequestsStateComesBackWhenItsOutcomeIsCollected) {
  Queue q;
  {
    auto s = q.producer->submit(request());
    ASSERT_TRUE(s.ok());
  }                                                              // forgotten
  EXPECT_EQ(q.producer->future_states().available, kSlots - 1);  // the producer holds it
  EXPECT_EQ(q.producer->outstanding(), 1u);
  ASSERT_EQ(q.settle_all(Status::kFailed, "first"), 1u);
  EXPECT_EQ(q.producer->poll(), 1u);
  EXPECT_EQ(q.producer->future_states().available, kSlots);
  EXPECT_EQ(q.producer->outstanding(), 0u);

  auto again = q.producer->submit(request());
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->outcome.ready());  // not the forgotten request's outcome
  ASSERT_EQ(q.settle_all(Status::kCompleted, "second"), 1u);
  const Outcome& o = again->outcome.get();
  EXPECT_EQ(o.request_id, again->request_id);
  EXPECT_EQ(o.status, Status::kCompleted);
  EXPECT_EQ(o.result_text(), "second");
}

TEST(Producer, WaitAnyReportsSettledRequestsAndTheirStatesComeBack) {
  Queue q;
  std::vector<uint64_t> ids;
  {
    std::vector<Submitted> subs;
    for (int i = 0; i < 3; ++i) {
      auto s = q.producer->submit(request());
      ASSERT_TRUE(s.ok());
      subs.push_back(std::move(s.value()));
    }
    ASSERT_EQ(q.settle_all(), 3u);
    std::vector<uint64_t> settled;
    EXPECT_EQ(q.producer->wait_any(std::chrono::seconds(5), settled), 3u);
    for (const Submitted& s : subs) {
      EXPECT_NE(std::find(settled.begin(), settled.end(), s.request_id), settled.end());
      EXPECT_TRUE(s.outcome.ready());
    }
  }
  EXPECT_EQ(q.producer->future_states().available, kSlots);
}

// Futures kept past the pool's size still work; only those go to the heap,
// and they are freed, not pooled, when dropped.
TEST(Producer, SettledFuturesKeptBeyondThePoolFallBackToTheHeap) {
  Queue q;
  std::vector<Submitted> kept;
  for (uint32_t round = 0; round < 3; ++round) {
    for (uint32_t i = 0; i < kSlots; ++i) {
      auto s = q.producer->submit(request());
      ASSERT_TRUE(s.ok()) << s.error().message;
      kept.push_back(std::move(s.value()));
    }
    ASSERT_EQ(q.settle_all(), kSlots);
    (void)q.producer->poll();  // the slots come back; the states stay with the Futures
  }
  EXPECT_EQ(q.producer->future_states().overflowed, 2u * kSlots);
  for (Submitted& s : kept) {
    ASSERT_TRUE(s.outcome.ready());
    EXPECT_EQ(s.outcome.get().request_id, s.request_id);
  }
  kept.clear();
  EXPECT_EQ(q.producer->future_states().available, kSlots);
}

// Close with requests in flight: their Futures stay valid and unready, and
// are dropped after the producer without touching it.
TEST(Producer, ClosingWithRequestsInFlightLeavesTheirFuturesUnready) {
  Queue q;
  std::vector<Submitted> subs;
  for (int i = 0; i < 3; ++i) {
    auto s = q.producer->submit(request());
    ASSERT_TRUE(s.ok());
    subs.push_back(std::move(s.value()));
  }
  ASSERT_EQ(q.settle_all(), 3u);
  ASSERT_TRUE(subs[0].outcome.wait_for(std::chrono::seconds(5)));  // collects all three
  auto late = q.producer->submit(request());
  ASSERT_TRUE(late.ok());
  q.producer.reset();  // closed with `late` in flight
  EXPECT_TRUE(late->outcome.valid());
  EXPECT_FALSE(late->outcome.ready());
  for (const Submitted& s : subs) EXPECT_TRUE(s.outcome.ready());
  subs.clear();  // the pool outlives the producer until its last Future goes
}

// ---------------------------------------------------------------- refusals

TEST(Producer, TrySubmitAtMaxQueueDepthIsQueueFullWithAStaticMessage) {
  Queue q;
  store_relaxed(q.seg->header().max_queue_depth, uint64_t{2});
  std::vector<Submitted> subs;
  for (int i = 0; i < 2; ++i) {
    auto s = q.producer->try_submit(request());
    ASSERT_TRUE(s.ok());
    subs.push_back(std::move(s.value()));
  }
  auto refused = q.producer->try_submit(request());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::kQueueFull);
  EXPECT_EQ(refused.error().message, refusal::kQueueAtDepth);
  EXPECT_EQ(q.producer->future_states().available, kSlots - 2);  // none taken for it
  // submit waits rope_drop_timeout_ms (0 here) for room, then says the same.
  auto waited = q.producer->submit(request());
  ASSERT_FALSE(waited.ok());
  EXPECT_EQ(waited.error().message, refusal::kQueueAtDepth);
}

// A submit that waits for room (the give_up overload) parks as a counted
// waiter, so the agent's notify of `room` wakes it (issue 13, 21): before,
// it waited on the word without raising `waiters` and woke only at the end
// of each 20 ms slice.
TEST(Producer, ASubmitWaitingForRoomIsACountedWaiter) {
  Queue q;
  store_relaxed(q.seg->header().max_queue_depth, uint64_t{1});
  store_relaxed(q.seg->header().rope_drop_timeout_ms, uint64_t{60'000});
  auto first = q.producer->try_submit(request());
  ASSERT_TRUE(first.ok());
  std::atomic<bool> stop{false};
  Result<Submitted> waited = Error{Errc::kInternal, "not run"};
  std::thread t([&] { waited = q.producer->submit(request(), [&] { return stop.load(); }); });
  WaitWord& room = q.seg->header().room;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (load_relaxed(room.waiters) == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_GE(load_relaxed(room.waiters), 1u) << "the waiting submit is not a counted waiter";
  stop = true;
  shm::notify(room);
  t.join();
  ASSERT_FALSE(waited.ok());
  EXPECT_EQ(waited.error().code, Errc::kQueueFull);
  EXPECT_EQ(load_relaxed(room.waiters), 0u);
}

TEST(Producer, AnUnreadableDepthIsQueueFullWithAStaticMessage) {
  Queue q;
  store_relaxed(q.seg->header().max_queue_depth, uint64_t{2});
  aref(q.seg->header().admission.seq).store(1, std::memory_order_relaxed);  // agent mid-write
  auto refused = q.producer->try_submit(request());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::kQueueFull);
  EXPECT_EQ(refused.error().message, refusal::kDepthUnknown);
}

TEST(Producer, NoFreeSlotIsQueueFullWithAStaticMessage) {
  Queue q;
  std::vector<Submitted> subs;
  for (uint32_t i = 0; i < kSlots; ++i) {
    auto s = q.producer->try_submit(request());
    ASSERT_TRUE(s.ok());
    subs.push_back(std::move(s.value()));
  }
  auto refused = q.producer->try_submit(request());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::kQueueFull);
  EXPECT_EQ(refused.error().message, refusal::kNoFreeSlot);
  EXPECT_EQ(q.producer->outstanding(), kSlots);
}

// A band ring that refuses the slot (a broken segment: here nobody popped
// the ring while the slots came back) gives back the slot and the state.
TEST(Producer, ABandRingThatRefusesTheSlotGivesBackSlotAndState) {
  Queue q;
  BandRing& ring = q.seg->band(band_for(Mode::kFifo, kPriorityDefault));
  std::vector<uint64_t> ids;
  for (uint32_t i = 0; i < ring.capacity(); ++i) {
    auto s = q.producer->try_submit(request());
    ASSERT_TRUE(s.ok()) << i << ": " << s.error().message;
    // Settled without popping its ring entry: the slot comes back, the
    // ring keeps filling.
    const uint32_t slot = [&] {
      for (uint32_t k = 0; k < q.seg->geometry().slot_count; ++k) {
        const SlotCtl c = SlotCtl::unpack(q.seg->pool().load(k));
        if (c.state == SlotState::kQueued &&
            load_relaxed(q.seg->record(k).request_id) == s->request_id) {
          return k;
        }
      }
      return UINT32_MAX;
    }();
    ASSERT_NE(slot, UINT32_MAX);
    q.settle(slot, Status::kCompleted, "x");
    ASSERT_TRUE(s->outcome.wait_for(std::chrono::seconds(5)));
  }
  const uint64_t before = q.producer->outstanding();
  auto refused = q.producer->try_submit(request());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::kQueueFull);
  EXPECT_EQ(refused.error().message, refusal::kBandRingFull);
  EXPECT_EQ(q.producer->outstanding(), before);
  EXPECT_EQ(q.producer->future_states().available, kSlots);
  for (uint32_t k = 0; k < q.seg->geometry().slot_count; ++k) {
    EXPECT_EQ(SlotCtl::unpack(q.seg->pool().load(k)).state, SlotState::kFree) << k;
  }
}

TEST(Producer, OverTheRateLimitTheMessageIsStaticAndTheWaitAField) {
  Queue q(small(/*rate_limit=*/2));
  std::vector<Submitted> subs;
  for (int i = 0; i < 2; ++i) {
    auto s = q.producer->try_submit(request());
    ASSERT_TRUE(s.ok()) << s.error().message;
    subs.push_back(std::move(s.value()));
  }
  auto refused = q.producer->try_submit(request());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::kRateLimitExceeded);
  EXPECT_EQ(refused.error().message, "over max_requests_per_user_per_minute; see retry_after_ms");
  EXPECT_GT(refused.error().retry_after_ms, 0u);
}

TEST(Producer, AnInvalidRequestIsRefusedBeforeItTakesAnything) {
  Queue q;
  RequestView r = request();
  r.type = "no spaces";
  auto refused = q.producer->try_submit(r);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::kInvalidRequest);
  EXPECT_EQ(refused.error().message, validate(r, 64).message);
  EXPECT_EQ(q.producer->future_states().available, kSlots);
  EXPECT_EQ(q.producer->outstanding(), 0u);
}

// ---------------------------------------------------------------- submit_many

RequestView request_as(std::string_view user, Mode mode, uint8_t priority,
                       std::string_view key = {}) {
  RequestView r = request();
  r.user_id = user;
  r.mode = mode;
  r.priority = priority;
  r.idempotency_key = key;
  return r;
}

// Which request ids each band ring holds, in ring order (pops them).
std::vector<std::vector<uint64_t>> take_ids_by_band(Queue& q) {
  std::vector<std::vector<uint64_t>> ids(kBandCount);
  for (uint8_t b = 0; b < kBandCount; ++b) {
    BandRing& ring = q.seg->band(static_cast<Band>(b));
    for (uint32_t i = 0; i <= ring.capacity(); ++i) {  // bounded: one lap
      const BandRing::Pop pop = ring.try_pop(BandRing::Claims::kIgnore);
      if (pop.kind != BandRing::PopKind::kValue) break;
      ids[b].push_back(load_relaxed(q.seg->record(pop.value).request_id));
      q.settle(pop.value, Status::kCompleted, "ok");
    }
  }
  return ids;
}

TEST(ProducerSubmitMany, ABatchAcrossBandsAndModesArrivesInOrderAndEachOutcomeOnce) {
  Queue q;
  const std::vector<RequestView> rs = {
      request_as("u1", Mode::kFifo, 5),      request_as("u1", Mode::kPriority, 20),
      request_as("u2", Mode::kPriority, 12), request_as("u2", Mode::kPriority, 7),
      request_as("u3", Mode::kPriority, 3),  request_as("u3", Mode::kBatch, 15),
      request_as("u1", Mode::kFifo, 19),     request_as("u2", Mode::kPriority, 20),
      request_as("u3", Mode::kBatch, 1),     request_as("u1", Mode::kPriority, 9)};
  std::vector<Result<Submitted>> out;
  ASSERT_EQ(q.producer->submit_many(rs, out), rs.size());
  ASSERT_EQ(out.size(), rs.size());
  std::vector<std::vector<uint64_t>> expected(kBandCount);
  for (size_t i = 0; i < rs.size(); ++i) {
    ASSERT_TRUE(out[i].ok()) << i << ": " << out[i].error().message;
    EXPECT_EQ(out[i]->band, band_for(rs[i].mode, rs[i].priority)) << i;
    EXPECT_EQ(out[i]->mode, rs[i].mode);
    EXPECT_FALSE(out[i]->duplicate);
    EXPECT_TRUE(out[i]->outcome.valid());
    if (i > 0) {
      EXPECT_GT(out[i]->request_id, out[i - 1]->request_id);  // batch order
    }
    expected[static_cast<uint8_t>(out[i]->band)].push_back(out[i]->request_id);
  }
  // Each band holds its requests once, in batch order.
  EXPECT_EQ(take_ids_by_band(q), expected);
  for (size_t i = 0; i < rs.size(); ++i) {
    ASSERT_TRUE(out[i]->outcome.wait_for(std::chrono::seconds(5))) << i;
    EXPECT_EQ(out[i]->outcome.get().request_id, out[i]->request_id);
  }
  EXPECT_EQ(q.producer->poll(), 0u);  // nothing delivered twice
  EXPECT_EQ(q.producer->outstanding(), 0u);
}

TEST(ProducerSubmitMany, EachBandRingIsClaimedOncePerBatchAndEachSlotOnce) {
  struct Counts {
    int slots = 0;
    int ring_claims = 0;
  } counts;
  Queue q;
  ProducerOptions opt;
  opt.hook = [](SubmitPoint p, void* arg) {
    auto* c = static_cast<Counts*>(arg);
    if (p == SubmitPoint::kSlotClaimed) ++c->slots;
    if (p == SubmitPoint::kRingClaimed) ++c->ring_claims;
  };
  opt.hook_arg = &counts;
  auto p = Producer::connect(q.seg, opt);
  ASSERT_TRUE(p.ok());
  const std::vector<RequestView> rs = {
      request_as("u1", Mode::kFifo, 5),      request_as("u1", Mode::kFifo, 5),
      request_as("u1", Mode::kPriority, 20), request_as("u1", Mode::kFifo, 5),
      request_as("u1", Mode::kPriority, 20), request_as("u1", Mode::kPriority, 2)};
  std::vector<Result<Submitted>> out;
  ASSERT_EQ((*p)->submit_many(rs, out), rs.size());
  EXPECT_EQ(counts.slots, 6);
  EXPECT_EQ(counts.ring_claims, 3);  // NORMAL, CRITICAL, LOW: one claim each
  EXPECT_EQ(q.settle_all(), rs.size());
}

// A counted waiter on the doorbell makes every notify visible in its seq.
TEST(ProducerSubmitMany, RingsTheAgentsDoorbellOncePerBatch) {
  Queue q;
  WaitWord& bell = q.seg->header().doorbell;
  aref(bell.waiters).fetch_add(1, std::memory_order_seq_cst);  // an agent asleep
  const std::vector<RequestView> rs(8, request());
  uint32_t seq = load_relaxed(bell.seq);
  for (const RequestView& r : rs) ASSERT_TRUE(q.producer->try_submit(r).ok());
  EXPECT_EQ(load_relaxed(bell.seq) - seq, 8u);  // submit: once each
  ASSERT_EQ(q.settle_all(), 8u);
  (void)q.producer->poll();
  std::vector<Result<Submitted>> out;
  seq = load_relaxed(bell.seq);
  ASSERT_EQ(q.producer->submit_many(rs, out), 8u);
  EXPECT_EQ(load_relaxed(bell.seq) - seq, 1u);  // submit_many: once
  aref(bell.waiters).fetch_sub(1, std::memory_order_seq_cst);
}

TEST(ProducerSubmitMany, InvalidMembersAreAnsweredAndTheValidOnesGoThrough) {
  Queue q;
  const std::string big(65, 'x');  // the slot holds 64 bytes
  std::vector<RequestView> rs(6, request());
  rs[1].type = "bad type!";
  rs[2].mode = Mode::kPriority;
  rs[2].priority = 21;
  rs[3].mode = static_cast<Mode>(7);
  rs[4].payload = {reinterpret_cast<const std::byte*>(big.data()), big.size()};
  std::vector<Result<Submitted>> out;
  ASSERT_EQ(q.producer->submit_many(rs, out), 2u);
  ASSERT_EQ(out.size(), 6u);
  EXPECT_TRUE(out[0].ok());
  EXPECT_EQ(out[1].code(), Errc::kInvalidRequest);
  EXPECT_EQ(out[2].code(), Errc::kInvalidPriority);
  EXPECT_EQ(out[3].code(), Errc::kInvalidMode);
  EXPECT_EQ(out[4].code(), Errc::kInvalidRequest);
  EXPECT_TRUE(out[5].ok());
  EXPECT_EQ(q.settle_all(), 2u);
  EXPECT_EQ(q.producer->future_states().available, kSlots - 2);  // none taken for the invalid
}

TEST(ProducerSubmitMany, PastTheRoomTryAnswersQueueFullAtOnceForTheRest) {
  Queue q;
  store_relaxed(q.seg->header().max_queue_depth, uint64_t{3});
  const std::vector<RequestView> rs(5, request());
  std::vector<Result<Submitted>> out;
  ASSERT_EQ(q.producer->try_submit_many(rs, out), 3u);
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(out[i].ok()) << i;
    EXPECT_EQ(out[i]->queue_position, i);  // behind the batch's earlier ones
  }
  for (size_t i = 3; i < 5; ++i) {
    ASSERT_EQ(out[i].code(), Errc::kQueueFull) << i;
    EXPECT_EQ(out[i].error().message, refusal::kQueueAtDepth);
  }
  EXPECT_EQ(q.producer->future_states().available, kSlots - 3);
  // A waiting batch with no rope-drop time left answers the same.
  ASSERT_EQ(q.producer->submit_many(rs, out), 0u);
  for (const auto& a : out) EXPECT_EQ(a.code(), Errc::kQueueFull);
  EXPECT_EQ(q.settle_all(), 3u);
}

// The ones that fit are published before the batch waits; the rest go in
// once room appears, within one rope-drop wait.
TEST(ProducerSubmitMany, PastTheRoomPublishesWhatFitsThenWaitsForRoom) {
  Queue q;
  store_relaxed(q.seg->header().max_queue_depth, uint64_t{3});
  store_relaxed(q.seg->header().rope_drop_timeout_ms, uint64_t{60'000});
  const std::vector<RequestView> rs(5, request());
  std::vector<Result<Submitted>> out;
  std::atomic<bool> stop{false};
  size_t accepted = 0;
  std::thread t([&] {
    SubmitManyOptions opt;
    opt.give_up = [&] { return stop.load(); };
    accepted = q.producer->submit_many(rs, out, opt);
  });
  WaitWord& room = q.seg->header().room;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (load_relaxed(room.waiters) == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_GE(load_relaxed(room.waiters), 1u) << "the batch does not wait as a counted waiter";
  // The three that fit are in the rings while it waits: take them, and
  // publish the room that makes (as the agent would).
  EXPECT_EQ(q.settle_all(), 3u);
  const uint64_t band_depth[kBandCount] = {};
  shm::publish_admission(*q.seg, 0, band_depth);
  shm::notify(room);
  t.join();
  EXPECT_EQ(accepted, 5u);
  for (const auto& a : out) EXPECT_TRUE(a.ok());
  EXPECT_EQ(q.settle_all(), 2u);
}

TEST(ProducerSubmitMany, ForgottenOutcomesAreCollectedAndDropped) {
  Queue q;
  const std::vector<RequestView> rs(kSlots, request());
  SubmitManyOptions opt;
  opt.forget = true;
  std::vector<Result<Submitted>> out;
  for (int round = 0; round < 3; ++round) {  // the slots come back each time
    ASSERT_EQ(q.producer->submit_many(rs, out, opt), kSlots) << round;
    for (const auto& a : out) EXPECT_FALSE(a->outcome.valid());
    EXPECT_EQ(q.producer->future_states().available, kSlots);  // no state taken
    EXPECT_EQ(q.producer->outstanding(), kSlots);
    ASSERT_EQ(q.settle_all(), kSlots);
    EXPECT_EQ(q.producer->poll(), kSlots);
    EXPECT_EQ(q.producer->outstanding(), 0u);
  }
}

shm::CreateOptions with_keys(uint32_t rate_limit = 0) {
  shm::CreateOptions o = small(rate_limit);
  o.idempotency_entries = 64;
  return o;
}

TEST(ProducerSubmitMany, RepeatedKeysInsideTheBatchAndAgainstEarlierSubmitsAreDuplicates) {
  Queue q(with_keys());
  // No agent has set the TTL: keys would expire at once.
  store_relaxed(q.seg->header().idempotency_ttl_ms, uint64_t{60'000});
  auto earlier = q.producer->submit(request_as("u1", Mode::kFifo, 5, "k-old"));
  ASSERT_TRUE(earlier.ok());
  const std::vector<RequestView> rs = {
      request_as("u1", Mode::kFifo, 5, "k1"),     // new
      request_as("u1", Mode::kFifo, 5, "k1"),     // same batch: duplicate of 0
      request_as("u2", Mode::kFifo, 5, "k1"),     // another user: new
      request_as("u1", Mode::kFifo, 5, "k-old"),  // duplicate of the earlier submit
      request_as("u1", Mode::kFifo, 5),           // no key
      request_as("u1", Mode::kFifo, 5, "k1")};    // again
  std::vector<Result<Submitted>> out;
  ASSERT_EQ(q.producer->submit_many(rs, out), rs.size());
  for (const auto& a : out) ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_FALSE(out[0]->duplicate);
  EXPECT_TRUE(out[1]->duplicate);
  EXPECT_EQ(out[1]->request_id, out[0]->request_id);
  EXPECT_FALSE(out[1]->outcome.valid());
  EXPECT_FALSE(out[2]->duplicate);
  EXPECT_NE(out[2]->request_id, out[0]->request_id);
  EXPECT_TRUE(out[3]->duplicate);
  EXPECT_EQ(out[3]->request_id, earlier->request_id);
  EXPECT_FALSE(out[4]->duplicate);
  EXPECT_TRUE(out[5]->duplicate);
  EXPECT_EQ(out[5]->request_id, out[0]->request_id);
  EXPECT_EQ(q.settle_all(), 1u + 3u);  // the earlier one and three new ones
}

TEST(ProducerSubmitMany, ARateLimitHitMidBatchRefusesOnlyThatUsersExcess) {
  Queue q(with_keys(/*rate_limit=*/3));
  const std::vector<RequestView> rs = {request_as("u1", Mode::kFifo, 5),
                                       request_as("u1", Mode::kFifo, 5),
                                       request_as("u2", Mode::kFifo, 5),
                                       request_as("u1", Mode::kFifo, 5),
                                       request_as("u1", Mode::kFifo, 5, "key-of-a-refused-one"),
                                       request_as("u2", Mode::kFifo, 5)};
  std::vector<Result<Submitted>> out;
  ASSERT_EQ(q.producer->submit_many(rs, out), 5u);
  for (size_t i : {0, 1, 2, 3, 5}) EXPECT_TRUE(out[i].ok()) << i;
  ASSERT_EQ(out[4].code(), Errc::kRateLimitExceeded);
  EXPECT_GT(out[4].error().retry_after_ms, 0u);
  EXPECT_EQ(q.settle_all(), 5u);
  // The refused one's key was released: refused again for the limit, not
  // answered as a duplicate.
  auto again = q.producer->try_submit(rs[4]);
  EXPECT_EQ(again.code(), Errc::kRateLimitExceeded);
}

// A refusal after the rules (no free slot) gives the rate ticket back.
TEST(ProducerSubmitMany, ARequestRefusedForRoomIsNotRateCounted) {
  Queue q(with_keys(/*rate_limit=*/3));
  store_relaxed(q.seg->header().max_queue_depth, uint64_t{1});
  const std::vector<RequestView> rs(3, request_as("u1", Mode::kFifo, 5));
  std::vector<Result<Submitted>> out;
  ASSERT_EQ(q.producer->try_submit_many(rs, out), 1u);
  EXPECT_EQ(out[1].code(), Errc::kQueueFull);
  EXPECT_EQ(out[2].code(), Errc::kQueueFull);
  ASSERT_EQ(q.settle_all(), 1u);
  (void)q.producer->poll();
  const uint64_t band_depth[kBandCount] = {};
  shm::publish_admission(*q.seg, 0, band_depth);
  // Two more of u1's three are left.
  EXPECT_TRUE(q.producer->try_submit(rs[0]).ok());
  ASSERT_EQ(q.settle_all(), 1u);
  shm::publish_admission(*q.seg, 0, band_depth);
  EXPECT_TRUE(q.producer->try_submit(rs[0]).ok());
}

}  // namespace
}  // namespace perfq
