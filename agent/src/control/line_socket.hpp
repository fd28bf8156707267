#pragma once
// One line each way over a connected stream socket, the admin socket's
// framing (admin_socket.hpp): a JSON object, then '\n'. Both ends read and
// write through these, each call bounded by a deadline, so a peer that
// stalls costs at most that long.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace perfq::agent {

enum class LineRead : uint8_t {
  kLine,      // `line` holds the text before the first '\n'
  kClosed,    // the peer closed (or the socket failed) before a '\n'
  kTooBig,    // more than max_bytes before a '\n'
  kTimedOut,  // no '\n' within the deadline
};

// Reads up to the first '\n' (not kept in `line`; bytes after it are
// dropped: one request, one answer per connection). On anything but kLine,
// `line` holds what came. Blocks at most timeout_ms.
[[nodiscard]] LineRead read_line(int fd, std::string& line, std::size_t max_bytes,
                                 uint64_t timeout_ms);

// Writes all of `text`, waiting at most timeout_ms for each chunk the socket
// takes. False when the peer is gone or stalls. Never raises SIGPIPE.
[[nodiscard]] bool write_all(int fd, std::string_view text, uint64_t timeout_ms);

}  // namespace perfq::agent
