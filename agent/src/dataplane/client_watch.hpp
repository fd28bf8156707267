#pragma once
// ClientWatch: the liveness pass over the client records (every
// liveness_interval_ms).
//
//   kRegistering  a registrant that died loses the record (registration
//                 takeback); one that stalls keeps it
//   active        a worker's new incarnation or new types reach the
//                 dispatcher; a worker silent past worker_idle_timeout_ms is
//                 evicted: its unstarted attempts go back to their bands,
//                 started ones fail with WORKER_DIED
//   closed/dead   everything it held is taken back (slots it claimed, its
//                 attempts, table ways it was writing), then the record is
//                 freed for reuse
#include <cstdint>
#include <vector>

#include "dataplane/counters.hpp"
#include "dataplane/dispatcher.hpp"
#include "dataplane/registrations.hpp"
#include "dataplane/settlement.hpp"
#include "dataplane/wake_list.hpp"
#include "perfq/agent/config.hpp"
#include "perfq/core/slot_pool.hpp"
#include "perfq/shm/layout.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq::agent {

class ClientWatch {
 public:
  ClientWatch(shm::Segment& seg, const Config& cfg, Dispatcher& dispatcher, Settlement& settlement,
              Registrations& regs, Counters& counters, WakeList& wake) noexcept;

  // One pass over every client record.
  void pass();

 private:
  void watch(uint32_t id);
  [[nodiscard]] shm::ClientState checked_state(uint32_t id);
  void watch_registering(uint32_t id);
  void watch_worker(uint32_t id, shm::ClientState st);
  void reclaim_producer(uint32_t id);
  // `gone`: the process is dead or closed. Otherwise (eviction) attempts
  // being reported are left to finish.
  void reclaim_worker(uint32_t id, bool gone);
  void take_back(uint32_t slot, uint32_t id, bool gone);
  [[nodiscard]] bool worker_silent(uint32_t id) noexcept;
  void evict_worker(uint32_t id);

  shm::Segment& seg_;
  Dispatcher& dispatcher_;
  Settlement& settlement_;
  Registrations& regs_;
  Counters& counters_;
  WakeList& wake_;
  const uint64_t worker_idle_timeout_ns_;
};

}  // namespace perfq::agent
