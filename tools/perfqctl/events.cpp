// `events`: follows the event ring straight from the segment, like any
// subscriber, so it needs no agent to attach (it prints what a running agent
// writes). Stops on SIGINT/SIGTERM, after --count events, or after
// --timeout; running out of time before --count events is an error.
#include <signal.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <optional>

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

// Prints what the feed has until `count` events (0: no limit), timeout_ms
// (0: none) or a signal. 0 when done or when the time to follow for ends, 1
// when the deadline came before `count` events.
int follow(agent::EventFeed& feed, uint64_t count, uint64_t timeout_ms, bool json) {
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
    if (count != 0 && printed >= count) return kExitOk;
    if (mono_now_ns() >= deadline) {
      if (count == 0) return kExitOk;  // the time asked to follow for
      std::fflush(stdout);
      return timed_out(json, std::to_string(printed) + " of " + std::to_string(count) +
                                 " events within " + duration_text(timeout_ms));
    }
    const timespec pause{0, 50'000'000};
    nanosleep(&pause, nullptr);
  }
  return kExitOk;
}

struct EventsOptions {
  std::optional<uint64_t> count;  // none: no limit
  std::optional<uint64_t> timeout_ms;
};

int run_events(const Globals& g, const EventsOptions& o) {
  auto reader = EventReader::connect(g.queue);
  if (!reader) return fail(g.json, reader.error());
  // Without SA_RESTART: a signal cuts the poll interval's sleep short.
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_stop.store(true, std::memory_order_relaxed); };
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  // Readers see the events written after they start; the line tells a
  // script (or a test) that it may now make some.
  std::fprintf(stderr, "perfqctl: following the events of queue %s from position %llu\n",
               g.queue.c_str(), static_cast<unsigned long long>((*reader)->position()));
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // a line as it comes, also into a pipe
  agent::EventFeed feed(std::move(*reader),
                        g.json ? agent::FeedFormat::kJsonLines : agent::FeedFormat::kText);
  return follow(feed, o.count.value_or(0), o.timeout_ms.value_or(0), g.json);
}

}  // namespace

Run events(Command& cmd, const Globals& g) {
  auto o = std::make_shared<EventsOptions>();
  cmd.number("--count", o->count, 1, UINT64_MAX, "N",
             "exit after N events (default: follow until Ctrl-C or --timeout)");
  cmd.duration("--timeout", o->timeout_ms, 1,
               "stop following after this long (exit 0); with --count, fewer than N events by "
               "then are a TIMEOUT error (default: no limit)");
  return [&g, o] { return run_events(g, *o); };
}

}  // namespace perfq::ctl
