#include "dataplane/client_watch.hpp"

#include <signal.h>

#include <cerrno>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_set>

#include "dataplane/records.hpp"
#include "log/log.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/core/band_ring.hpp"
#include "perfq/shm/client_registry.hpp"
#include "perfq/shm/liveness.hpp"

namespace perfq::agent {

namespace {

std::string roles_text(uint32_t roles) {
  const bool p = (roles & shm::kRoleProducer) != 0;
  const bool w = (roles & shm::kRoleWorker) != 0;
  return p && w ? "producer and worker" : p ? "producer" : w ? "worker" : "client";
}

nlohmann::json client_fields(uint32_t id, const Registration& r) {
  return {
      {"clientId", id}, {"pid", r.pid}, {"pidNamespace", r.pid_ns}, {"roles", roles_text(r.roles)}};
}

}  // namespace

void log_client_joined(uint32_t id, const Registration& r) {
  log::info("client.join",
            roles_text(r.roles) + " " + std::to_string(id) + " joined (pid " +
                std::to_string(r.pid) + ")",
            client_fields(id, r));
}

ClientWatch::ClientWatch(shm::Segment& seg, const Config& cfg, Dispatcher& dispatcher,
                         Settlement& settlement, Registrations& regs, Counters& counters,
                         WakeList& wake) noexcept
    : seg_(seg),
      dispatcher_(dispatcher),
      settlement_(settlement),
      regs_(regs),
      counters_(counters),
      wake_(wake),
      worker_idle_timeout_ns_(cfg.worker_idle_timeout_ms * 1'000'000) {}

void ClientWatch::pass() {
  const uint32_t n = seg_.geometry().max_clients;
  for (uint32_t id = 0; id < n; ++id) watch(id);
  seg_.pool().repair_hints();
  dispatcher_.refresh_routes_if_dirty();
}

void ClientWatch::watch(uint32_t id) {
  const shm::ClientState st = checked_state(id);
  if (st == shm::ClientState::kFree) return;
  if (st == shm::ClientState::kRegistering) {
    watch_registering(id);
    return;
  }
  const Registration& reg = regs_.at(id);
  const uint32_t roles = reg.active ? reg.roles : load_relaxed(seg_.client(id).roles);
  const bool worker = (roles & shm::kRoleWorker) != 0;
  if (st != shm::ClientState::kClosing && !shm::client_gone(seg_, id)) {
    if (worker) watch_worker(id, st);
    return;
  }
  // Closed or dead: take back everything it held, then free the record.
  if (reg.active) {
    const bool closed = st == shm::ClientState::kClosing;
    log::info(closed ? "client.leave" : "client.gone",
              roles_text(reg.roles) + " " + std::to_string(id) + " (pid " +
                  std::to_string(reg.pid) + ") " +
                  (closed ? "left" : "died without closing; what it held is taken back"),
              client_fields(id, reg));
  }
  if (worker) reclaim_worker(id, true);
  if ((roles & shm::kRoleProducer) != 0) reclaim_producer(id);
  wake_.forget_producer(id);
  regs_.forget(id);
  // Our last reads of this record's rings happen before a new client
  // resets them (free_client stores kFree with release).
  shm::free_client(seg_, id);
}

// The record's state, checked against the agent's copy of its registration
// (registrations.hpp). A record that no longer says what its client
// registered was scribbled on: rewritten from the copy while that process
// lives, reported kClosing (reclaimed) once it is dead. A state no client
// writes, on a record nobody registered, is freed.
shm::ClientState ClientWatch::checked_state(uint32_t id) {
  const uint32_t word = load_acquire(seg_.client(id).state);
  const shm::ClientState st = shm::state_of(word);
  const Registration& reg = regs_.adopt(id);
  if (!reg.active) {
    if (shm::known_state_word(word)) return st;
    ++counters_.rejected;
    shm::free_client(seg_, id);
    return shm::ClientState::kFree;
  }
  const bool registered_state = st == shm::ClientState::kActive ||
                                st == shm::ClientState::kEvicted ||
                                st == shm::ClientState::kClosing;
  if (registered_state && regs_.matches(id)) return st;
  ++counters_.rejected;
  if (!shm::client_alive(seg_, id, reg.pid, reg.start_ticks, reg.pid_ns)) {
    return shm::ClientState::kClosing;
  }
  const auto restored = reg.evicted ? shm::ClientState::kEvicted : shm::ClientState::kActive;
  regs_.restore(id, restored);
  return restored;
}

// Registration takes microseconds. A registration is taken back only once
// its registrant is dead: one that stalls (stopped, or descheduled) keeps
// the record, so it can never activate or write into a record another
// process registered since. The registrant takes the record's liveness lock
// before its CAS, so a free lock under a registering word is a death (in any
// PID namespace; a word nobody wrote holds no lock either). Without a lock
// to read, the pid decides, as it can within our namespace.
void ClientWatch::watch_registering(uint32_t id) {
  shm::ClientRecord& c = seg_.client(id);
  const uint32_t word = load_acquire(c.state);
  bool alive = false;
  switch (seg_.probe_client_lock(id)) {
    case shm::LockProbe::kHeld:
      alive = true;
      break;
    case shm::LockProbe::kFree:
      alive = false;
      break;
    case shm::LockProbe::kUnknown: {
      const uint32_t pid = shm::registrant_of(word);
      // acquire: pairs with register_client's release store of pid; a
      // non-zero pid field means the start time beside it is the registrant's.
      const bool ticks_known = load_acquire(c.pid) == pid && pid != 0;
      alive = ticks_known ? shm::process_alive(pid, load_relaxed(c.start_ticks))
                          : pid != 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM);
      break;
    }
  }
  if (!alive) (void)shm::take_back_registering(seg_, id, word);
}

void ClientWatch::watch_worker(uint32_t id, shm::ClientState st) {
  shm::ClientRecord& c = seg_.client(id);
  // acquire: pairs with the release store of type_count in add_client_type.
  dispatcher_.see_worker(id, load_relaxed(c.incarnation), load_acquire(c.type_count));
  if (st == shm::ClientState::kEvicted) {
    dispatcher_.mark_evicted(id);
  } else if (worker_silent(id)) {
    evict_worker(id);
  }
}

void ClientWatch::reclaim_producer(uint32_t id) {
  SlotPool& pool = seg_.pool();
  // Slots this producer published are accepted requests and stay; slots it
  // claimed but never published were never accepted and are freed.
  std::unordered_set<uint32_t> published;
  for (uint8_t b = 0; b < kBandCount; ++b) {
    seg_.band(static_cast<Band>(b)).for_each_published([&](uint32_t v) { published.insert(v); });
  }
  for (uint32_t s = 0; s < pool.count(); ++s) {
    const uint64_t ctl = pool.load(s);
    const SlotCtl c = SlotCtl::unpack(ctl);
    if (c.owner != id) continue;
    const bool orphan = c.state == SlotState::kClaimed || c.state == SlotState::kDone ||
                        (c.state == SlotState::kQueued && !published.contains(s));
    if (orphan && pool.release(s, ctl)) ++counters_.reclaimed;
  }
  // Table ways it was writing (a submit it died in) are free again, before
  // its client id can be reused.
  if (auto* t = seg_.idempotency()) (void)t->release_writer(id);
  if (auto* t = seg_.rate_limiter()) (void)t->release_writer(id);
}

void ClientWatch::reclaim_worker(uint32_t id, bool gone) {
  const uint32_t n = seg_.pool().count();
  for (uint32_t s = 0; s < n; ++s) take_back(s, id, gone);
  dispatcher_.invalidate_routes();
  // Whatever settle() did not already give back. An evicted worker's
  // REPORTING attempts still count until they settle.
  if (gone) dispatcher_.forget_worker(id);
}

// A worker that closed may still be finishing an attempt: each lost CAS
// means it moved the slot one state on, so a few tries settle it.
void ClientWatch::take_back(uint32_t slot, uint32_t id, bool gone) {
  SlotPool& pool = seg_.pool();
  for (int tries = 0; tries < 8; ++tries) {
    uint64_t ctl = pool.load(slot);
    const SlotCtl c = SlotCtl::unpack(ctl);
    if (c.owner != id) return;
    if (c.state == SlotState::kReported) {
      settlement_.settle(slot, ctl, attempt_result(seg_.record(slot).result_kind),
                         Errc::kProcessorError);
      return;
    }
    if (c.state == SlotState::kAssigned) {
      if (dispatcher_.return_unstarted(slot, ctl, c)) return;
      continue;
    }
    if (c.state != SlotState::kProcessing && (c.state != SlotState::kReporting || !gone)) {
      return;  // a live worker writing its result finishes it
    }
    // The attempt failed with its worker. Take the slot back first, so a
    // worker that was only slow cannot report into it any more.
    const SlotCtl back = with_state(c, SlotState::kReported, static_cast<uint16_t>(id));
    if (!pool.transition(slot, ctl, back)) continue;
    ++counters_.redispatched;
    settlement_.settle(slot, back.pack(), AttemptResult::kError, Errc::kWorkerDied);
    return;
  }
}

// SPEC §4 worker_idle_timeout_ms: a worker whose heartbeat (its own thread,
// every quarter of the timeout) is older than the timeout is stopped or
// starved. Heartbeats are CLOCK_MONOTONIC of the host, whatever clock the
// agent's time rules run on.
bool ClientWatch::worker_silent(uint32_t id) noexcept {
  const uint64_t hb = load_relaxed(seg_.client(id).heartbeat_mono_ns);
  const uint64_t now = mono_now_ns();
  return now > hb && now - hb > worker_idle_timeout_ns_;
}

// A silent but living worker: no more dispatches, and the attempts it holds
// are taken back (never started: back to their band; started: failed with
// WORKER_DIED). Its record stays until the worker notices and closes it, or
// its process dies.
void ClientWatch::evict_worker(uint32_t id) {
  uint32_t expected = static_cast<uint32_t>(shm::ClientState::kActive);
  // acq_rel: pairs with the worker's acquire load of its state (it stops
  // taking dispatches once it reads kEvicted).
  if (!aref(seg_.client(id).state)
           .compare_exchange_strong(expected, static_cast<uint32_t>(shm::ClientState::kEvicted),
                                    std::memory_order_acq_rel, std::memory_order_relaxed)) {
    return;
  }
  ++counters_.evicted;
  const Registration& reg = regs_.at(id);
  log::warn("client.evict",
            "worker " + std::to_string(id) + " (pid " + std::to_string(reg.pid) +
                ") evicted: silent for over " +
                std::to_string(worker_idle_timeout_ns_ / 1'000'000) +
                " ms; its attempts are taken back",
            client_fields(id, reg));
  regs_.mark_evicted(id);
  dispatcher_.mark_evicted(id);
  reclaim_worker(id, false);
}

}  // namespace perfq::agent
