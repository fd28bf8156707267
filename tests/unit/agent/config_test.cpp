// Configuration precedence and validation (SPEC §4, §6).
#include "perfq/agent/config.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "harness.hpp"

namespace perfq::agent {
namespace {

class TomlFile {
 public:
  explicit TomlFile(const std::string& text) {
    path_ = "/tmp/perfq-config-test-" + std::to_string(::getpid()) + ".toml";
    std::ofstream(path_) << text;
  }
  ~TomlFile() { std::remove(path_.c_str()); }
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(Config, DefaultsAreTheSeedConstants) {
  Config c;
  ASSERT_TRUE(parse_args({"--queue", "q"}, c).ok());
  EXPECT_EQ(c.max_queue_depth, 10000u);
  EXPECT_EQ(c.queue_timeout_ms, 30000u);
  EXPECT_EQ(c.processing_timeout_ms, 60000u);
  EXPECT_EQ(c.rope_drop_timeout_ms, 5000u);
  EXPECT_EQ(c.batch_size, 100u);
  EXPECT_EQ(c.batch_interval_ms, 1000u);
  EXPECT_EQ(c.max_concurrent_workers, 10u);
  EXPECT_EQ(c.max_retry_attempts, 3u);
  EXPECT_EQ(c.max_requests_per_user_per_minute, 60u);
  EXPECT_EQ(c.slot_payload_bytes, 4096u);
  EXPECT_FALSE(c.data_dir.empty());
}

TEST(Config, TomlOverridesDefaultsAndFlagsOverrideToml) {
  TomlFile f("max_queue_depth = 5\nrope_drop_timeout_ms = 200\nidle = \"backoff\"\n");
  Config c;
  ASSERT_TRUE(parse_args({"--max-queue-depth", "7", "--queue", "q", "--config", f.path()}, c).ok());
  EXPECT_EQ(c.max_queue_depth, 7u);         // flag wins, wherever --config stands
  EXPECT_EQ(c.rope_drop_timeout_ms, 200u);  // from the file
  EXPECT_EQ(c.idle, IdleKind::kBackoff);    // from the file
  EXPECT_EQ(c.queue_timeout_ms, 30000u);    // default
}

TEST(Config, UnknownFlagOrKeyIsAnErrorNamingIt) {
  Config c;
  auto r = parse_args({"--queue", "q", "--max-queue-dept", "5"}, c);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("--max-queue-dept"), std::string::npos);
  TomlFile f("max_queue_dept = 5\n");
  Config d;
  auto t = parse_args({"--queue", "q", "--config", f.path()}, d);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.error().message.find("max_queue_dept"), std::string::npos);
}

TEST(Config, OutOfRangeAndMalformedValuesAreRefused) {
  for (const auto& [flag, value] :
       std::vector<std::pair<std::string, std::string>>{{"--max-queue-depth", "0"},
                                                        {"--max-queue-depth", "-1"},
                                                        {"--max-queue-depth", "12abc"},
                                                        {"--max-retry-attempts", "0"},
                                                        {"--retry-jitter", "1.5"},
                                                        {"--retry-jitter", "nan"},
                                                        {"--retry-jitter", "-nan"},
                                                        {"--retry-jitter", "inf"},
                                                        {"--retry-jitter", "infinity"},
                                                        {"--idle", "sleepy"},
                                                        {"--slot-payload-bytes", "8"}}) {
    Config c;
    auto r = parse_args({"--queue", "q", flag, value}, c);
    EXPECT_FALSE(r.ok()) << flag << " " << value;
  }
}

TEST(Config, QueueIsRequiredAndTomlTypesAreChecked) {
  Config c;
  EXPECT_FALSE(parse_args({}, c).ok());
  TomlFile f("max_queue_depth = \"many\"\n");
  Config d;
  EXPECT_FALSE(parse_args({"--queue", "q", "--config", f.path()}, d).ok());
}

// The table is built from groups (places, SPEC §4, shape, operators, HTTP):
// a setting of each reaches its field as a flag and as a TOML key, and
// usage() lists it.
TEST(Config, ASettingOfEveryGroupIsAFlagATomlKeyAndListed) {
  Config c;
  ASSERT_TRUE(parse_args({"--queue", "q", "--group", "g", "--aging-ms", "7", "--slots", "128",
                          "--admin-gids", "5,6", "--http-max-connections", "9"},
                         c)
                  .ok());
  EXPECT_EQ(c.group, "g");
  EXPECT_EQ(c.aging_ms, 7u);
  EXPECT_EQ(c.slots, 128u);
  EXPECT_EQ(c.admin_gids, (std::vector<uint32_t>{5, 6}));
  EXPECT_EQ(c.http_max_connections, 9u);
  TomlFile f(
      "group = \"h\"\naging_ms = 8\nslots = 256\nadmin_gids = \"7\"\n"
      "http_max_connections = 10\n");
  Config d;
  ASSERT_TRUE(parse_args({"--queue", "q", "--config", f.path()}, d).ok());
  EXPECT_EQ(d.group, "h");
  EXPECT_EQ(d.aging_ms, 8u);
  EXPECT_EQ(d.slots, 256u);
  EXPECT_EQ(d.admin_gids, (std::vector<uint32_t>{7}));
  EXPECT_EQ(d.http_max_connections, 10u);
  const std::string u = usage();
  for (const char* flag : {"--group VALUE", "--aging-ms MS=5000", "--slots VALUE",
                           "--admin-gids VALUE", "--http-max-connections VALUE=256"}) {
    EXPECT_NE(u.find(flag), std::string::npos) << flag;
  }
}

// Sets an environment variable for the scope of a test.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) { ::setenv(name, value, 1); }
  ~ScopedEnv() { ::unsetenv(name_); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
};

// Issue 15: every setting is also PERFQ_<KEY>; defaults < file < environment
// < flags.
TEST(Config, EnvironmentSitsBetweenTheFileAndTheFlags) {
  TomlFile f("max_queue_depth = 5\nbatch_size = 6\naging_ms = 9\n");
  ScopedEnv queue("PERFQ_QUEUE", "from-env");
  ScopedEnv depth("PERFQ_MAX_QUEUE_DEPTH", "50");
  ScopedEnv batch("PERFQ_BATCH_SIZE", "60");
  ScopedEnv file("PERFQ_CONFIG", f.path().c_str());
  Config c;
  ASSERT_TRUE(parse_args({"--batch-size", "600"}, c).ok());
  EXPECT_EQ(c.queue, "from-env");
  EXPECT_EQ(c.max_queue_depth, 50u);  // environment over the file
  EXPECT_EQ(c.batch_size, 600u);      // flag over the environment
  EXPECT_EQ(c.aging_ms, 9u);          // the file over the default
  EXPECT_EQ(c.given, (std::set<std::string>{"queue", "max_queue_depth", "batch_size", "aging_ms"}));
  ScopedEnv bad("PERFQ_SLOTS", "many");
  Config d;
  auto r = parse_args({}, d);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("slots"), std::string::npos) << r.error().message;
}

// Issue 15: --flag=value, and an error naming the flag and the bad value.
TEST(Config, FlagEqualsValueAndErrorsNameTheFlag) {
  Config c;
  ASSERT_TRUE(parse_args({"--queue=q", "--max-queue-depth=77"}, c).ok());
  EXPECT_EQ(c.queue, "q");
  EXPECT_EQ(c.max_queue_depth, 77u);
  EXPECT_EQ(setting_text(c, "max_queue_depth"), "77");
  Config twice;  // the last of a flag given twice wins
  ASSERT_TRUE(parse_args({"--queue=q", "--slots", "128", "--slots", "256"}, twice).ok());
  EXPECT_EQ(twice.slots, 256u);
  Config d;
  auto r = parse_args({"--queue", "q", "--batch-size=abc"}, d);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("--batch-size"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("'abc'"), std::string::npos) << r.error().message;
  Config e;
  EXPECT_FALSE(parse_args({"--queue", "q", "--log-format", "xml"}, e).ok());
}

TEST(Config, SlotCountFollowsQueueDepthUnlessGiven) {
  Config c;
  c.max_queue_depth = 100;
  EXPECT_EQ(c.slot_count(), 1024u);
  c.max_queue_depth = 10000;
  EXPECT_EQ(c.slot_count(), 20000u);
  c.slots = 300;
  EXPECT_EQ(c.slot_count(), 300u);
}

// Issue 13 point 18: a FIFO hung the agent, a directory or /dev/zero was
// taken for an empty config. Each parse runs in a child, so one that blocks
// fails the test, bounded.
TEST(Config, AConfigThatIsNoRegularFileIsRefusedWithoutBlocking) {
  const std::string dir = "/tmp/perfq-config-test-dir-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  const std::string fifo = dir + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  for (const std::string& path : {fifo, dir, std::string("/dev/zero")}) {
    SCOPED_TRACE(path);
    test::Child child([&] {
      Config c;
      auto r = parse_args({"--queue", "q", "--config", path}, c);
      if (r.ok()) return 1;
      return r.error().message.find("is not a regular file") != std::string::npos ? 0 : 2;
    });
    EXPECT_EQ(child.wait(std::chrono::seconds(20)), 0);
  }
  std::filesystem::remove_all(dir);
}

// Issue 13 point 18: TOML cannot hold 2^64; the refusal names the key.
TEST(Config, AnIntegerTomlCannotHoldIsRefusedNamingItsKey) {
  for (const char* text :
       {"max_queue_depth = 5\nslots = 18446744073709551616\n", "slots = 9223372036854775808\n",
        "  slots=18446744073709551616 # big\n"}) {
    SCOPED_TRACE(text);
    TomlFile f(text);
    Config c;
    auto r = parse_args({"--queue", "q", "--config", f.path()}, c);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("'slots'"), std::string::npos) << r.error().message;
  }
  TomlFile nan("retry_jitter = nan\n");
  Config c;
  EXPECT_FALSE(parse_args({"--queue", "q", "--config", nan.path()}, c).ok());
}

// Found by the config fuzzer (tests/fuzz/regressions/config): toml++ 3.3
// reaches __builtin_unreachable() on some non-ASCII code points where it
// expects whitespace. Such a file is refused, naming its line; non-ASCII in
// strings and comments still loads.
TEST(Config, NonAsciiOutsideAStringOrCommentIsRefusedBeforeTheParserSeesIt) {
  for (const char* text : {"slots = 4\xD0\x97\n", "max_queue_depth = 5\nslots = 4\xD0\x97-\n",
                           "\xC2\xA0slots = 4\n"}) {
    SCOPED_TRACE(text);
    TomlFile f(text);
    Config c;
    auto r = parse_args({"--queue", "q", "--config", f.path()}, c);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("non-ASCII"), std::string::npos) << r.error().message;
  }
  TomlFile fine(
      "# d\xC3\xA9p\xC3\xB4t: \"#\" and ' in a comment\n"
      "group = \"gr\xC3\xBCppe\"\ndata_dir = '/tmp/\xC3\xA9t\xC3\xA9'\n"
      "tokens = \"\"\"/tmp/x\"\"\"\nslots = 128 # \xE2\x86\x90 here\n");
  Config c;
  auto r = parse_args({"--queue", "q", "--config", fine.path()}, c);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(c.group, "gr\xC3\xBCppe");
  EXPECT_EQ(c.slots, 128u);
}

}  // namespace
}  // namespace perfq::agent
