#include "baselines/baselines.hpp"

#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <boost/date_time/posix_time/posix_time_types.hpp>
#include <boost/interprocess/ipc/message_queue.hpp>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "perfq/core/histogram.hpp"

namespace perfq::bench {
namespace {

namespace bip = boost::interprocess;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kCacheLine = 128;
constexpr std::size_t kMessageBytes = 64;
// Bound on any single wait for the peer. Generous because a loaded 2-core CI
// box can deschedule the peer for a long time; a real hang still ends.
constexpr auto kPeerTimeout = std::chrono::seconds(5);
// A blocked side wakes this often to check that its peer still exists.
constexpr auto kWaitSlice = std::chrono::milliseconds(50);
// A spinner reads the clock only this often, so the check stays off the
// critical path of a ~100 ns handoff.
constexpr uint32_t kSpinsPerClockCheck = 1024;
constexpr auto kReapTimeout = std::chrono::seconds(5);
// Ping-pong never has more than one message in flight per direction.
constexpr std::size_t kRoundTripQueueDepth = 1;
constexpr std::size_t kOneWayQueueDepth = 1024;

// Exit status of the child; anything but kOk fails the baseline.
enum class ChildExit : int {
  kOk = 0,
  kTimedOut = 10,
  kPeerGone = 11,
  kBadMessage = 12,
  kIoError = 13,
  kException = 14,
};

enum class Wait : uint8_t { kReady, kTimedOut, kPeerGone, kFailed };

ChildExit to_child_exit(Wait w) noexcept {
  switch (w) {
    case Wait::kReady:
      return ChildExit::kOk;
    case Wait::kTimedOut:
      return ChildExit::kTimedOut;
    case Wait::kPeerGone:
      return ChildExit::kPeerGone;
    case Wait::kFailed:
      return ChildExit::kIoError;
  }
  return ChildExit::kIoError;
}

// A deadline that starts on first use, so a wait that is satisfied on the
// first try never pays for reading the clock.
class LazyDeadline {
 public:
  [[nodiscard]] bool expired() {
    const auto now = Clock::now();
    if (!deadline_) deadline_ = now + kPeerTimeout;
    return now >= *deadline_;
  }

 private:
  std::optional<Clock::time_point> deadline_;
};

timespec to_timespec(std::chrono::nanoseconds d) noexcept {
  const auto s = std::chrono::duration_cast<std::chrono::seconds>(d);
  return timespec{static_cast<time_t>(s.count()), static_cast<long>((d - s).count())};
}

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// ---------------------------------------------------------------------------
// Processes

// The child's view of its parent. PR_SET_PDEATHSIG already kills the child
// when the parent dies; this makes a wait notice it without relying on that.
class ParentWatch {
 public:
  explicit ParentWatch(pid_t parent_pid) noexcept : parent_pid_(parent_pid) {}
  [[nodiscard]] bool alive() const noexcept { return ::getppid() == parent_pid_; }

 private:
  pid_t parent_pid_;
};

// Parent-side handle to one forked child. The destructor guarantees the child
// is gone and reaped, whatever path the baseline took.
class ChildProcess {
 public:
  // Forks and runs body(ParentWatch&) -> ChildExit in the child, which then
  // _exit()s without running the parent's atexit handlers or destructors.
  // started() is false if fork failed.
  template <class Body>
  [[nodiscard]] static ChildProcess spawn(Body&& body) {
    const pid_t parent_pid = ::getpid();
    const pid_t pid = ::fork();
    if (pid == 0) run_child(parent_pid, std::forward<Body>(body));
    return ChildProcess(pid);
  }

  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess() {
    if (pid_ <= 0 || reaped_) return;
    ::kill(pid_, SIGKILL);
    reap_blocking();  // prompt: SIGKILL cannot be caught or ignored
  }

  [[nodiscard]] bool started() const noexcept { return pid_ > 0; }

  // Non-blocking. Reaps the child if it has exited, so a dead peer is
  // noticed in the middle of a wait.
  [[nodiscard]] bool alive() noexcept {
    if (pid_ <= 0 || reaped_) return false;
    const pid_t r = ::waitpid(pid_, &status_, WNOHANG);
    if (r == 0) return true;
    // r == pid_: exited. r == -1 (ECHILD): someone else reaped it; either way
    // it is gone and must never be signalled again (its pid may be reused).
    reaped_ = true;
    if (r != pid_) status_ = -1;
    return false;
  }

  // Bounded: waits up to kReapTimeout for the child to exit on its own, then
  // SIGKILLs it. True iff it exited with status kOk.
  [[nodiscard]] bool join() noexcept {
    if (pid_ <= 0) return false;
    if (!reaped_) {
      const auto pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
      if (pidfd >= 0) {
        // A pidfd polls readable once the process has exited.
        pollfd p{pidfd, POLLIN, 0};
        const auto deadline = Clock::now() + kReapTimeout;
        for (;;) {
          const auto left_ms =
              std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
          if (left_ms.count() <= 0) break;
          const int rc = ::poll(&p, 1, static_cast<int>(left_ms.count()));
          if (rc >= 0 || errno != EINTR) break;
        }
        ::close(pidfd);
        if (alive()) {
          ::kill(pid_, SIGKILL);  // overran its bound; its status will say so
          reap_blocking();
        }
      } else {
        // No pidfd (kernel < 5.3). Every protocol here has the child send its
        // last message right before _exit(), so this blocking wait is short.
        reap_blocking();
      }
    }
    return WIFEXITED(status_) && WEXITSTATUS(status_) == static_cast<int>(ChildExit::kOk);
  }

 private:
  explicit ChildProcess(pid_t pid) noexcept : pid_(pid) {}

  template <class Body>
  [[noreturn]] static void run_child(pid_t parent_pid, Body&& body) noexcept {
    int code = static_cast<int>(ChildExit::kException);
    // Closes the race where the parent died before prctl took effect.
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent_pid) {
      ::_exit(static_cast<int>(ChildExit::kPeerGone));
    }
    try {
      ParentWatch parent(parent_pid);
      code = static_cast<int>(body(parent));
    } catch (...) {
      code = static_cast<int>(ChildExit::kException);
    }
    ::_exit(code);
  }

  void reap_blocking() noexcept {
    pid_t r = 0;
    do {
      r = ::waitpid(pid_, &status_, 0);
    } while (r < 0 && errno == EINTR);
    if (r != pid_) status_ = -1;
    reaped_ = true;
  }

  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = -1;
};

// ---------------------------------------------------------------------------
// Shared page for the futex and spin baselines

// Lives at the start of a MAP_SHARED|MAP_ANONYMOUS page inherited across fork.
// Each word has one writer and its own line, so the only traffic is the
// handoff itself:
//
//   offset 0    ping   written by parent, read by child
//   offset 128  pong   written by child,  read by parent
//
// Plain fields accessed through std::atomic_ref, because FUTEX_WAIT needs the
// raw address of a 32-bit word. Sequence numbers wrap at 2^32, harmless with
// one message in flight.
struct PingPongWords {
  alignas(kCacheLine) uint32_t ping;
  alignas(kCacheLine) uint32_t pong;
};
static_assert(std::is_standard_layout_v<PingPongWords>);
static_assert(std::is_trivially_copyable_v<PingPongWords>);
static_assert(offsetof(PingPongWords, ping) == 0);
static_assert(offsetof(PingPongWords, pong) == kCacheLine);
static_assert(sizeof(PingPongWords) == 2 * kCacheLine);
static_assert(std::atomic_ref<uint32_t>::is_always_lock_free);
static_assert(std::atomic_ref<uint32_t>::required_alignment == alignof(uint32_t));

class SharedPage {
 public:
  static constexpr std::size_t kBytes = 4096;
  static_assert(sizeof(PingPongWords) <= kBytes);

  SharedPage() noexcept {
    void* p = ::mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) words_ = ::new (p) PingPongWords{};
  }
  SharedPage(const SharedPage&) = delete;
  SharedPage& operator=(const SharedPage&) = delete;
  ~SharedPage() {
    if (words_ != nullptr) ::munmap(words_, kBytes);
  }

  [[nodiscard]] bool ok() const noexcept { return words_ != nullptr; }
  [[nodiscard]] PingPongWords& words() noexcept { return *words_; }

 private:
  PingPongWords* words_ = nullptr;
};

// Not FUTEX_*_PRIVATE: the two sides are different processes, so the kernel
// must key the wait on the shared page, not on one address space.
long futex_wait(uint32_t* word, uint32_t expected, const timespec* timeout) noexcept {
  return ::syscall(SYS_futex, word, FUTEX_WAIT, expected, timeout, nullptr, 0);
}
long futex_wake(uint32_t* word) noexcept {
  return ::syscall(SYS_futex, word, FUTEX_WAKE, 1, nullptr, nullptr, 0);
}

// Publishes seq and always wakes: the baseline measures a kernel handoff, so
// it deliberately has no "is anyone waiting" shortcut.
void futex_publish(uint32_t& word, uint32_t seq) noexcept {
  // release: pairs with the acquire load in futex_await() on the other side.
  std::atomic_ref<uint32_t>(word).store(seq, std::memory_order_release);
  futex_wake(&word);
}

// Parks in FUTEX_WAIT until word == want. Only a reply that has already
// arrived skips the syscall, which FUTEX_WAIT would reject with EAGAIN anyway.
template <class Peer>
[[nodiscard]] Wait futex_await(uint32_t& word, uint32_t want, Peer& peer) {
  std::atomic_ref<uint32_t> ref(word);
  const timespec slice = to_timespec(kWaitSlice);
  LazyDeadline deadline;
  for (bool first = true;; first = false) {
    // acquire: pairs with the release store in futex_publish() on the other side.
    const uint32_t seen = ref.load(std::memory_order_acquire);
    if (seen == want) return Wait::kReady;
    if (!first) {
      if (deadline.expired()) return Wait::kTimedOut;
      if (!peer.alive()) return Wait::kPeerGone;
    }
    if (futex_wait(&word, seen, &slice) != 0 && errno != EAGAIN && errno != EINTR &&
        errno != ETIMEDOUT) {
      return Wait::kFailed;
    }
  }
}

void spin_publish(uint32_t& word, uint32_t seq) noexcept {
  // release: pairs with the acquire load in spin_await() on the other side.
  std::atomic_ref<uint32_t>(word).store(seq, std::memory_order_release);
}

template <class Peer>
[[nodiscard]] Wait spin_await(uint32_t& word, uint32_t want, Peer& peer) {
  std::atomic_ref<uint32_t> ref(word);
  LazyDeadline deadline;
  auto next_peer_check = Clock::time_point::min();
  for (;;) {
    for (uint32_t i = 0; i < kSpinsPerClockCheck; ++i) {
      // acquire: pairs with the release store in spin_publish() on the other side.
      if (ref.load(std::memory_order_acquire) == want) return Wait::kReady;
      cpu_relax();
    }
    if (deadline.expired()) return Wait::kTimedOut;
    const auto now = Clock::now();
    if (now >= next_peer_check) {
      if (!peer.alive()) return Wait::kPeerGone;
      next_peer_check = now + kWaitSlice;
    }
  }
}

// ---------------------------------------------------------------------------
// Messages, sockets, queues

// The 64-byte payload of the socket and queue baselines. The receiver checks
// seq right after reading, so a lost or reordered message fails the run.
struct Message {
  uint64_t seq;
  std::array<std::byte, kMessageBytes - sizeof(uint64_t)> payload;
};
static_assert(sizeof(Message) == kMessageBytes);
static_assert(std::is_trivially_copyable_v<Message>);

class Fd {
 public:
  Fd() noexcept = default;
  explicit Fd(int fd) noexcept : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  void reset() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  [[nodiscard]] int get() const noexcept { return fd_; }

 private:
  int fd_ = -1;
};

// recv/send block for at most kWaitSlice, then the caller checks its peer.
bool set_socket_timeouts(int fd) noexcept {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(kWaitSlice).count();
  const timeval tv{static_cast<time_t>(us / 1'000'000), static_cast<suseconds_t>(us % 1'000'000)};
  return ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0 &&
         ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == 0;
}

template <class Peer>
[[nodiscard]] Wait send_message(int fd, const Message& m, Peer& peer) {
  const auto* bytes = reinterpret_cast<const std::byte*>(&m);
  std::size_t sent = 0;
  LazyDeadline deadline;
  while (sent < sizeof(m)) {
    // MSG_NOSIGNAL: a dead peer must become EPIPE here, not SIGPIPE the process.
    const ssize_t n = ::send(fd, bytes + sent, sizeof(m) - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) return Wait::kPeerGone;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return Wait::kFailed;
    if (deadline.expired()) return Wait::kTimedOut;
    if (!peer.alive()) return Wait::kPeerGone;
  }
  return Wait::kReady;
}

// Receives exactly one Message (a stream socket may split it) into m.
template <class Peer>
[[nodiscard]] Wait recv_message(int fd, Message& m, Peer& peer) {
  auto* bytes = reinterpret_cast<std::byte*>(&m);
  std::size_t got = 0;
  LazyDeadline deadline;
  while (got < sizeof(m)) {
    const ssize_t n = ::recv(fd, bytes + got, sizeof(m) - got, 0);
    if (n > 0) {
      got += static_cast<std::size_t>(n);
      continue;
    }
    if (n == 0) return Wait::kPeerGone;  // EOF: every copy of the other end is closed
    if (errno == ECONNRESET) return Wait::kPeerGone;
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return Wait::kFailed;
    if (deadline.expired()) return Wait::kTimedOut;
    if (!peer.alive()) return Wait::kPeerGone;
  }
  return Wait::kReady;
}

std::string unique_queue_name(const char* role) {
  // relaxed: only uniqueness within this process matters, not ordering.
  static std::atomic<uint32_t> next_id{0};
  const uint32_t id = next_id.fetch_add(1, std::memory_order_relaxed);
  return "perfq_bench_" + std::to_string(::getpid()) + "_" + std::to_string(id) + "_" + role;
}

// A boost message_queue whose name is unlinked as soon as it exists. Parent
// and child both reach it through the mapping inherited across fork, so no
// name can leak even if either process is killed mid-run.
class UnlinkedQueue {
 public:
  UnlinkedQueue(const char* role, std::size_t depth) : name_(unique_queue_name(role)) {
    // Our pid is in the name, so this only clears debris of an earlier process
    // that had the same pid and was killed between create and remove.
    bip::message_queue::remove(name_.c_str());
    try {
      queue_.emplace(bip::create_only, name_.c_str(), depth, kMessageBytes);
    } catch (...) {
      bip::message_queue::remove(name_.c_str());
      throw;
    }
    bip::message_queue::remove(name_.c_str());
  }
  [[nodiscard]] bip::message_queue& get() noexcept { return *queue_; }

 private:
  std::string name_;
  std::optional<bip::message_queue> queue_;
};

boost::posix_time::ptime slice_end() {
  // Boost's timed operations take an absolute UTC time.
  return boost::posix_time::microsec_clock::universal_time() +
         boost::posix_time::milliseconds(
             std::chrono::duration_cast<std::chrono::milliseconds>(kWaitSlice).count());
}

template <class Peer>
[[nodiscard]] Wait mq_send(bip::message_queue& q, const Message& m, Peer& peer) {
  LazyDeadline deadline;
  while (!q.timed_send(&m, sizeof(m), 0, slice_end())) {
    if (deadline.expired()) return Wait::kTimedOut;
    if (!peer.alive()) return Wait::kPeerGone;
  }
  return Wait::kReady;
}

template <class Peer>
[[nodiscard]] Wait mq_recv(bip::message_queue& q, Message& m, Peer& peer) {
  LazyDeadline deadline;
  bip::message_queue::size_type size = 0;
  unsigned int priority = 0;
  while (!q.timed_receive(&m, sizeof(m), size, priority, slice_end())) {
    if (deadline.expired()) return Wait::kTimedOut;
    if (!peer.alive()) return Wait::kPeerGone;
  }
  return size == sizeof(m) ? Wait::kReady : Wait::kFailed;
}

// ---------------------------------------------------------------------------
// Drivers

LatencySummary summarize(const LogLinearHistogram& h) noexcept {
  return LatencySummary{h.count(),          h.percentile(0.5),   h.percentile(0.9),
                        h.percentile(0.99), h.percentile(0.999), h.max()};
}

// Forks child_body, then times round_trip(seq, child) for seq = 1..round_trips
// in this process. Any failed step, or a child that does not exit cleanly,
// fails the whole run: a partial histogram would look like a valid result.
template <class RoundTrip, class ChildBody>
LatencySummary run_ping_pong(uint64_t round_trips, RoundTrip round_trip, ChildBody child_body) {
  auto child = ChildProcess::spawn(std::move(child_body));
  if (!child.started()) return {};
  LogLinearHistogram histogram;
  for (uint64_t seq = 1; seq <= round_trips; ++seq) {
    const auto start = Clock::now();
    if (round_trip(seq, child) != Wait::kReady) return {};
    const auto elapsed = Clock::now() - start;
    histogram.record(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count()));
  }
  if (!child.join()) return {};
  return summarize(histogram);
}

template <class Fn>
auto never_throw(Fn fn) noexcept -> decltype(fn()) {
  try {
    return fn();
  } catch (...) {
    return {};
  }
}

}  // namespace

LatencySummary futex_ping_pong(uint64_t round_trips) {
  return never_throw([&]() -> LatencySummary {
    if (round_trips == 0) return {};
    SharedPage page;
    if (!page.ok()) return {};
    PingPongWords& w = page.words();
    return run_ping_pong(
        round_trips,
        [&](uint64_t seq, ChildProcess& child) {
          futex_publish(w.ping, static_cast<uint32_t>(seq));
          return futex_await(w.pong, static_cast<uint32_t>(seq), child);
        },
        [&](ParentWatch& parent) {
          for (uint64_t seq = 1; seq <= round_trips; ++seq) {
            const Wait r = futex_await(w.ping, static_cast<uint32_t>(seq), parent);
            if (r != Wait::kReady) return to_child_exit(r);
            futex_publish(w.pong, static_cast<uint32_t>(seq));
          }
          return ChildExit::kOk;
        });
  });
}

LatencySummary spin_ping_pong(uint64_t round_trips) {
  return never_throw([&]() -> LatencySummary {
    if (round_trips == 0) return {};
    SharedPage page;
    if (!page.ok()) return {};
    PingPongWords& w = page.words();
    return run_ping_pong(
        round_trips,
        [&](uint64_t seq, ChildProcess& child) {
          spin_publish(w.ping, static_cast<uint32_t>(seq));
          return spin_await(w.pong, static_cast<uint32_t>(seq), child);
        },
        [&](ParentWatch& parent) {
          for (uint64_t seq = 1; seq <= round_trips; ++seq) {
            const Wait r = spin_await(w.ping, static_cast<uint32_t>(seq), parent);
            if (r != Wait::kReady) return to_child_exit(r);
            spin_publish(w.pong, static_cast<uint32_t>(seq));
          }
          return ChildExit::kOk;
        });
  });
}

LatencySummary unix_socket_ping_pong(uint64_t round_trips) {
  return never_throw([&]() -> LatencySummary {
    if (round_trips == 0) return {};
    std::array<int, 2> fds{-1, -1};
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds.data()) != 0) return {};
    Fd parent_end(fds[0]);
    Fd child_end(fds[1]);
    if (!set_socket_timeouts(parent_end.get()) || !set_socket_timeouts(child_end.get())) return {};
    auto child = ChildProcess::spawn([&](ParentWatch& parent) {
      // Drop our copy of the parent's end so the parent dying reads as EOF here.
      parent_end.reset();
      Message m{};
      for (uint64_t seq = 1; seq <= round_trips; ++seq) {
        const Wait r = recv_message(child_end.get(), m, parent);
        if (r != Wait::kReady) return to_child_exit(r);
        if (m.seq != seq) return ChildExit::kBadMessage;
        const Wait s = send_message(child_end.get(), m, parent);
        if (s != Wait::kReady) return to_child_exit(s);
      }
      return ChildExit::kOk;
    });
    if (!child.started()) return {};
    // Same for the child's end: its death must read as EOF in the parent.
    child_end.reset();
    LogLinearHistogram histogram;
    Message out{};
    Message in{};
    for (uint64_t seq = 1; seq <= round_trips; ++seq) {
      out.seq = seq;
      const auto start = Clock::now();
      if (send_message(parent_end.get(), out, child) != Wait::kReady) return {};
      if (recv_message(parent_end.get(), in, child) != Wait::kReady) return {};
      const auto elapsed = Clock::now() - start;
      if (in.seq != seq) return {};
      histogram.record(static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count()));
    }
    if (!child.join()) return {};
    return summarize(histogram);
  });
}

LatencySummary boost_mq_round_trip(uint64_t round_trips) {
  return never_throw([&]() -> LatencySummary {
    if (round_trips == 0) return {};
    UnlinkedQueue ping("ping", kRoundTripQueueDepth);
    UnlinkedQueue pong("pong", kRoundTripQueueDepth);
    Message in{};
    Message out{};
    return run_ping_pong(
        round_trips,
        [&](uint64_t seq, ChildProcess& child) {
          out.seq = seq;
          const Wait s = mq_send(ping.get(), out, child);
          if (s != Wait::kReady) return s;
          const Wait r = mq_recv(pong.get(), in, child);
          if (r == Wait::kReady && in.seq != seq) return Wait::kFailed;
          return r;
        },
        [&](ParentWatch& parent) {
          Message m{};
          for (uint64_t seq = 1; seq <= round_trips; ++seq) {
            const Wait r = mq_recv(ping.get(), m, parent);
            if (r != Wait::kReady) return to_child_exit(r);
            if (m.seq != seq) return ChildExit::kBadMessage;
            const Wait s = mq_send(pong.get(), m, parent);
            if (s != Wait::kReady) return to_child_exit(s);
          }
          return ChildExit::kOk;
        });
  });
}

ThroughputSummary boost_mq_one_way(uint64_t messages) {
  return never_throw([&]() -> ThroughputSummary {
    if (messages == 0) return {};
    UnlinkedQueue queue("oneway", kOneWayQueueDepth);
    // Start gate, so fork and child start-up stay outside the timed region.
    SharedPage gate;
    if (!gate.ok()) return {};
    PingPongWords& w = gate.words();
    auto child = ChildProcess::spawn([&](ParentWatch& parent) {
      const Wait g = futex_await(w.ping, 1, parent);
      if (g != Wait::kReady) return to_child_exit(g);
      Message m{};
      for (uint64_t seq = 1; seq <= messages; ++seq) {
        m.seq = seq;
        const Wait s = mq_send(queue.get(), m, parent);
        if (s != Wait::kReady) return to_child_exit(s);
      }
      return ChildExit::kOk;
    });
    if (!child.started()) return {};
    Message m{};
    const auto start = Clock::now();
    futex_publish(w.ping, 1);
    for (uint64_t seq = 1; seq <= messages; ++seq) {
      if (mq_recv(queue.get(), m, child) != Wait::kReady) return {};
      if (m.seq != seq) return {};
    }
    const std::chrono::duration<double> elapsed = Clock::now() - start;
    if (!child.join()) return {};
    const double seconds = elapsed.count();
    return ThroughputSummary{messages, seconds,
                             seconds > 0.0 ? static_cast<double>(messages) / seconds : 0.0};
  });
}

}  // namespace perfq::bench
