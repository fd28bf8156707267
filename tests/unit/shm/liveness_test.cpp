#include "perfq/shm/liveness.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>

#include "harness.hpp"

namespace perfq::shm {
namespace {

constexpr auto kChildBound = std::chrono::seconds(30);

TEST(Liveness, ThisProcessIsAlive) {
  const uint64_t ticks = self_start_ticks();
  EXPECT_NE(ticks, 0u);
  EXPECT_EQ(process_start_ticks(::getpid()), ticks);
  EXPECT_TRUE(process_alive(static_cast<uint32_t>(::getpid()), ticks));
}

TEST(Liveness, WrongStartTicksMeansAnotherProcessWithThatPid) {
  const auto pid = static_cast<uint32_t>(::getpid());
  const uint64_t ticks = self_start_ticks();
  EXPECT_FALSE(process_alive(pid, ticks + 1));
  EXPECT_FALSE(process_alive(pid, ticks - 1));
  EXPECT_FALSE(process_alive(pid, 0));
}

TEST(Liveness, PidZeroIsNeverAlive) {
  EXPECT_FALSE(process_alive(0, 0));
  EXPECT_FALSE(process_alive(0, self_start_ticks()));
}

TEST(Liveness, ChildIsAliveWhileRunningDeadAsZombieAndDeadOnceReaped) {
  test::Signal go;
  test::Child child([&] { return go.wait(kChildBound) == 1 ? 0 : 1; });
  const pid_t pid = child.pid();
  ASSERT_GT(pid, 0);
  const uint64_t ticks = process_start_ticks(pid);
  ASSERT_NE(ticks, 0u);
  EXPECT_TRUE(process_alive(static_cast<uint32_t>(pid), ticks));

  // Let it exit, and wait for that without reaping it: it is now a zombie.
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  ASSERT_GE(pidfd, 0);
  go.notify(1);
  pollfd p{pidfd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, static_cast<int>(std::chrono::milliseconds(kChildBound).count())), 1);
  ::close(pidfd);
  siginfo_t info{};
  ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT | WNOHANG), 0);
  ASSERT_EQ(info.si_pid, pid) << "the child has exited";
  EXPECT_EQ(process_start_ticks(pid), ticks) << "a zombie keeps its /proc entry";
  EXPECT_FALSE(process_alive(static_cast<uint32_t>(pid), ticks)) << "a zombie counts as dead";

  EXPECT_EQ(child.wait(kChildBound), 0);  // reaps
  EXPECT_EQ(process_start_ticks(pid), 0u);
  EXPECT_FALSE(process_alive(static_cast<uint32_t>(pid), ticks));
}

TEST(Liveness, KilledAndReapedChildIsDead) {
  test::Signal never;
  test::Child child([&] { return never.wait(kChildBound) == -1 ? 0 : 1; });
  const pid_t pid = child.pid();
  const uint64_t ticks = process_start_ticks(pid);
  ASSERT_NE(ticks, 0u);
  child.kill(SIGKILL);
  EXPECT_EQ(child.wait(kChildBound), 128 + SIGKILL);
  EXPECT_FALSE(process_alive(static_cast<uint32_t>(pid), ticks));
}

}  // namespace
}  // namespace perfq::shm
