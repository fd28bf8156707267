// The admin socket (control/admin_socket.cpp, line_socket.cpp, admin_ops.cpp)
// through its public interface: a real AdminServer on a socket in the
// fixture's data dir, whose handler is AdminOps over a real journal and
// segment. Each input is one connection's bytes: the line framing, the JSON
// decoding and the op dispatch all see it, as perfqctl's peer would send it.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "control/admin_socket.hpp"
#include "fixture.hpp"

using namespace perfq;

namespace {

struct Admin {
  std::string path;
  std::unique_ptr<agent::AdminServer> server;
};

Admin& admin() {
  static Admin a = [] {
    fuzz::Fixture& f = fuzz::Fixture::get();
    Admin out;
    out.path = f.data_dir + "/agent.sock";
    auto s = agent::AdminServer::open(
        out.path, {}, {},
        [&f](const nlohmann::json& req, const agent::Peer& p) { return f.ops->handle(req, p); },
        [&f](const agent::Peer& p) { f.ops->refused(p); });
    if (!s) std::abort();
    out.server = std::move(*s);
    return out;
  }();
  return a;
}

int connect_to(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (fd < 0 || ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    std::abort();
  }
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  Admin& a = admin();
  // The server drops a client that stalls for 5 s; this one never stalls.
  (void)fuzz::exchange(connect_to(a.path), {reinterpret_cast<const char*>(data), size}, 20'000);
  return 0;
}
