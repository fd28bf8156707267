// SPEC §5 submit rules that live in shared memory and span producer
// processes: idempotency (per user, surviving agent restarts, not rate
// counted), the rolling-minute rate limit across three producer processes,
// and status lookups with their owner check and retention.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "perfq/shm/admission.hpp"
#include "perfq/shm/status.hpp"

namespace perfq {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kMs = 1'000'000;

// A clock whose time lives in a MAP_SHARED page: set before fork, every
// child process reads the time the test sets.
class SharedClock final : public Clock {
 public:
  SharedClock() {
    void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) std::abort();
    now_ = static_cast<std::atomic<uint64_t>*>(p);
    now_->store(1'000'000 * kMs, std::memory_order_relaxed);
  }
  ~SharedClock() override { ::munmap(now_, 4096); }
  SharedClock(const SharedClock&) = delete;
  SharedClock& operator=(const SharedClock&) = delete;
  uint64_t now_mono_ns() const noexcept override { return now_->load(std::memory_order_acquire); }
  uint64_t now_unix_ns() const noexcept override { return unix_now_ns(); }
  void advance_ms(uint64_t ms) { now_->fetch_add(ms * kMs, std::memory_order_acq_rel); }

 private:
  std::atomic<uint64_t>* now_ = nullptr;
};

RequestView req(std::string_view user, std::string_view key = {}, std::string_view type = "chat") {
  RequestView r = test::make_request(type, user, "p", Mode::kPriority, 5);
  r.idempotency_key = key;
  return r;
}

// ---------------------------------------------------------------- rate limit

// Exit codes of a rate-limit child's last submit.
constexpr int kAccepted = 0;
constexpr int kRefused = 10;

TEST(RateLimit, TheSixtyFirstSubmitInAMinuteIsRefusedAcrossThreeProducerProcesses) {
  test::QueueName q;
  auto cfg = test::test_config(q.str());
  cfg.max_requests_per_user_per_minute = 60;
  test::AgentThread agent(cfg);
  SharedClock clock;
  struct Party {
    test::Signal filled;  // child -> test: its 20 submits were accepted
    test::Signal go;      // test -> child: make the 61st attempt
    test::Signal answer;  // child -> test: retry_after_ms / 1000, or 0
    test::Child child;
  };
  std::vector<std::unique_ptr<Party>> parties;
  for (int i = 0; i < 3; ++i) {
    auto party = std::make_unique<Party>();
    Party* pp = party.get();
    party->child = test::Child([&, pp] {
      pp->filled.close_read();
      pp->go.close_write();
      pp->answer.close_read();
      ProducerOptions opt;
      opt.clock = &clock;
      auto p = Producer::connect(q.str(), opt);
      if (!p) return 2;
      for (int k = 0; k < 20; ++k) {
        if (!(*p)->try_submit(req("alice")).ok()) return 3;
      }
      pp->filled.notify();
      if (pp->go.wait(30s) != 1) return 4;
      auto s = (*p)->try_submit(req("alice"));
      if (s.ok()) return kAccepted;
      if (s.code() != Errc::kRateLimitExceeded) return 5;
      // Tell the test how long it was told to wait, in whole seconds (rounded up).
      pp->answer.notify(static_cast<uint8_t>((s.error().retry_after_ms + 999) / 1000));
      return kRefused;
    });
    party->filled.close_write();
    party->go.close_read();
    party->answer.close_write();
    parties.push_back(std::move(party));
  }
  for (auto& pt : parties) ASSERT_EQ(pt->filled.wait(30s), 1) << "a producer was refused early";
  // 60 accepted at t0, across three processes. The 61st is refused ...
  parties[0]->go.notify();
  EXPECT_EQ(parties[0]->answer.wait(30s), 60);  // retryAfterMs: the whole minute
  EXPECT_EQ(parties[0]->child.wait(30s), kRefused);
  // ... until the first of the 60 leaves the window.
  clock.advance_ms(59'999);
  parties[1]->go.notify();
  EXPECT_EQ(parties[1]->answer.wait(30s), 1);  // 1 ms left, rounded up to 1 s
  EXPECT_EQ(parties[1]->child.wait(30s), kRefused);
  clock.advance_ms(1);
  parties[2]->go.notify();
  EXPECT_EQ(parties[2]->child.wait(30s), kAccepted);
  // Another user was never limited by alice's minute.
  ProducerOptions opt;
  opt.clock = &clock;
  auto p = Producer::connect(agent.segment(), opt);
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE((*p)->try_submit(req("bob")).ok());
}

TEST(RateLimit, RefusedAndDuplicateSubmitsAreNotCounted) {
  test::QueueName q;
  auto cfg = test::test_config(q.str());
  cfg.max_requests_per_user_per_minute = 2;
  cfg.max_queue_depth = 2;
  test::AgentThread agent(cfg);
  SharedClock clock;
  ProducerOptions opt;
  opt.clock = &clock;
  auto p = Producer::connect(agent.segment(), opt);
  ASSERT_TRUE(p.ok());
  auto first = (*p)->try_submit(req("alice", "k1"));
  ASSERT_TRUE(first.ok());
  for (int i = 0; i < 5; ++i) {
    auto again = (*p)->try_submit(req("alice", "k1"));
    ASSERT_TRUE(again.ok());
    EXPECT_TRUE(again->duplicate);
  }
  // Five duplicates later alice has used one of her two.
  auto second = (*p)->try_submit(req("alice", "k2"));
  ASSERT_TRUE(second.ok()) << second.error().message << " occupancy "
                           << shm::occupancy(*agent.segment()).depth << " submitted "
                           << test::counters(*agent.segment()).submitted;
  auto third = (*p)->try_submit(req("alice", "k3"));
  ASSERT_EQ(third.code(), Errc::kRateLimitExceeded);
  EXPECT_EQ(third.error().retry_after_ms, 60'000u);
  // Refusals did not count: a minute later both of her two are back.
  clock.advance_ms(60'000);
  // The queue is full now (depth 2, no worker): QUEUE_FULL, and not counted.
  EXPECT_EQ((*p)->try_submit(req("alice")).code(), Errc::kQueueFull);
  EXPECT_EQ((*p)->try_submit(req("alice")).code(), Errc::kQueueFull);
  EXPECT_EQ((*p)->try_submit(req("alice")).code(), Errc::kQueueFull);
  ASSERT_TRUE((*p)->cancel(first->request_id, "alice").ok());
  Errc last = Errc::kOk;
  ASSERT_TRUE(test::eventually(
      [&] {
        auto s = (*p)->try_submit(req("alice", "k4"));
        last = s.code();
        return s.ok();
      },
      10s))
      << errc_name(last);
}

// ---------------------------------------------------------------- idempotency

TEST(Idempotency, AKeySeenAgainReturnsTheOriginalRequestAndCreatesNothing) {
  test::QueueName q;
  auto cfg = test::test_config(q.str());
  test::AgentThread agent(cfg);
  auto p = Producer::connect(agent.segment());
  ASSERT_TRUE(p.ok());
  auto a = (*p)->try_submit(req("alice", "order-7"));
  ASSERT_TRUE(a.ok());
  EXPECT_FALSE(a->duplicate);
  auto again = (*p)->try_submit(req("alice", "order-7", "other-type"));
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->duplicate);
  EXPECT_EQ(again->request_id, a->request_id);
  EXPECT_EQ(again->created_at_unix_ns, a->created_at_unix_ns);
  EXPECT_EQ(again->status, Status::kPending);
  EXPECT_FALSE(again->outcome.valid());
  // Another user's equal key is another request.
  auto b = (*p)->try_submit(req("bob", "order-7"));
  ASSERT_TRUE(b.ok());
  EXPECT_FALSE(b->duplicate);
  EXPECT_NE(b->request_id, a->request_id);
  // A second producer process sees the same table.
  test::Child other([&] {
    auto p2 = Producer::connect(q.str());
    if (!p2) return 2;
    auto s = (*p2)->try_submit(req("alice", "order-7"));
    return s.ok() && s->duplicate && s->request_id == a->request_id ? 0 : 1;
  });
  EXPECT_EQ(other.wait(30s), 0);
  ASSERT_TRUE(
      test::eventually([&] { return test::counters(*agent.segment()).submitted == 2; }, 10s));
}

TEST(Idempotency, KeysExpireAfterTheirTtl) {
  test::QueueName q;
  auto cfg = test::test_config(q.str());
  cfg.idempotency_ttl_ms = 1000;
  test::AgentThread agent(cfg);
  SharedClock clock;
  ProducerOptions opt;
  opt.clock = &clock;
  auto p = Producer::connect(agent.segment(), opt);
  ASSERT_TRUE(p.ok());
  auto a = (*p)->try_submit(req("alice", "k"));
  ASSERT_TRUE(a.ok());
  clock.advance_ms(999);
  EXPECT_TRUE((*p)->try_submit(req("alice", "k"))->duplicate);
  clock.advance_ms(1);
  auto fresh = (*p)->try_submit(req("alice", "k"));
  ASSERT_TRUE(fresh.ok());
  EXPECT_FALSE(fresh->duplicate);
  EXPECT_NE(fresh->request_id, a->request_id);
}

TEST(Idempotency, TheTableSurvivesAnAgentRestart) {
  test::QueueName q;
  auto cfg = test::test_config(q.str());
  uint64_t first_id = 0;
  {
    test::AgentThread agent(cfg);
    auto p = Producer::connect(agent.segment());
    ASSERT_TRUE(p.ok());
    auto a = (*p)->try_submit(req("alice", "once"));
    ASSERT_TRUE(a.ok());
    first_id = a->request_id;
  }
  test::AgentThread agent(cfg);  // re-attaches to the segment
  auto p = Producer::connect(agent.segment());
  ASSERT_TRUE(p.ok());
  auto again = (*p)->try_submit(req("alice", "once"));
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->duplicate);
  EXPECT_EQ(again->request_id, first_id);
}

TEST(Idempotency, AProducerKilledMidSubmitDoesNotHoldItsKeyForever) {
  test::QueueName q;
  auto cfg = test::test_config(q.str());
  test::AgentThread agent(cfg);
  test::Signal claimed;
  test::Child child([&] {
    claimed.close_read();
    ProducerOptions opt;
    // Stops with the key claimed and the slot taken, never to publish.
    opt.hook = [](SubmitPoint at, void* arg) {
      if (at != SubmitPoint::kSlotClaimed) return;
      static_cast<test::Signal*>(arg)->notify();
      ::pause();
    };
    opt.hook_arg = &claimed;
    auto p = Producer::connect(q.str(), opt);
    if (!p) return 2;
    (void)(*p)->try_submit(req("alice", "stuck"));
    return 3;
  });
  claimed.close_write();
  ASSERT_EQ(claimed.wait(30s), 1);
  child.kill();
  ASSERT_EQ(child.wait(30s), 128 + SIGKILL);
  auto p = Producer::connect(agent.segment());
  ASSERT_TRUE(p.ok());
  // The agent frees the dead producer's claim; the key then makes a request.
  ASSERT_TRUE(test::eventually(
      [&] {
        auto s = (*p)->try_submit(req("alice", "stuck"));
        return s.ok() && !s->duplicate;
      },
      10s));
}

// ---------------------------------------------------------------- status

TEST(StatusLookup, OnlyTheOwnerOrAnAdminSeesARequest) {
  test::QueueName q;
  auto cfg = test::test_config(q.str());
  test::AgentThread agent(cfg);
  auto p = Producer::connect(agent.segment());
  ASSERT_TRUE(p.ok());
  auto a = (*p)->try_submit(req("alice", {}, "nobody-serves-this"));
  ASSERT_TRUE(a.ok());
  auto mine = (*p)->status(a->request_id, shm::Caller{"alice"});
  ASSERT_TRUE(mine.ok());
  EXPECT_EQ(mine->status, Status::kPending);
  EXPECT_EQ(mine->type, "nobody-serves-this");
  EXPECT_EQ(mine->user_id, "alice");
  // No worker has the type: the status says so.
  EXPECT_EQ(mine->error, Errc::kWorkerUnavailable);
  EXPECT_EQ((*p)->status(a->request_id, shm::Caller{"mallory"}).code(), Errc::kNotFound);
  EXPECT_TRUE((*p)->status(a->request_id, shm::Caller{"", true}).ok());
  EXPECT_EQ((*p)->status(a->request_id + 1'000'000, shm::Caller{"alice"}).code(), Errc::kNotFound);
  // Others cannot cancel it either; an admin can.
  EXPECT_EQ((*p)->cancel(a->request_id, shm::Caller{"mallory"}).code(), Errc::kNotFound);
  ASSERT_TRUE((*p)->cancel(a->request_id, shm::Caller{"", true}).ok());
  ASSERT_TRUE(a->outcome.wait_for(10s));
  auto after = (*p)->status(a->request_id, shm::Caller{"alice"});
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->status, Status::kCancelled);
  // Finished: not cancellable any more.
  EXPECT_EQ((*p)->cancel(a->request_id, shm::Caller{"alice"}).code(), Errc::kInvalidStatus);
}

TEST(StatusLookup, FinishedRequestsAreKeptUntilTheTableWraps) {
  test::QueueName q;
  auto cfg = test::test_config(q.str());
  cfg.status_table_entries = 4;
  test::AgentThread agent(cfg);
  // The worker runs in a thread: ThreadSanitizer sees it, and nothing forks
  // a process that already has threads.
  auto w = Worker::connect(agent.segment());
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->register_processor("echo", [](const Job&) { return Reply::ok("done"); }).ok());
  std::atomic<bool> stop{false};
  std::thread worker([&] { (*w)->run(stop); });
  struct Join {
    std::atomic<bool>& stop;
    std::thread& t;
    ~Join() {
      stop = true;
      t.join();
    }
  } join{stop, worker};
  auto p = Producer::connect(agent.segment());
  ASSERT_TRUE(p.ok());
  auto run = [&] {
    auto s = (*p)->submit(req("alice", {}, "echo"));
    EXPECT_TRUE(s.ok());
    EXPECT_EQ(s->outcome.get().status, Status::kCompleted);
    return s->request_id;
  };
  const uint64_t first = run();
  // Its slot is free again; the table answers.
  auto st = (*p)->status(first, shm::Caller{"alice"});
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->status, Status::kCompleted);
  EXPECT_EQ(st->attempts, 1);
  EXPECT_NE(st->finished_at_unix_ns, 0u);
  EXPECT_EQ((*p)->status(first, shm::Caller{"bob"}).code(), Errc::kNotFound);
  // Three more requests keep it (4 entries) ...
  for (int i = 0; i < 3; ++i) (void)run();
  EXPECT_TRUE((*p)->status(first, shm::Caller{"alice"}).ok());
  // ... the fourth takes its entry.
  (void)run();
  EXPECT_EQ((*p)->status(first, shm::Caller{"alice"}).code(), Errc::kNotFound);
}

// Lookups and cancels read slots that other threads are reusing at the same
// time: each answer is whole (the request's own type and user), and under
// ThreadSanitizer no access races.
TEST(StatusLookup, LookupsWhileSlotsAreReusedSeeWholeRequests) {
  test::QueueName q;
  auto cfg = test::test_config(q.str());
  cfg.slots = 64;  // few slots: reused all the time
  cfg.max_queue_depth = 32;
  test::AgentThread agent(cfg);
  auto w = Worker::connect(agent.segment());
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->register_processor("echo", [](const Job&) { return Reply::ok(); }).ok());
  std::atomic<bool> stop{false};
  std::thread worker([&] { (*w)->run(stop); });
  auto p = Producer::connect(agent.segment());
  ASSERT_TRUE(p.ok());
  std::atomic<uint64_t> newest{0};
  std::atomic<bool> done{false};
  std::thread submitter([&] {
    for (int i = 0; i < 3000; ++i) {
      const std::string user = i % 2 == 0 ? "alice" : "bob";
      auto s = (*p)->submit(req(user, {}, "echo"));
      if (!s) continue;
      newest.store(s->request_id, std::memory_order_relaxed);
      s->outcome.get();
    }
    done = true;
  });
  uint64_t seen = 0;
  uint64_t wrong = 0;
  while (!done.load()) {
    const uint64_t id = newest.load(std::memory_order_relaxed);
    if (id == 0) continue;
    for (uint64_t back = 0; back < 4; ++back) {
      auto st = (*p)->status(id - back, shm::Caller{"", true});
      if (!st) continue;
      ++seen;
      // Ids alternate users from an even or odd start; the type is fixed.
      if (st->type != "echo" || (st->user_id != "alice" && st->user_id != "bob")) ++wrong;
    }
    (void)(*p)->cancel(id, shm::Caller{"mallory"});
  }
  submitter.join();
  stop = true;
  worker.join();
  EXPECT_GT(seen, 0u);
  EXPECT_EQ(wrong, 0u);
}

}  // namespace
}  // namespace perfq
