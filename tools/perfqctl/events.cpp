// `events`: follows the event ring straight from the segment, like any
// subscriber, so it needs no agent to attach (it prints what a running agent
// writes). Stops on SIGINT/SIGTERM, after --count events, or after
// --timeout-ms; running out of time before --count events is an error.
#include <signal.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstdio>

#include "control/event_feed.hpp"
#include "flags.hpp"
#include "output.hpp"
#include "perfq/core/clock.hpp"
#include "perfq/perfq.hpp"
#include "perfq/shm/layout.hpp"
#include "verbs.hpp"

namespace perfq::ctl {

namespace {

std::atomic<bool> g_stop{false};

// Prints what the feed has until `count` events (0: no limit), the deadline
// or a signal. 0 when done, 1 when the deadline came first.
int follow(agent::EventFeed& feed, uint64_t count, uint64_t timeout_ms) {
  const uint64_t deadline = timeout_ms == 0 ? UINT64_MAX : mono_now_ns() + timeout_ms * 1'000'000;
  uint64_t printed = 0;
  std::string out;
  // Bounded by the signal, the count or the deadline; each pass drains what
  // the ring holds (up to its capacity) and then sleeps 50 ms.
  while (!g_stop.load(std::memory_order_relaxed)) {
    out.clear();
    const uint64_t left = count == 0 ? shm::kEventCapacity : count - printed;
    printed += feed.next(out, static_cast<size_t>(std::min<uint64_t>(left, shm::kEventCapacity)));
    std::fwrite(out.data(), 1, out.size(), stdout);
    if (count != 0 && printed >= count) return 0;
    if (mono_now_ns() >= deadline) {
      if (count == 0) return 0;
      std::fflush(stdout);
      std::fprintf(stderr, "perfqctl: %llu of %llu events within %llu ms\n",
                   static_cast<unsigned long long>(printed), static_cast<unsigned long long>(count),
                   static_cast<unsigned long long>(timeout_ms));
      return 1;
    }
    const timespec pause{0, 50'000'000};
    nanosleep(&pause, nullptr);
  }
  return 0;
}

}  // namespace

int events(const Invocation& in) {
  const Flags f = parse_flags(in.args, {"--count", "--timeout-ms"}, {});
  if (f.bad || !f.positional.empty()) return usage();
  uint64_t count = 0;  // 0: no limit
  uint64_t timeout_ms = 0;
  if (const std::string* c = f.get("--count");
      c != nullptr && (!parse_u64(*c, count) || count == 0)) {
    return fail(in.json, Errc::kInvalidRequest, "count must be a positive integer");
  }
  if (const std::string* t = f.get("--timeout-ms");
      t != nullptr && (!parse_u64(*t, timeout_ms) || timeout_ms == 0)) {
    return fail(in.json, Errc::kInvalidRequest, "timeout-ms must be a positive integer");
  }
  auto reader = EventReader::connect(in.queue);
  if (!reader) return fail(in.json, reader.error());
  // Without SA_RESTART: a signal cuts the poll interval's sleep short.
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_stop.store(true, std::memory_order_relaxed); };
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  // Readers see the events written after they start; the line tells a
  // script (or a test) that it may now make some.
  std::fprintf(stderr, "perfqctl: following the events of queue %s from position %llu\n",
               in.queue.c_str(), static_cast<unsigned long long>((*reader)->position()));
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // a line as it comes, also into a pipe
  agent::EventFeed feed(std::move(*reader),
                        in.json ? agent::FeedFormat::kJsonLines : agent::FeedFormat::kText);
  return follow(feed, count, timeout_ms);
}

}  // namespace perfq::ctl
