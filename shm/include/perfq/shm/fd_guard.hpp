#pragma once
// FdGuard: closes a file descriptor when it leaves scope, unless released.
#include <unistd.h>

#include <utility>

namespace perfq::shm {

class FdGuard {
 public:
  explicit FdGuard(int fd) noexcept : fd_(fd) {}
  ~FdGuard() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdGuard(const FdGuard&) = delete;
  FdGuard& operator=(const FdGuard&) = delete;
  [[nodiscard]] int get() const noexcept { return fd_; }
  // The caller keeps the descriptor; the guard no longer closes it.
  [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

}  // namespace perfq::shm
