#pragma once
// Public error codes. One enumerator per code of the product contract; the
// numeric values travel through shared memory and the C API, so they are
// append-only.
#include <cstdint>
#include <string_view>

namespace perfq {

enum class Errc : uint8_t {
  kOk = 0,
  kInvalidRequest = 1,
  kInvalidMode = 2,
  kInvalidPriority = 3,
  kQueueFull = 4,
  kRateLimitExceeded = 5,
  kNotFound = 6,
  kUnauthorized = 7,
  kForbidden = 8,
  kInvalidStatus = 9,
  kWorkerUnavailable = 10,
  kProcessingTimeout = 11,
  kProcessorError = 12,
  kWorkerDied = 13,
  kQueueTimeout = 14,
  kCancelled = 15,
  kAgentUnavailable = 16,
  kSegmentInvalid = 17,
  kConflict = 18,
  kInternal = 19,
};
inline constexpr uint8_t kErrcCount = 20;

// The wire name of a code, e.g. "QUEUE_FULL".
[[nodiscard]] constexpr std::string_view errc_name(Errc e) noexcept {
  switch (e) {
    case Errc::kOk:
      return "OK";
    case Errc::kInvalidRequest:
      return "INVALID_REQUEST";
    case Errc::kInvalidMode:
      return "INVALID_MODE";
    case Errc::kInvalidPriority:
      return "INVALID_PRIORITY";
    case Errc::kQueueFull:
      return "QUEUE_FULL";
    case Errc::kRateLimitExceeded:
      return "RATE_LIMIT_EXCEEDED";
    case Errc::kNotFound:
      return "NOT_FOUND";
    case Errc::kUnauthorized:
      return "UNAUTHORIZED";
    case Errc::kForbidden:
      return "FORBIDDEN";
    case Errc::kInvalidStatus:
      return "INVALID_STATUS";
    case Errc::kWorkerUnavailable:
      return "WORKER_UNAVAILABLE";
    case Errc::kProcessingTimeout:
      return "PROCESSING_TIMEOUT";
    case Errc::kProcessorError:
      return "PROCESSOR_ERROR";
    case Errc::kWorkerDied:
      return "WORKER_DIED";
    case Errc::kQueueTimeout:
      return "QUEUE_TIMEOUT";
    case Errc::kCancelled:
      return "CANCELLED";
    case Errc::kAgentUnavailable:
      return "AGENT_UNAVAILABLE";
    case Errc::kSegmentInvalid:
      return "SEGMENT_INVALID";
    case Errc::kConflict:
      return "CONFLICT";
    case Errc::kInternal:
      return "INTERNAL";
  }
  return "UNKNOWN";
}

// Validates a code read from shared memory before it is trusted.
[[nodiscard]] constexpr bool errc_valid(uint8_t raw) noexcept {
  return raw < kErrcCount;
}

// The HTTP status an error answers with (SPEC §6), also the `statusCode` of
// perfqctl's JSON error bodies.
[[nodiscard]] constexpr int http_status(Errc e) noexcept {
  switch (e) {
    case Errc::kOk:
      return 200;
    case Errc::kInvalidRequest:
    case Errc::kInvalidMode:
    case Errc::kInvalidPriority:
    case Errc::kInvalidStatus:
      return 400;
    case Errc::kUnauthorized:
      return 401;
    case Errc::kForbidden:
      return 403;
    case Errc::kNotFound:
      return 404;
    case Errc::kConflict:
      return 409;
    case Errc::kRateLimitExceeded:
      return 429;
    case Errc::kQueueFull:
    case Errc::kAgentUnavailable:
    case Errc::kWorkerUnavailable:
      return 503;
    default:
      return 500;
  }
}

}  // namespace perfq
