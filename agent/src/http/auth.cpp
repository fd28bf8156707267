#include "http/auth.hpp"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <utility>

#include "perfq/core/request.hpp"
#include "perfq/shm/fd_guard.hpp"
#include "regular_file.hpp"

namespace perfq::agent {

namespace {

using shm::FdGuard;

constexpr std::string_view kHashPrefix = "sha256:";
constexpr std::string_view kTokenPrefix = "pq_";
constexpr std::size_t kTokenRandomBytes = 32;
// read/write/getrandom retries on EINTR and short transfers.
constexpr int kMaxSyscallRetries = 1024;

using Digest = std::array<unsigned char, kTokenDigestBytes>;

std::string errno_text(int err) {
  return std::strerror(err);
}

bool sha256(std::string_view text, Digest& out) noexcept {
  unsigned int n = 0;
  return EVP_Digest(text.data(), text.size(), out.data(), &n, EVP_sha256(), nullptr) == 1 &&
         n == out.size();
}

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // 'A'-'F' too: the format says lowercase, so a hash has one spelling
}

bool parse_hash(std::string_view field, Digest& out) noexcept {
  if (field.substr(0, kHashPrefix.size()) != kHashPrefix) return false;
  field.remove_prefix(kHashPrefix.size());
  if (field.size() != 2 * out.size()) return false;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const int hi = hex_value(field[2 * i]);
    const int lo = hex_value(field[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<unsigned char>(hi << 4 | lo);
  }
  return true;
}

std::string hex(const Digest& d) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s;
  s.reserve(2 * d.size());
  for (unsigned char b : d) {
    s += kDigits[b >> 4];
    s += kDigits[b & 0xf];
  }
  return s;
}

// RFC 4648 §5, without padding.
std::string base64url(const unsigned char* p, std::size_t n) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string s;
  s.reserve((n * 4 + 2) / 3);
  std::size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    const uint32_t v = uint32_t{p[i]} << 16 | uint32_t{p[i + 1]} << 8 | p[i + 2];
    s += kAlphabet[v >> 18 & 63];
    s += kAlphabet[v >> 12 & 63];
    s += kAlphabet[v >> 6 & 63];
    s += kAlphabet[v & 63];
  }
  if (n - i == 1) {
    const uint32_t v = uint32_t{p[i]} << 16;
    s += kAlphabet[v >> 18 & 63];
    s += kAlphabet[v >> 12 & 63];
  } else if (n - i == 2) {
    const uint32_t v = uint32_t{p[i]} << 16 | uint32_t{p[i + 1]} << 8;
    s += kAlphabet[v >> 18 & 63];
    s += kAlphabet[v >> 12 & 63];
    s += kAlphabet[v >> 6 & 63];
  }
  return s;
}

Result<void> fill_random(unsigned char* p, std::size_t n) {
  std::size_t got = 0;
  for (int tries = 0; got < n; ++tries) {
    if (tries == kMaxSyscallRetries) return {Errc::kInternal, "getrandom: no progress"};
    // Flags 0: blocks until the kernel's pool is initialised, never after.
    const ssize_t r = ::getrandom(p + got, n - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return {Errc::kInternal, "getrandom: " + errno_text(errno)};
    }
    got += static_cast<std::size_t>(r);
  }
  return {};
}

bool is_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\r';  // '\r': a file edited on Windows
}

// Splits on runs of spaces/tabs; at most `max` fields are kept, and `count`
// says how many there were.
std::size_t split(std::string_view line, std::string_view* fields, std::size_t max) {
  std::size_t count = 0;
  std::size_t at = 0;
  while (at < line.size()) {
    while (at < line.size() && is_space(line[at])) ++at;
    if (at == line.size()) break;
    const std::size_t begin = at;
    while (at < line.size() && !is_space(line[at])) ++at;
    if (count < max) fields[count] = line.substr(begin, at - begin);
    ++count;
  }
  return count;
}

// Appends `line` to the tokens file at `path` (created 0600 if missing) and
// makes it durable before returning: the token is printed once, and must not
// outlive a crash that loses its hash.
Result<void> append_durably(const std::string& path, std::string_view line) {
  // O_EXCL first, to know whether this call made the file (and so owns its
  // mode and must make its name durable).
  bool created = true;
  int raw_fd = ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (raw_fd < 0 && errno == EEXIST) {
    created = false;
    raw_fd = ::open(path.c_str(), O_RDWR | O_APPEND | O_CLOEXEC);
  }
  FdGuard fd(raw_fd);
  if (fd.get() < 0) {
    return {Errc::kInvalidRequest, "cannot open tokens file " + path + ": " + errno_text(errno)};
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return {Errc::kInternal, "tokens file " + path + ": fstat: " + errno_text(errno)};
  }
  if (!S_ISREG(st.st_mode)) {
    return {Errc::kInvalidRequest, "tokens file " + path + " is not a regular file"};
  }
  // 0600 whatever the umask did, and on an existing file too: the agent
  // refuses a tokens file that others may write (TokenStore::load).
  if ((created || (st.st_mode & 07777) != 0600) && ::fchmod(fd.get(), 0600) != 0) {
    return {Errc::kInternal, "tokens file " + path + ": fchmod: " + errno_text(errno)};
  }
  // A hand-edited file may end without a newline; appending straight after
  // it would glue the new entry onto that line and spoil both.
  std::string text;
  if (st.st_size > 0) {
    char last = '\n';
    if (::pread(fd.get(), &last, 1, st.st_size - 1) == 1 && last != '\n') text += '\n';
  }
  text += line;

  // O_APPEND: one write lands whole at the end, even beside another appender.
  std::size_t done = 0;
  for (int tries = 0; done < text.size(); ++tries) {
    if (tries == kMaxSyscallRetries)
      return {Errc::kInternal, "tokens file " + path + ": no progress"};
    const ssize_t w = ::write(fd.get(), text.data() + done, text.size() - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      return {Errc::kInternal, "tokens file " + path + ": write: " + errno_text(errno)};
    }
    done += static_cast<std::size_t>(w);
  }
  if (::fsync(fd.get()) != 0) {
    return {Errc::kInternal, "tokens file " + path + ": fsync: " + errno_text(errno)};
  }
  if (created) {
    std::filesystem::path dir = std::filesystem::path(path).parent_path();
    if (dir.empty()) dir = ".";
    FdGuard dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dfd.get() < 0 || ::fsync(dfd.get()) != 0) {
      return {Errc::kInternal, "tokens file " + path + ": fsync dir: " + errno_text(errno)};
    }
  }
  return {};
}

}  // namespace

std::string_view role_name(Role role) noexcept {
  return role == Role::kAdmin ? "admin" : "user";
}

bool parse_role(std::string_view text, Role& out) noexcept {
  if (text == "user") {
    out = Role::kUser;
  } else if (text == "admin") {
    out = Role::kAdmin;
  } else {
    return false;
  }
  return true;
}

bool Principal::admin() const noexcept {
  return (roles & static_cast<uint8_t>(Role::kAdmin)) != 0;
}

Result<TokenStore> TokenStore::load(const std::string& path) {
  auto file = read_regular_file(path, kTokensFileMaxBytes, "tokens file");
  if (!file) return file.error();
  // Like ssh with authorized_keys: whoever may write the file may make
  // themselves an admin, so it must be writable by its owner alone.
  if ((file->st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return {Errc::kInvalidRequest,
            "tokens file " + path + " is writable by its group or others; chmod 600 it"};
  }
  const std::string* text = &file->text;

  TokenStore store;
  std::map<Digest, std::size_t> seen;  // digest -> line, to refuse an ambiguous file
  std::string_view rest = *text;
  // Every message names the line, never its content: a token pasted into the
  // file by mistake must not reach a log.
  for (std::size_t line_no = 1; !rest.empty(); ++line_no) {
    const std::size_t nl = rest.find('\n');
    const std::string_view line = rest.substr(0, nl);
    rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    auto bad = [&](const std::string& what) -> Result<TokenStore> {
      return {Errc::kInvalidRequest,
              "tokens file " + path + " line " + std::to_string(line_no) + ": " + what};
    };

    std::string_view f[3];
    const std::size_t n = split(line, f, 3);
    if (n == 0 || f[0].front() == '#') continue;
    if (n != 3) return bad("expected sha256:<64 lowercase hex> <userId> <role>");
    Digest d{};
    if (!parse_hash(f[0], d)) return bad("the hash must be sha256: and 64 lowercase hex digits");
    if (!valid_user_id(f[1])) return bad("the user id must be 1..64 bytes of [A-Za-z0-9._:@-]");
    Role role{};
    if (!parse_role(f[2], role)) return bad("the role must be user or admin");
    if (const auto [it, fresh] = seen.emplace(d, line_no); !fresh) {
      return bad("the same hash as line " + std::to_string(it->second));
    }
    uint8_t roles = static_cast<uint8_t>(Role::kUser);
    if (role == Role::kAdmin) roles |= static_cast<uint8_t>(Role::kAdmin);
    store.digests_.push_back(d);
    store.principals_.push_back(Principal{std::string(f[1]), roles});
  }
  return store;
}

std::optional<Principal> TokenStore::authenticate(std::string_view token) const {
  if (token.empty() || token.size() > kTokenMaxBytes) return std::nullopt;
  Digest d{};
  if (!sha256(token, d)) return std::nullopt;  // fail closed
  // Branch-free selection: every entry costs the same whether it matches or
  // not, so the time says nothing about where (or whether) the token is.
  // Duplicates are refused by load(), so at most one entry matches.
  std::size_t found = 0;  // all ones once an entry matched
  std::size_t index = 0;
  for (std::size_t i = 0; i < digests_.size(); ++i) {
    const int diff = CRYPTO_memcmp(d.data(), digests_[i].data(), d.size());
    const std::size_t eq = std::size_t{0} - static_cast<std::size_t>(diff == 0);
    index |= i & eq & ~found;
    found |= eq;
  }
  if (found == 0) return std::nullopt;
  return principals_[index];
}

Result<std::string> create_token(const std::string& path, std::string_view user_id, Role role) {
  if (!valid_user_id(user_id)) {
    return {Errc::kInvalidRequest, "user id must be 1..64 bytes of [A-Za-z0-9._:@-]"};
  }
  if (role != Role::kUser && role != Role::kAdmin) {
    return {Errc::kInvalidRequest, "role must be user or admin"};
  }
  unsigned char raw[kTokenRandomBytes];
  if (auto r = fill_random(raw, sizeof raw); !r) return r.error();
  std::string token = std::string(kTokenPrefix) + base64url(raw, sizeof raw);
  OPENSSL_cleanse(raw, sizeof raw);
  Digest d{};
  if (!sha256(token, d)) return {Errc::kInternal, "SHA-256 of the new token failed"};
  const std::string line = std::string(kHashPrefix) + hex(d) + " " + std::string(user_id) + " " +
                           std::string(role_name(role)) + "\n";
  if (auto r = append_durably(path, line); !r) return r.error();
  return token;
}

}  // namespace perfq::agent
