#include "perfq/core/request.hpp"

namespace perfq {

std::string_view mode_name(Mode m) noexcept {
  switch (m) {
    case Mode::kFifo: return "fifo";
    case Mode::kPriority: return "priority";
    case Mode::kBatch: return "batch";
  }
  return "unknown";
}

std::string_view band_name(Band b) noexcept {
  switch (b) {
    case Band::kCritical: return "CRITICAL";
    case Band::kHigh: return "HIGH";
    case Band::kNormal: return "NORMAL";
    case Band::kLow: return "LOW";
  }
  return "UNKNOWN";
}

std::string_view status_name(Status s) noexcept {
  switch (s) {
    case Status::kPending: return "pending";
    case Status::kAssigned: return "assigned";
    case Status::kProcessing: return "processing";
    case Status::kCompleted: return "completed";
    case Status::kFailed: return "failed";
    case Status::kTimeout: return "timeout";
    case Status::kCancelled: return "cancelled";
  }
  return "unknown";
}

bool parse_mode(std::string_view text, Mode& out) noexcept {
  for (uint8_t i = 0; i < kModeCount; ++i) {
    if (text == mode_name(static_cast<Mode>(i))) {
      out = static_cast<Mode>(i);
      return true;
    }
  }
  return false;
}

bool is_final(Status s) noexcept {
  return s == Status::kCompleted || s == Status::kFailed || s == Status::kTimeout ||
         s == Status::kCancelled;
}

namespace {

bool is_alnum(char c) noexcept {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

template <class Allowed>
bool all_of_bounded(std::string_view s, std::size_t max, Allowed allowed) noexcept {
  if (s.empty() || s.size() > max) return false;
  for (char c : s) {
    if (!allowed(c)) return false;
  }
  return true;
}

// The cheapest structural check that a text is one JSON object. Full parsing
// belongs to the edges that accept JSON (HTTP, Node, Python); here it only
// guards the C and C++ entry points against obviously wrong metadata.
bool looks_like_json_object(std::string_view s) noexcept {
  auto first = s.find_first_not_of(" \t\r\n");
  auto last = s.find_last_not_of(" \t\r\n");
  return first != std::string_view::npos && s[first] == '{' && s[last] == '}';
}

}  // namespace

bool valid_type(std::string_view s) noexcept {
  return all_of_bounded(s, kTypeMaxBytes, [](char c) {
    return is_alnum(c) || c == '.' || c == '_' || c == ':' || c == '-';
  });
}

bool valid_user_id(std::string_view s) noexcept {
  return all_of_bounded(s, kUserIdMaxBytes, [](char c) {
    return is_alnum(c) || c == '.' || c == '_' || c == ':' || c == '@' || c == '-';
  });
}

bool valid_idempotency_key(std::string_view s) noexcept {
  return all_of_bounded(s, kIdempotencyKeyMaxBytes, [](char c) { return c >= 0x20 && c <= 0x7e; });
}

Violation validate(const RequestView& r, std::size_t payload_capacity) noexcept {
  if (!valid_type(r.type)) {
    return {Errc::kInvalidRequest, "type must be 1..64 bytes of [A-Za-z0-9._:-]"};
  }
  if (static_cast<uint8_t>(r.mode) >= kModeCount) {
    return {Errc::kInvalidMode, "mode must be fifo, priority or batch"};
  }
  if (r.priority < kPriorityMin || r.priority > kPriorityMax) {
    return {Errc::kInvalidPriority, "priority must be an integer from 1 to 20"};
  }
  if (!valid_user_id(r.user_id)) {
    return {Errc::kInvalidRequest, "userId must be 1..64 bytes of [A-Za-z0-9._:@-]"};
  }
  if (r.payload.size() > payload_capacity) {
    return {Errc::kInvalidRequest, "payload is larger than slot_payload_bytes"};
  }
  if (!r.idempotency_key.empty() && !valid_idempotency_key(r.idempotency_key)) {
    return {Errc::kInvalidRequest, "idempotencyKey must be 1..128 printable ASCII bytes"};
  }
  if (!r.metadata.empty() &&
      (r.metadata.size() > kMetadataMaxBytes || !looks_like_json_object(r.metadata))) {
    return {Errc::kInvalidRequest, "metadata must be a JSON object of at most 512 bytes"};
  }
  return {};
}

void format_request_id(uint64_t id, char (&out)[17]) noexcept {
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 15; i >= 0; --i) {
    out[i] = kHex[id & 0xf];
    id >>= 4;
  }
  out[16] = '\0';
}

bool parse_request_id(std::string_view text, uint64_t& out) noexcept {
  if (text.size() != 16) return false;
  uint64_t v = 0;
  for (char c : text) {
    uint64_t d;
    if (c >= '0' && c <= '9') d = static_cast<uint64_t>(c - '0');
    else if (c >= 'a' && c <= 'f') d = static_cast<uint64_t>(c - 'a' + 10);
    else return false;
    v = (v << 4) | d;
  }
  out = v;
  return true;
}

}  // namespace perfq
