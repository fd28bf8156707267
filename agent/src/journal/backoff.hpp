#pragma once
// Backoff: how long the journal thread waits before writing a failing file
// again. The first failure waits first_ms; each further one doubles the wait,
// up to max_ms; a success ends it.
#include <algorithm>
#include <cstdint>

namespace perfq::agent {

struct Backoff {
  uint64_t first_ms = 100;
  uint64_t max_ms = 5000;
  uint64_t wait_ms = 0;  // 0: healthy, write at once

  void failed() noexcept { wait_ms = wait_ms == 0 ? first_ms : std::min(wait_ms * 2, max_ms); }
  void succeeded() noexcept { wait_ms = 0; }
};

}  // namespace perfq::agent
