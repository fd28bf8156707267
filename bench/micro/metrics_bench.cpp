// Micro benchmark of what the metrics history costs the agent per request:
// the calls the duty cycle makes for one request that completes on its first
// attempt (submitted, one wait, one processing time, completed), each of
// which updates the minute row and the since-start row, in the band's cell
// and the type's cell, with relaxed atomic stores in the segment.
//
//   scenario                          one iteration
//   --------------------------------  -------------------------------------------
//   metrics/history_per_request       the four MetricsWriter calls of a request
//   metrics/baseline_in_process       the same counts and samples into plain
//                                     counters and two LogLinearHistograms
//
// The baseline is the cheapest way to keep the same figures without sharing
// them; the ratio is the price of keeping them in the segment, by band and
// type, for any process to read. One thread; thread CPU time.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <string>

#include "perfq/core/histogram.hpp"
#include "perfq/shm/metrics.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq::bench::micro {
namespace {

constexpr uint64_t kMinuteStart = 29'000'000ull * 60'000'000'000ull;

void history_per_request(benchmark::State& state) {
  const std::string queue = "micro-metrics-" + std::to_string(::getpid());
  shm::CreateOptions o;
  o.slot_count = 1024;
  o.slot_payload_bytes = 256;
  o.max_clients = 4;
  shm::Segment::Opened how{};
  auto seg = shm::Segment::open_for_agent(queue, o, how);
  if (!seg) {
    state.SkipWithError(seg.error().message.c_str());
    return;
  }
  shm::MetricsWriter w(**seg, kMinuteStart);
  const uint8_t col = w.column("chat.message");
  uint64_t ns = 1000;
  for (auto _ : state) {
    w.count(2, col, shm::Outcome::kSubmitted);
    w.waited(2, col, ns);
    w.processed(2, col, ns * 3);
    w.count(2, col, shm::Outcome::kCompleted);
    ns = (ns * 7 + 13) % 5'000'000;  // spread over the buckets
  }
  benchmark::DoNotOptimize(ns);
  shm::Segment::remove(queue);
}
BENCHMARK(history_per_request)->Name("metrics/history_per_request");

void baseline_in_process(benchmark::State& state) {
  auto wait = std::make_unique<LogLinearHistogram>();
  auto processing = std::make_unique<LogLinearHistogram>();
  uint64_t submitted = 0;
  uint64_t completed = 0;
  uint64_t ns = 1000;
  for (auto _ : state) {
    ++submitted;
    wait->record(ns);
    processing->record(ns * 3);
    ++completed;
    benchmark::DoNotOptimize(submitted);
    benchmark::DoNotOptimize(completed);
    ns = (ns * 7 + 13) % 5'000'000;
  }
  benchmark::DoNotOptimize(wait->count());
  benchmark::DoNotOptimize(processing->count());
}
BENCHMARK(baseline_in_process)->Name("metrics/baseline_in_process");

}  // namespace
}  // namespace perfq::bench::micro
