#pragma once
// The request: its fields, the rules on them (SPEC §3), and the fixed-layout
// record that carries it through shared memory.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <type_traits>

#include "perfq/core/cache_line.hpp"
#include "perfq/core/errc.hpp"

namespace perfq {

enum class Mode : uint8_t { kFifo = 0, kPriority = 1, kBatch = 2 };
inline constexpr uint8_t kModeCount = 3;

// Bands in service order: index 0 is served first.
enum class Band : uint8_t { kCritical = 0, kHigh = 1, kNormal = 2, kLow = 3 };
inline constexpr uint8_t kBandCount = 4;

enum class Status : uint8_t {
  kPending = 0,
  kAssigned = 1,
  kProcessing = 2,
  kCompleted = 3,
  kFailed = 4,
  kTimeout = 5,
  kCancelled = 6,
};
inline constexpr uint8_t kStatusCount = 7;

inline constexpr std::size_t kTypeMaxBytes = 64;
inline constexpr std::size_t kUserIdMaxBytes = 64;
inline constexpr std::size_t kIdempotencyKeyMaxBytes = 128;
inline constexpr std::size_t kMetadataMaxBytes = 512;
inline constexpr uint8_t kPriorityMin = 1;
inline constexpr uint8_t kPriorityMax = 20;
inline constexpr uint8_t kPriorityDefault = 5;

[[nodiscard]] std::string_view mode_name(Mode m) noexcept;
[[nodiscard]] std::string_view band_name(Band b) noexcept;
[[nodiscard]] std::string_view status_name(Status s) noexcept;
[[nodiscard]] bool parse_mode(std::string_view text, Mode& out) noexcept;
[[nodiscard]] bool is_final(Status s) noexcept;

// SPEC §3: priority and batch requests are banded by priority; fifo requests
// all share NORMAL so that their submit order is their service order.
[[nodiscard]] constexpr Band band_for(Mode mode, uint8_t priority) noexcept {
  if (mode == Mode::kFifo) return Band::kNormal;
  if (priority >= 20) return Band::kCritical;
  if (priority >= 10) return Band::kHigh;
  if (priority >= 5) return Band::kNormal;
  return Band::kLow;
}

// A request as a producer describes it. Views only; nothing is owned.
struct RequestView {
  std::string_view type;
  std::string_view user_id;
  Mode mode = Mode::kFifo;
  uint8_t priority = kPriorityDefault;
  std::span<const std::byte> payload;
  std::string_view idempotency_key;  // empty: none
  std::string_view metadata;         // empty: none; else a JSON object text
};

struct Violation {
  Errc code = Errc::kOk;
  std::string_view message;  // static text; never quotes the offending value
};

// Checks every rule of SPEC §3. `payload_capacity` is the segment's
// slot_payload_bytes. Returns code kOk when the request is valid.
[[nodiscard]] Violation validate(const RequestView& r, std::size_t payload_capacity) noexcept;
[[nodiscard]] bool valid_type(std::string_view s) noexcept;
[[nodiscard]] bool valid_user_id(std::string_view s) noexcept;
[[nodiscard]] bool valid_idempotency_key(std::string_view s) noexcept;

// Request ids are printed as 16 lower-case hex digits.
void format_request_id(uint64_t id, char (&out)[17]) noexcept;
[[nodiscard]] bool parse_request_id(std::string_view text, uint64_t& out) noexcept;

// Outcome kinds a worker reports for one attempt.
enum class AttemptResult : uint8_t { kNone = 0, kOk = 1, kError = 2, kPermanentError = 3 };

// One failed attempt, as the dead-letter queue reports it (errorHistory).
inline constexpr std::size_t kAttemptMessageBytes = 102;
struct AttemptError {
  uint64_t at_unix_ns;
  uint8_t code;  // Errc
  uint8_t len;   // bytes of message used
  char message[kAttemptMessageBytes];
};
static_assert(sizeof(AttemptError) == 112);
static_assert(std::is_trivially_copyable_v<AttemptError>);
// Attempts whose errors a slot keeps; later ones replace the oldest.
inline constexpr uint8_t kAttemptHistory = 8;

// The fixed part of a slot. The payload and result areas follow it in the
// slot (see SlotGeometry); their capacity is the segment's slot_payload_bytes.
//
//   +-------------------- slot (stride bytes) ---------------------+
//   | RequestRecord (fixed) | payload[cap] (pad) | result[cap] (pad) |
//   +--------------------------------------------------------------+
//
// Producer-written fields are written while the slot is CLAIMED and read-only
// after it is published; outcome fields are written by the worker that holds
// the attempt (result_*) and by the agent (status, error, times).
struct RequestRecord {
  // --- written by the producer before publishing
  uint64_t request_id;
  uint64_t created_at_unix_ns;  // wall clock, for createdAt
  uint64_t enqueued_mono_ns;    // CLOCK_MONOTONIC at publish; waits are measured from it
  uint64_t producer_seq;        // per-producer submit sequence number
  uint32_t payload_len;
  uint16_t metadata_len;
  uint16_t producer;  // client index of the submitter
  uint8_t type_len;
  uint8_t user_len;
  uint8_t idem_len;
  uint8_t mode;                   // Mode
  uint8_t priority;               // 1..20
  uint8_t band;                   // Band, derived from mode and priority
  uint16_t producer_incarnation;  // low bits of the producer record's incarnation
  char type[kTypeMaxBytes];
  char user_id[kUserIdMaxBytes];
  char idempotency_key[kIdempotencyKeyMaxBytes];
  char metadata[kMetadataMaxBytes];
  // --- written by the agent
  uint64_t dispatched_mono_ns;
  uint64_t finished_mono_ns;
  uint8_t status;  // Status, final once the slot is DONE
  uint8_t error;   // Errc of the final outcome
  uint8_t attempts;
  uint8_t reserved1[5];
  // --- written by the worker holding the attempt
  uint64_t started_mono_ns;  // when the worker started the attempt (SPEC §4 processing time)
  uint32_t result_len;
  uint8_t result_kind;   // AttemptResult
  uint8_t result_error;  // Errc a processor returned
  uint8_t reserved2[2];
  // --- written by the agent: the time rules (survive an agent restart)
  uint64_t eligible_mono_ns;  // became dispatchable (publish, or end of a retry backoff)
  uint64_t retry_at_mono_ns;  // 0, or when a failed attempt's backoff ends
  // --- written by the agent: what the dead-letter queue reports
  uint64_t first_attempt_unix_ns;
  uint8_t failures;  // failed attempts so far (history keeps the last kAttemptHistory)
  uint8_t reserved3[7];
  AttemptError history[kAttemptHistory];  // ring: failure k at [k % kAttemptHistory]
};

static_assert(std::is_standard_layout_v<RequestRecord>);
static_assert(std::is_trivially_copyable_v<RequestRecord>);
static_assert(offsetof(RequestRecord, request_id) == 0);
static_assert(offsetof(RequestRecord, payload_len) == 32);
static_assert(offsetof(RequestRecord, producer) == 38);
static_assert(offsetof(RequestRecord, mode) == 43);
static_assert(offsetof(RequestRecord, producer_incarnation) == 46);
static_assert(offsetof(RequestRecord, type) == 48);
static_assert(offsetof(RequestRecord, user_id) == 112);
static_assert(offsetof(RequestRecord, idempotency_key) == 176);
static_assert(offsetof(RequestRecord, metadata) == 304);
static_assert(offsetof(RequestRecord, dispatched_mono_ns) == 816);
static_assert(offsetof(RequestRecord, status) == 832);
static_assert(offsetof(RequestRecord, started_mono_ns) == 840);
static_assert(offsetof(RequestRecord, result_len) == 848);
static_assert(offsetof(RequestRecord, eligible_mono_ns) == 856);
static_assert(offsetof(RequestRecord, retry_at_mono_ns) == 864);
static_assert(offsetof(RequestRecord, first_attempt_unix_ns) == 872);
static_assert(offsetof(RequestRecord, failures) == 880);
static_assert(offsetof(RequestRecord, history) == 888);
static_assert(sizeof(RequestRecord) == 1784);

// Where the parts of a slot lie, for a given payload capacity.
struct SlotGeometry {
  uint32_t payload_capacity = 0;
  uint32_t payload_offset = 0;
  uint32_t result_offset = 0;
  uint32_t stride = 0;

  [[nodiscard]] static constexpr SlotGeometry for_capacity(uint32_t payload_capacity) noexcept {
    SlotGeometry g;
    g.payload_capacity = payload_capacity;
    g.payload_offset = static_cast<uint32_t>(align_up(sizeof(RequestRecord), kCacheLine));
    g.result_offset =
        g.payload_offset + static_cast<uint32_t>(align_up(payload_capacity, kCacheLine));
    g.stride = g.result_offset + static_cast<uint32_t>(align_up(payload_capacity, kCacheLine));
    return g;
  }
};

}  // namespace perfq
