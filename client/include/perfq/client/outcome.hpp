#pragma once
// Outcome: what became of one request, as its producer receives it.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "perfq/core/errc.hpp"
#include "perfq/core/request.hpp"

namespace perfq {

struct Outcome {
  uint64_t request_id = 0;
  Status status = Status::kPending;
  Errc error = Errc::kOk;  // why it did not complete; kOk when completed
  uint8_t attempts = 0;
  std::vector<std::byte> result;  // the processor's reply (completed) or error text
  uint64_t wait_ns = 0;           // publish -> last dispatch
  uint64_t processing_ns = 0;     // last dispatch -> settled

  [[nodiscard]] std::string result_text() const {
    return {reinterpret_cast<const char*>(result.data()), result.size()};
  }
};

}  // namespace perfq
