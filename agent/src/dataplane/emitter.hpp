#pragma once
// Emitter: publishes the data plane's events to the segment's event ring,
// while anyone reads them.
//
// Events cost a wall-clock read and a 256-byte write each, so they are
// written only while some reader polled the ring within kReaderIdleNs
// (refreshed on the liveness timer). A reader that appears turns them on at
// the next emit, not the next refresh: it sees every event about a request
// submitted after it was created (EventReader's promise). With no reader,
// emit() is an inlined test of a flag and one load of a line nobody writes.
#include <cstdint>

#include "perfq/core/clock.hpp"
#include "perfq/core/event_ring.hpp"
#include "perfq/core/request.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq::agent {

class Emitter {
 public:
  // Events are written while some reader polled the ring this recently.
  static constexpr uint64_t kReaderIdleNs = 10'000'000'000;

  Emitter(shm::Segment& seg, const Clock& clock) noexcept
      : seg_(seg), clock_(clock), events_(seg.events()) {}

  // Whether a reader polled lately, by the host's CLOCK_MONOTONIC (what
  // readers write), whatever clock the time rules run on.
  void refresh(uint64_t host_now_ns) noexcept {
    const uint64_t last_poll = events_.last_reader_poll();
    seen_poll_ = last_poll;
    on_ = last_poll != 0 && host_now_ns >= last_poll && host_now_ns - last_poll < kReaderIdleNs;
  }

  // `slot`: the request the event is about, or UINT32_MAX for a queue event.
  void emit(EventKind kind, uint32_t slot, Status status, Errc error = Errc::kOk) noexcept {
    if (on_ || reader_appeared()) publish(kind, slot, status, error);
  }

 private:
  void publish(EventKind kind, uint32_t slot, Status status, Errc error) noexcept;
  // A reader polled (or was created) since the last refresh. A request's
  // ring cell is read with acquire before its first event, so a reader
  // created before the request was submitted is seen here.
  bool reader_appeared() noexcept {
    const uint64_t last_poll = events_.last_reader_poll();
    if (last_poll == 0 || last_poll == seen_poll_) return false;
    on_ = true;
    return true;
  }

  shm::Segment& seg_;
  const Clock& clock_;
  EventRing events_;
  bool on_ = false;
  uint64_t seen_poll_ = 0;  // the last poll time refresh() read
};

}  // namespace perfq::agent
