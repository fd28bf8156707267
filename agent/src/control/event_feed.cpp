#include "control/event_feed.hpp"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string_view>

#include "perfq/core/clock.hpp"
#include "perfq/core/iso_time.hpp"
#include "perfq/core/request.hpp"

namespace perfq::agent {

using json = nlohmann::ordered_json;

namespace {

// The enums of an event as names; a value out of range (a segment scribbled
// on) is "unknown" rather than trusted.
std::string_view kind_of(const Event& e) {
  return e.kind < kEventKindCount ? event_name(static_cast<EventKind>(e.kind)) : "unknown";
}
std::string_view status_of(const Event& e) {
  return e.status < kStatusCount ? status_name(static_cast<Status>(e.status)) : "unknown";
}
std::string_view mode_of(const Event& e) {
  return e.mode < kModeCount ? mode_name(static_cast<Mode>(e.mode)) : "unknown";
}
std::string_view error_of(const Event& e) {
  return errc_valid(e.error) ? errc_name(static_cast<Errc>(e.error)) : "UNKNOWN";
}
std::string_view type_of(const Event& e) {
  return {e.type, std::min<std::size_t>(e.type_len, kTypeMaxBytes)};
}
std::string_view user_of(const Event& e) {
  return {e.user_id, std::min<std::size_t>(e.user_len, kUserIdMaxBytes)};
}
bool is_request_event(const Event& e) {
  return e.request_id != 0;
}

std::string dump(const json& j) {
  // Names come from shared memory: bytes that are not UTF-8 are replaced,
  // never thrown on.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string text_line(uint64_t id, const Event& e) {
  std::string line = iso_time(e.at_unix_ns) + "  ";
  char head[64];
  std::snprintf(head, sizeof head, "%-21s", std::string(kind_of(e)).c_str());
  line += head;
  if (is_request_event(e)) {
    char rid[17];
    format_request_id(e.request_id, rid);
    line += "  ";
    line += rid;
    line += "  type ";
    line += type_of(e);
    line += "  user ";
    line += user_of(e);
    line += "  status ";
    line += status_of(e);
    line += "  attempt " + std::to_string(e.attempt);
    if (e.error != static_cast<uint8_t>(Errc::kOk)) {
      line += "  error ";
      line += error_of(e);
    }
  }
  line += "  #" + std::to_string(id) + "\n";
  return line;
}

}  // namespace

json event_json(uint64_t id, const Event& e) {
  json j = {{"id", id}, {"event", kind_of(e)}, {"at", iso_time(e.at_unix_ns)}};
  if (!is_request_event(e)) return j;
  char rid[17];
  format_request_id(e.request_id, rid);
  j["requestId"] = rid;
  j["type"] = type_of(e);
  j["userId"] = user_of(e);
  j["status"] = status_of(e);
  j["priority"] = e.priority;
  j["mode"] = mode_of(e);
  j["attempt"] = e.attempt;
  if (e.error != static_cast<uint8_t>(Errc::kOk)) j["error"] = error_of(e);
  return j;
}

std::string format_event(FeedFormat format, uint64_t id, const Event& e) {
  switch (format) {
    case FeedFormat::kSse:
      return "id: " + std::to_string(id) + "\nevent: " + std::string(kind_of(e)) +
             "\ndata: " + dump(event_json(id, e)) + "\n\n";
    case FeedFormat::kJsonLines:
      return dump(event_json(id, e)) + "\n";
    case FeedFormat::kText:
      return text_line(id, e);
  }
  return {};
}

std::string format_missed(FeedFormat format, uint64_t missed) {
  const std::string n = std::to_string(missed);
  switch (format) {
    case FeedFormat::kSse:
      // No id line: a client's Last-Event-ID stays the last event it got.
      return "event: events.missed\ndata: " + dump({{"missed", missed}}) + "\n\n";
    case FeedFormat::kJsonLines:
      return dump({{"event", "events.missed"}, {"missed", missed}}) + "\n";
    case FeedFormat::kText:
      return "-- missed " + n + " event" + (missed == 1 ? "" : "s") +
             ": this reader fell a lap behind the ring\n";
  }
  return {};
}

EventFeed::EventFeed(std::unique_ptr<EventReader> reader, FeedFormat format, uint64_t keep_alive_ms)
    : reader_(std::move(reader)),
      format_(format),
      keep_alive_ns_(keep_alive_ms * 1'000'000),
      last_output_ns_(mono_now_ns()) {}

size_t EventFeed::next(std::string& out, size_t max_events) {
  const std::size_t size_before = out.size();
  const uint64_t missed_before = reader_->missed();
  batch_.clear();
  const size_t n = reader_->poll(batch_, max_events);
  // poll() never spans a loss: what it skipped lies before the batch.
  if (reader_->missed() != missed_before) {
    out += format_missed(format_, reader_->missed() - missed_before);
  }
  uint64_t id = reader_->position() - n;
  for (const Event& e : batch_) out += format_event(format_, id++, e);
  const uint64_t now = mono_now_ns();
  if (out.size() != size_before) {
    last_output_ns_ = now;
  } else if (format_ == FeedFormat::kSse && keep_alive_ns_ != 0 &&
             now - last_output_ns_ >= keep_alive_ns_) {
    out += kSseKeepAlive;
    last_output_ns_ = now;
  }
  return n;
}

}  // namespace perfq::agent
