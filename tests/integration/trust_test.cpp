// The trust boundary (SPEC §7, docs/PROTOCOL.md "Trust"): every member of
// the segment's group can write any byte of it. Each test here writes what a
// broken or hostile member could, at the moment that did damage before
// (issue 13), and checks that the agent survives, counts it, and that the
// queue keeps answering: requests submitted afterwards complete and their
// outcomes reach their producer.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "daemon_test.hpp"
#include "harness.hpp"
#include "perfq/client/events.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/core/clock.hpp"
#include "perfq/core/seqlock.hpp"
#include "perfq/perfq.hpp"
#include "perfq/shm/metrics.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq {
namespace {

constexpr auto kBound = std::chrono::seconds(20);

// An echo worker on its own thread.
class EchoWorker {
 public:
  EchoWorker(std::shared_ptr<shm::Segment> seg, const std::string& type) {
    auto w = Worker::connect(std::move(seg));
    EXPECT_TRUE(w.ok());
    worker_ = std::move(*w);
    EXPECT_TRUE(worker_
                    ->register_processor(type,
                                         [](const Job& j) {
                                           return Reply::ok(std::string(
                                               reinterpret_cast<const char*>(j.payload.data()),
                                               j.payload.size()));
                                         })
                    .ok());
    thread_ = std::thread([this] { worker_->run(stop_); });
  }
  ~EchoWorker() {
    stop_ = true;
    thread_.join();
  }

 private:
  std::unique_ptr<Worker> worker_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Submits `n` requests and checks each completes with its own payload.
void expect_round_trips(Producer& p, int n, const std::string& type = "echo") {
  for (int i = 0; i < n; ++i) {
    std::string payload = "m";
    payload += std::to_string(i);  // (not "m" + ...: GCC 12 -Wrestrict false positive)
    auto s = p.submit(test::make_request(type, "user-1", payload));
    ASSERT_TRUE(s.ok()) << "submit " << i << ": " << s.error().message;
    ASSERT_TRUE(s->outcome.wait_for(kBound)) << "request " << i << " never finished";
    const Outcome& o = s->outcome.get();
    ASSERT_EQ(o.status, Status::kCompleted) << i;
    EXPECT_EQ(o.result_text(), payload);
  }
}

// A submit the band refuses until the agent's next liveness pass repairs
// it: retried (bounded by attempts; each refusal is immediate), then its
// outcome waited for.
bool submit_until_accepted(Producer& p) {
  for (int i = 0; i < 1'000'000; ++i) {
    auto s = p.submit(test::make_request("echo", "user-1", "after"));
    if (s.ok()) return s->outcome.wait_for(kBound);
    std::this_thread::yield();
  }
  return false;
}

// The segment's first byte.
std::byte* base(shm::Segment& seg) {
  return reinterpret_cast<std::byte*>(&seg.header());
}

// The NORMAL band's ring as a member sees it: its header and cells.
struct RawBand {
  BandRingHeader* header;
  uint64_t* cells;
  uint32_t capacity;
  uint64_t& cell(uint64_t position) const { return cells[position & (capacity - 1)]; }
};
RawBand normal_band(shm::Segment& seg) {
  const shm::Geometry& g = seg.geometry();
  const uint8_t b = static_cast<uint8_t>(Band::kNormal);
  auto* headers = reinterpret_cast<BandRingHeader*>(base(seg) + g.off_band_headers);
  auto* cells = reinterpret_cast<uint64_t*>(base(seg) + g.off_band_cells +
                                            b * BandRing::cells_bytes(g.band_ring_capacity));
  return {&headers[b], cells, g.band_ring_capacity};
}

std::unique_ptr<Producer> connect(std::shared_ptr<shm::Segment> seg) {
  auto p = Producer::connect(std::move(seg));
  if (!p) {
    ADD_FAILURE() << p.error().message;
    std::abort();
  }
  return std::move(p.value());
}

// A started agent thread, a producer and an echo worker, three requests
// already through.
struct Running {
  test::QueueName q;
  test::AgentThread agent{test::test_config(q.str())};
  std::shared_ptr<shm::Segment> seg = agent.segment();
  std::unique_ptr<Producer> producer = connect(seg);
  EchoWorker worker{seg, "echo"};
  Running() { expect_round_trips(*producer, 3); }
};

// The slot that holds request `id` (a test reads the segment as a member).
uint32_t slot_of(shm::Segment& seg, uint64_t id) {
  for (uint32_t s = 0; s < seg.pool().count(); ++s) {
    if (SlotCtl::unpack(seg.pool().load(s)).state != SlotState::kFree &&
        load_relaxed(seg.record(s).request_id) == id) {
      return s;
    }
  }
  return UINT32_MAX;
}

// Defect 1: the record's band, mode and producer were read again after the
// agent had checked them. A member rewrites them while the request waits
// for a worker; the outcome must still reach the producer that submitted.
TEST(Trust, ARecordRewrittenAfterTheAgentTookItDoesNotRedirectItsOutcome) {
  test::QueueName q;
  test::AgentThread agent(test::test_config(q.str()));
  auto seg = agent.segment();
  auto producer = Producer::connect(seg);
  ASSERT_TRUE(producer.ok());
  auto s = (*producer)->submit(test::make_request("echo", "user-1", "alice"));
  ASSERT_TRUE(s.ok());
  const uint32_t slot = slot_of(*seg, s->request_id);
  ASSERT_NE(slot, UINT32_MAX);
  // Taken: PENDING (which the agent stores before it reads the record) and
  // counted in the admission view's depth (which it publishes only after
  // the record was read and the request entered its scheduler).
  const shm::AdmissionView& view = seg->header().admission;
  ASSERT_TRUE(test::eventually(
      [&] {
        return SlotCtl::unpack(seg->pool().load(slot)).state == SlotState::kPending &&
               load_relaxed(view.depth) == 1;
      },
      kBound));
  RequestRecord& rec = seg->record(slot);
  store_relaxed(rec.band, uint8_t{0xFF});
  store_relaxed(rec.mode, uint8_t{0xEE});
  store_relaxed(rec.priority, uint8_t{0});
  store_relaxed(rec.producer, uint16_t{0x7FFF});

  EchoWorker worker(seg, "echo");
  ASSERT_TRUE(s->outcome.wait_for(kBound)) << "the outcome went to nobody";
  EXPECT_EQ(s->outcome.get().status, Status::kCompleted);
  expect_round_trips(**producer, 20);
}

// Defect 2: the metrics writer sized its rows from the region's header; a
// scribbled row_bytes crashed the agent at its next start (and every one
// after).
TEST(Trust, AScribbledMetricsHeaderIsRewrittenFromTheGeometryAtTheNextStart) {
  test::QueueName q;
  const agent::Config cfg = test::test_config(q.str());
  {
    test::AgentThread agent(cfg);
    auto* h = reinterpret_cast<shm::MetricsHeader*>(agent.segment()->metrics_region());
    store_relaxed(h->row_bytes, uint64_t{1} << 40);
    store_relaxed(h->types, uint32_t{0xFFFF'FFFF});
    store_relaxed(h->type_count, uint32_t{0x7FFF'FFFF});
  }
  test::AgentThread again(cfg);
  auto producer = Producer::connect(again.segment());
  ASSERT_TRUE(producer.ok());
  EchoWorker worker(again.segment(), "echo");
  expect_round_trips(**producer, 10);
  const auto* h = reinterpret_cast<const shm::MetricsHeader*>(again.segment()->metrics_region());
  EXPECT_EQ(load_relaxed(h->row_bytes),
            shm::metrics_row_bytes(again.segment()->geometry().metrics_types));
  const shm::MetricsSnapshot snap = shm::read_metrics(*again.segment(), unix_now_ns(), 0);
  EXPECT_EQ(snap.total().count(shm::Outcome::kCompleted), 10u);
}

// Defect 3: the event ring's capacity was read from the segment; a bad one
// sent the agent (and every reader) out of the ring.
TEST(Trust, AScribbledEventRingCapacityNeitherCrashesTheAgentNorAReader) {
  test::QueueName q;
  const agent::Config cfg = test::test_config(q.str());
  {
    test::AgentThread agent(cfg);
    auto* h = reinterpret_cast<EventRingHeader*>(base(*agent.segment()) +
                                                 agent.segment()->geometry().off_events);
    store_relaxed(h->capacity, uint32_t{0x7FFF'FFFF});
  }
  test::AgentThread again(cfg);
  auto reader = EventReader::connect(again.segment());
  ASSERT_TRUE(reader.ok());
  auto producer = Producer::connect(again.segment());
  ASSERT_TRUE(producer.ok());
  EchoWorker worker(again.segment(), "echo");
  expect_round_trips(**producer, 5);
  std::vector<Event> seen;
  ASSERT_TRUE(test::eventually(
      [&] {
        (void)(*reader)->poll(seen, 64);
        return std::any_of(seen.begin(), seen.end(), [](const Event& e) {
          return e.kind == static_cast<uint8_t>(EventKind::kCompleted);
        });
      },
      kBound));
}

// Defect 4: one 8-byte write of a fake published cell {tail + 1, v} at a
// band's head wedged the band for ever ("band ring full").
TEST(Trust, AForgedCellAtABandsHeadDoesNotWedgeTheBand) {
  Running r;
  const RawBand band = normal_band(*r.seg);
  const uint64_t tail = load_acquire(band.header->tail);
  const uint64_t forged = (static_cast<uint64_t>(static_cast<uint32_t>(tail + 1)) << 32) | 0u;
  aref(band.cell(tail)).store(forged, std::memory_order_release);
  shm::notify(r.seg->header().doorbell);

  ASSERT_TRUE(submit_until_accepted(*r.producer));
  expect_round_trips(*r.producer, 200);
  EXPECT_LE(load_acquire(band.header->head), load_acquire(band.header->tail));
}

// Defect 4, the band's own words: garbage in tail, or in the cells producers
// claim next, answered every submit "band ring full".
TEST(Trust, GarbageInABandsTailOrItsNextCellsIsRepairedWithinTheBound) {
  Running r;
  const RawBand band = normal_band(*r.seg);
  aref(band.header->tail).store(uint64_t{1} << 50, std::memory_order_release);
  ASSERT_TRUE(submit_until_accepted(*r.producer)) << "garbage tail";
  expect_round_trips(*r.producer, 20);

  const uint64_t t = load_acquire(band.header->tail);
  for (uint64_t p = t; p < t + 4; ++p) aref(band.cell(p)).store(0x1234'5678'9ABC'DEF0ull);
  ASSERT_TRUE(submit_until_accepted(*r.producer)) << "garbage cells ahead of tail";
  expect_round_trips(*r.producer, 20);
  EXPECT_GE(test::counters(*r.seg).rings_resynced, 1u);
}

// Defect 8: an outcome went to whatever client held the producer's record
// index, even a worker-only one, and the slot stayed DONE for ever.
TEST(Trust, AnOutcomeForAProducerThatLeftIsNotDeliveredToTheNextClientOfItsRecord) {
  test::QueueName q;
  test::AgentThread agent(test::test_config(q.str()));
  auto seg = agent.segment();
  uint64_t id = 0;
  {
    auto gone = Producer::connect(seg);
    ASSERT_TRUE(gone.ok());
    auto s = (*gone)->submit(test::make_request("echo", "user-1", "orphan"));
    ASSERT_TRUE(s.ok());
    id = s->request_id;
  }  // the producer closes; its request stays accepted, waiting for a worker
  const uint32_t slot = slot_of(*seg, id);
  ASSERT_NE(slot, UINT32_MAX);
  // The next client takes the freed record: a worker (workers register
  // first, before any producer can).
  ASSERT_TRUE(test::eventually(
      [&] {
        return static_cast<shm::ClientState>(load_acquire(seg->client(0).state)) ==
               shm::ClientState::kFree;
      },
      kBound));
  EchoWorker worker(seg, "echo");
  // The request runs; nobody is there to collect it, so the slot is freed.
  ASSERT_TRUE(test::eventually(
      [&] { return SlotCtl::unpack(seg->pool().load(slot)).state == SlotState::kFree; }, kBound))
      << "slot left in state " << int(SlotCtl::unpack(seg->pool().load(slot)).state);
}

// Defect 9: a canceller that died between its CAS and its push to the
// cancel ring left the request CANCELLING until the agent restarted.
TEST(Trust, ARequestWhoseCancellerDiedBeforeItsPushIsStillFinished) {
  test::QueueName q;
  test::AgentThread agent(test::test_config(q.str()));
  auto seg = agent.segment();
  auto producer = Producer::connect(seg);
  ASSERT_TRUE(producer.ok());
  auto s = (*producer)->submit(test::make_request("nobody-serves-this", "user-1", "x"));
  ASSERT_TRUE(s.ok());
  const uint32_t slot = slot_of(*seg, s->request_id);
  ASSERT_NE(slot, UINT32_MAX);
  uint64_t ctl = 0;
  ASSERT_TRUE(test::eventually(
      [&] {
        ctl = seg->pool().load(slot);
        return SlotCtl::unpack(ctl).state == SlotState::kPending;
      },
      kBound));
  // What Producer::cancel does up to the moment it would push the slot; a
  // canceller killed there leaves exactly this (done in this process: a
  // forked child of a process running threads is unsafe under TSan).
  SlotCtl next = SlotCtl::unpack(ctl);
  next.state = SlotState::kCancelling;
  next.owner = kOwnerAgent;
  ASSERT_TRUE(seg->pool().transition(slot, ctl, next));

  ASSERT_TRUE(s->outcome.wait_for(kBound)) << "the request stayed CANCELLING";
  EXPECT_EQ(s->outcome.get().status, Status::kCancelled);
  EXPECT_GE(test::counters(*seg).slots_swept, 1u);
}

// Defect 5, the crash window: an agent killed between the two stores of
// publish_admission left the admission sequence odd for the life of the
// segment (86 of 100 try_submit answered QUEUE_FULL "depth could not be
// read"). A process dies there; the next agent repairs it on takeover.
TEST(Trust, AnAgentKilledMidPublishOfTheAdmissionViewLeavesNothingBehind) {
  test::QueueName q;
  const agent::Config cfg = test::test_config(q.str());
  { test::AgentThread first(cfg); }
  test::Child dying([&] {
    auto seg = shm::Segment::attach(q.str());
    if (!seg) return 1;
    (void)seqlock::begin_write((*seg)->header().admission.seq, std::memory_order_acq_rel);
    ::_exit(0);  // between begin_write and end_write
  });
  ASSERT_EQ(dying.wait(kBound), 0);
  {
    auto seg = shm::Segment::attach(q.str());
    ASSERT_TRUE(seg.ok());
    ASSERT_EQ(load_relaxed((*seg)->header().admission.seq) % 2, 1u) << "the window was not hit";
  }
  test::AgentThread next(cfg);
  auto producer = Producer::connect(next.segment());
  ASSERT_TRUE(producer.ok());
  int refused = 0;
  std::vector<Submitted> accepted;
  for (int i = 0; i < 100; ++i) {
    auto s = (*producer)->try_submit(test::make_request("nobody-serves-this", "user-1", "x"));
    if (s.ok()) {
      accepted.push_back(std::move(*s));
    } else {
      ++refused;
    }
  }
  EXPECT_EQ(refused, 0);
}

// Defect 11: garbage in the client registry wedged existing producers and
// workers (outcomes never delivered, nobody evicted).
TEST(Trust, AScribbledClientRecordIsRewrittenAndItsOutcomesStillArrive) {
  test::QueueName q;
  test::AgentThread agent(test::test_config(q.str()));
  auto seg = agent.segment();
  auto producer = Producer::connect(seg);
  ASSERT_TRUE(producer.ok());
  auto s = (*producer)->submit(test::make_request("echo", "user-1", "before the scribble"));
  ASSERT_TRUE(s.ok());
  const uint32_t id = (*producer)->client_id();
  // The agent has seen the producer: its request was taken.
  ASSERT_TRUE(test::eventually([&] { return test::counters(*seg).submitted >= 1; }, kBound));
  const uint32_t pid = load_relaxed(seg->client(id).pid);
  const uint32_t roles = load_relaxed(seg->client(id).roles);
  shm::ClientRecord& c = seg->client(id);
  store_relaxed(c.state, uint32_t{77});
  store_relaxed(c.pid, uint32_t{0});
  store_relaxed(c.roles, uint32_t{0});

  EchoWorker worker(seg, "echo");
  ASSERT_TRUE(s->outcome.wait_for(kBound)) << "the outcome never reached the producer";
  EXPECT_EQ(s->outcome.get().status, Status::kCompleted);
  EXPECT_TRUE(test::eventually(
      [&] {
        return load_acquire(c.state) == static_cast<uint32_t>(shm::ClientState::kActive) &&
               load_relaxed(c.pid) == pid && load_relaxed(c.roles) == roles;
      },
      kBound))
      << "the record was not rewritten from the agent's copy";
  expect_round_trips(**producer, 20);
}

// Defect 12: garbage in geometry fields locked out every new client while
// the agent ran, and made the agent refuse to restart; only `destroy`,
// which loses the queue, got out of it.
TEST(Trust, ScribbledGeometryIsRewrittenWhileTheAgentRuns) {
  test::QueueName q;
  test::AgentThread agent(test::test_config(q.str()));
  auto seg = agent.segment();
  shm::SegmentHeader& h = seg->header();
  store_relaxed(h.slot_count, uint32_t{0});
  store_relaxed(h.off_slots, uint64_t{12345});
  auto* bands = reinterpret_cast<BandRingHeader*>(base(*seg) + seg->geometry().off_band_headers);
  store_relaxed(bands[1].capacity, uint32_t{3});
  aref(h.magic).store(0, std::memory_order_release);
  std::unique_ptr<Producer> producer;
  ASSERT_TRUE(test::eventually(
      [&] {
        auto p = Producer::connect(q.str());
        if (p) producer = std::move(*p);
        return producer != nullptr;
      },
      kBound))
      << "new clients stay locked out";
  EchoWorker worker(seg, "echo");
  expect_round_trips(*producer, 10);
}

TEST(Trust, AnAgentRestartsOnAScribbledHeaderFromItsGeometryCopyAndKeepsTheQueue) {
  test::QueueName q;
  agent::Config cfg = test::test_config(q.str());
  std::filesystem::create_directories(cfg.data_dir);
  uint64_t id = 0;
  {
    auto a = agent::Conductor::open(cfg);
    ASSERT_TRUE(a.ok()) << a.error().message;
    auto producer = Producer::connect((*a)->segment());
    ASSERT_TRUE(producer.ok());
    auto s = (*producer)->submit(test::make_request("echo", "user-1", "kept across the scribble"));
    ASSERT_TRUE(s.ok());
    id = s->request_id;
    // One duty cycle takes it; the agent then stops.
    ASSERT_TRUE(test::eventually(
        [&] { return (*a)->do_work() >= 0 && test::counters(*(*a)->segment()).submitted == 1; },
        kBound));
  }
  {
    auto seg = shm::Segment::attach(q.str());
    ASSERT_TRUE(seg.ok());
    shm::SegmentHeader& h = (*seg)->header();
    store_relaxed(h.band_ring_capacity, uint32_t{7});
    store_relaxed(h.off_metrics, uint64_t{1});
    store_relaxed(h.layout_hash, uint64_t{0});
    auto* idem = base(**seg) + (*seg)->geometry().off_idempotency;
    std::memset(idem, 0xAB, 64);  // the idempotency table's header
  }
  ASSERT_FALSE(shm::Segment::attach(q.str()).ok()) << "the scribble must break the header";
  auto again = agent::Conductor::open(cfg);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_FALSE((*again)->segment()->header_rebuilt().empty());
  std::atomic<bool> stop{false};
  std::thread run([&] { (*again)->run(stop); });
  auto producer = Producer::connect(q.str());
  ASSERT_TRUE(producer.ok()) << producer.error().message;
  {
    EchoWorker worker((*again)->segment(), "echo");
    expect_round_trips(**producer, 5);
    EXPECT_TRUE(test::eventually(
        [&] {
          auto st = (*producer)->status(id, shm::Caller{"user-1", false});
          return st.ok() && st->status == Status::kCompleted;
        },
        kBound))
        << "the request queued before the scribble was lost";
  }
  stop = true;
  run.join();
  std::filesystem::remove_all(cfg.data_dir);
}

// Defect 11, the header: garbage in the agent's fields made `perfqctl
// health` report the running agent down and dlqSize 2147483648.
class TrustDaemon : public test::DaemonTest {};

TEST_F(TrustDaemon, TheAgentsFieldsAndTheJournalViewAreRewrittenAfterAScribble) {
  start_daemon();
  shm::SegmentHeader& h = seg_->header();
  const uint32_t pid = load_relaxed(h.agent_pid);
  const uint64_t ticks = load_relaxed(h.agent_start_ticks);
  const uint64_t dlq = load_relaxed(h.journal.unreviewed);
  store_relaxed(h.agent_pid, uint32_t{1});
  store_relaxed(h.agent_start_ticks, uint64_t{42});
  store_relaxed(h.agent_state, uint32_t{2});
  store_relaxed(h.journal.unreviewed, uint64_t{2147483648});
  std::memset(h.socket_path, 'x', 16);
  EXPECT_TRUE(test::eventually(
      [&] {
        return load_relaxed(h.agent_pid) == pid && load_relaxed(h.agent_start_ticks) == ticks &&
               load_relaxed(h.agent_state) == static_cast<uint32_t>(shm::AgentState::kRunning) &&
               load_relaxed(h.journal.unreviewed) == dlq && seg_->agent_alive() &&
               std::string(h.socket_path) == cfg_.data_dir + "/agent.sock";
      },
      kBound));
}

// Found by the duty-cycle fuzzer: a worker's loop over its dispatch ring was
// bounded by the attempts it started, not the entries it took, so a
// scribbled tail kept it popping garbage for ever.
TEST(Trust, AWorkerReturnsFromItsDutyCycleWhateverItsDispatchRingSays) {
  test::QueueName q;
  test::AgentThread agent(test::test_config(q.str()));
  auto w = Worker::connect(agent.segment());
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->register_processor("echo", [](const Job&) { return Reply::ok(); }).ok());
  SpscRingHeader& ring = agent.segment()->client((*w)->client_id()).dispatch;
  aref(ring.tail).store(load_acquire(ring.tail) + (uint64_t{1} << 40), std::memory_order_release);
  EXPECT_EQ((*w)->do_work(), 0);  // returns (nothing it took was a dispatch)
  EXPECT_EQ((*w)->do_work(), 0);
}

// Defect 6: a processor's Job pointed into the slot. After its final
// attempt timed out, the slot was freed and reused while the processor
// still ran: it read alice's payload at its start and bob's after.
TEST(Trust, AProcessorNeverSeesAnotherRequestsBytes) {
  test::QueueName q;
  agent::Config cfg = test::test_config(q.str());
  cfg.slots = 1;  // the next request must reuse alice's slot
  cfg.processing_timeout_ms = 50;
  cfg.max_retry_attempts = 0;
  test::AgentThread agent(cfg);
  auto seg = agent.segment();
  test::Signal started;
  test::Signal go_on;
  std::string at_start;
  std::string at_end;
  auto w = Worker::connect(seg);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->register_processor(
                      "slow",
                      [&](const Job& j) {
                        auto text = [&] {
                          return std::string(reinterpret_cast<const char*>(j.payload.data()),
                                             j.payload.size()) +
                                 "/" + std::string(j.user_id);
                        };
                        at_start = text();
                        started.notify();
                        (void)go_on.wait(kBound);
                        at_end = text();
                        return Reply::ok();
                      })
                  .ok());
  std::atomic<bool> stop{false};
  std::thread wt([&] { (*w)->run(stop); });

  auto producer = Producer::connect(seg);
  ASSERT_TRUE(producer.ok());
  RequestView alice = test::make_request("slow", "user-1", "alice's payload");
  alice.user_id = "alice";
  auto a = (*producer)->submit(alice);
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(started.wait(kBound), 1);
  ASSERT_TRUE(a->outcome.wait_for(kBound));  // the attempt timed out; the slot is free
  EXPECT_NE(a->outcome.get().status, Status::kCompleted);
  RequestView bob = test::make_request("nobody-serves-this", "user-1", "bob's payload, longer");
  bob.user_id = "bob";
  auto b = (*producer)->submit(bob);
  ASSERT_TRUE(b.ok()) << b.error().message;
  go_on.notify();
  stop = true;
  wt.join();
  EXPECT_EQ(at_start, "alice's payload/alice");
  EXPECT_EQ(at_end, at_start) << "the processor read another request's bytes";
}

}  // namespace
}  // namespace perfq
