#pragma once
// Registrations: the agent's own copy of each active client record.
//
// A client record is shared memory every member of the segment's group can
// write. The agent copies a record the first time it sees it Active (pid,
// start time, roles, incarnation) and from then on decides with the copy:
// where an outcome may go (Settlement), and whether the record still says
// what the client registered (ClientWatch, on each liveness pass). A record
// that no longer matches its copy was scribbled on: while the process the
// copy names is alive the record is rewritten from the copy; once it is dead
// the client is reclaimed like any dead client.
#include <cstdint>
#include <vector>

#include "perfq/core/assert.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/shm/layout.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq::agent {

struct Registration {
  bool active = false;  // seen Active since the record was last freed
  uint32_t pid = 0;
  uint64_t start_ticks = 0;
  uint64_t pid_ns = 0;
  uint32_t roles = 0;
  uint32_t incarnation = 0;
  bool evicted = false;  // the agent evicted it (a silent worker)
};

// The log's line for a client the agent sees for the first time
// (client_watch.cpp): its id, pid and roles; nothing the client wrote
// besides those numbers.
void log_client_joined(uint32_t id, const Registration& r);

class Registrations {
 public:
  explicit Registrations(shm::Segment& seg) noexcept : seg_(seg) {}

  void resize(uint32_t clients) { regs_.assign(clients, Registration{}); }

  // The copy of record `id`, taken now if the record is Active and the
  // agent had none.
  const Registration& adopt(uint32_t id) noexcept {
    PERFQ_ASSERT(id < regs_.size());
    Registration& r = regs_[id];
    if (r.active) return r;
    const shm::ClientRecord& c = seg_.client(id);
    // acquire: pairs with activate_client's release; the fields are whole.
    if (static_cast<shm::ClientState>(load_acquire(c.state)) != shm::ClientState::kActive) {
      return r;
    }
    r.pid = load_relaxed(c.pid);
    r.start_ticks = load_relaxed(c.start_ticks);
    r.pid_ns = load_relaxed(c.pid_ns);
    r.roles = load_relaxed(c.roles);
    r.incarnation = load_relaxed(c.incarnation);
    r.active = r.pid != 0;
    if (r.active) log_client_joined(id, r);
    return r;
  }

  // Whether an outcome for the producer registration `incarnation` (its low
  // bits, as a request carries it) may go to client `p`.
  [[nodiscard]] bool delivers_to(uint32_t p, uint16_t incarnation) noexcept {
    if (p >= regs_.size()) return false;
    const Registration& r = adopt(p);
    return r.active && (r.roles & shm::kRoleProducer) != 0 &&
           static_cast<uint16_t>(r.incarnation) == incarnation;
  }

  // Whether the shared record still says what the copy says (state aside:
  // Active, Evicted and Closing are the states a registration moves to).
  [[nodiscard]] bool matches(uint32_t id) const noexcept {
    const Registration& r = regs_[id];
    const shm::ClientRecord& c = seg_.client(id);
    return load_relaxed(c.pid) == r.pid && load_relaxed(c.start_ticks) == r.start_ticks &&
           load_relaxed(c.pid_ns) == r.pid_ns && load_relaxed(c.roles) == r.roles &&
           load_relaxed(c.incarnation) == r.incarnation;
  }

  // Rewrites a scribbled record from the copy, in `state`.
  void restore(uint32_t id, shm::ClientState state) noexcept {
    const Registration& r = regs_[id];
    shm::ClientRecord& c = seg_.client(id);
    store_relaxed(c.pid, r.pid);
    store_relaxed(c.start_ticks, r.start_ticks);
    store_relaxed(c.pid_ns, r.pid_ns);
    store_relaxed(c.roles, r.roles);
    store_relaxed(c.incarnation, r.incarnation);
    // release: a client that reads the state reads the fields above.
    aref(c.state).store(static_cast<uint32_t>(state), std::memory_order_release);
  }

  [[nodiscard]] const Registration& at(uint32_t id) const noexcept { return regs_[id]; }
  void forget(uint32_t id) noexcept { regs_[id] = Registration{}; }
  void mark_evicted(uint32_t id) noexcept { regs_[id].evicted = true; }

 private:
  shm::Segment& seg_;
  std::vector<Registration> regs_;  // by client id
};

}  // namespace perfq::agent
