// Crash safety of the spine (SPEC §7): a producer stopped or killed inside
// submit, a worker killed mid-processing, and the agent killed with requests
// queued never block the others nor lose an accepted request.
#include <gtest/gtest.h>

#include <csignal>
#include <vector>

#include "harness.hpp"

namespace perfq {
namespace {

using namespace std::chrono_literals;

struct StopAt {
  SubmitPoint point;
  test::Signal* reached;
};

// Submit hook: at the chosen point, tell the parent and stop this process.
void stop_here(SubmitPoint p, void* arg) {
  auto* s = static_cast<StopAt*>(arg);
  if (p != s->point) return;
  s->reached->notify();
  ::raise(SIGSTOP);
}

int submit_and_stop(const std::string& queue, SubmitPoint point, test::Signal* reached) {
  StopAt at{point, reached};
  ProducerOptions opt;
  opt.hook = stop_here;
  opt.hook_arg = &at;
  auto p = Producer::connect(queue, opt);
  if (!p) return 3;
  auto s = (*p)->submit(test::make_request("echo", "stopped-user", "x"));
  return s.ok() ? 0 : 4;
}

class Crash : public ::testing::Test {
 protected:
  void SetUp() override {
    cfg_ = test::test_config(q_.str());
    agent_ = test::spawn_agent(cfg_);
    test::Signal ready;
    worker_ = test::spawn_worker(
        q_.str(), "echo", [](const Job&) { return Reply::ok("done"); }, &ready);
    ready.close_write();
    ASSERT_EQ(ready.wait(10s), 1);
    auto seg = shm::Segment::attach(q_.str());
    ASSERT_TRUE(seg.ok());
    seg_ = std::move(*seg);
  }

  // Submits `n` requests from this process and waits for every outcome.
  void submit_and_complete(int n) {
    auto p = Producer::connect(q_.str());
    ASSERT_TRUE(p.ok());
    std::vector<Future> fs;
    for (int i = 0; i < n; ++i) {
      auto s = (*p)->submit(test::make_request("echo", "other-user", "y"));
      ASSERT_TRUE(s.ok());
      fs.push_back(std::move(s->outcome));
    }
    for (auto& f : fs) {
      ASSERT_TRUE(f.wait_for(10s));
      EXPECT_EQ(f.get().status, Status::kCompleted);
    }
  }

  bool all_slots_free() {
    return test::eventually(
        [&] { return seg_->pool().count_free_approx() == seg_->pool().count(); }, 10s);
  }

  test::QueueName q_;
  agent::Config cfg_;
  test::Child agent_;
  test::Child worker_;
  std::unique_ptr<shm::Segment> seg_;
};

TEST_F(Crash, ProducerStoppedBetweenRingClaimAndCommitBlocksNobody) {
  test::Signal reached;
  test::Child stopped(
      [&] { return submit_and_stop(q_.str(), SubmitPoint::kRingClaimed, &reached); });
  reached.close_write();
  ASSERT_EQ(reached.wait(10s), 1);
  // The stopped producer holds a claimed, unpublished cell of the NORMAL
  // band. Other producers' requests in that band still complete: the agent
  // revokes the claim after ring_claim_timeout_ms.
  submit_and_complete(20);
  EXPECT_GE(test::counters(*seg_).ring_claims_skipped, 1u);
  stopped.kill(SIGKILL);
  EXPECT_EQ(stopped.wait(10s), 128 + SIGKILL);
  // Its slot (claimed, queued, never accepted) is reclaimed.
  EXPECT_TRUE(all_slots_free());
  EXPECT_TRUE(test::eventually([&] { return test::counters(*seg_).slots_reclaimed >= 1; }, 10s));
}

TEST_F(Crash, ProducerKilledHoldingAClaimedSlotHasItReclaimed) {
  test::Signal reached;
  test::Child stopped(
      [&] { return submit_and_stop(q_.str(), SubmitPoint::kSlotClaimed, &reached); });
  reached.close_write();
  ASSERT_EQ(reached.wait(10s), 1);
  EXPECT_EQ(seg_->pool().count_free_approx(), seg_->pool().count() - 1);
  submit_and_complete(5);
  stopped.kill(SIGKILL);
  EXPECT_EQ(stopped.wait(10s), 128 + SIGKILL);
  EXPECT_TRUE(all_slots_free());
}

TEST_F(Crash, ProducerStoppedAfterSubmitReturnedKeepsItsRequest) {
  // A request is accepted once submit returns: its producer dying afterwards
  // does not lose it (the worker still runs it, and the slot is freed).
  const uint64_t before = test::counters(*seg_).completed;
  test::Signal done;
  test::Child producer([&]() -> int {
    done.close_read();
    auto p = Producer::connect(q_.str());
    if (!p) return 3;
    auto s = (*p)->submit(test::make_request("echo", "gone-user", "z"));
    if (!s) return 4;
    done.notify();
    ::raise(SIGSTOP);
    return 0;
  });
  done.close_write();
  ASSERT_EQ(done.wait(10s), 1);
  producer.kill(SIGKILL);
  EXPECT_EQ(producer.wait(10s), 128 + SIGKILL);
  EXPECT_TRUE(test::eventually([&] { return test::counters(*seg_).completed == before + 1; }, 10s));
  EXPECT_TRUE(all_slots_free());
}

TEST_F(Crash, WorkerKilledMidProcessingHasItsRequestRunByAnotherWorker) {
  // A second type served by a worker that hangs in its processor.
  test::Signal started;
  test::Signal hang;  // never written: the processor blocks on it
  test::Child stuck = test::spawn_worker(q_.str(), "hangs", [&](const Job&) {
    started.notify();
    (void)hang.wait(std::chrono::hours(1));
    return Reply::ok("from-stuck");
  });
  auto p = Producer::connect(q_.str());
  ASSERT_TRUE(p.ok());
  auto s = (*p)->submit(test::make_request("hangs", "u", "w"));
  ASSERT_TRUE(s.ok());
  started.close_write();
  ASSERT_EQ(started.wait(10s), 1);

  test::Signal ready;
  test::Child healthy = test::spawn_worker(
      q_.str(), "hangs", [](const Job&) { return Reply::ok("from-healthy"); }, &ready);
  ready.close_write();
  ASSERT_EQ(ready.wait(10s), 1);
  stuck.kill(SIGKILL);
  ASSERT_TRUE(s->outcome.wait_for(10s));
  const Outcome& o = s->outcome.get();
  EXPECT_EQ(o.status, Status::kCompleted);
  EXPECT_EQ(o.result_text(), "from-healthy");
  EXPECT_EQ(o.attempts, 2);  // the dead worker's attempt counts
  EXPECT_GE(test::counters(*seg_).attempts_redispatched, 1u);
}

TEST_F(Crash, AgentKilledWithRequestsQueuedCarriesOnAfterRestart) {
  // At the kill: "echo" requests partly done, partly in flight; "held"
  // attempts in flight at a worker that finishes them only after the
  // restart; "later" requests pending in the agent (no worker serves them
  // yet). While the agent is down: more requests wait in the band rings.
  constexpr int kEach = 1000;
  constexpr int kHeld = 4;
  test::Signal gate;  // one byte lets one held attempt finish
  test::Child holder = test::spawn_worker(
      q_.str(), "held",
      [&](const Job&) { return gate.wait(60s) == 1 ? Reply::ok() : Reply::error("gate"); }, nullptr,
      WorkerOptions{IdleKind::kPark, kHeld});
  auto p = Producer::connect(q_.str());
  ASSERT_TRUE(p.ok());
  std::vector<Future> fs;
  std::vector<uint64_t> ids;
  auto submit = [&](const char* type) {
    auto s = (*p)->submit(test::make_request(type, "u", "r"));
    ASSERT_TRUE(s.ok()) << s.error().message;
    ids.push_back(s->request_id);
    fs.push_back(std::move(s->outcome));
  };
  for (int i = 0; i < kHeld; ++i) submit("held");
  for (int i = 0; i < kEach; ++i) {
    submit("echo");
    submit("later");
  }
  ASSERT_TRUE(test::eventually(
      [&] {
        const auto k = test::counters(*seg_);
        return k.waiting_for_worker == static_cast<uint64_t>(kEach) &&
               k.inflight == static_cast<uint64_t>(kHeld);
      },
      10s));
  agent_.kill(SIGKILL);
  EXPECT_EQ(agent_.wait(10s), 128 + SIGKILL);
  EXPECT_FALSE(seg_->agent_alive());
  for (int i = 0; i < kEach; ++i) submit("echo");  // queued in the rings, no agent
  EXPECT_GE((*p)->outstanding(), static_cast<uint64_t>(2 * kEach));

  agent_ = test::spawn_agent(cfg_);
  test::Signal ready;
  test::Child later = test::spawn_worker(
      q_.str(), "later", [](const Job&) { return Reply::ok(); }, &ready);
  ready.close_write();
  ASSERT_EQ(ready.wait(10s), 1);
  for (int i = 0; i < kHeld; ++i) gate.notify();
  // Exactly once to completion: every request reaches one final status, and
  // that is `completed` with its own id (a Future is settled at most once,
  // by the DONE slot whose generation matches).
  int completed = 0;
  for (size_t i = 0; i < fs.size(); ++i) {
    ASSERT_TRUE(fs[i].wait_for(20s));
    const Outcome& o = fs[i].get();
    if (o.status == Status::kCompleted && o.request_id == ids[i]) ++completed;
  }
  EXPECT_EQ(completed, 3 * kEach + kHeld);
  EXPECT_EQ((*p)->outstanding(), 0u);
  EXPECT_TRUE(all_slots_free());
  // Attempts in flight across the restart were counted and settled: the
  // concurrency budget is whole again.
  EXPECT_TRUE(test::eventually([&] { return test::counters(*seg_).inflight == 0; }, 10s));
}

TEST_F(Crash, SecondAgentForTheSameQueueRefuses) {
  auto second = agent::Conductor::open(cfg_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.code(), Errc::kConflict);
  EXPECT_NE(second.error().message.find("already has a running agent"), std::string::npos);
}

TEST(Eviction, StoppedWorkerIsEvictedItsAttemptRunsElsewhereAndItRejoinsOnWaking) {
  test::QueueName q;
  auto cfg = test::test_config(q.str());
  cfg.worker_idle_timeout_ms = 300;  // heartbeats every 75 ms
  test::Child agent = test::spawn_agent(cfg);
  auto seg = shm::Segment::attach(q.str());
  ASSERT_TRUE(seg.ok());

  test::Signal started;
  test::Signal gate;  // holds worker A inside its processor
  test::Child a = test::spawn_worker(q.str(), "t", [&](const Job&) {
    started.notify();
    (void)gate.wait(60s);
    return Reply::ok("from-A");
  });
  auto p = Producer::connect(q.str());
  ASSERT_TRUE(p.ok());
  auto s = (*p)->submit(test::make_request("t", "u", "x"));
  ASSERT_TRUE(s.ok());
  ASSERT_EQ(started.wait(10s), 1);

  a.kill(SIGSTOP);  // frozen mid-processing: its heartbeat stops too
  test::Signal ready;
  test::Child b = test::spawn_worker(
      q.str(), "t", [](const Job&) { return Reply::ok("from-B"); }, &ready);
  ready.close_write();
  ASSERT_EQ(ready.wait(10s), 1);
  ASSERT_TRUE(s->outcome.wait_for(10s));
  EXPECT_EQ(s->outcome.get().status, Status::kCompleted);
  EXPECT_EQ(s->outcome.get().result_text(), "from-B");
  EXPECT_EQ(s->outcome.get().attempts, 2);
  EXPECT_GE(test::counters(**seg).workers_evicted, 1u);

  // A wakes up: its late result is dropped, it sees the eviction, registers
  // anew and hands its old record back. Two live workers, nothing evicted.
  a.kill(SIGCONT);
  gate.notify();
  auto count = [&](shm::ClientState want) {
    int n = 0;
    for (uint32_t id = 0; id < (*seg)->geometry().max_clients; ++id) {
      auto& c = (*seg)->client(id);
      if (load_acquire(c.state) == static_cast<uint32_t>(want) &&
          (load_acquire(c.roles) & shm::kRoleWorker) != 0) {
        ++n;
      }
    }
    return n;
  };
  EXPECT_TRUE(test::eventually(
      [&] {
        return count(shm::ClientState::kActive) == 2 && count(shm::ClientState::kEvicted) == 0 &&
               count(shm::ClientState::kClosing) == 0;  // the agent freed the old record
      },
      10s));
  // And the rejoined worker still gets work: enough requests reach both.
  std::vector<Future> more;
  for (int i = 0; i < 20; ++i) {
    auto m = (*p)->submit(test::make_request("t", "u", "y"));
    ASSERT_TRUE(m.ok());
    more.push_back(std::move(m->outcome));
  }
  for (int i = 0; i < 20; ++i) gate.notify();
  int from_a = 0;
  for (auto& f : more) {
    ASSERT_TRUE(f.wait_for(10s));
    if (f.get().result_text() == "from-A") ++from_a;
  }
  EXPECT_GT(from_a, 0);
}

// A producer stopped holding a whole batch's ring claims (submit_many, 16
// cells of NORMAL) holds its band for about one ring_claim_timeout_ms: the
// agent revokes every claim made before it saw the stall at once, not one
// timeout per cell. With a 1 s timeout, one timeout per cell would keep
// the band blocked past the 10 s bound below.
TEST(CrashBatch, ProducerStoppedHoldingABatchOfRingClaimsBlocksTheBandForOneTimeout) {
  test::QueueName q;
  agent::Config cfg = test::test_config(q.str());
  cfg.ring_claim_timeout_ms = 1000;
  test::Child agent = test::spawn_agent(cfg);
  test::Signal ready;
  test::Child worker = test::spawn_worker(
      q.str(), "echo", [](const Job&) { return Reply::ok("done"); }, &ready);
  ready.close_write();
  ASSERT_EQ(ready.wait(10s), 1);
  test::Signal reached;
  test::Child stopped([&]() -> int {
    StopAt at{SubmitPoint::kRingClaimed, &reached};
    ProducerOptions opt;
    opt.hook = stop_here;
    opt.hook_arg = &at;
    auto p = Producer::connect(q.str(), opt);
    if (!p) return 3;
    const std::vector<RequestView> rs(16, test::make_request("echo", "stopped-user", "x"));
    std::vector<Result<Submitted>> out;
    return (*p)->submit_many(rs, out) == rs.size() ? 0 : 4;
  });
  reached.close_write();
  ASSERT_EQ(reached.wait(10s), 1);
  auto p = Producer::connect(q.str());
  ASSERT_TRUE(p.ok());
  auto s = (*p)->submit(test::make_request("echo", "other-user", "y"));
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(s->outcome.wait_for(10s)) << "the band stayed blocked behind the stopped batch";
  EXPECT_EQ(s->outcome.get().status, Status::kCompleted);
  auto seg = shm::Segment::attach(q.str());
  ASSERT_TRUE(seg.ok());
  EXPECT_TRUE(
      test::eventually([&] { return test::counters(**seg).ring_claims_skipped >= 16; }, 10s))
      << test::counters(**seg).ring_claims_skipped;
  stopped.kill(SIGKILL);
  EXPECT_EQ(stopped.wait(10s), 128 + SIGKILL);
  // Its 16 slots (queued, never accepted) are reclaimed.
  EXPECT_TRUE(test::eventually(
      [&] { return (*seg)->pool().count_free_approx() == (*seg)->pool().count(); }, 10s));
}

}  // namespace
}  // namespace perfq
