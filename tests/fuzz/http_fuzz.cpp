// The HTTP plane (http/server.cpp, routes.cpp) through its public
// interface: a real HttpServer on loopback whose handler is the fixture's
// HttpApi. Each input is one connection's raw bytes (request line, headers,
// bodies, pipelined requests, chunked encoding, ...); the fuzzer reads the
// answers until the server closes. The fixture's tokens are
// "Bearer pq_fuzz_user_token" and "Bearer pq_fuzz_admin_token".
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "fixture.hpp"
#include "http/server.hpp"

using namespace perfq;

namespace {

struct Http {
  uint16_t port = 0;
  std::unique_ptr<agent::HttpServer> server;
};

Http& http() {
  static Http h = [] {
    fuzz::Fixture& f = fuzz::Fixture::get();
    agent::HttpOptions o;
    o.listen = "127.0.0.1:0";
    o.request_timeout = std::chrono::milliseconds(2000);
    o.stream_poll_interval = std::chrono::milliseconds(5);
    auto s =
        agent::HttpServer::open(o, [&f](const agent::HttpRequest& r) { return f.api->handle(r); });
    if (!s) std::abort();
    Http out;
    const std::string& a = (*s)->address();
    out.port = static_cast<uint16_t>(std::stoul(a.substr(a.rfind(':') + 1)));
    out.server = std::move(*s);
    return out;
  }();
  return h;
}

int connect_to(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    std::abort();
  }
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  Http& h = http();
  // Bounded by the server's own request_timeout (2 s) well before this.
  (void)fuzz::exchange(connect_to(h.port), {reinterpret_cast<const char*>(data), size}, 8'000);
  return 0;
}
