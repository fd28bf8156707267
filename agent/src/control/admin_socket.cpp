#include "control/admin_socket.hpp"

#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "control/line_socket.hpp"
#include "control/wire_json.hpp"

namespace perfq::agent {

using nlohmann::json;

namespace {

// A request line larger than this is refused (413): a review resolution is
// at most kJournalResolutionMax bytes.
constexpr std::size_t kMaxRequestBytes = 64 * 1024;
constexpr uint64_t kIoTimeoutMs = 5000;  // a client that stalls this long is dropped

void answer(int fd, const json& body) {
  (void)write_all(fd, wire_text(body) + "\n", kIoTimeoutMs);
}

}  // namespace

Result<std::unique_ptr<AdminServer>> AdminServer::open(const std::string& path,
                                                       std::vector<uint32_t> admin_uids,
                                                       std::vector<uint32_t> admin_gids,
                                                       Handler handler, Refused refused) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    return {Errc::kInvalidRequest, "admin socket path longer than " +
                                       std::to_string(sizeof addr.sun_path - 1) +
                                       " bytes: " + path};
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  std::unique_ptr<AdminServer> s(new AdminServer());
  s->path_ = path;
  s->admin_uids_ = std::move(admin_uids);
  s->admin_gids_ = std::move(admin_gids);
  s->handler_ = std::move(handler);
  s->refused_ = std::move(refused);
  s->listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s->listen_fd_ < 0)
    return {Errc::kInternal, std::string("admin socket: ") + std::strerror(errno)};
  // Only one agent runs per queue (the segment says so), so a socket file
  // left here is a dead agent's.
  ::unlink(path.c_str());
  if (::bind(s->listen_fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    return {Errc::kInternal, "admin socket bind " + path + ": " + std::strerror(errno)};
  }
  ::chmod(path.c_str(), 0666);  // the gate is SO_PEERCRED (see the header)
  if (::listen(s->listen_fd_, 16) != 0) {
    return {Errc::kInternal, std::string("admin socket listen: ") + std::strerror(errno)};
  }
  s->stop_fd_ = ::eventfd(0, EFD_CLOEXEC);
  if (s->stop_fd_ < 0) return {Errc::kInternal, std::string("eventfd: ") + std::strerror(errno)};
  s->thread_ = std::thread([p = s.get()] { p->run(); });
  return s;
}

AdminServer::~AdminServer() {
  if (stop_fd_ >= 0) {
    const uint64_t one = 1;
    (void)!::write(stop_fd_, &one, sizeof one);
  }
  if (thread_.joinable()) thread_.join();
  if (listen_fd_ >= 0) {
    ::close(listen_fd_);
    ::unlink(path_.c_str());
  }
  if (stop_fd_ >= 0) ::close(stop_fd_);
}

bool AdminServer::admitted(const Peer& p) const noexcept {
  if (p.uid == 0 || p.uid == ::geteuid()) return true;
  if (std::find(admin_uids_.begin(), admin_uids_.end(), p.uid) != admin_uids_.end()) return true;
  if (admin_gids_.empty()) return false;
  auto admin_gid = [&](gid_t g) {
    return std::find(admin_gids_.begin(), admin_gids_.end(), g) != admin_gids_.end();
  };
  if (admin_gid(p.gid)) return true;
  // Supplementary groups of the peer's user (SO_PEERCRED has the primary only).
  passwd pw{};
  passwd* found = nullptr;
  char buf[1024];
  if (::getpwuid_r(p.uid, &pw, buf, sizeof buf, &found) != 0 || found == nullptr) return false;
  gid_t groups[256];
  int n = 256;
  if (::getgrouplist(found->pw_name, found->pw_gid, groups, &n) < 0) n = 256;
  for (int i = 0; i < n; ++i) {
    if (admin_gid(groups[i])) return true;
  }
  return false;
}

void AdminServer::run() {
  // After an accept that failed for want of descriptors or memory, the
  // listener is left out of the poll for kRestMs: it stays readable, and
  // polling it would spin.
  constexpr int kRestMs = 100;
  bool resting = false;
  for (;;) {
    pollfd fds[2] = {{stop_fd_, POLLIN, 0}, {listen_fd_, POLLIN, 0}};
    const int r = ::poll(fds, resting ? 1 : 2, resting ? kRestMs : -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if ((fds[0].revents & POLLIN) != 0) return;
    resting = false;
    if ((fds[1].revents & POLLIN) == 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      resting = errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM;
      continue;
    }
    serve(fd);
    ::close(fd);
  }
}

// One request, one response. Requests are served one at a time: the verbs
// are operator actions, and a client that stalls is dropped after
// kIoTimeoutMs.
void AdminServer::serve(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return;
  const Peer peer{cred.uid, cred.gid, cred.pid};
  if (!admitted(peer)) {
    if (refused_) refused_(peer);
    answer(fd, error_body(Errc::kForbidden, "not an admin of this queue"));
    return;
  }
  std::string line;
  const LineRead got = read_line(fd, line, kMaxRequestBytes, kIoTimeoutMs);
  if (got == LineRead::kTooBig) {
    answer(fd,
           too_large_body(errc_name(Errc::kInvalidRequest),
                          "request larger than " + std::to_string(kMaxRequestBytes) + " bytes"));
  }
  if (got != LineRead::kLine) return;
  const json req = parse_request_json(line);
  json resp;
  try {
    resp = req.is_object() ? handler_(req, peer)
                           : error_body(Errc::kInvalidRequest, "request must be a JSON object");
  } catch (const std::exception& e) {
    // A request the handler did not expect must not take the agent down.
    resp = error_body(Errc::kInternal, std::string("request failed: ") + e.what());
  }
  answer(fd, resp);
}

}  // namespace perfq::agent
