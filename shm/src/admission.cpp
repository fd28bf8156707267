#include "perfq/shm/admission.hpp"

#include <thread>

#include "perfq/core/atomic.hpp"
#include "perfq/core/clock.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq::shm {

namespace {
// A reader that sees the agent mid-write spins this many tries, then yields
// its CPU between tries (the agent may have been preempted mid-write), and
// gives up after kReadBoundNs (the agent may have died holding the lock odd).
constexpr int kSpinTries = 64;
constexpr uint64_t kReadBoundNs = 5'000'000;
}  // namespace

void publish_admission(Segment& seg, uint64_t depth,
                       const uint64_t band_depth[kBandCount]) noexcept {
  AdmissionView& v = seg.header().admission;
  // acq_rel: the field stores below cannot move before the odd value.
  aref(v.seq).fetch_add(1, std::memory_order_acq_rel);
  aref(v.depth).store(depth, std::memory_order_release);
  for (uint8_t b = 0; b < kBandCount; ++b) {
    aref(v.band_depth[b]).store(band_depth[b], std::memory_order_release);
    aref(v.head[b]).store(seg.band(static_cast<Band>(b)).head_position(),
                          std::memory_order_release);
  }
  // release: pairs with the reader's acquire load of seq after the fields.
  aref(v.seq).fetch_add(1, std::memory_order_release);
}

Occupancy occupancy(Segment& seg) noexcept {
  AdmissionView& v = seg.header().admission;
  Occupancy o;
  uint64_t give_up_ns = 0;
  // Bounded: kSpinTries, then until kReadBoundNs has passed.
  for (int i = 0;; ++i) {
    if (i >= kSpinTries) {
      const uint64_t now = mono_now_ns();
      if (give_up_ns == 0) give_up_ns = now + kReadBoundNs;
      if (now >= give_up_ns) return o;
      std::this_thread::yield();
    }
    const uint64_t s1 = aref(v.seq).load(std::memory_order_acquire);
    if ((s1 & 1) != 0) continue;
    AdmissionView copy{};
    copy.depth = aref(v.depth).load(std::memory_order_acquire);
    for (uint8_t b = 0; b < kBandCount; ++b) {
      copy.band_depth[b] = aref(v.band_depth[b]).load(std::memory_order_acquire);
      copy.head[b] = aref(v.head[b]).load(std::memory_order_acquire);
    }
    if (aref(v.seq).load(std::memory_order_acquire) != s1) continue;
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
}

}  // namespace perfq::shm
