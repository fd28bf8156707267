#pragma once
// Bearer tokens of the HTTP admin plane (SPEC §6 "Auth"): every route but the
// probes needs `Authorization: Bearer <token>`; TokenStore turns the token
// into the Principal it belongs to.
//
// The tokens file (docs/PROTOCOL.md "Tokens file"), one entry per line:
//
//   # comment                      <- lines starting with '#' are ignored
//                                  <- so are blank lines
//   sha256:<64 lowercase hex> <userId> <role>
//          |                  |        +-- `user` or `admin` (an admin is also a user)
//          |                  +-- SPEC §3: 1..64 bytes of [A-Za-z0-9._:@-]
//          +-- SHA-256 of the whole token text, "pq_" prefix included
//
// Fields are separated by spaces or tabs. The file never holds a token, only
// its hash: a reader of the file cannot authenticate, and a token is shown
// once, by `perfqctl token create`, and never again. Tokens are 256 random
// bits, so a plain (unsalted, fast) hash is enough: there is nothing to
// brute-force.
//
// Role: load() and create_token() do blocking file I/O (control plane only).
// A loaded TokenStore is immutable; authenticate() may be called from any
// number of threads at once.
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "perfq/core/result.hpp"

namespace perfq::agent {

// Bit flags in Principal::roles.
enum class Role : uint8_t { kUser = 1, kAdmin = 2 };

// "user" / "admin", as the tokens file and perfqctl spell them.
[[nodiscard]] std::string_view role_name(Role role) noexcept;
// Accepts exactly "user" or "admin".
[[nodiscard]] bool parse_role(std::string_view text, Role& out) noexcept;

struct Principal {
  std::string user_id;
  uint8_t roles = 0;  // Role bits; an admin entry sets kUser | kAdmin
  [[nodiscard]] bool admin() const noexcept;
};

// A bound on the tokens file, read whole into memory (about 40,000 entries).
inline constexpr std::size_t kTokensFileMaxBytes = std::size_t{4} << 20;
// A longer Authorization value is refused before it is hashed.
inline constexpr std::size_t kTokenMaxBytes = 4096;
inline constexpr std::size_t kTokenDigestBytes = 32;  // SHA-256

class TokenStore {
 public:
  TokenStore() = default;  // empty: authenticates nobody

  // Loads a tokens file. A missing file, one that is not a regular file
  // (opened without blocking: a FIFO never hangs), or one writable by its
  // group or others is an error (kInvalidRequest naming the path); a malformed line, or a hash
  // listed twice, is an error naming its line number (never echoing the line: it may hold a secret
  // pasted by mistake).
  [[nodiscard]] static Result<TokenStore> load(const std::string& path);

  // The principal of `token`, or nullopt. Hashes the token (SHA-256) and
  // compares the digest with EVERY entry using CRYPTO_memcmp, without an
  // early exit, so the time does not depend on which entry (if any)
  // matches. An empty token or one longer than kTokenMaxBytes is refused
  // before hashing (its length is no secret of the server's).
  [[nodiscard]] std::optional<Principal> authenticate(std::string_view token) const;

  [[nodiscard]] std::size_t size() const noexcept { return digests_.size(); }

 private:
  using Digest = std::array<unsigned char, kTokenDigestBytes>;
  // Parallel arrays: the compare loop walks only the digests.
  std::vector<Digest> digests_;
  std::vector<Principal> principals_;
};

// Makes a new token: 32 bytes from getrandom(), text "pq_" + base64url
// without padding (46 characters); appends one line to `path` (created 0600
// if missing, O_APPEND, then fsync), and returns the token text. The file
// never holds the token itself. An existing file is set to 0600 too (load()
// refuses one its group or others may write). Errors:
// kInvalidRequest for a user id that breaks SPEC §3 or a file that cannot be
// opened, kInternal for a failed write or sync (the line may then be
// missing, or present without being durable).
[[nodiscard]] Result<std::string> create_token(const std::string& path, std::string_view user_id,
                                               Role role);

}  // namespace perfq::agent
