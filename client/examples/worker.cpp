// An example worker: serves the types named on its command line until
// SIGTERM or SIGINT. Each request's reply is {"processed":true,"type":T,
// "bytes":N} (never the payload itself); types given with --fail are failed
// for good, so their requests go to the DLQ; types given with --hang are
// held until the worker is stopped or killed (crash drills: the worker
// prints "holding" when it starts one).
//
//   perfq-example-worker --queue Q [--fail TYPE]... [--hang TYPE]... TYPE...
//
// It prints "ready" once every type is registered, so scripts can wait for
// that line instead of for time.
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "perfq/perfq.hpp"

namespace {

std::atomic<bool> g_stop{false};

void on_signal(int) {
  g_stop.store(true, std::memory_order_relaxed);
}

}  // namespace

int main(int argc, char** argv) {
  std::string queue;
  std::vector<std::string> types;
  std::vector<std::string> failing;
  std::vector<std::string> hanging;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--queue" && i + 1 < argc) {
      queue = argv[++i];
    } else if (a == "--fail" && i + 1 < argc) {
      failing.emplace_back(argv[++i]);
    } else if (a == "--hang" && i + 1 < argc) {
      hanging.emplace_back(argv[++i]);
    } else {
      types.push_back(a);
    }
  }
  if (queue.empty() || (types.empty() && failing.empty() && hanging.empty())) {
    std::fputs("usage: perfq-example-worker --queue Q [--fail TYPE]... [--hang TYPE]... TYPE...\n",
               stderr);
    return 2;
  }
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  auto w = perfq::Worker::connect(queue);
  if (!w) {
    std::fprintf(stderr, "worker: %s\n", w.error().message.c_str());
    return 1;
  }
  for (const std::string& t : types) {
    auto r = (*w)->register_processor(t, [](const perfq::Job& job) {
      return perfq::Reply::ok("{\"processed\":true,\"type\":\"" + std::string(job.type) +
                              "\",\"bytes\":" + std::to_string(job.payload.size()) + "}");
    });
    if (!r) {
      std::fprintf(stderr, "worker: %s\n", r.error().message.c_str());
      return 1;
    }
  }
  for (const std::string& t : failing) {
    auto r = (*w)->register_processor(
        t, [](const perfq::Job&) { return perfq::Reply::permanent_error("rejected by example"); });
    if (!r) {
      std::fprintf(stderr, "worker: %s\n", r.error().message.c_str());
      return 1;
    }
  }
  for (const std::string& t : hanging) {
    auto r = (*w)->register_processor(t, [](const perfq::Job&) {
      std::printf("holding\n");
      std::fflush(stdout);
      while (!g_stop.load(std::memory_order_relaxed)) ::pause();  // a signal ends it
      return perfq::Reply::error("stopped while holding");
    });
    if (!r) {
      std::fprintf(stderr, "worker: %s\n", r.error().message.c_str());
      return 1;
    }
  }
  std::printf("ready\n");
  std::fflush(stdout);
  (*w)->run(g_stop);
  return 0;
}
