#include "perfq/client/worker.hpp"

#include <algorithm>
#include <cstring>
#include <thread>
#include <vector>

#include "perfq/core/atomic.hpp"
#include "perfq/core/clock.hpp"
#include "perfq/core/slot_pool.hpp"
#include "perfq/shm/client_registry.hpp"
#include "perfq/shm/futex.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq {

namespace {

// Attempts run per duty cycle before results are announced to the agent.
constexpr int kRunBatch = 256;

}  // namespace

Worker::Worker(std::shared_ptr<shm::Segment> seg, uint32_t id, WorkerOptions opt)
    : seg_(std::move(seg)),
      id_(id),
      opt_(opt),
      clock_(opt.clock != nullptr ? *opt.clock : system_clock()) {
  beat_ = std::thread([this] { beat_loop(); });
}

void Worker::beat_loop() {
  shm::Segment& seg = *seg_;
  const uint64_t idle_ms = std::max<uint64_t>(1, load_relaxed(seg.header().worker_idle_timeout_ms));
  // A quarter of the idle timeout: three beats can be late before the agent
  // gives up on this worker.
  const auto period = std::chrono::microseconds(idle_ms * 1000 / 4);
  std::unique_lock lock(beat_mu_);
  while (!beat_stop_) {
    aref(seg.client(id_.load(std::memory_order_relaxed)).heartbeat_mono_ns)
        .store(mono_now_ns(), std::memory_order_relaxed);
    beat_cv_.wait_for(lock, period, [this] { return beat_stop_; });
  }
}

Result<std::unique_ptr<Worker>> Worker::connect(std::string_view queue, WorkerOptions opt) {
  auto seg = shm::Segment::attach(queue);
  if (!seg) return seg.error();
  return connect(std::shared_ptr<shm::Segment>(std::move(seg.value())), opt);
}

Result<std::unique_ptr<Worker>> Worker::connect(std::shared_ptr<shm::Segment> seg,
                                                WorkerOptions opt) {
  const uint32_t cap = seg->geometry().client_ring_capacity;
  auto id = shm::join(*seg, shm::kRoleWorker, std::clamp<uint32_t>(opt.max_inflight, 1, cap));
  if (!id) return id.error();
  return std::unique_ptr<Worker>(new Worker(std::move(seg), *id, opt));
}

Worker::~Worker() {
  {
    std::lock_guard lock(beat_mu_);
    beat_stop_ = true;
  }
  beat_cv_.notify_all();
  beat_.join();
  shm::close_client(*seg_, client_id());
  shm::notify(seg_->header().doorbell);
}

// The agent evicted this worker (it stopped heart-beating: the process was
// stopped or starved). Its attempts were taken back; register anew with the
// same processors and hand the old record back. Run thread only.
bool Worker::rejoin_if_evicted() {
  shm::Segment& seg = *seg_;
  const uint32_t old = id_.load(std::memory_order_relaxed);
  if (static_cast<shm::ClientState>(load_acquire(seg.client(old).state)) !=
      shm::ClientState::kEvicted) {
    return false;
  }
  const uint32_t cap = seg.geometry().client_ring_capacity;
  auto id = shm::join(seg, shm::kRoleWorker, std::clamp<uint32_t>(opt_.max_inflight, 1, cap));
  if (!id) return false;  // tried again at the next idle pass
  for (const auto& p : processors_) {
    (void)shm::add_client_type(seg, *id, p.type, p.batch_fn != nullptr);
  }
  aref(seg.client(*id).heartbeat_mono_ns).store(mono_now_ns(), std::memory_order_relaxed);
  id_.store(*id, std::memory_order_relaxed);
  kept_.clear();  // the agent took back what the old record held
  shm::close_client(seg, old);
  ++rejoins_;
  shm::notify(seg.header().doorbell);
  return true;
}

Result<void> Worker::register_processor(std::string_view type, Processor fn) {
  return add_type(type, std::move(fn), nullptr);
}

Result<void> Worker::register_batch_processor(std::string_view type, BatchProcessor fn) {
  return add_type(type, nullptr, std::move(fn));
}

// The processors of a declared type run in the binding, which takes its
// dispatches with take(); do_work() (not meant for such a worker) fails them.
Result<void> Worker::declare_type(std::string_view type, bool batch) {
  if (batch) {
    return add_type(type, nullptr, [](std::span<const Job> jobs) {
      return std::vector<Reply>(jobs.size(), Reply::error("this type is run by take()"));
    });
  }
  return add_type(
      type, [](const Job&) { return Reply::error("this type is run by take()"); }, nullptr);
}

void Worker::set_max_inflight(uint32_t n) noexcept {
  const uint32_t cap = seg_->geometry().client_ring_capacity;
  opt_.max_inflight = std::clamp<uint32_t>(n, 1, cap);
  aref(seg_->client(client_id()).max_inflight).store(opt_.max_inflight, std::memory_order_relaxed);
}

Result<void> Worker::add_type(std::string_view type, Processor fn, BatchProcessor batch_fn) {
  if (!valid_type(type)) {
    return {Errc::kInvalidRequest, "type must be 1..64 bytes of [A-Za-z0-9._:-]"};
  }
  const bool batch = batch_fn != nullptr;
  for (auto& p : processors_) {
    if (p.type != type) continue;
    if ((p.batch_fn != nullptr) != batch) {
      return {Errc::kConflict, "the type is registered here with the other kind of processor"};
    }
    p.fn = std::move(fn);
    p.batch_fn = std::move(batch_fn);
    return {};
  }
  if (auto r = shm::add_client_type(*seg_, client_id(), type, batch); !r) return r;
  processors_.push_back({std::string(type), std::move(fn), std::move(batch_fn)});
  shm::notify(seg_->header().doorbell);
  return {};
}

namespace {

// The request's bytes, copied once out of the slot into `copy` (a buffer
// this worker reuses; it grows to its largest request and then stops
// allocating), and the job's views into the copy. The slot is not the
// processor's to read: after a timeout the agent takes it back, and it may
// hold another request while the processor still runs (issue 13, defect 6).
void copy_request(const RequestRecord& rec, const std::byte* payload, uint32_t payload_max,
                  uint8_t attempt, std::vector<std::byte>& copy, Job& job) {
  const size_t type_len = std::min<size_t>(load_relaxed(rec.type_len), kTypeMaxBytes);
  const size_t user_len = std::min<size_t>(load_relaxed(rec.user_len), kUserIdMaxBytes);
  const size_t meta_len = std::min<size_t>(load_relaxed(rec.metadata_len), kMetadataMaxBytes);
  const size_t payload_len = std::min<size_t>(load_relaxed(rec.payload_len), payload_max);
  copy.resize(type_len + user_len + meta_len + payload_len);
  std::byte* out = copy.data();
  auto take = [&out](const void* from, size_t n) {
    std::memcpy(out, from, n);
    const std::byte* at = out;
    out += n;
    return at;
  };
  const auto* type = reinterpret_cast<const char*>(take(rec.type, type_len));
  const auto* user = reinterpret_cast<const char*>(take(rec.user_id, user_len));
  const auto* meta = reinterpret_cast<const char*>(take(rec.metadata, meta_len));
  const std::byte* body = take(payload, payload_len);
  job.request_id = load_relaxed(rec.request_id);
  job.type = std::string_view(type, type_len);
  job.user_id = std::string_view(user, user_len);
  const uint8_t mode = load_relaxed(rec.mode);
  job.mode = static_cast<Mode>(mode < kModeCount ? mode : 0);
  job.priority = load_relaxed(rec.priority);
  job.attempt = attempt;
  job.payload = {body, payload_len};
  job.metadata = std::string_view(meta, meta_len);
}

}  // namespace

// Takes one dispatched attempt: false if the agent revoked it meanwhile.
bool Worker::start(uint64_t ref, Held& out, std::vector<std::byte>& copy, Job& job) {
  shm::Segment& seg = *seg_;
  SlotPool& pool = seg.pool();
  const uint32_t slot = slot_ref_index(ref);
  if (slot >= seg.geometry().slot_count) return false;  // never follow garbage
  const uint32_t id = client_id();
  uint64_t ctl = pool.load(slot);
  const SlotCtl c = SlotCtl::unpack(ctl);
  if (c.state != SlotState::kAssigned || c.owner != id ||
      c.generation != slot_ref_generation(ref)) {
    return false;  // revoked or stale
  }
  // The processing timeout counts from here (SPEC §4). Written before the
  // start so the agent, which reads it once it sees PROCESSING, finds it;
  // if the start loses to the agent, the agent tells the stale time apart
  // by its being older than the next dispatch.
  store_relaxed(seg.record(slot).started_mono_ns, clock_.now_mono_ns());
  SlotCtl next = c;
  next.state = SlotState::kProcessing;
  if (!pool.transition(slot, ctl, next)) return false;
  out = Held{slot, id, next.pack(), ref};

  copy_request(seg.record(slot), seg.payload(slot), seg.geometry().slot_payload_bytes, c.attempt,
               copy, job);
  return true;
}

void Worker::report(const Held& s, const Reply& reply) {
  shm::Segment& seg = *seg_;
  SlotPool& pool = seg.pool();
  // Take the right to write the result. Losing means the agent revoked the
  // attempt (timeout, or it judged us dead): the late result is dropped.
  uint64_t ctl = s.ctl;
  SlotCtl next = SlotCtl::unpack(ctl);
  next.state = SlotState::kReporting;
  if (!pool.transition(s.slot, ctl, next)) return;
  ctl = next.pack();
  RequestRecord& rec = seg.record(s.slot);
  const uint32_t cap = seg.geometry().slot_payload_bytes;
  // A result that does not fit is not cut (a cut JSON text is garbage to
  // the producer): the attempt fails for good, and the DLQ says why. An
  // error message is only text, and is cut to fit.
  AttemptResult kind = reply.kind;
  std::string_view body = reply.body;
  std::string too_large;
  if (kind == AttemptResult::kOk && body.size() > cap) {
    too_large = "the result (";
    too_large += std::to_string(body.size());
    too_large += " bytes) is larger than slot_payload_bytes (";
    too_large += std::to_string(cap);
    too_large += ")";
    kind = AttemptResult::kPermanentError;
    body = too_large;
  }
  const auto len = static_cast<uint32_t>(std::min<size_t>(body.size(), cap));
  if (len > 0) std::memcpy(seg.result(s.slot), body.data(), len);
  rec.result_len = len;
  rec.result_kind = static_cast<uint8_t>(kind);
  rec.result_error =
      static_cast<uint8_t>(kind == AttemptResult::kOk ? Errc::kOk : Errc::kProcessorError);
  next.state = SlotState::kReported;
  // release (in transition): the agent reads the result after acquiring it.
  if (!pool.transition(s.slot, ctl, next)) return;
  // The result ring is as large as the pool, so it cannot be full. It goes
  // to the record the attempt was dispatched to (this worker may have
  // rejoined since; the agent took those attempts back, so the transitions
  // above lost and nothing gets here for them).
  if (s.client < seg.geometry().max_clients) (void)seg.result_ring(s.client).try_push(s.ref);
}

void Worker::announce() noexcept {
  shm::notify(seg_->header().doorbell);
}

namespace {

template <class Fn>
Reply call_guarded(Fn&& fn) {
  try {
    return fn();
  } catch (const std::exception& e) {
    return Reply::error(std::string("processor threw: ") + e.what());
  } catch (...) {
    return Reply::error("processor threw");
  }
}

}  // namespace

void Worker::run_here(std::span<const Job> jobs, std::span<const Held> held) {
  if (held.empty()) return;
  // One dispatch carries one type (the agent batches per type).
  const std::string_view type = jobs.front().type;
  auto it = std::find_if(processors_.begin(), processors_.end(),
                         [&](const Registered& p) { return p.type == type; });
  if (it == processors_.end()) {
    const Reply none = Reply::error("no processor registered for this type in this worker");
    for (const Held& h : held) report(h, none);
  } else if (it->batch_fn != nullptr) {
    std::vector<Reply> replies;
    try {
      replies = it->batch_fn(jobs);
    } catch (const std::exception& e) {
      replies.assign(jobs.size(), Reply::error(std::string("processor threw: ") + e.what()));
    } catch (...) {
      replies.assign(jobs.size(), Reply::error("processor threw"));
    }
    for (size_t k = 0; k < held.size(); ++k) {
      report(held[k],
             k < replies.size() ? replies[k] : Reply::error("the batch processor gave no outcome"));
    }
  } else {
    for (size_t k = 0; k < held.size(); ++k) {
      report(held[k], call_guarded([&] { return it->fn(jobs[k]); }));
    }
  }
}

std::string_view Worker::peek_type(uint64_t ref, std::string& scratch) const {
  shm::Segment& seg = *seg_;
  const uint32_t slot = slot_ref_index(ref);
  if (slot >= seg.geometry().slot_count) return {};
  const SlotCtl c = SlotCtl::unpack(seg.pool().load(slot));
  if (c.state != SlotState::kAssigned || c.owner != client_id() ||
      c.generation != slot_ref_generation(ref)) {
    return {};
  }
  const RequestRecord& rec = seg.record(slot);
  const size_t len = std::min<size_t>(load_relaxed(rec.type_len), kTypeMaxBytes);
  scratch.assign(rec.type, len);
  return scratch;
}

bool Worker::start_dispatch(std::span<const uint64_t> refs, bool batch, const Admit& admit,
                            const Sink& sink, int& started) {
  std::string_view type;
  for (const uint64_t ref : refs) {
    type = peek_type(ref, type_scratch_);
    if (!type.empty()) break;
  }
  if (type.empty()) return true;  // every ref is stale: nothing to run, nothing to keep
  if (!admit(type, batch)) return false;
  started_.clear();
  jobs_.clear();
  if (copies_.size() < refs.size()) copies_.resize(refs.size());
  for (const uint64_t ref : refs) {
    Held h{};
    Job job;
    if (!start(ref, h, copies_[jobs_.size()], job)) continue;
    started_.push_back(h);
    jobs_.push_back(job);
  }
  // Called even with nothing started (the agent took the dispatch back
  // meanwhile), so the caller gives back the room it granted.
  sink(std::span<const Job>(jobs_), std::span<const Held>(started_), batch);
  started += static_cast<int>(started_.size());
  return true;
}

int Worker::take(int max_dispatches, const Admit& admit, const Sink& sink) {
  int started = 0;
  int dispatches = 0;
  // Kept dispatches first, in the order they came.
  kept_next_.clear();
  for (auto& d : kept_) {
    const bool batch = slot_ref_index(d.front()) == kBatchHeaderIndex;
    const std::span<const uint64_t> refs =
        batch ? std::span<const uint64_t>(d).subspan(1) : std::span<const uint64_t>(d);
    if (dispatches < max_dispatches && start_dispatch(refs, batch, admit, sink, started)) {
      ++dispatches;
      continue;
    }
    kept_next_.push_back(std::move(d));
  }
  kept_.swap(kept_next_);
  SpscRing ring = seg_->dispatch_ring(client_id());
  const uint32_t cap = ring.capacity();
  uint64_t ref = 0;
  // Bounded by one lap of entries taken, started or not: the ring's words
  // are shared memory, and a scribbled tail must not keep a worker here.
  // What is kept is bounded by the ring's capacity.
  uint32_t taken = 0;
  while (dispatches < max_dispatches && taken < cap && kept_.size() < cap && ring.try_pop(ref)) {
    ++taken;
    refs_.clear();
    refs_.push_back(ref);
    const bool batch = slot_ref_index(ref) == kBatchHeaderIndex;
    if (batch) {
      // A batch: its refs were pushed together with the header. Bounded by
      // what is left of the lap.
      const uint32_t count = std::min(slot_ref_generation(ref), cap - taken);
      uint64_t item = 0;
      for (uint32_t k = 0; k < count && ring.try_pop(item); ++k) refs_.push_back(item);
      taken += static_cast<uint32_t>(refs_.size() - 1);
    }
    const std::span<const uint64_t> refs =
        batch ? std::span<const uint64_t>(refs_).subspan(1) : std::span<const uint64_t>(refs_);
    if (start_dispatch(refs, batch, admit, sink, started)) {
      ++dispatches;
    } else {
      kept_.push_back(refs_);
    }
  }
  processed_.fetch_add(static_cast<uint64_t>(started), std::memory_order_relaxed);
  if (started == 0 && kept_.empty()) rejoin_if_evicted();
  return started;
}

void Worker::park(uint64_t timeout_ns, const std::function<bool()>& wake) {
  shm::Segment& seg = *seg_;
  const uint32_t id = client_id();
  SpscRing ring = seg.dispatch_ring(id);
  // A ring with entries wakes it only while take() could move them (what is
  // kept is bounded by the ring's capacity).
  shm::park(seg.client(id).dispatch_wake, timeout_ns,
            [&] { return (ring.size_approx() > 0 && kept_.size() < ring.capacity()) || wake(); });
}

void Worker::unpark() noexcept {
  shm::notify(seg_->client(client_id()).dispatch_wake);
}

int Worker::do_work() {
  return do_work(nullptr);
}

int Worker::do_work(const std::atomic<bool>* stop) {
  // Asked to stop: nothing more starts. What is still in the ring, or kept,
  // stays ASSIGNED and goes back to the agent, uncounted, when the worker
  // leaves (DECISIONS "A dead worker's attempt counts, if it started").
  auto admit = [stop](std::string_view, bool) {
    return stop == nullptr || !stop->load(std::memory_order_acquire);
  };
  auto sink = [this](std::span<const Job> jobs, std::span<const Held> held, bool) {
    run_here(jobs, held);
  };
  const int ran = take(kRunBatch, admit, sink);
  if (ran > 0) announce();
  return ran;
}

void Worker::run(const std::atomic<bool>& stop) {
  IdlePolicy idle(opt_.idle);
  while (!stop.load(std::memory_order_acquire)) {
    const int n = do_work(&stop);
    idle.idle(static_cast<uint64_t>(n), [&] {
      park(50'000'000, [&] { return !kept_.empty() || stop.load(std::memory_order_acquire); });
    });
  }
}

}  // namespace perfq
