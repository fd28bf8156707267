#pragma once
// EventReader: follows a queue's event ring (SPEC §5 events) from the moment
// it is created. Lossy by design: a reader that falls more than the ring's
// capacity behind skips ahead and counts what it missed. While any reader
// polls (at least every 10 s), the agent writes events; with none, it saves
// the work.
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "perfq/core/event_ring.hpp"
#include "perfq/core/result.hpp"

namespace perfq::shm {
class Segment;
}

namespace perfq {

class EventReader {
 public:
  [[nodiscard]] static Result<std::unique_ptr<EventReader>> connect(std::string_view queue);
  [[nodiscard]] static Result<std::unique_ptr<EventReader>> connect(
      std::shared_ptr<shm::Segment> seg);

  // Appends up to `max` new events to `out`; returns how many. Never blocks.
  // One call never spans a loss: it skips ahead only before its first event,
  // so the n events it appends sit at positions position() - n .. position()
  // - 1, and any growth of missed() during the call lies before them.
  size_t poll(std::vector<Event>& out, size_t max = 1024);
  // Events this reader lost by falling behind, so far.
  [[nodiscard]] uint64_t missed() const noexcept { return missed_; }
  // The ring position the next poll reads (an event's position is its
  // SSE id). Positions count from the segment's creation.
  [[nodiscard]] uint64_t position() const noexcept { return next_; }
  // Moves to `position`, at most the ring's tail: the next poll starts
  // there, and what the ring no longer holds counts as missed.
  void seek(uint64_t position) noexcept;

 private:
  explicit EventReader(std::shared_ptr<shm::Segment> seg);
  std::shared_ptr<shm::Segment> seg_;
  EventRing ring_;
  uint64_t next_ = 0;
  uint64_t missed_ = 0;
};

}  // namespace perfq
