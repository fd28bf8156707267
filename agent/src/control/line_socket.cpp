#include "control/line_socket.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace perfq::agent {

LineRead read_line(int fd, std::string& line, std::size_t max_bytes, uint64_t timeout_ms) {
  char buf[4096];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  // Bounded by the deadline: every pass either waits in poll() for what is
  // left of it or takes bytes, and max_bytes bounds the bytes.
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) return LineRead::kTimedOut;
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return LineRead::kClosed;
    if (r == 0) return LineRead::kTimedOut;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return LineRead::kClosed;
    const char* nl = static_cast<const char*>(std::memchr(buf, '\n', static_cast<std::size_t>(n)));
    line.append(buf,
                nl != nullptr ? static_cast<std::size_t>(nl - buf) : static_cast<std::size_t>(n));
    if (line.size() > max_bytes) return LineRead::kTooBig;
    if (nl != nullptr) return LineRead::kLine;
  }
}

bool write_all(int fd, std::string_view text, uint64_t timeout_ms) {
  while (!text.empty()) {
    pollfd p{fd, POLLOUT, 0};
    const int r = ::poll(&p, 1, static_cast<int>(timeout_ms));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    const ssize_t n = ::send(fd, text.data(), text.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    text.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

}  // namespace perfq::agent
