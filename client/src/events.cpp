#include "perfq/client/events.hpp"

#include <algorithm>

#include "perfq/core/clock.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq {

EventReader::EventReader(std::shared_ptr<shm::Segment> seg)
    : seg_(std::move(seg)), ring_(seg_->events()), next_(ring_.tail()) {
  ring_.note_reader(mono_now_ns());
}

Result<std::unique_ptr<EventReader>> EventReader::connect(std::string_view queue) {
  auto seg = shm::Segment::attach(queue);
  if (!seg) return seg.error();
  return connect(std::shared_ptr<shm::Segment>(std::move(seg.value())));
}

Result<std::unique_ptr<EventReader>> EventReader::connect(std::shared_ptr<shm::Segment> seg) {
  return std::unique_ptr<EventReader>(new EventReader(std::move(seg)));
}

size_t EventReader::poll(std::vector<Event>& out, size_t max) {
  ring_.note_reader(mono_now_ns());
  size_t n = 0;
  // Bounded by `max` events and the skips ahead before the first of them.
  while (n < max) {
    Event ev;
    switch (ring_.read(next_, ev)) {
      case EventRing::Read::kEvent:
        out.push_back(ev);
        ++next_;
        ++n;
        break;
      case EventRing::Read::kNotYet:
        return n;
      case EventRing::Read::kLost: {
        // The caller learns where the loss lies: not inside this batch.
        if (n > 0) return n;
        // Skip to the oldest event the ring still holds.
        const uint64_t tail = ring_.tail();
        const uint64_t oldest = tail > ring_.capacity() ? tail - ring_.capacity() : 0;
        const uint64_t to = std::max(oldest, next_ + 1);
        missed_ += to - next_;
        next_ = to;
        break;
      }
    }
  }
  return n;
}

void EventReader::seek(uint64_t position) noexcept {
  next_ = std::min(position, ring_.tail());
}

}  // namespace perfq
