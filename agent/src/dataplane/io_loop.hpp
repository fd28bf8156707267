#pragma once
// IoLoop: the io_uring instance a duty-cycle thread parks in.
//
// Parking is an IORING_OP_FUTEX_WAIT on the shared doorbell word plus the
// wait's own timeout (the next timer), so one io_uring_enter both sleeps and
// wakes on producers, workers and timers. The DLQ journal has its own ring on
// its own thread (journal.hpp) and rings the same doorbell when dead letters
// become durable, so the data plane never waits on a disk. On kernels without futex ops (before
// 6.7) the loop falls back to the futex syscall with the same semantics.
#include <liburing.h>

#include <cstdint>

#include "perfq/core/result.hpp"

namespace perfq::agent {

class IoLoop {
 public:
  IoLoop() = default;
  ~IoLoop();
  IoLoop(const IoLoop&) = delete;
  IoLoop& operator=(const IoLoop&) = delete;

  [[nodiscard]] Result<void> init(unsigned entries = 64);

  // Sleeps until *word changes from `expected` (and a waker calls
  // FUTEX_WAKE), or `timeout_ns` passes. Spurious returns are allowed.
  void park(uint32_t* word, uint32_t expected, uint64_t timeout_ns) noexcept;

  [[nodiscard]] bool uses_io_uring_futex() const noexcept { return futex_op_; }

 private:
  static constexpr uint64_t kFutexTag = 1;
  io_uring ring_{};
  bool ready_ = false;
  bool futex_op_ = true;  // cleared when the kernel refuses the opcode
  bool futex_armed_ = false;
};

}  // namespace perfq::agent
