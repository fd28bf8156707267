// Segment attach and validation (issue 13): the fuzzer's bytes overwrite
// the segment's header, or a region's own header (band rings, events,
// metrics, keyed tables), then a client attaches and reads what a client
// reads (health counters, metrics, events, a status). Nothing may crash or
// read out of bounds. Then the agent's repair (Segment::restore_header,
// what it runs on each liveness pass) must make the segment attachable
// again: a scribble anywhere in these headers locks new clients out for at
// most one liveness pass.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "perfq/client/events.hpp"
#include "perfq/shm/admission.hpp"
#include "perfq/shm/metrics.hpp"
#include "perfq/shm/segment.hpp"
#include "perfq/shm/status.hpp"

namespace {

using namespace perfq;

struct World {
  std::string queue;
  std::unique_ptr<shm::Segment> agent;  // the agent's view: its own geometry

  static World& get() {
    static World w;  // made on first use; its segment removed at exit
    return w;
  }
  World(const World&) = delete;
  World& operator=(const World&) = delete;
  World() {
    World& w = *this;
    w.queue = "fuzz-attach-" + std::to_string(::getpid());
    shm::Segment::remove(w.queue);
    shm::CreateOptions o;
    o.slot_count = 64;
    o.slot_payload_bytes = 256;
    o.max_clients = 4;
    o.status_entries = 64;
    o.idempotency_entries = 16;
    o.rate_entries = 16;
    o.rate_limit = 5;
    o.metrics_types = 2;
    shm::Segment::Opened how{};
    auto s = shm::Segment::open_for_agent(w.queue, o, how);
    if (!s) __builtin_trap();
    w.agent = std::move(*s);
  }
  ~World() { shm::Segment::remove(queue); }
};

// What a client reads once attached.
void read_like_a_client(shm::Segment& seg) {
  (void)shm::read_metrics(seg, 1'700'000'000'000'000'000ull, 5);
  (void)shm::read_metrics(seg, 1'700'000'000'000'000'000ull, 0);
  (void)shm::lookup_status(seg, 12345, shm::Caller{"fuzz", true});
  (void)shm::occupancy(seg);
  auto events = EventReader::connect(std::shared_ptr<shm::Segment>(&seg, [](shm::Segment*) {}));
  if (events) {
    std::vector<Event> out;
    (void)(*events)->poll(out, 64);
    (*events)->seek(0);
    (void)(*events)->poll(out, 64);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2)
    return 0;  // a target byte and at least one byte to lay (memcpy of 0 from null is UB)
  World& w = World::get();
  const shm::Geometry& g = w.agent->geometry();
  auto* base = reinterpret_cast<std::byte*>(&w.agent->header());
  const uint64_t targets[] = {0,
                              0,
                              g.off_band_headers,
                              g.off_events,
                              g.off_metrics,
                              g.off_idempotency,
                              g.off_rate,
                              g.off_clients};
  const uint64_t at = targets[data[0] % 8];
  const size_t n = std::min<size_t>(size - 1, sizeof(shm::SegmentHeader));
  std::vector<std::byte> saved(base + at, base + at + n);
  std::memcpy(base + at, data + 1, n);

  if (auto seg = shm::Segment::attach(w.queue)) read_like_a_client(**seg);

  (void)w.agent->restore_header();
  auto again = shm::Segment::attach(w.queue);
  if (!again) {
    std::fprintf(stderr, "still locked out after restore_header: %s\n",
                 again.error().message.c_str());
    __builtin_trap();
  }
  read_like_a_client(**again);
  std::memcpy(base + at, saved.data(), n);
  return 0;
}
