#include "perfq/shm/client_registry.hpp"

#include <unistd.h>

#include <cstring>

#include "perfq/core/atomic.hpp"
#include "perfq/core/clock.hpp"
#include "perfq/shm/liveness.hpp"

namespace perfq::shm {

Result<uint32_t> register_client(Segment& seg, uint32_t roles) {
  const uint32_t n = seg.geometry().max_clients;
  const auto pid = static_cast<uint32_t>(::getpid());
  const uint64_t ticks = self_start_ticks();
  const uint64_t pid_ns = self_pid_ns();
  for (uint32_t id = 0; id < n; ++id) {
    ClientRecord& c = seg.client(id);
    if (state_of(load_relaxed(c.state)) != ClientState::kFree) continue;
    // The record's liveness lock first: while the record is registering or
    // active its lock is held, so the agent reads a free lock as a death.
    // Held by another: that process is between its lock and its CAS, or has
    // not yet released a record the agent freed; try the next.
    if (!seg.hold_client_lock(id)) continue;
    uint32_t expected = static_cast<uint32_t>(ClientState::kFree);
    // acquire: pairs with the agent's release when it freed the record, so
    // the agent's last reads of the old rings happen before we reset them.
    if (!aref(c.state).compare_exchange_strong(expected, registering_word(pid),
                                               std::memory_order_acquire,
                                               std::memory_order_relaxed)) {
      seg.release_client_lock(id);
      continue;
    }
    aref(c.start_ticks).store(ticks, std::memory_order_relaxed);
    aref(c.pid_ns).store(pid_ns, std::memory_order_relaxed);
    aref(c.roles).store(roles, std::memory_order_relaxed);
    // release: the agent reads pid with acquire, then the start time; a
    // non-zero pid means the start time beside it is this process's.
    aref(c.pid).store(pid, std::memory_order_release);
    aref(c.type_count).store(0, std::memory_order_relaxed);
    aref(c.max_inflight).store(0, std::memory_order_relaxed);
    aref(c.incarnation).fetch_add(1, std::memory_order_relaxed);
    aref(c.heartbeat_mono_ns).store(mono_now_ns(), std::memory_order_relaxed);
    seg.format_client_rings(id);
    return id;
  }
  return Error{Errc::kAgentUnavailable,
               "all " + std::to_string(n) + " client records of the segment are in use"};
}

Result<void> add_client_type(Segment& seg, uint32_t id, std::string_view type, bool batch) {
  if (!valid_type(type)) {
    return {Errc::kInvalidRequest, "type must be 1..64 bytes of [A-Za-z0-9._:-]"};
  }
  ClientRecord& c = seg.client(id);
  const uint32_t k = aref(c.type_count).load(std::memory_order_relaxed);
  if (k >= kMaxTypesPerWorker) {
    return {Errc::kInvalidRequest,
            "a worker registers at most " + std::to_string(kMaxTypesPerWorker) + " types"};
  }
  TypeName& t = c.types[k];
  t.len = static_cast<uint8_t>(type.size());
  t.batch = batch ? 1 : 0;
  std::memcpy(t.text, type.data(), type.size());
  // release: pairs with the agent's acquire load of type_count.
  aref(c.type_count).store(k + 1, std::memory_order_release);
  return {};
}

void close_client(Segment& seg, uint32_t id) noexcept {
  // release: everything the client did happens before the agent reclaims.
  aref(seg.client(id).state)
      .store(static_cast<uint32_t>(ClientState::kClosing), std::memory_order_release);
  seg.release_client_lock(id);
}

bool client_alive(Segment& seg, uint32_t id, uint32_t pid, uint64_t start_ticks,
                  uint64_t pid_ns) noexcept {
  const LockProbe lock = seg.probe_client_lock(id);
  if (lock == LockProbe::kFree) return false;
  // Held (or unknown): within our own PID namespace the pid says more. It
  // catches a lock a forked child inherited and keeps after its parent died.
  const uint64_t own_ns = self_pid_ns();
  const bool same_ns = own_ns != 0 && pid_ns == own_ns;
  if (same_ns || lock == LockProbe::kUnknown) return process_alive(pid, start_ticks);
  return true;
}

bool client_gone(Segment& seg, uint32_t id) noexcept {
  ClientRecord& c = seg.client(id);
  const auto st = static_cast<ClientState>(aref(c.state).load(std::memory_order_acquire));
  if (st == ClientState::kFree) return false;
  if (st == ClientState::kClosing) return true;
  // acquire: pairs with register_client's release store of pid.
  const uint32_t pid = aref(c.pid).load(std::memory_order_acquire);
  if (pid == 0) return false;  // still registering: not yet known
  return !client_alive(seg, id, pid, aref(c.start_ticks).load(std::memory_order_relaxed),
                       aref(c.pid_ns).load(std::memory_order_relaxed));
}

}  // namespace perfq::shm

namespace perfq::shm {

bool activate_client(Segment& seg, uint32_t id) noexcept {
  uint32_t expected = registering_word(static_cast<uint32_t>(::getpid()));
  // release: pairs with the agent's acquire of state; the rings are formatted.
  return aref(seg.client(id).state)
      .compare_exchange_strong(expected, static_cast<uint32_t>(ClientState::kActive),
                               std::memory_order_release, std::memory_order_relaxed);
}

void free_client(Segment& seg, uint32_t id) noexcept {
  ClientRecord& c = seg.client(id);
  aref(c.pid).store(0, std::memory_order_relaxed);
  aref(c.start_ticks).store(0, std::memory_order_relaxed);
  aref(c.pid_ns).store(0, std::memory_order_relaxed);
  // release: pairs with register_client's acquire CAS; the agent's last
  // reads of this record's rings, and the cleared pid, come first.
  aref(c.state).store(static_cast<uint32_t>(ClientState::kFree), std::memory_order_release);
}

bool take_back_registering(Segment& seg, uint32_t id, uint32_t word) noexcept {
  uint32_t expected = word;
  if (!aref(seg.client(id).state)
           .compare_exchange_strong(expected, static_cast<uint32_t>(ClientState::kClosing),
                                    std::memory_order_acquire, std::memory_order_relaxed)) {
    return false;  // it became active (or was taken back) meanwhile
  }
  free_client(seg, id);
  return true;
}

}  // namespace perfq::shm

namespace perfq::shm {
Result<uint32_t> join(Segment& seg, uint32_t roles, uint32_t max_inflight) {
  for (int attempt = 0; attempt < 8; ++attempt) {
    auto id = register_client(seg, roles);
    if (!id) return id;
    aref(seg.client(*id).max_inflight).store(max_inflight, std::memory_order_relaxed);
    if (activate_client(seg, *id)) return id;
    seg.release_client_lock(*id);  // taken back: the record is no longer ours
  }
  return Error{Errc::kAgentUnavailable, "registration kept being taken back by the agent"};
}
}  // namespace perfq::shm
