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

}  // namespace
}  // namespace perfq
