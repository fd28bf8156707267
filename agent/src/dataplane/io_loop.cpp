#include "dataplane/io_loop.hpp"

#include <cerrno>
#include <cstring>

#include "perfq/shm/futex.hpp"

namespace perfq::agent {

namespace {

// From linux/io_uring.h of 6.7+, absent from older headers.
constexpr uint8_t kOpFutexWait = 51;
constexpr uint32_t kFutex2SizeU32 = 0x02;  // FUTEX2_SIZE_U32; not FUTEX2_PRIVATE: shared memory
constexpr uint64_t kFutexBitsetMatchAny = 0xffff'ffffu;

}  // namespace

IoLoop::~IoLoop() {
  if (ready_) io_uring_queue_exit(&ring_);
}

Result<void> IoLoop::init(unsigned entries) {
  const int r = io_uring_queue_init(entries, &ring_, 0);
  if (r < 0) return {Errc::kInternal, std::string("io_uring_queue_init: ") + std::strerror(-r)};
  ready_ = true;
  return {};
}

void IoLoop::park(uint32_t* word, uint32_t expected, uint64_t timeout_ns) noexcept {
  if (!futex_op_) {
    shm::futex_wait(word, expected, timeout_ns);
    return;
  }
  if (!futex_armed_) {
    // An armed wait survives a timed-out park: any FUTEX_WAKE completes it,
    // and a word that already differs completes it at once with -EAGAIN.
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {
      shm::futex_wait(word, expected, timeout_ns);
      return;
    }
    io_uring_prep_rw(kOpFutexWait, sqe, static_cast<int>(kFutex2SizeU32), word, 0, 0);
    sqe->addr2 = expected;
    sqe->addr3 = kFutexBitsetMatchAny;
    sqe->rw_flags = 0;
    io_uring_sqe_set_data64(sqe, kFutexTag);
    futex_armed_ = true;
  }
  __kernel_timespec ts{static_cast<long long>(timeout_ns / 1'000'000'000),
                       static_cast<long long>(timeout_ns % 1'000'000'000)};
  io_uring_cqe* cqe = nullptr;
  (void)io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
  unsigned head = 0;
  unsigned seen = 0;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    ++seen;
    if (io_uring_cqe_get_data64(cqe) == kFutexTag) {
      futex_armed_ = false;
      if (cqe->res == -EINVAL || cqe->res == -EOPNOTSUPP || cqe->res == -ENOSYS) {
        futex_op_ = false;  // kernel without futex ops: use the syscall from now on
      }
    }
  }
  io_uring_cq_advance(&ring_, seen);
}

}  // namespace perfq::agent
