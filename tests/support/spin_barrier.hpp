#pragma once
// A barrier that lets all threads leave together, so that they race at the
// same instant (a blocking barrier wakes them one after another). Waiters
// spin, yielding, for at most `bound`.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

namespace perfq::test {

class SpinBarrier {
 public:
  explicit SpinBarrier(uint32_t n) : n_(n) {}

  // False if the other threads did not all arrive within `bound`.
  bool arrive_and_wait(std::chrono::seconds bound = std::chrono::seconds(60)) {
    // Acquire pairs with the last arriver's release increment of gen_.
    const uint32_t gen = gen_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_) {
      arrived_.store(0, std::memory_order_relaxed);
      gen_.fetch_add(1, std::memory_order_acq_rel);  // releases the waiters below
      return true;
    }
    const auto end = std::chrono::steady_clock::now() + bound;
    while (gen_.load(std::memory_order_acquire) == gen) {  // pairs with the increment above
      if (std::chrono::steady_clock::now() > end) return false;
      std::this_thread::yield();
    }
    return true;
  }

 private:
  const uint32_t n_;
  std::atomic<uint32_t> arrived_{0};
  std::atomic<uint32_t> gen_{0};
};

}  // namespace perfq::test
