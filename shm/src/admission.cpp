#include "perfq/shm/admission.hpp"

#include "perfq/core/atomic.hpp"
#include "perfq/core/seqlock.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq::shm {

namespace {
// A reader that sees the agent mid-write spins this many tries, then yields
// its CPU between tries (the agent may have been preempted mid-write), and
// gives up after kReadBoundNs (the agent may have died holding the lock odd;
// the next agent repairs it when it takes the segment over).
constexpr seqlock::ReadBound kReadBound{.tries = 64, .yield_ns = 5'000'000};
}  // namespace

void publish_admission(Segment& seg, uint64_t depth,
                       const uint64_t band_depth[kBandCount]) noexcept {
  AdmissionView& v = seg.header().admission;
  // acq_rel: the field stores below cannot move before the odd value.
  const uint64_t odd = seqlock::begin_write(v.seq, std::memory_order_acq_rel);
  aref(v.depth).store(depth, std::memory_order_release);
  for (uint8_t b = 0; b < kBandCount; ++b) {
    aref(v.band_depth[b]).store(band_depth[b], std::memory_order_release);
    aref(v.head[b]).store(seg.band(static_cast<Band>(b)).head_position(),
                          std::memory_order_release);
  }
  // release (in end_write): pairs with the reader's acquire load of seq.
  seqlock::end_write(v.seq, odd);
}

void repair_admission(Segment& seg) noexcept {
  // The fields a dead agent was writing are each the value of its last
  // publish or of the one it died in: a view as conservative as any (the
  // ring term covers what the agent consumed since), and the new agent
  // publishes its own on its first cycle.
  (void)seqlock::repair(seg.header().admission.seq);
}

Occupancy occupancy(Segment& seg) noexcept {
  AdmissionView& v = seg.header().admission;
  Occupancy o;
  AdmissionView copy{};
  const bool whole = seqlock::read(v.seq, kReadBound, [&] {
    // acquire: pairs with the publisher's release stores of the fields.
    copy.depth = aref(v.depth).load(std::memory_order_acquire);
    for (uint8_t b = 0; b < kBandCount; ++b) {
      copy.band_depth[b] = aref(v.band_depth[b]).load(std::memory_order_acquire);
      copy.head[b] = aref(v.head[b]).load(std::memory_order_acquire);
    }
  });
  if (!whole) return o;
  o.depth = copy.depth;
  for (uint8_t b = 0; b < kBandCount; ++b) {
    const uint64_t tail = seg.band(static_cast<Band>(b)).tail_position();
    const uint64_t in_ring = tail > copy.head[b] ? tail - copy.head[b] : 0;
    o.depth += in_ring;
    o.ahead[b] = copy.band_depth[b] + in_ring;
  }
  o.known = true;
  return o;
}

}  // namespace perfq::shm
