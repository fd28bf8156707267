#include "dataplane/dispatcher.hpp"

#include <algorithm>
#include <string>

#include "dataplane/records.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/shm/layout.hpp"

namespace perfq::agent {

Dispatcher::Dispatcher(shm::Segment& seg, const Config& cfg, const CycleClock& cycle,
                       Scheduler& scheduler, Inflight& inflight, shm::MetricsWriter& metrics,
                       const Ledger& ledger, Emitter& emitter, Counters& counters, WakeList& wake)
    : seg_(seg),
      cycle_(cycle),
      scheduler_(scheduler),
      inflight_(inflight),
      metrics_(metrics),
      ledger_(ledger),
      emitter_(emitter),
      counters_(counters),
      wake_(wake),
      max_concurrent_(cfg.max_concurrent_workers),
      batch_size_(cfg.batch_size),
      batch_interval_ns_(cfg.batch_interval_ms * 1'000'000) {}

int Dispatcher::dispatch() {
  refresh_routes_if_dirty();
  // Due batches first: their requests have waited batch_interval_ms (or
  // filled a batch) and no longer take part in band order and aging.
  int n = flush_batches();
  bool blocked[kBandCount] = {};
  // Bounded: each pass pops a request or blocks a band.
  while (inflight_.total() < max_concurrent_) {
    const int b = scheduler_.pick_band(cycle_.now_ns, blocked);
    if (b < 0) break;
    switch (dispatch_front(b)) {
      case Step::kDispatched:
        ++n;
        break;
      case Step::kMoved:
        break;
      case Step::kBlocked:
        blocked[b] = true;  // this type's workers are full: other bands go on
        break;
    }
  }
  return n + flush_batches();
}

Dispatcher::Step Dispatcher::dispatch_front(int band) {
  const Pending p = scheduler_.front(band);
  const uint64_t ctl = seg_.pool().load(p.slot);
  const SlotCtl c = SlotCtl::unpack(ctl);
  if (c.state != SlotState::kPending || c.generation != p.generation) {
    scheduler_.pop_front(band);  // no longer ours (e.g. reclaimed)
    return Step::kMoved;
  }
  const std::string_view type = type_of(seg_, p.slot);
  auto route = routes_.find(type);
  if (route == routes_.end() || route->second.workers.empty()) {
    scheduler_.pop_front(band);
    scheduler_.wait_for_worker(type, p);
    return Step::kMoved;
  }
  TypeRoute& r = route->second;
  const RequestRecord& rec = seg_.record(p.slot);
  // A batch request's first attempt waits for its batch; a failed item is
  // retried on its own (SPEC §5), like a request of any other mode.
  if (ledger_.facts(p.slot).mode == static_cast<uint8_t>(Mode::kBatch) &&
      load_relaxed(rec.failures) == 0 && !r.batch_workers.empty()) {
    scheduler_.pop_front(band);
    gather(type, p);
    return Step::kMoved;
  }
  const uint32_t chosen = pick_worker(r.workers, r.next);
  if (chosen == kNoWorker) return Step::kBlocked;
  if (!assign(p, ctl, chosen)) {
    scheduler_.pop_front(band);
    return Step::kMoved;
  }
  if (!seg_.dispatch_ring(chosen).try_push(slot_ref(p.slot, p.generation))) {
    unassign(p, chosen);
    return Step::kBlocked;
  }
  note_dispatched(p, chosen, static_cast<uint8_t>(c.attempt + 1));
  inflight_.open(p.slot, chosen);
  scheduler_.pop_front(band);
  return Step::kDispatched;
}

void Dispatcher::gather(std::string_view type, const Pending& p) {
  // Kept in eligible order (requests arrive from several bands), so the
  // front is the oldest: the interval and the queue timeout look only there.
  TypeQueues::Queue& g = gathering_.of(type);
  gathering_.insert_by_eligible(g, p);
  // A full batch goes now, not at the end of the cycle.
  if (g.size() >= batch_size_) {
    auto route = routes_.find(type);
    if (route != routes_.end()) (void)flush_batch(g, route->second);
  }
}

// Dispatches the batches that are due: batch_size items wait, or the
// oldest has waited batch_interval_ms since it became eligible.
int Dispatcher::flush_batches() {
  int n = 0;
  for (auto& [type, g] : gathering_) {
    if (g.empty()) continue;
    auto route = routes_.find(type);
    if (route == routes_.end()) continue;
    // Bounded: each flush takes items or returns 0.
    while (!g.empty()) {
      const bool full = g.size() >= batch_size_;
      const bool due = cycle_.since(g.front().eligible_ns) >= batch_interval_ns_;
      if (!full && !due) break;
      const int sent = flush_batch(g, route->second);
      if (sent == 0) break;
      n += sent;
    }
  }
  return n;
}

// One batch dispatch of up to batch_size items from the front of `g`.
// Returns the items sent (0: no capacity, or nothing valid left).
int Dispatcher::flush_batch(TypeQueues::Queue& g, TypeRoute& r) {
  if (inflight_.total() >= max_concurrent_) return 0;
  const uint32_t w = pick_worker(r.batch_workers, r.batch_next);
  if (w == kNoWorker) return 0;
  collect_batch(g, w);
  std::vector<Pending>& items = batch_items_;
  std::vector<uint64_t>& refs = batch_refs_;
  if (items.empty()) return 0;
  SpscRing ring = seg_.dispatch_ring(w);
  const bool single = items.size() == 1;
  refs[0] = batch_header(static_cast<uint32_t>(items.size()));
  const bool pushed = single ? ring.try_push(refs[1])
                             : ring.try_push_n(refs.data(), static_cast<uint32_t>(refs.size()));
  if (!pushed) {
    for (auto it = items.rbegin(); it != items.rend(); ++it) {
      unassign(*it, w);
      gathering_.push_front(g, *it);
    }
    return 0;
  }
  for (const Pending& p : items) note_dispatched(p, w, seg_.record(p.slot).attempts);
  if (single) {
    inflight_.open(items[0].slot, w);
  } else {
    inflight_.open_batch(items, w);
    ++counters_.batches;
  }
  return static_cast<int>(items.size());
}

void Dispatcher::collect_batch(TypeQueues::Queue& g, uint32_t worker) {
  SlotPool& pool = seg_.pool();
  const size_t want = std::min<size_t>(g.size(), std::max<uint64_t>(batch_size_, 1));
  batch_items_.clear();
  batch_refs_.clear();
  batch_refs_.push_back(0);  // the header, once the count is known
  // Bounded by `want` items taken from the front.
  for (size_t k = 0; k < want && !g.empty(); ++k) {
    const Pending p = gathering_.pop_front(g);
    const uint64_t ctl = pool.load(p.slot);
    const SlotCtl c = SlotCtl::unpack(ctl);
    if (c.state != SlotState::kPending || c.generation != p.generation) continue;
    if (!assign(p, ctl, worker)) continue;
    batch_items_.push_back(p);
    batch_refs_.push_back(slot_ref(p.slot, p.generation));
  }
}

uint32_t Dispatcher::pick_worker(const std::vector<uint32_t>& ws, uint32_t& cursor) const noexcept {
  for (size_t k = 0; k < ws.size(); ++k) {
    const uint32_t w = ws[(cursor + k) % ws.size()];
    if (inflight_.of(w) < views_[w].max_inflight) {
      cursor = static_cast<uint32_t>((cursor + k + 1) % ws.size());
      return w;
    }
  }
  return kNoWorker;
}

// False when the slot moved on, or when the agent's own table has it out
// already: a control word that reads PENDING for a slot in flight was
// written by someone else (the agent's table decides, never the segment).
bool Dispatcher::assign(const Pending& p, uint64_t ctl, uint32_t worker) {
  PERFQ_ASSERT(worker < views_.size());
  if (inflight_.out(p.slot)) return false;
  RequestRecord& rec = seg_.record(p.slot);
  const SlotCtl c = SlotCtl::unpack(ctl);
  const auto attempt = static_cast<uint8_t>(c.attempt + 1);
  rec.attempts = attempt;
  rec.dispatched_mono_ns = cycle_.now_ns;
  // The worker writes its start here; a late write by a worker that held
  // an earlier dispatch is told apart by being older than this dispatch.
  store_relaxed(rec.started_mono_ns, uint64_t{0});
  if (attempt == 1) rec.first_attempt_unix_ns = cycle_.unix_now_ns();
  SlotCtl next = c;
  next.state = SlotState::kAssigned;
  next.attempt = attempt;
  next.owner = static_cast<uint16_t>(worker);
  return seg_.pool().transition(p.slot, ctl, next);
}

void Dispatcher::unassign(const Pending& p, uint32_t worker) {
  SlotPool& pool = seg_.pool();
  uint64_t ctl = pool.load(p.slot);
  SlotCtl c = SlotCtl::unpack(ctl);
  if (c.state != SlotState::kAssigned || c.owner != worker || c.generation != p.generation) return;
  SlotCtl back = with_state(c, SlotState::kPending, kOwnerAgent);
  back.attempt = static_cast<uint8_t>(c.attempt - 1);
  if (pool.transition(p.slot, ctl, back)) seg_.record(p.slot).attempts = back.attempt;
}

bool Dispatcher::return_unstarted(uint32_t slot, uint64_t ctl, SlotCtl c) {
  SlotCtl back = with_state(c, SlotState::kPending, kOwnerAgent);
  back.attempt = static_cast<uint8_t>(c.attempt > 0 ? c.attempt - 1 : 0);
  if (!seg_.pool().transition(slot, ctl, back)) return false;
  RequestRecord& rec = seg_.record(slot);
  rec.attempts = back.attempt;
  (void)inflight_.release(slot);
  scheduler_.return_front(
      Pending{slot, c.generation, load_relaxed(rec.eligible_mono_ns), ledger_.facts(slot).band});
  return true;
}

void Dispatcher::note_dispatched(const Pending& p, uint32_t worker, uint8_t attempt) {
  metrics_.waited(p.band, ledger_.column(p.slot), cycle_.since(p.eligible_ns));
  scheduler_.start_deadline(
      Timer{scheduler_.deadline_for(cycle_.now_ns), p.slot, p.generation, attempt});
  emitter_.emit(EventKind::kAssigned, p.slot, Status::kAssigned);
  wake_.worker(worker);
  ++counters_.dispatched;
}

void Dispatcher::see_worker(uint32_t id, uint32_t incarnation, uint32_t type_count) {
  PERFQ_ASSERT(id < views_.size());
  WorkerView& v = views_[id];
  if (v.incarnation != incarnation || v.incarnation == 0) {
    forget_worker(id);
    v.incarnation = incarnation == 0 ? 1 : incarnation;
  }
  if (type_count != v.type_count) routes_dirty_ = true;
}

void Dispatcher::adopt_worker(uint32_t id, uint32_t incarnation) noexcept {
  PERFQ_ASSERT(id < views_.size());
  // Known before the first liveness pass, which must not start it afresh.
  views_[id].incarnation = incarnation == 0 ? 1 : incarnation;
}

void Dispatcher::mark_evicted(uint32_t id) noexcept {
  PERFQ_ASSERT(id < views_.size());
  views_[id].evicted = true;
}

void Dispatcher::forget_worker(uint32_t id) noexcept {
  PERFQ_ASSERT(id < views_.size());
  inflight_.write_off(id);
  wake_.forget_worker(id);
  views_[id] = WorkerView{};
  routes_dirty_ = true;
}

void Dispatcher::refresh_routes() {
  routes_dirty_ = false;
  for (auto& [_, r] : routes_) {
    r.workers.clear();
    r.batch_workers.clear();
  }
  active_workers_.clear();
  for (uint32_t w = 0; w < views_.size(); ++w) {
    if (views_[w].incarnation == 0) continue;
    active_workers_.push_back(w);  // results are settled even from an evicted worker
    if (!views_[w].evicted) route_worker(w);
  }
  auto route = [this](std::string_view type) {
    auto r = routes_.find(type);
    return r == routes_.end() ? nullptr : &r->second;
  };
  // Gathered requests of a type that lost its batch workers, and requests
  // that waited for a worker now that their type may have one, go back to
  // the front of their bands, oldest first.
  gathering_.release_if(
      [&](std::string_view type) {
        const TypeRoute* r = route(type);
        return r == nullptr || r->batch_workers.empty();
      },
      [this](const Pending& p) { scheduler_.return_front(p); });
  scheduler_.release_waiting([&](std::string_view type) {
    const TypeRoute* r = route(type);
    return r != nullptr && !r->workers.empty();
  });
}

// The worker's record is another process's: its counts are clamped and
// its type names validated before they route anything.
void Dispatcher::route_worker(uint32_t w) {
  shm::ClientRecord& rec = seg_.client(w);
  // acquire: pairs with the release store of type_count in add_client_type.
  const uint32_t tc = std::min(load_acquire(rec.type_count), shm::kMaxTypesPerWorker);
  views_[w].type_count = tc;
  views_[w].max_inflight =
      std::clamp<uint32_t>(load_relaxed(rec.max_inflight), 1, seg_.geometry().client_ring_capacity);
  for (uint32_t k = 0; k < tc; ++k) {
    const shm::TypeName& t = rec.types[k];
    const std::string_view name(t.text, std::min<size_t>(t.len, kTypeMaxBytes));
    if (!valid_type(name)) continue;
    TypeRoute& r = routes_[std::string(name)];
    r.workers.push_back(w);
    if (t.batch != 0) r.batch_workers.push_back(w);
  }
}

}  // namespace perfq::agent
