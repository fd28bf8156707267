// perfq-bench's command line, run as the real binary: help and version on
// stdout with exit code 0, a bad argument named on stderr with exit code 64
// (EX_USAGE). Nothing here runs a benchmark: the one valid command line
// names a queue with no agent, so the run stops at once.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "perfq/version.hpp"

extern char** environ;

namespace perfq::bench {
namespace {

constexpr int kUsageError = 64;

struct BenchRun {
  int exit = -1;  // -1: did not exit within the bound, or was killed
  std::string out;
  std::string err;
};

// Runs perfq-bench with `args`, its stdout and stderr on pipes of their own,
// read until both close; bounded: a run that outlasts the bound is killed.
BenchRun run_bench(const std::vector<std::string>& args) {
  BenchRun r;
  int out[2];
  int err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) return r;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  std::vector<std::string> argv{PERFQ_BENCH_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  pid_t pid = -1;
  const int spawned = posix_spawn(&pid, cargv[0], &fa, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(out[1]);
  ::close(err[1]);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  std::string* into[2] = {&r.out, &r.err};
  while (spawned == 0 && (fds[0].fd >= 0 || fds[1].fd >= 0)) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || ::poll(fds, 2, static_cast<int>(left.count())) <= 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        into[i]->append(buf, static_cast<size_t>(n));
      } else {
        ::close(fds[i].fd);
        fds[i].fd = -1;
      }
    }
  }
  for (const pollfd& p : fds) {
    if (p.fd >= 0) ::close(p.fd);
  }
  if (spawned != 0) return r;
  if (fds[0].fd >= 0 || fds[1].fd >= 0) ::kill(pid, SIGKILL);  // outlasted the bound
  int status = 0;
  if (::waitpid(pid, &status, 0) == pid && WIFEXITED(status)) r.exit = WEXITSTATUS(status);
  return r;
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(PerfqBenchCli, HelpPrintsEveryOptionWithItsDefaultOnStdoutAndExitsZero) {
  const BenchRun top = run_bench({"--help"});
  EXPECT_EQ(top.exit, 0);
  EXPECT_EQ(top.err, "");
  EXPECT_TRUE(has(top.out, "Usage: perfq-bench")) << top.out;
  for (const char* part : {"--version", "--quick", "--only", "all", "demo", "Default"}) {
    EXPECT_TRUE(has(top.out, part)) << part << " missing from\n" << top.out;
  }
  const BenchRun all = run_bench({"all", "--help"});
  EXPECT_EQ(all.exit, 0);
  EXPECT_TRUE(has(all.out, "Usage: perfq-bench all")) << all.out;
  for (const char* group : {"baselines", "submit", "round-trip", "throughput", "journal"}) {
    EXPECT_TRUE(has(all.out, group)) << group << " missing from\n" << all.out;
  }
  const BenchRun demo = run_bench({"demo", "-h"});
  EXPECT_EQ(demo.exit, 0);
  EXPECT_EQ(demo.err, "");
  EXPECT_TRUE(has(demo.out, "Usage: perfq-bench demo")) << demo.out;
  for (const char* part : {"--queue", "--seconds", "in seconds", "Default: 10", "--producers",
                           "Default: 2", "poisoned"}) {
    EXPECT_TRUE(has(demo.out, part)) << part << " missing from\n" << demo.out;
  }
}

TEST(PerfqBenchCli, VersionPrintsTheProjectVersionOnStdout) {
  const BenchRun r = run_bench({"--version"});
  EXPECT_EQ(r.exit, 0);
  EXPECT_EQ(r.out, std::string("perfq-bench ") + kVersion + "\n");
  EXPECT_EQ(r.err, "");
}

TEST(PerfqBenchCli, ASecondsThatIsNoIntegerIsRefusedNamingItWithExit64) {
  const BenchRun r = run_bench({"demo", "--seconds", "abc", "--queue", "q"});
  EXPECT_EQ(r.exit, kUsageError);
  EXPECT_EQ(r.out, "");
  EXPECT_TRUE(has(r.err, "--seconds: 'abc' is not an integer")) << r.err;
}

TEST(PerfqBenchCli, CountsOutOfRangeAreRefusedNamingTheOption) {
  const BenchRun seconds = run_bench({"demo", "--queue=q", "--seconds=0"});
  EXPECT_EQ(seconds.exit, kUsageError);
  EXPECT_TRUE(has(seconds.err, "--seconds: '0' is out of range")) << seconds.err;
  const BenchRun producers = run_bench({"demo", "--producers", "-1", "--queue", "q"});
  EXPECT_EQ(producers.exit, kUsageError);
  EXPECT_TRUE(has(producers.err, "--producers: '-1' is out of range")) << producers.err;
}

TEST(PerfqBenchCli, AnUnknownFlagIsRefusedNamingItWithExit64) {
  const BenchRun top = run_bench({"--no-such-flag"});
  EXPECT_EQ(top.exit, kUsageError);
  EXPECT_EQ(top.out, "");
  EXPECT_TRUE(has(top.err, "--no-such-flag")) << top.err;
  // Named even when a required option is missing too.
  const BenchRun demo = run_bench({"demo", "--no-such-flag"});
  EXPECT_EQ(demo.exit, kUsageError);
  EXPECT_TRUE(has(demo.err, "--no-such-flag")) << demo.err;
}

TEST(PerfqBenchCli, AMissingQueueOrAnUnknownGroupIsRefusedNamingTheOption) {
  const BenchRun queue = run_bench({"demo", "--seconds", "1"});
  EXPECT_EQ(queue.exit, kUsageError);
  EXPECT_TRUE(has(queue.err, "--queue")) << queue.err;
  const BenchRun group = run_bench({"--only", "no-such-group"});
  EXPECT_EQ(group.exit, kUsageError);
  EXPECT_TRUE(has(group.err, "--only")) << group.err;
  const BenchRun misplaced = run_bench({"--quick", "demo", "--queue", "q"});
  EXPECT_EQ(misplaced.exit, kUsageError);
  EXPECT_TRUE(has(misplaced.err, "--quick")) << misplaced.err;
}

// Options after or before the subcommand's others, `--flag=value` and
// `--flag value` alike: the run starts, and stops at once for want of an agent.
TEST(PerfqBenchCli, AValidDemoCommandLineRunsAndFailsOnlyForWantOfAnAgent) {
  const std::string queue = "perfq-bench-cli-no-agent-" + std::to_string(::getpid());
  const BenchRun r = run_bench({"demo", "--seconds=1", "--queue", queue, "--producers=1"});
  EXPECT_EQ(r.exit, 1);
  EXPECT_TRUE(has(r.err, "perfq-bench demo: ")) << r.err;
  EXPECT_FALSE(has(r.err, "--help")) << r.err;
}

}  // namespace
}  // namespace perfq::bench
