#pragma once
// EventFeed: one subscriber's view of the event ring (SPEC §5 events) as
// text, for the HTTP server-sent events route and `perfqctl events`. Both
// print the same JSON per event:
//
//   {"id":812,"event":"request.completed","at":"2026-11-27T23:34:07.123Z",
//    "requestId":"00000000000000ab","type":"chat.message","userId":"ann",
//    "status":"completed","priority":5,"mode":"fifo","attempt":1}
//
// plus "error" (the code) when the event carries one; queue events
// (queue.full, queue.empty) have id, event and at only. Never a payload.
// `id` is the event's ring position; an SSE event repeats it as its id line:
//
//   id: 812\nevent: request.completed\ndata: {...}\n\n
//
// A feed that fell a lap behind says so before its next events:
// `event: events.missed` with data {"missed":N} (SSE), the JSON line
// {"event":"events.missed","missed":N}, or a text line.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "perfq/client/events.hpp"
#include "perfq/core/event_ring.hpp"

namespace perfq::agent {

// The JSON of the event at ring position `id`, fields in the order above.
// Every field read from the segment is checked: an out-of-range code
// becomes "unknown", names are cut at their bounds.
[[nodiscard]] nlohmann::ordered_json event_json(uint64_t id, const Event& e);

enum class FeedFormat : uint8_t {
  kSse,        // text/event-stream
  kJsonLines,  // one event_json per line
  kText,       // one line per event for people
};

// One event, or one missed notice, in `format`.
[[nodiscard]] std::string format_event(FeedFormat format, uint64_t id, const Event& e);
[[nodiscard]] std::string format_missed(FeedFormat format, uint64_t missed);
// The SSE comment that keeps an idle stream's connection checked.
inline constexpr std::string_view kSseKeepAlive = ": keep-alive\n\n";

class EventFeed {
 public:
  // `keep_alive_ms` (SSE only, 0: never): after this long without output,
  // next() returns kSseKeepAlive.
  EventFeed(std::unique_ptr<EventReader> reader, FeedFormat format, uint64_t keep_alive_ms = 0);

  // Appends to `out` what is new: a missed notice where the reader lost
  // events, then up to `max_events` events. Returns how many events (the
  // notice and keep-alives are not events). Never blocks; one caller at a
  // time.
  size_t next(std::string& out, size_t max_events);

 private:
  std::unique_ptr<EventReader> reader_;
  FeedFormat format_;
  uint64_t keep_alive_ns_;
  uint64_t last_output_ns_;
  std::vector<Event> batch_;
};

}  // namespace perfq::agent
