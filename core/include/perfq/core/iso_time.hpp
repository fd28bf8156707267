#pragma once
// Times as the JSON of the HTTP API, perfqctl and the bindings print them.
#include <cstdint>
#include <string>

namespace perfq {

// ISO 8601 UTC with milliseconds, e.g. "2026-12-01T15:13:41.123Z".
[[nodiscard]] std::string iso_time(uint64_t unix_ns);

}  // namespace perfq
