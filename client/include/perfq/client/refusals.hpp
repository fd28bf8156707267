#pragma once
// The texts of the producer's own refusals (Error::message). Static: a
// refused submit formats nothing, and the texts name no number (the
// configured limits are in the queue's config and its metrics). Callers
// that must tell the refusals apart compare the code first, then the text.
#include <string_view>

namespace perfq::refusal {

// QUEUE_FULL: max_queue_depth requests are accepted and not final
// (try_submit at once; submit after waiting rope_drop_timeout_ms for room).
inline constexpr std::string_view kQueueAtDepth =
    "the queue holds max_queue_depth requests; retry later";
// QUEUE_FULL: the queue's depth could not be read (a torn view).
inline constexpr std::string_view kDepthUnknown =
    "the queue's depth could not be read; treated as full";
// QUEUE_FULL: every slot of the segment is held (requests in flight and
// outcomes their producers have not collected yet).
inline constexpr std::string_view kNoFreeSlot = "no free request slot";
// QUEUE_FULL: the agent is draining (perfqctl drain, or SIGTERM with
// drain_timeout_ms): it finishes what it holds and admits nothing new. Not
// waited out: the agent exits once drained; submit to the next one.
inline constexpr std::string_view kDraining =
    "the agent is draining: it admits nothing new; retry once an agent runs again";
// QUEUE_FULL: the band ring refused the slot (only a broken segment).
inline constexpr std::string_view kBandRingFull = "band ring full";

}  // namespace perfq::refusal
