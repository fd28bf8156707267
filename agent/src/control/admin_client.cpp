#include "control/admin_client.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "control/line_socket.hpp"
#include "control/wire_json.hpp"

namespace perfq::agent {

namespace {

// An answer is one JSON object; the largest, dlq show of a 1 MiB payload
// written as \u escapes, stays well under this.
constexpr std::size_t kMaxAnswerBytes = std::size_t{64} << 20;
constexpr uint64_t kWriteTimeoutMs = 5000;

// Whether the process at the other end of `fd` runs as `uid` or root.
Result<void> check_server(int fd, const std::string& socket_path, uint32_t uid) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return {Errc::kAgentUnavailable, std::string("SO_PEERCRED: ") + std::strerror(errno)};
  }
  if (cred.uid == uid || cred.uid == 0) return {};
  return {Errc::kAgentUnavailable, "the socket at " + socket_path + " is served by uid " +
                                       std::to_string(cred.uid) + ", not by the agent's (uid " +
                                       std::to_string(uid) +
                                       ", the segment's owner): nothing was sent to it"};
}

}  // namespace

Result<nlohmann::json> admin_call(const std::string& socket_path, const nlohmann::json& request,
                                  uint64_t timeout_ms, std::optional<uint32_t> server_uid) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof addr.sun_path) {
    return {Errc::kAgentUnavailable, "no admin socket path"};
  }
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return {Errc::kInternal, std::string("socket: ") + std::strerror(errno)};
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    ::close(fd);
    return {Errc::kAgentUnavailable,
            "cannot reach the agent at " + socket_path + ": " + std::strerror(err)};
  }
  if (server_uid) {
    if (auto ok = check_server(fd, socket_path, *server_uid); !ok) {
      ::close(fd);
      return ok.error();
    }
  }
  // A refused peer may be answered (and closed on) before its request is
  // written: read the answer whether or not the write went through.
  (void)write_all(fd, wire_text(request) + "\n", kWriteTimeoutMs);
  std::string line;
  const LineRead got = read_line(fd, line, kMaxAnswerBytes, timeout_ms);
  ::close(fd);
  if (got != LineRead::kTooBig) {
    nlohmann::json answer = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!answer.is_discarded() && answer.is_object()) return answer;
  }
  return {Errc::kAgentUnavailable, "the agent closed the admin connection"};
}

}  // namespace perfq::agent
