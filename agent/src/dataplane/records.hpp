#pragma once
// Reading what the segment says about a slot, for every collaborator of the
// data plane. Shared memory is untrusted: each helper bounds what it reads
// (a length is clamped to its field, an unknown enum value maps to a safe one).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "perfq/core/request.hpp"
#include "perfq/core/slot_pool.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq::agent {

// A control word moved to `s`, owned by `owner`.
[[nodiscard]] inline SlotCtl with_state(SlotCtl c, SlotState s, uint16_t owner) noexcept {
  c.state = s;
  c.owner = owner;
  return c;
}

// A result kind read from the segment; anything unknown counts as an error.
[[nodiscard]] inline AttemptResult attempt_result(uint8_t raw) noexcept {
  switch (raw) {
    case static_cast<uint8_t>(AttemptResult::kOk):
    case static_cast<uint8_t>(AttemptResult::kError):
    case static_cast<uint8_t>(AttemptResult::kPermanentError):
      return static_cast<AttemptResult>(raw);
    default:
      return AttemptResult::kError;
  }
}

// The request type in `slot`, at most kTypeMaxBytes whatever its length says.
[[nodiscard]] inline std::string_view type_of(shm::Segment& seg, uint32_t slot) noexcept {
  const RequestRecord& rec = seg.record(slot);
  return {rec.type, std::min<size_t>(rec.type_len, kTypeMaxBytes)};
}

// A request's type and userId into an event or a status entry (never more
// than their fields hold, whatever a broken producer wrote as lengths).
template <class To>
void copy_names(const RequestRecord& rec, To& to) noexcept {
  to.type_len = static_cast<uint8_t>(std::min<size_t>(rec.type_len, kTypeMaxBytes));
  to.user_len = static_cast<uint8_t>(std::min<size_t>(rec.user_len, kUserIdMaxBytes));
  std::memcpy(to.type, rec.type, to.type_len);
  std::memcpy(to.user_id, rec.user_id, to.user_len);
}

}  // namespace perfq::agent
