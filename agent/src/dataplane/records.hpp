#pragma once
// Reading what the segment says about a slot, for every collaborator of the
// data plane. Shared memory is untrusted: each helper bounds what it reads
// (a length is clamped to its field, an unknown enum value maps to a safe one).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "perfq/core/atomic.hpp"
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

// When the attempt in `rec` started, as its worker wrote it, if that lies
// between its dispatch and `now_ns`; otherwise its dispatch (a worker that
// never writes it, a value from before this dispatch, or garbage).
[[nodiscard]] inline uint64_t attempt_started_ns(const RequestRecord& rec,
                                                 uint64_t now_ns) noexcept {
  const uint64_t dispatched = load_relaxed(rec.dispatched_mono_ns);
  const uint64_t started = load_relaxed(rec.started_mono_ns);
  return started >= dispatched && started <= now_ns ? started : dispatched;
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

// Validated when taken: band < kBandCount, mode < kModeCount, priority in
// range; producer/incarnation name who may collect the outcome.
struct Facts {
  uint16_t producer = kOwnerAgent;  // kOwnerAgent: nobody collects
  uint16_t incarnation = 0;         // the producer record's, low bits
  uint8_t band = static_cast<uint8_t>(Band::kLow);
  uint8_t mode = static_cast<uint8_t>(Mode::kFifo);
  uint8_t priority = kPriorityDefault;
};

// The facts of a record a request was taken from, each field read once;
// false when any is out of range (the caller rejects the request, or, for
// one it cannot reject, uses `out` as made safe: band LOW, mode FIFO).
[[nodiscard]] inline bool read_facts(const RequestRecord& rec, uint32_t max_clients,
                                     Facts& out) noexcept {
  const uint8_t band = load_relaxed(rec.band);
  const uint8_t mode = load_relaxed(rec.mode);
  const uint8_t priority = load_relaxed(rec.priority);
  const uint16_t producer = load_relaxed(rec.producer);
  out.incarnation = load_relaxed(rec.producer_incarnation);
  const bool ok = band < kBandCount && mode < kModeCount && priority >= kPriorityMin &&
                  priority <= kPriorityMax && producer < max_clients &&
                  band == static_cast<uint8_t>(band_for(static_cast<Mode>(mode), priority));
  out.band = band < kBandCount ? band : static_cast<uint8_t>(Band::kLow);
  out.mode = mode < kModeCount ? mode : static_cast<uint8_t>(Mode::kFifo);
  out.priority = priority >= kPriorityMin && priority <= kPriorityMax ? priority : kPriorityDefault;
  out.producer = producer < max_clients ? producer : kOwnerAgent;
  return ok;
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
