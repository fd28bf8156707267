// TokenStore and create_token (SPEC §6 "Auth"): tokens authenticate as the
// principal they were made for and nothing else, the tokens file holds only
// hashes, and a malformed file is refused with the line that broke it.
// Real files under a unique /tmp directory.
#include "http/auth.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "harness.hpp"
#include "temp_dir.hpp"

namespace perfq::agent {
namespace {

namespace fs = std::filesystem;

class TempDir : public test::TempDir {
 public:
  TempDir() : test::TempDir("auth") {}
};

using test::slurp;

// Mode 0600 whatever the umask: load() refuses a file others may write.
void write_file(const std::string& path, const std::string& text) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
  }
  ::chmod(path.c_str(), 0600);
}

// SHA-256("abc") (FIPS 180-2, appendix B.1): pins the hash the store uses
// without computing one here.
constexpr std::string_view kAbcHash =
    "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
// SHA-256("")
constexpr std::string_view kEmptyHash =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

std::string must_create(const std::string& path, std::string_view user, Role role) {
  auto t = create_token(path, user, role);
  EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().message);
  return t.ok() ? *t : std::string();
}

TokenStore must_load(const std::string& path) {
  auto s = TokenStore::load(path);
  EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message);
  return s.ok() ? std::move(s).value() : TokenStore();
}

TEST(Auth, UserTokenAuthenticatesAsThatUserWithoutAdmin) {
  TempDir dir;
  const std::string path = dir.file("tokens");
  const std::string token = must_create(path, "alice", Role::kUser);
  const TokenStore store = must_load(path);
  EXPECT_EQ(store.size(), 1u);
  const auto p = store.authenticate(token);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->user_id, "alice");
  EXPECT_EQ(p->roles, static_cast<uint8_t>(Role::kUser));
  EXPECT_FALSE(p->admin());
}

TEST(Auth, AdminTokenAlsoHasTheUserRole) {
  TempDir dir;
  const std::string path = dir.file("tokens");
  const std::string token = must_create(path, "ops@example.com", Role::kAdmin);
  const auto p = must_load(path).authenticate(token);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->user_id, "ops@example.com");
  EXPECT_TRUE(p->admin());
  EXPECT_NE(p->roles & static_cast<uint8_t>(Role::kUser), 0);
  EXPECT_NE(p->roles & static_cast<uint8_t>(Role::kAdmin), 0);
}

TEST(Auth, TokenIsPqPrefixAndUnpaddedBase64urlOf32Bytes) {
  TempDir dir;
  const std::string path = dir.file("tokens");
  const std::string a = must_create(path, "alice", Role::kUser);
  const std::string b = must_create(path, "alice", Role::kUser);
  ASSERT_EQ(a.size(), 3u + 43u) << a;  // 32 bytes: 43 base64 digits, no '='
  EXPECT_EQ(a.substr(0, 3), "pq_");
  for (char c : a.substr(3)) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_';
    EXPECT_TRUE(ok) << "character " << c << " in " << a;
  }
  EXPECT_NE(a, b);  // fresh randomness per token
}

TEST(Auth, WrongTokenIsRefused) {
  TempDir dir;
  const std::string path = dir.file("tokens");
  (void)must_create(path, "alice", Role::kAdmin);
  const TokenStore store = must_load(path);
  EXPECT_FALSE(store.authenticate("pq_not-a-token-of-this-store").has_value());
  EXPECT_FALSE(store.authenticate("Bearer").has_value());
}

TEST(Auth, TokenDifferingInAnyOneCharacterIsRefused) {
  TempDir dir;
  const std::string path = dir.file("tokens");
  const std::string token = must_create(path, "alice", Role::kAdmin);
  const TokenStore store = must_load(path);
  ASSERT_TRUE(store.authenticate(token).has_value());
  for (std::size_t i = 0; i < token.size(); ++i) {
    std::string t = token;
    t[i] = t[i] == 'A' ? 'B' : 'A';
    EXPECT_FALSE(store.authenticate(t).has_value()) << "position " << i;
  }
  EXPECT_FALSE(store.authenticate(token.substr(0, token.size() - 1)).has_value());
  EXPECT_FALSE(store.authenticate(token + "x").has_value());
}

TEST(Auth, EmptyTokenIsRefusedEvenWhenItsHashIsListed) {
  TempDir dir;
  const std::string path = dir.file("tokens");
  write_file(path, std::string(kEmptyHash) + " mallory admin\n");
  const TokenStore store = must_load(path);
  ASSERT_EQ(store.size(), 1u);
  EXPECT_FALSE(store.authenticate("").has_value());
}

TEST(Auth, StoreHashesTokensWithSha256) {
  TempDir dir;
  const std::string path = dir.file("tokens");
  write_file(path, std::string(kAbcHash) + " alice user\n");
  const auto p = must_load(path).authenticate("abc");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->user_id, "alice");
  EXPECT_FALSE(p->admin());
}

TEST(Auth, EveryEntryAuthenticatesWhereverItSits) {
  TempDir dir;
  const std::string path = dir.file("tokens");
  std::vector<std::string> tokens;
  for (int i = 0; i < 5; ++i) {
    tokens.push_back(
        must_create(path, "user" + std::to_string(i), i == 2 ? Role::kAdmin : Role::kUser));
  }
  const TokenStore store = must_load(path);
  ASSERT_EQ(store.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    const auto p = store.authenticate(tokens[i]);
    ASSERT_TRUE(p.has_value()) << i;
    EXPECT_EQ(p->user_id, "user" + std::to_string(i));
    EXPECT_EQ(p->admin(), i == 2);
  }
}

TEST(Auth, FileHoldsTheHashAndNeverTheToken) {
  TempDir dir;
  const std::string path = dir.file("tokens");
  const std::string token = must_create(path, "alice", Role::kAdmin);
  const std::string text = slurp(path);
  EXPECT_EQ(text.find(token), std::string::npos) << text;
  EXPECT_EQ(text.find(token.substr(3)), std::string::npos) << text;  // nor its random part
  // Exactly one entry: "sha256:" 64 lowercase hex, the user, the role.
  ASSERT_EQ(text.size(), 7u + 64u + 1u + 5u + 1u + 5u + 1u) << text;
  EXPECT_EQ(text.substr(0, 7), "sha256:");
  for (char c : text.substr(7, 64)) {
    EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << text;
  }
  EXPECT_EQ(text.substr(71), " alice admin\n");
}

TEST(Auth, NewFileIsMode0600) {
  TempDir dir;
  const std::string path = dir.file("tokens");
  const mode_t old = ::umask(0);  // the file's mode must not depend on the umask
  (void)must_create(path, "alice", Role::kUser);
  ::umask(old);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST(Auth, SecondTokenKeepsTheFirstValid) {
  TempDir dir;
  const std::string path = dir.file("tokens");
  const std::string first = must_create(path, "alice", Role::kUser);
  const std::string second = must_create(path, "bob", Role::kAdmin);
  const TokenStore store = must_load(path);
  EXPECT_EQ(store.size(), 2u);
  const auto a = store.authenticate(first);
  const auto b = store.authenticate(second);
  ASSERT_TRUE(a.has_value());
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(a->user_id, "alice");
  EXPECT_FALSE(a->admin());
  EXPECT_EQ(b->user_id, "bob");
  EXPECT_TRUE(b->admin());
}

TEST(Auth, AppendAfterALastLineWithoutNewlineKeepsBothEntries) {
  TempDir dir;
  const std::string path = dir.file("tokens");
  write_file(path, std::string(kAbcHash) + " alice user");  // hand-edited, no final '\n'
  const std::string token = must_create(path, "bob", Role::kUser);
  const TokenStore store = must_load(path);
  EXPECT_EQ(store.size(), 2u);
  EXPECT_TRUE(store.authenticate("abc").has_value());
  EXPECT_TRUE(store.authenticate(token).has_value());
}

TEST(Auth, CommentsAndBlankLinesAreIgnored) {
  TempDir dir;
  const std::string path = dir.file("tokens");
  write_file(path, "# perfq tokens\n\n   \n\t# indented comment\n" + std::string(kAbcHash) +
                       "\talice   admin \r\n#" + std::string(kEmptyHash) + " bob user\n\n");
  const TokenStore store = must_load(path);
  EXPECT_EQ(store.size(), 1u);
  const auto p = store.authenticate("abc");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->user_id, "alice");
  EXPECT_TRUE(p->admin());
}

TEST(Auth, MalformedLinesAreRefusedByLineNumberWithoutEchoingThem) {
  TempDir dir;
  const std::string path = dir.file("tokens");
  const std::string hex = std::string(kAbcHash.substr(7));
  std::string upper = hex;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  struct Case {
    const char* what;
    std::string line;
    const char* reason;  // what the message must say
    std::string secret;  // a part of the line the message must not quote
  };
  const std::string abc(kAbcHash);
  const std::vector<Case> cases = {
      {"hash too short", "sha256:" + hex.substr(1) + " alice user", "the hash", hex.substr(1)},
      {"hash too long", "sha256:" + hex + "0 alice user", "the hash", hex},
      {"upper-case hex", "sha256:" + upper + " alice user", "the hash", upper},
      {"non-hex digit", "sha256:" + hex.substr(0, 63) + "g alice user", "the hash",
       hex.substr(0, 63)},
      {"no sha256: prefix", hex + " alice user", "the hash", hex},
      {"another algorithm", "sha512:" + hex + " alice user", "the hash", hex},
      {"token instead of a hash", "pq_s3cr3t-t0ken alice user", "the hash", "s3cr3t"},
      {"bad role", abc + " alice root", "the role", hex},
      {"role in capitals", abc + " alice Admin", "the role", hex},
      {"bad user id", abc + " al!ce user", "the user id", hex},
      {"user id too long", abc + " " + std::string(65, 'u') + " user", "the user id", hex},
      {"missing role", abc + " alice", "expected", hex},
      {"missing user and role", abc, "expected", hex},
      {"extra field", abc + " alice user extra", "expected", hex},
      {"duplicate hash", std::string(kEmptyHash) + " bob user", "the same hash as line 3",
       std::string(kEmptyHash)},
  };
  // Line 4 is the bad one: a comment, a blank line and a good entry first,
  // a good entry after. No hash but the duplicate's repeats another line's.
  auto file_with = [&](const std::string& line4) {
    return "# tokens\n\n" + std::string(kEmptyHash) + " carol user\n" + line4 + "\n" +
           "sha256:" + std::string(64, '1') + " dave user\n";
  };
  write_file(path, file_with(abc + " alice user"));  // the fixture itself is valid
  ASSERT_EQ(must_load(path).size(), 3u);
  for (const Case& c : cases) {
    write_file(path, file_with(c.line));
    auto s = TokenStore::load(path);
    ASSERT_FALSE(s.ok()) << c.what;
    EXPECT_EQ(s.error().code, Errc::kInvalidRequest) << c.what;
    const std::string& m = s.error().message;
    EXPECT_NE(m.find("line 4: "), std::string::npos) << c.what << ": " << m;
    EXPECT_NE(m.find(c.reason), std::string::npos) << c.what << ": " << m;
    EXPECT_NE(m.find(path), std::string::npos) << c.what << ": " << m;
    EXPECT_EQ(m.find(c.secret), std::string::npos) << c.what << ": " << m;
  }
}

TEST(Auth, MissingFileIsAnErrorNamingThePath) {
  TempDir dir;
  const std::string path = dir.file("no-such-tokens");
  auto s = TokenStore::load(path);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, Errc::kInvalidRequest);
  EXPECT_NE(s.error().message.find(path), std::string::npos) << s.error().message;
}

TEST(Auth, EmptyFileAuthenticatesNobody) {
  TempDir dir;
  const std::string path = dir.file("tokens");
  write_file(path, "");
  const TokenStore store = must_load(path);
  EXPECT_EQ(store.size(), 0u);
  EXPECT_FALSE(store.authenticate("abc").has_value());
}

TEST(Auth, CreateRefusesABadUserIdAndWritesNothing) {
  TempDir dir;
  const std::string path = dir.file("tokens");
  for (const std::string& user :
       {std::string(), std::string("bad user"), std::string(65, 'u'), std::string("line\nbreak")}) {
    auto t = create_token(path, user, Role::kUser);
    ASSERT_FALSE(t.ok()) << user;
    EXPECT_EQ(t.error().code, Errc::kInvalidRequest);
  }
  EXPECT_FALSE(fs::exists(path));
  // 64 bytes of every allowed character class is fine.
  const std::string longest = "Az09._:@-" + std::string(55, 'x');
  ASSERT_EQ(longest.size(), 64u);
  const std::string token = must_create(path, longest, Role::kUser);
  const auto p = must_load(path).authenticate(token);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->user_id, longest);
}

TEST(Auth, CreateInAMissingDirectoryIsAnError) {
  TempDir dir;
  auto t = create_token(dir.file("no-such-dir/tokens"), "alice", Role::kUser);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().code, Errc::kInvalidRequest);
}

// Issue 13 point 18: a FIFO must not hang the agent's start (it waited for
// a writer), nor may a directory or a device pass for a tokens file. Each
// load runs in a child, so a load that blocks fails the test, bounded.
TEST(Auth, AFifoDirectoryOrDeviceIsRefusedWithoutBlocking) {
  TempDir dir;
  const std::string fifo = dir.file("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::string subdir = dir.file("sub");
  fs::create_directory(subdir);
  for (const std::string& path : {fifo, subdir, std::string("/dev/zero")}) {
    SCOPED_TRACE(path);
    test::Child child([&] {
      auto s = TokenStore::load(path);
      if (s.ok()) return 1;
      const std::string& m = s.error().message;
      return m.find(path) != std::string::npos &&
                     m.find("is not a regular file") != std::string::npos
                 ? 0
                 : 2;
    });
    EXPECT_EQ(child.wait(std::chrono::seconds(20)), 0);
  }
}

// Issue 13 point 18: whoever may write the tokens file may make themselves
// an admin; like ssh, the agent refuses such a file.
TEST(Auth, AGroupOrWorldWritableFileIsRefused) {
  TempDir dir;
  const std::string path = dir.file("tokens");
  write_file(path, std::string(kAbcHash) + " alice user\n");
  for (const mode_t mode : {0620, 0602, 0666}) {
    SCOPED_TRACE(mode);
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
    auto s = TokenStore::load(path);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.error().message.find("writable by its group or others"), std::string::npos)
        << s.error().message;
  }
  ASSERT_EQ(::chmod(path.c_str(), 0640), 0);  // readable is no risk: it holds hashes only
  EXPECT_TRUE(TokenStore::load(path).ok());
}

// Issue 13 point 18: token create leaves the file 0600 even when it found it
// wider.
TEST(Auth, CreateSetsMode0600OnAnExistingFile) {
  TempDir dir;
  const std::string path = dir.file("tokens");
  write_file(path, "# tokens\n");
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  (void)must_create(path, "alice", Role::kUser);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(must_load(path).size(), 1u);
}

}  // namespace
}  // namespace perfq::agent
