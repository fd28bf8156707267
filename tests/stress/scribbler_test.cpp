// The scribbler (issue 13, label `stress`): one process writes random bytes
// into random places of a live segment while producers and a worker run in
// their own processes. The agent must neither crash nor hang, must count
// the garbage it met, and once the scribbler stops, new submits must
// complete (docs/PROTOCOL.md §17 gives the bound: one liveness interval for
// a wedged band, about two seconds for requests cut off from their ring).
//
// Runs in the release tree only (scripts/test excludes `stress` from the
// sanitizer trees). PERFQ_SCRIBBLES sets the rounds (one write per region
// each) and PERFQ_SCRIBBLE_SEED the random seed, for longer or other runs on
// demand.
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "harness.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq {
namespace {

using namespace std::chrono_literals;

struct Region {
  const char* name;
  uint64_t offset;
  uint64_t bytes;
};

// Every region of the segment, from its geometry (docs/PROTOCOL.md §1).
std::vector<Region> regions(const shm::Geometry& g) {
  return {
      {"header", 0, g.off_clients},
      {"clients", g.off_clients, g.off_client_rings - g.off_clients},
      {"client rings", g.off_client_rings, g.off_band_headers - g.off_client_rings},
      {"band headers", g.off_band_headers, g.off_band_cells - g.off_band_headers},
      {"band cells", g.off_band_cells, g.off_slot_ctl - g.off_band_cells},
      {"slot control", g.off_slot_ctl, g.off_slot_hints - g.off_slot_ctl},
      {"slot hints", g.off_slot_hints, g.off_events - g.off_slot_hints},
      {"events", g.off_events, g.off_status - g.off_events},
      {"status", g.off_status, g.off_idempotency - g.off_status},
      {"idempotency", g.off_idempotency, g.off_rate - g.off_idempotency},
      {"rate limit", g.off_rate, g.off_metrics - g.off_rate},
      {"metrics", g.off_metrics, g.off_slots - g.off_metrics},
      {"slots", g.off_slots, g.total_bytes - g.off_slots},
  };
}

uint64_t from_env(const char* name, uint64_t otherwise) {
  const char* env = std::getenv(name);
  return env != nullptr ? std::strtoull(env, nullptr, 10) : otherwise;
}

// Writes `n` random words (and sometimes a single random byte) at random
// aligned places of each region in turn, round after round, then exits.
int scribble(const std::string& queue, uint64_t n, uint32_t seed) {
  auto seg = shm::Segment::attach(queue);
  if (!seg) return 3;
  auto* base = reinterpret_cast<std::byte*>(&(*seg)->header());
  const std::vector<Region> all = regions((*seg)->geometry());
  std::mt19937_64 rng(seed);
  for (uint64_t i = 0; i < n; ++i) {
    for (const Region& r : all) {
      if (r.bytes < 8) continue;
      const uint64_t at = r.offset + (rng() % (r.bytes / 8)) * 8;
      auto& word = *reinterpret_cast<uint64_t*>(base + at);
      const uint64_t v = rng();
      if ((v & 3) == 0) {
        // Small numbers hit states, lengths and indices that look valid.
        aref(word).store(v % 64, std::memory_order_relaxed);
      } else {
        aref(word).store(v, std::memory_order_relaxed);
      }
    }
  }
  return 0;
}

// Submits and waits with short bounds until killed; outcomes are not
// checked (the scribbler may destroy any of them).
int keep_submitting(const std::string& queue) {
  for (;;) {
    auto p = Producer::connect(queue);
    if (!p) continue;
    for (int i = 0; i < 1000; ++i) {
      auto s = (*p)->submit(test::make_request("echo", "u", "payload"));
      if (s.ok()) (void)s->outcome.wait_for(50ms);
    }
  }
}

TEST(Scribbler, TheAgentSurvivesRandomWritesEverywhereAndTheQueueRecovers) {
  test::QueueName q;
  agent::Config cfg = test::test_config(q.str());
  cfg.processing_timeout_ms = 1000;
  test::Child agent = test::spawn_agent(cfg);
  test::Signal ready;
  test::Child worker = test::spawn_worker(
      q.str(), "echo", [](const Job& j) { return Reply::ok(std::string(j.user_id)); }, &ready);
  ready.close_write();
  ASSERT_EQ(ready.wait(10s), 1);
  std::vector<test::Child> producers;
  for (int i = 0; i < 2; ++i) producers.emplace_back([&] { return keep_submitting(q.str()); });

  // About a second of writes on this machine (tens of millions of words).
  const uint64_t rounds = from_env("PERFQ_SCRIBBLES", 1'000'000);
  const auto seed = static_cast<uint32_t>(from_env("PERFQ_SCRIBBLE_SEED", 20261207));
  test::Child scribbler([&] { return scribble(q.str(), rounds, seed); });
  ASSERT_EQ(scribbler.wait(300s), 0) << "the scribbler did not finish";
  ASSERT_EQ(agent.wait(0ms), -1) << "the agent died while the segment was scribbled on";
  producers.clear();  // killed
  worker.kill();
  (void)worker.wait(10s);

  // The agent still runs its duty cycle (its heartbeat moves).
  std::unique_ptr<shm::Segment> seg;
  ASSERT_TRUE(test::eventually(
      [&] {
        auto s = shm::Segment::attach(q.str());  // the header may need a liveness pass
        if (s) seg = std::move(*s);
        return seg != nullptr;
      },
      10s));
  const uint64_t beat = load_relaxed(seg->header().heartbeat_mono_ns);
  ASSERT_TRUE(
      test::eventually([&] { return load_relaxed(seg->header().heartbeat_mono_ns) != beat; }, 10s))
      << "the agent hangs";
  const shm::AgentCounters k = test::counters(*seg);
  EXPECT_GT(k.rejected_invalid + k.stale_cells + k.ring_claims_skipped, 0u)
      << "the garbage was not counted";

  // A fresh worker and producer: every request completes.
  test::Signal again;
  test::Child fresh = test::spawn_worker(
      q.str(), "echo", [](const Job& j) { return Reply::ok(std::string(j.user_id)); }, &again);
  again.close_write();
  ASSERT_EQ(again.wait(10s), 1);
  auto p = Producer::connect(q.str());
  ASSERT_TRUE(p.ok()) << p.error().message;
  int completed = 0;
  for (int i = 0; i < 200; ++i) {
    std::string user = "after-";
    user += std::to_string(i);
    auto s = (*p)->submit(test::make_request("echo", user, "x"));
    ASSERT_TRUE(s.ok()) << s.error().message;
    ASSERT_TRUE(s->outcome.wait_for(20s)) << "request " << i;
    if (s->outcome.get().status == Status::kCompleted && s->outcome.get().result_text() == user) {
      ++completed;
    }
  }
  EXPECT_EQ(completed, 200);
  EXPECT_EQ(agent.wait(0ms), -1) << "the agent died";
}

}  // namespace
}  // namespace perfq
