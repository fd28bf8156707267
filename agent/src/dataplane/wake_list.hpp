#pragma once
// WakeList: the clients to notify at the end of a duty cycle.
//
// Collaborators note a producer that got an outcome or a worker that got a
// dispatch; the conductor notifies each once per cycle, whatever number of
// items it got (one futex wake per client, not per item).
#include <cstdint>
#include <vector>

#include "perfq/core/assert.hpp"
#include "perfq/shm/futex.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq::agent {

class WakeList {
 public:
  void resize(uint32_t clients) {
    producer_.assign(clients, 0);
    worker_.assign(clients, 0);
  }

  void producer(uint32_t id) {
    PERFQ_ASSERT(id < producer_.size());
    if (producer_[id] != 0) return;
    producer_[id] = 1;
    to_wake_.push_back(id);
  }
  void worker(uint32_t id) {
    PERFQ_ASSERT(id < worker_.size());
    if (worker_[id] != 0) return;
    worker_[id] = 1;
    to_wake_.push_back(id);
  }
  // The client left (or its record was reused): nothing more to tell it.
  void forget_producer(uint32_t id) noexcept {
    PERFQ_ASSERT(id < producer_.size());
    producer_[id] = 0;
  }
  void forget_worker(uint32_t id) noexcept {
    PERFQ_ASSERT(id < worker_.size());
    worker_[id] = 0;
  }

  // One notify per producer or worker noted since the last call.
  void notify(shm::Segment& seg) noexcept {
    for (const uint32_t id : to_wake_) {
      if (producer_[id] != 0) {
        producer_[id] = 0;
        shm::notify(seg.client(id).completion_wake);
      }
      if (worker_[id] != 0) {
        worker_[id] = 0;
        shm::notify(seg.client(id).dispatch_wake);
      }
    }
    to_wake_.clear();
  }

 private:
  std::vector<uint8_t> producer_;  // by client id: noted this cycle
  std::vector<uint8_t> worker_;
  std::vector<uint32_t> to_wake_;  // ids noted, in order (one id may be there twice)
};

}  // namespace perfq::agent
