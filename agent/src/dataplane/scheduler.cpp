#include "dataplane/scheduler.hpp"

#include <algorithm>

namespace perfq::agent {

Scheduler::Scheduler(const Config& cfg) noexcept
    : aging_ns_(cfg.aging_ms * 1'000'000),
      queue_timeout_ns_(cfg.queue_timeout_ms * 1'000'000),
      processing_timeout_ns_(cfg.processing_timeout_ms * 1'000'000),
      retry_backoff_ms_(cfg.retry_backoff_ms),
      retry_jitter_(cfg.retry_jitter),
      deadline_bound_(2 * cfg.max_concurrent_workers + 1024) {}

// Requests that failed together do not return together: the jitter spreads
// them.
uint64_t Scheduler::backoff_ns(uint8_t failed_attempt) noexcept {
  const uint32_t k = std::min<uint32_t>(failed_attempt, 30);
  const double base = static_cast<double>(retry_backoff_ms_) * 1e6 * static_cast<double>(1u << k);
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  const double u = static_cast<double>(rng_ >> 11) * 0x1.0p-53;  // [0, 1)
  const double spread = 1.0 + retry_jitter_ * (2.0 * u - 1.0);
  return static_cast<uint64_t>(base * spread);
}

void Scheduler::restore_deadlines(std::vector<Timer> ts) {
  std::sort(ts.begin(), ts.end(), [](const Timer& x, const Timer& y) { return x.at_ns < y.at_ns; });
  deadlines_.assign(ts.begin(), ts.end());
}

}  // namespace perfq::agent
