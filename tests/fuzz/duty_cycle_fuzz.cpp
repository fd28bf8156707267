// The agent's duty cycle over a segment whose bytes the fuzzer rewrites
// between cycles (issue 13): every region, header included. One agent, one
// producer and one worker share this process and one mapping; each input is
// a list of steps: write bytes somewhere, submit, turn the worker, turn the
// agent, let the producer collect. The agent must never crash, hang or trip
// a sanitizer, whatever it reads. State carries over between inputs (a
// segment is 20 MB of mapped memory, too much to make per input); a crash
// input replays the writes that triggered it on top of whatever came before,
// which is usually enough to reproduce it alone.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "dataplane/conductor.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/perfq.hpp"
#include "perfq/shm/segment.hpp"

namespace {

using namespace perfq;

struct World {
  std::string queue;
  std::unique_ptr<agent::Conductor> agent;
  std::unique_ptr<Producer> producer;
  std::unique_ptr<Worker> worker;

  static World& get() {
    static World w;  // made on first use; its segment removed at exit
    return w;
  }
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  World() {
    World& w = *this;
    w.queue = "fuzz-duty-" + std::to_string(::getpid());
    shm::Segment::remove(w.queue);
    agent::Config cfg;
    cfg.queue = w.queue;
    cfg.data_dir = "/nonexistent";  // no geometry copy, no journal: the data plane alone
    cfg.slots = 64;
    cfg.slot_payload_bytes = 256;
    cfg.max_clients = 4;
    cfg.status_table_entries = 64;
    cfg.idempotency_table_entries = 16;
    cfg.rate_limit_table_entries = 16;
    cfg.max_requests_per_user_per_minute = 0;
    cfg.metrics_types = 2;
    cfg.liveness_interval_ms = 0;  // every cycle is a liveness pass
    cfg.retry_backoff_ms = 1;
    cfg.processing_timeout_ms = 5;
    auto a = agent::Conductor::open(cfg);
    if (!a) __builtin_trap();
    w.agent = std::move(*a);
    auto p = Producer::connect(w.agent->segment());
    auto k = Worker::connect(w.agent->segment(), WorkerOptions{IdleKind::kBusySpin, 8});
    if (!p || !k) __builtin_trap();
    w.producer = std::move(*p);
    w.worker = std::move(*k);
    (void)w.worker->register_processor("echo", [](const Job& j) {
      return Reply::ok(
          std::string(reinterpret_cast<const char*>(j.payload.data()), j.payload.size()));
    });
  }
  ~World() { shm::Segment::remove(queue); }
};

// Reads a little-endian value of `n` bytes from the input, advancing it.
uint64_t take(const uint8_t*& p, const uint8_t* end, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n && p < end; ++i) v |= uint64_t{*p++} << (8 * i);
  return v;
}

}  // namespace

// Leak detection is off for this fuzzer: a request whose outcome the
// fuzzer's writes destroyed keeps its future state in the producer until
// the producer closes, and this producer lives as long as the process.
extern "C" const char* __asan_default_options() {
  return "detect_leaks=0";
}

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  static std::vector<char*> args(*argv, *argv + *argc);
  static char no_leaks[] = "-detect_leaks=0";
  args.insert(args.begin() + 1, no_leaks);
  args.push_back(nullptr);
  *argc = static_cast<int>(args.size() - 1);
  *argv = args.data();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  World& w = World::get();
  shm::Segment& seg = *w.agent->segment();
  auto* base = reinterpret_cast<std::byte*>(&seg.header());
  const uint64_t total = seg.geometry().total_bytes;
  const uint8_t* p = data;
  const uint8_t* end = data + size;
  // Bounded by the input: each step consumes at least one byte.
  while (p < end) {
    switch (*p++ % 6) {
      case 0: {  // write 1..8 bytes at an offset anywhere in the segment
        const uint64_t at = take(p, end, 4) % total;
        const size_t n = 1 + take(p, end, 1) % 8;
        const uint64_t v = take(p, end, n);
        const size_t fit = std::min<uint64_t>(n, total - at);
        std::memcpy(base + at, &v, fit);
        break;
      }
      case 1: {  // write a word at an offset into one of the hot regions
        const shm::Geometry& g = seg.geometry();
        const uint64_t starts[] = {0,
                                   g.off_clients,
                                   g.off_band_headers,
                                   g.off_band_cells,
                                   g.off_slot_ctl,
                                   g.off_events,
                                   g.off_status,
                                   g.off_slots};
        const uint64_t at = (starts[take(p, end, 1) % 8] + take(p, end, 2) * 8) % (total - 8);
        aref(*reinterpret_cast<uint64_t*>(base + (at & ~uint64_t{7})))
            .store(take(p, end, 8), std::memory_order_relaxed);
        break;
      }
      case 2: {
        const std::string payload(take(p, end, 1) % 32, 'x');
        RequestView r;
        r.type = "echo";
        r.user_id = "fuzz";
        r.payload = std::as_bytes(std::span(payload.data(), payload.size()));
        r.priority = static_cast<uint8_t>(1 + take(p, end, 1) % 20);
        (void)w.producer->try_submit(r);
        break;
      }
      case 3:
        (void)w.worker->do_work();
        break;
      case 4:
        (void)w.producer->poll();
        break;
      default:
        (void)w.agent->do_work();
        break;
    }
  }
  for (int i = 0; i < 4; ++i) (void)w.agent->do_work();
  return 0;
}
