// The C++ side of the bindings benchmark (bench/scenarios/bindings.sh): the same
// measurements as bindings/node/bench/roundtrip.js and
// bindings/python/bench/roundtrip.py, against an agent and a worker that are
// already running, printed as the same one JSON line.
//
//   perfq-client-bench --queue Q [--count N] [--type bench.echo] [--window W]
//                      [--round-trips R]
//
// Round trip: submit one 64-byte request, await its outcome, R times
// (default N). Submit throughput: N submits with at most W (default 1024)
// outstanding, every outcome awaited; the rate counts the submits over the
// whole run, so it is the end-to-end rate.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <string>
#include <vector>

#include "perfq/perfq.hpp"

namespace {

constexpr long kWindowDefault = 1024;
constexpr long kWindowMax = 1 << 20;

double now_us() {
  return std::chrono::duration<double, std::micro>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double percentile(std::vector<double>& v, double p) {
  std::sort(v.begin(), v.end());
  const auto i = static_cast<size_t>(p * static_cast<double>(v.size() - 1));
  return v[i];
}

}  // namespace

int main(int argc, char** argv) {
  std::string queue;
  std::string type = "bench.echo";
  long count = 20'000;
  long window_max = kWindowDefault;
  long round_trips = -1;  // -1: as many as --count
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--queue")
      queue = argv[i + 1];
    else if (a == "--count")
      count = std::atol(argv[i + 1]);
    else if (a == "--type")
      type = argv[i + 1];
    else if (a == "--window")
      window_max = std::atol(argv[i + 1]);
    else if (a == "--round-trips")
      round_trips = std::atol(argv[i + 1]);
  }
  if (round_trips < 0) round_trips = count;
  if (queue.empty() || count <= 0 || window_max <= 0 || window_max > kWindowMax ||
      round_trips <= 0) {
    std::fputs(
        "usage: perfq-client-bench --queue Q [--count N] [--type T] [--window W]"
        " [--round-trips R]\n",
        stderr);
    return 2;
  }
  auto p = perfq::Producer::connect(queue);
  if (!p) {
    std::fprintf(stderr, "client-bench: %s\n", p.error().message.c_str());
    return 1;
  }
  const std::string payload(64, 'x');
  perfq::RequestView r;
  r.type = type;
  r.user_id = "bench";
  r.payload = std::as_bytes(std::span(payload.data(), payload.size()));

  std::vector<double> rt;
  rt.reserve(static_cast<size_t>(round_trips));
  for (long i = 0; i < round_trips; ++i) {
    const double t0 = now_us();
    auto s = (*p)->submit(r);
    if (!s) {
      std::fprintf(stderr, "client-bench: %s\n", s.error().message.c_str());
      return 1;
    }
    if (s->outcome.get().status != perfq::Status::kCompleted) return 1;
    rt.push_back(now_us() - t0);
  }

  std::deque<perfq::Future> window;
  const double t0 = now_us();
  for (long i = 0; i < count; ++i) {
    if (window.size() == static_cast<size_t>(window_max)) {
      (void)window.front().get();
      window.pop_front();
    }
    auto s = (*p)->submit(r);
    if (!s) {
      std::fprintf(stderr, "client-bench: %s\n", s.error().message.c_str());
      return 1;
    }
    window.push_back(std::move(s->outcome));
  }
  for (auto& f : window) (void)f.get();
  const double secs = (now_us() - t0) / 1e6;

  std::printf(
      "{\"binding\":\"cpp\",\"count\":%ld,\"roundTripP50Us\":%.1f,\"roundTripP90Us\":%.1f,"
      "\"roundTripP99Us\":%.1f,\"submitPerSec\":%.0f}\n",
      count, percentile(rt, 0.5), percentile(rt, 0.9), percentile(rt, 0.99),
      static_cast<double>(count) / secs);
  return 0;
}
