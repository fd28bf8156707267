#include "fixture.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

namespace perfq::fuzz {

namespace {

[[noreturn]] void die(const char* what, const std::string& why) {
  std::fprintf(stderr, "fuzz fixture: %s: %s\n", what, why.c_str());
  std::abort();
}

void write_tokens(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) die("tokens", path);
  // SHA-256 of kUserToken and kAdminToken.
  std::fputs(
      "sha256:4b39810e261a75c4535914e79153afa51d22ebb878e0b2529e2466a62cbd0d93 fuzz-user user\n"
      "sha256:e00fea5c939193cc24782b17c75473ab5678f7b38904c6f95d21942c39467357 fuzz-admin admin\n",
      f);
  std::fclose(f);
}

void add_letters(agent::Journal& j) {
  uint64_t last = 0;
  for (uint64_t i = 1; i <= 3; ++i) {
    agent::DeadLetter d;
    d.request_id = i;
    d.user_id = "fuzz-user";
    d.type = "email";
    d.payload = {std::byte{'{'}, std::byte{'}'}};
    d.attempt_count = 1;
    last = j.accept(std::move(d), false);
  }
  for (int round = 0; j.durable() < last && round < 100; ++round)
    (void)j.wait_round(j.round(), 1000);
  if (j.durable() < last) die("journal", "dead letters not durable");
}

Fixture* make() {
  auto* f = new Fixture();
  char t[] = "/tmp/perfq-fuzz-XXXXXX";
  if (::mkdtemp(t) == nullptr) die("mkdtemp", t);
  f->data_dir = t;
  f->queue = "fuzz" + std::to_string(::getpid());
  agent::JournalOptions jo;
  jo.data_dir = f->data_dir;
  auto j = agent::Journal::open(jo);
  if (!j) die("journal", j.error().message);
  f->journal = std::move(*j);
  add_letters(*f->journal);
  shm::CreateOptions so;
  so.slot_count = 64;
  so.slot_payload_bytes = 1024;
  so.max_clients = 8;
  shm::Segment::Opened how{};
  auto s = shm::Segment::open_for_agent(f->queue, so, how);
  if (!s) die("segment", s.error().message);
  f->seg = std::shared_ptr<shm::Segment>(std::move(*s));
  f->ops = std::make_unique<agent::AdminOps>(*f->journal, f->seg);
  write_tokens(f->data_dir + "/tokens");
  auto tokens = agent::TokenStore::load(f->data_dir + "/tokens");
  if (!tokens) die("tokens", tokens.error().message);
  f->tokens = std::move(*tokens);
  f->api = std::make_unique<agent::HttpApi>(*f->ops, &f->tokens, f->seg, 0);
  f->api->stop();
  return f;
}

Fixture* g_fixture = nullptr;

void clean_up() {
  if (g_fixture == nullptr) return;
  shm::Segment::remove(g_fixture->queue);
  std::error_code ec;
  std::filesystem::remove_all(g_fixture->data_dir, ec);
}

}  // namespace

std::string exchange(int fd, std::string_view in, int timeout_ms) {
  std::size_t sent = 0;
  while (sent < in.size()) {
    const ssize_t n = ::send(fd, in.data() + sent, in.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the server answered and closed early (413, 431, ...)
    sent += static_cast<std::size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  std::string out;
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) break;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || out.size() > (std::size_t{1} << 20)) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

Fixture& Fixture::get() {
  if (g_fixture == nullptr) {
    g_fixture = make();
    std::atexit(clean_up);
  }
  return *g_fixture;
}

}  // namespace perfq::fuzz
