#pragma once
// Idle strategies for duty cycles (Aeron's AgentRunner idea): what a loop
// does when a pass found no work. Spinning costs a core and buys latency;
// parking frees the core and costs a futex round trip per wake-up.
#include <cstdint>
#include <string_view>
#include <thread>

namespace perfq {

enum class IdleKind : uint8_t {
  kBusySpin = 0,  // never park
  kBackoff = 1,   // spin, then yield, then park for growing periods
  kPark = 2,      // spin briefly (adaptive), then park until notified
};

[[nodiscard]] constexpr std::string_view idle_name(IdleKind k) noexcept {
  switch (k) {
    case IdleKind::kBusySpin:
      return "busy-spin";
    case IdleKind::kBackoff:
      return "backoff";
    case IdleKind::kPark:
      return "park";
  }
  return "unknown";
}

[[nodiscard]] constexpr bool parse_idle(std::string_view s, IdleKind& out) noexcept {
  for (auto k : {IdleKind::kBusySpin, IdleKind::kBackoff, IdleKind::kPark}) {
    if (s == idle_name(k)) {
      out = k;
      return true;
    }
  }
  return false;
}

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Decides, after each empty pass, whether to spin on, yield or park.
// Adaptive: the spin budget doubles when a spin ended in work (waking was
// about to cost more than it saved) and halves when spinning ended in a
// park anyway, within [min, max] passes.
class IdlePolicy {
 public:
  enum class Action : uint8_t { kSpin, kYield, kPark };

  explicit IdlePolicy(IdleKind kind, uint32_t spin_min = 64, uint32_t spin_max = 16384) noexcept
      : kind_(kind), spin_min_(spin_min), spin_max_(spin_max), budget_(spin_min * 4) {}

  // After a pass that did `work` units.
  [[nodiscard]] Action next(uint64_t work) noexcept {
    if (work > 0) {
      if (idle_ > 0 && idle_ <= budget_ && budget_ < spin_max_) budget_ *= 2;
      idle_ = 0;
      return Action::kSpin;
    }
    ++idle_;
    if (kind_ == IdleKind::kBusySpin) {
      // Never parks, but offers the core now and then: with more spinning
      // processes than cores a pure spin only burns the peer's time slice.
      return (idle_ & 255) == 0 ? Action::kYield : Action::kSpin;
    }
    if (idle_ <= budget_) return Action::kSpin;
    if (kind_ == IdleKind::kBackoff && idle_ <= budget_ + 64) return Action::kYield;
    return Action::kPark;
  }

  // After a pass that did `work` units: spin, yield, or call `park()` (which
  // must block with a bound). The one idle step every duty cycle takes.
  template <class Park>
  void idle(uint64_t work, Park&& park) {
    switch (next(work)) {
      case Action::kSpin:
        cpu_relax();
        break;
      case Action::kYield:
        std::this_thread::yield();
        break;
      case Action::kPark:
        park();
        parked();
        break;
    }
  }

  // The loop parked and woke up.
  void parked() noexcept {
    if (budget_ > spin_min_) budget_ /= 2;
    idle_ = 0;
  }

  [[nodiscard]] IdleKind kind() const noexcept { return kind_; }

 private:
  IdleKind kind_;
  uint32_t spin_min_;
  uint32_t spin_max_;
  uint32_t budget_;
  uint32_t idle_ = 0;
};

}  // namespace perfq
