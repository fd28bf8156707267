// Reference IPC mechanisms measured the same way as perfq, so every perfq
// benchmark can print a baseline beside its own numbers.
//
// Contract shared by every function here:
//   * Blocks the calling thread for the whole run and forks exactly one child,
//     which is always reaped before the function returns (SIGKILLed first if
//     it overran its bound). No IPC name outlives the call.
//   * Every wait on the peer is bounded (a few seconds); a dead, stuck or
//     misbehaving peer turns into a failed result, never a hang.
//   * Never throws. Failure is reported as samples == 0 / messages == 0.
//   * Call from a thread that lives until the call returns: the child's
//     PR_SET_PDEATHSIG is tied to the forking thread. The process must not
//     ignore SIGCHLD, or the child's exit status cannot be collected.
//   * The child inherits the calling thread's CPU affinity. A caller that pins
//     itself to one CPU puts both sides on that CPU, which makes
//     spin_ping_pong measure the scheduler, not the handoff.
#ifndef PERFQ_BENCH_BASELINES_HPP
#define PERFQ_BENCH_BASELINES_HPP

#include <cstdint>

namespace perfq::bench {

// Round-trip latency as measured in the parent, one sample per round trip.
// Percentiles are bucket upper bounds (within 1/32 of the exact value, never
// below it); max_ns is exact.
struct LatencySummary {
  uint64_t samples = 0;
  uint64_t p50_ns = 0;
  uint64_t p90_ns = 0;
  uint64_t p99_ns = 0;
  uint64_t p999_ns = 0;
  uint64_t max_ns = 0;
};

struct ThroughputSummary {
  uint64_t messages = 0;
  double seconds = 0.0;
  double per_second = 0.0;
};

// Parent and child each park in FUTEX_WAIT (shared, not _PRIVATE) on a word of
// a MAP_SHARED|MAP_ANONYMOUS page and FUTEX_WAKE the other: the cost of a
// kernel-mediated handoff in both directions.
LatencySummary futex_ping_pong(uint64_t round_trips);

// Same page, but both sides busy-spin on the shared words: the floor set by
// cache-line transfer between cores. Needs two free cores to mean anything.
LatencySummary spin_ping_pong(uint64_t round_trips);

// 64-byte messages over socketpair(AF_UNIX, SOCK_STREAM).
LatencySummary unix_socket_ping_pong(uint64_t round_trips);

// 64-byte messages over two boost::interprocess::message_queue (one per
// direction). Two limits of Boost 1.74 weaken the bound on waits: timed waits
// use CLOCK_REALTIME (a wall-clock step back stretches one), and the queue's
// internal mutex is not robust (a peer SIGKILLed while holding it wedges the
// other side).
LatencySummary boost_mq_round_trip(uint64_t round_trips);

// One producer process streams 64-byte messages through a 1024-deep
// boost::interprocess::message_queue to the consumer (the calling process).
// The clock runs from the start signal to the last message received. Same
// Boost limits as boost_mq_round_trip.
ThroughputSummary boost_mq_one_way(uint64_t messages);

}  // namespace perfq::bench

#endif  // PERFQ_BENCH_BASELINES_HPP
