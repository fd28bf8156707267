#pragma once
// What the micro benchmarks share: where their threads run, and how a side
// waits for its peer.
//
// CPU plan (a 2-core machine is the target, so the plan is fixed):
//
//   CPU 0: producers (one in spsc, two in mpsc2)
//   CPU 1: the consumer, which is the benchmark runner's own thread
//   CPU 0: single-threaded scenarios (pair, slot_pool)
//
// Pinning the runner's thread is scoped: it gets its previous mask back when
// the benchmark function returns, so scenarios do not leak into each other.
#include <pthread.h>
#include <sched.h>

#include <chrono>
#include <cstdint>
#include <thread>

namespace perfq::bench::micro {

inline constexpr int kProducerCpu = 0;
inline constexpr int kConsumerCpu = 1;
inline constexpr int kSoloCpu = 0;

// Pins the calling thread to `cpu`. False when the CPU is not in the thread's
// allowed set (a container given fewer CPUs, taskset): the caller must then
// refuse to report, since an unpinned run measures the scheduler.
[[nodiscard]] inline bool pin_this_thread(int cpu) noexcept {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0;
}

// Pins the calling thread for the scope; restores the previous mask on exit.
class ScopedPin {
 public:
  explicit ScopedPin(int cpu) noexcept {
    CPU_ZERO(&saved_);
    saved_ok_ = pthread_getaffinity_np(pthread_self(), sizeof(saved_), &saved_) == 0;
    pinned_ = saved_ok_ && pin_this_thread(cpu);
  }
  ~ScopedPin() {
    if (saved_ok_) (void)pthread_setaffinity_np(pthread_self(), sizeof(saved_), &saved_);
  }
  ScopedPin(const ScopedPin&) = delete;
  ScopedPin& operator=(const ScopedPin&) = delete;

  [[nodiscard]] bool pinned() const noexcept { return pinned_; }

 private:
  cpu_set_t saved_;
  bool saved_ok_ = false;
  bool pinned_ = false;
};

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// One wait for the peer (queue full, queue empty, peer not ready yet):
// spin-then-yield, and give up once the peer has made no progress for
// kStallLimit. Construct one per wait; a successful operation ends it.
//
// The yield matters in mpsc2, where two producers share CPU 0: a producer
// waiting on a full ring hands the CPU to the other one instead of burning
// its whole time slice. With one thread per CPU the yield returns at once.
class PeerWait {
 public:
  static constexpr uint32_t kSpinRounds = 64;
  static constexpr std::chrono::seconds kStallLimit{5};

  // False once the wait has lasted longer than kStallLimit.
  [[nodiscard]] bool pause() noexcept {
    ++rounds_;
    if (rounds_ <= kSpinRounds) {
      cpu_relax();
      return true;
    }
    std::this_thread::yield();
    if (rounds_ % 1024 != 0) return true;  // read the clock rarely
    const auto now = std::chrono::steady_clock::now();
    if (rounds_ == 1024) deadline_ = now + kStallLimit;
    return now < deadline_;
  }

 private:
  uint64_t rounds_ = 0;
  std::chrono::steady_clock::time_point deadline_{};
};

}  // namespace perfq::bench::micro
