#pragma once
// Producers' refusals, counted by reason in the segment header
// (SegmentHeader::rejected, docs/PROTOCOL.md §2) and exported as
// perfq_rejected_total{reason}.
//
// Who counts: the client library, once per answer it gives its caller (a
// submit, a try_submit, each refused request of a batch), never for the
// attempts a waiting submit makes before its answer; and the agent's HTTP
// plane for the submits it refuses before they reach its producer. Each
// refusal is one relaxed fetch_add: a counter that orders nothing, on the
// unhappy path only. The counters live as long as the segment (they carry
// across agent restarts, like the agent's own counters).
#include <cstdint>
#include <string_view>

#include "perfq/core/atomic.hpp"
#include "perfq/core/errc.hpp"
#include "perfq/shm/layout.hpp"

namespace perfq::shm {

// The reason of a refusal with `code`. While the agent drains, every refusal
// that is not the request's own fault (invalid, rate limited) is put down to
// the drain, whatever code it took (QUEUE_FULL or another).
[[nodiscard]] constexpr RejectReason reject_reason(Errc code, bool draining) noexcept {
  switch (code) {
    case Errc::kInvalidRequest:
    case Errc::kInvalidMode:
    case Errc::kInvalidPriority:
      return RejectReason::kInvalid;
    case Errc::kRateLimitExceeded:
      return RejectReason::kRateLimited;
    default:
      break;
  }
  if (draining) return RejectReason::kDraining;
  if (code == Errc::kQueueFull) return RejectReason::kQueueFull;
  if (code == Errc::kConflict) return RejectReason::kConflict;
  return RejectReason::kOther;
}

// The `reason` label of perfq_rejected_total.
[[nodiscard]] constexpr std::string_view reject_reason_name(RejectReason r) noexcept {
  switch (r) {
    case RejectReason::kQueueFull:
      return "queue_full";
    case RejectReason::kRateLimited:
      return "rate_limited";
    case RejectReason::kInvalid:
      return "invalid";
    case RejectReason::kDraining:
      return "draining";
    case RejectReason::kConflict:
      return "conflict";
    case RejectReason::kOther:
      break;
  }
  return "other";
}

// Whether the agent says it is draining (a word any member can write: it
// decides only whether a producer admits, never what the agent does).
[[nodiscard]] inline bool agent_draining(const SegmentHeader& h) noexcept {
  return load_relaxed(h.agent_state) == static_cast<uint32_t>(AgentState::kDraining);
}

// Counts one refusal with `code` (kOk counts nothing). Any process of the
// segment; relaxed: nothing is published with it.
inline void count_rejection(SegmentHeader& h, Errc code) noexcept {
  if (code == Errc::kOk) return;
  const bool draining = agent_draining(h);
  const auto i = static_cast<uint8_t>(reject_reason(code, draining));
  aref(h.rejected[i]).fetch_add(1, std::memory_order_relaxed);
}

// The counter of `r`, as any reader takes it (a word producers write).
[[nodiscard]] inline uint64_t rejections(const SegmentHeader& h, RejectReason r) noexcept {
  return load_relaxed(h.rejected[static_cast<uint8_t>(r)]);
}

}  // namespace perfq::shm
