#pragma once
// Counters: the agent's running totals, published to the segment header.
//
// Each collaborator counts what it does into one shared Counters; the
// conductor publishes them once per busy cycle, and a re-attached agent
// takes them back so that totals carry on across restarts.
#include <cstdint>
#include <utility>

#include "perfq/core/atomic.hpp"
#include "perfq/shm/layout.hpp"

namespace perfq::agent {

struct Counters {
  uint64_t submitted = 0, dispatched = 0, completed = 0, failed = 0, retried = 0;
  uint64_t rejected = 0, skipped = 0, reclaimed = 0, redispatched = 0, stale_cells = 0,
           timed_out = 0, evicted = 0, cancelled = 0, batches = 0, swept = 0, resynced = 0;

  // Data-plane thread only. relaxed: readers (health, metrics) take a
  // snapshot that needs no order with anything else.
  void publish(shm::AgentCounters& to) const noexcept {
    for (const auto& [mine, published] : kTotals) {
      aref(to.*published).store(this->*mine, std::memory_order_relaxed);
    }
  }
  void restore(const shm::AgentCounters& from) noexcept {
    for (const auto& [mine, published] : kTotals) this->*mine = load_relaxed(from.*published);
  }

 private:
  static constexpr std::pair<uint64_t Counters::*, uint64_t shm::AgentCounters::*> kTotals[] = {
      {&Counters::submitted, &shm::AgentCounters::submitted},
      {&Counters::dispatched, &shm::AgentCounters::dispatched},
      {&Counters::completed, &shm::AgentCounters::completed},
      {&Counters::failed, &shm::AgentCounters::failed},
      {&Counters::retried, &shm::AgentCounters::retried},
      {&Counters::rejected, &shm::AgentCounters::rejected_invalid},
      {&Counters::skipped, &shm::AgentCounters::ring_claims_skipped},
      {&Counters::reclaimed, &shm::AgentCounters::slots_reclaimed},
      {&Counters::redispatched, &shm::AgentCounters::attempts_redispatched},
      {&Counters::stale_cells, &shm::AgentCounters::stale_cells},
      {&Counters::timed_out, &shm::AgentCounters::timed_out},
      {&Counters::evicted, &shm::AgentCounters::workers_evicted},
      {&Counters::cancelled, &shm::AgentCounters::cancelled},
      {&Counters::batches, &shm::AgentCounters::batches},
      {&Counters::swept, &shm::AgentCounters::slots_swept},
      {&Counters::resynced, &shm::AgentCounters::rings_resynced},
  };
};

}  // namespace perfq::agent
