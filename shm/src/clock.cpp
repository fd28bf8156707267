#include "perfq/core/clock.hpp"

#include <ctime>

namespace perfq {

namespace {

uint64_t read(clockid_t id) noexcept {
  timespec ts{};
  ::clock_gettime(id, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

class SystemClock final : public Clock {
 public:
  uint64_t now_mono_ns() const noexcept override { return read(CLOCK_MONOTONIC); }
  uint64_t now_unix_ns() const noexcept override { return read(CLOCK_REALTIME); }
};

}  // namespace

uint64_t mono_now_ns() noexcept {
  return read(CLOCK_MONOTONIC);
}
uint64_t unix_now_ns() noexcept {
  return read(CLOCK_REALTIME);
}

const Clock& system_clock() noexcept {
  static const SystemClock clock;
  return clock;
}

}  // namespace perfq
