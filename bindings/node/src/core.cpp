#include "core.hpp"

#include <chrono>
#include <span>
#include <utility>

namespace perfq::node {

namespace {

using namespace std::chrono_literals;

// Bounds on every wait of a native thread: how late it notices close().
constexpr auto kCompletionWait = 50ms;
constexpr auto kEventPollInterval = 25ms;
// The take thread parks at most this long (it rechecks close()).
constexpr uint64_t kTakePark = 50'000'000;
// Dispatches the take thread takes before it hands them over.
constexpr int kTakeMax = 256;
constexpr size_t kEventPollMax = 1024;
// Events held for a main thread that lags; beyond it they are dropped and
// reported as missed (SPEC §5: a slow subscriber loses events).
constexpr size_t kEventsQueuedMax = 65536;

}  // namespace

Core::~Core() {
  shutdown();
}

Result<void> Core::connect() {
  std::lock_guard lock(mu_);
  if (stop_) return Error{Errc::kInternal, "closed"};
  if (producer_) return {};
  auto p = Producer::connect(queue_);
  if (!p) return p.error();
  producer_ = std::shared_ptr<Producer>(std::move(*p));
  CompletionPumpOptions opt;
  opt.slice = kCompletionWait;
  // On the completion thread: one wake-up of the main thread, which then
  // takes every settled outcome (take_settled()).
  pump_ = std::make_unique<CompletionPump>(
      *producer_,
      [this](std::span<const uint64_t>) {
        std::lock_guard signal_lock(mu_);
        signal(settled_tsfn_, settled_signalled_);
      },
      opt);
  return {};
}

std::shared_ptr<Producer> Core::producer() {
  std::lock_guard lock(mu_);
  return producer_;
}

void Core::track(uint64_t request_id, Future f, bool forget) {
  std::lock_guard lock(mu_);
  if (stop_ || !pump_) return;  // closed meanwhile: nobody can await it any more
  if (forget) {
    // Tracked so the completion thread keeps draining until it settles.
    (void)pump_->track(request_id, std::move(f));
    (void)pump_->forget(request_id);
    return;
  }
  // Settled before it was tracked: the pump keeps it but does not notify,
  // so hand it over from here.
  if (pump_->track(request_id, std::move(f))) signal(settled_tsfn_, settled_signalled_);
}

bool Core::tracked(uint64_t request_id) {
  std::lock_guard lock(mu_);
  // Pending, or settled and its hand-over to the main thread on its way.
  return pump_ && pump_->state(request_id) != CompletionPump::State::kUnknown;
}

std::vector<Outcome> Core::take_settled() {
  std::lock_guard lock(mu_);
  // The flag drops before the pump is emptied, both under mu_: an outcome
  // settling after this is signalled anew.
  settled_signalled_ = false;
  if (!pump_) return {};
  return pump_->collect_all();
}

void Core::signal(napi_threadsafe_function fn, bool& pending) {
  // Caller holds mu_. One wake-up in flight at a time: the main thread
  // takes everything queued when it runs.
  if (pending || tsfns_released_) return;
  if (napi_call_threadsafe_function(fn, nullptr, napi_tsfn_nonblocking) == napi_ok) pending = true;
}

Result<void> Core::events_enable(bool on) {
  bool need_reader = false;
  {
    std::lock_guard lock(mu_);
    if (stop_) return {};
    need_reader = on && !reader_held_ && !fresh_reader_;
  }
  // Attached here, on the caller's thread (bounded), so a queue without a
  // segment is an error for on(), not a thread retrying in the background.
  std::unique_ptr<EventReader> reader;
  if (need_reader) {
    auto r = EventReader::connect(queue_);
    if (!r) return r.error();
    reader = std::move(*r);
  }
  std::lock_guard lock(mu_);
  if (stop_) return {};
  events_on_ = on;
  if (reader) fresh_reader_ = std::move(reader);
  if (on && !events_.joinable()) events_ = std::thread([this] { events_loop(); });
  events_cv_.notify_all();
  return {};
}

std::vector<EventBatch> Core::take_events() {
  std::lock_guard lock(mu_);
  events_signalled_ = false;
  events_queued_ = 0;
  return std::exchange(event_batches_, {});
}

void Core::events_loop() {
  std::unique_ptr<EventReader> reader;
  std::vector<Event> got;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      if (!events_on_) {
        reader.reset();  // paused: a new listener starts from "now"
        reader_held_ = false;
      }
      events_cv_.wait(lock, [&] { return stop_ || events_on_; });
      if (stop_) return;
      if (fresh_reader_) reader = std::move(fresh_reader_);
      reader_held_ = reader != nullptr;
    }
    if (!reader) {
      // Paused and resumed while this thread let its reader go: the queue
      // was attached a moment ago, so this attach is expected to succeed.
      auto r = EventReader::connect(queue_);
      if (!r) {
        std::unique_lock lock(mu_);
        events_cv_.wait_for(lock, 1s, [&] { return stop_; });
        continue;
      }
      reader = std::move(*r);
      std::lock_guard lock(mu_);
      reader_held_ = true;
    }
    got.clear();
    const uint64_t missed_before = reader->missed();
    const size_t n = reader->poll(got, kEventPollMax);
    const uint64_t missed = reader->missed() - missed_before;
    if (n > 0 || missed > 0) {
      std::lock_guard lock(mu_);
      EventBatch b;
      b.missed_before = missed + std::exchange(events_dropped_, 0);
      if (events_queued_ + n > kEventsQueuedMax) {
        events_dropped_ += n;  // told to the listeners with the next batch
      } else {
        // One poll never spans a loss: its events sit just before position().
        uint64_t pos = reader->position() - n;
        b.events.reserve(n);
        for (const Event& e : got) b.events.push_back({pos++, e});
        events_queued_ += n;
      }
      if (!b.events.empty() || b.missed_before > 0) {
        event_batches_.push_back(std::move(b));
        signal(events_tsfn_, events_signalled_);
      }
    }
    if (n == kEventPollMax) continue;  // more may be waiting
    std::unique_lock lock(mu_);
    events_cv_.wait_for(lock, kEventPollInterval, [&] { return stop_; });
  }
}

namespace {

JobCopy copy_job(const Job& j) {
  JobCopy c;
  c.request_id = j.request_id;
  c.type = std::string(j.type);
  c.user_id = std::string(j.user_id);
  c.mode = j.mode;
  c.priority = j.priority;
  c.attempt = j.attempt;
  c.payload.assign(reinterpret_cast<const char*>(j.payload.data()), j.payload.size());
  c.metadata = std::string(j.metadata);
  return c;
}

}  // namespace

Result<void> Core::add_processor(const std::string& type, bool batch, uint32_t concurrency,
                                 uint32_t handler, bool raw) {
  std::lock_guard wlock(worker_mu_);
  if (closed() || closing()) return Error{Errc::kInternal, "closed"};
  if (!worker_) {
    auto w = Worker::connect(queue_);
    if (!w) return w.error();
    worker_ = std::move(*w);
  }
  uint32_t total = 0;
  {
    std::lock_guard lock(calls_mu_);
    for (const Handler& h : handlers_) {
      if (h.type == type && h.batch != batch) {
        return Error{Errc::kConflict,
                     "the type is registered here with the other kind of processor"};
      }
    }
    if (handlers_.size() <= handler) handlers_.resize(handler + 1);
    // A later registration of the type takes its dispatches from now on.
    for (Handler& h : handlers_) {
      if (h.type == type) h.type.clear();
    }
    handlers_[handler] = Handler{type, batch, raw, concurrency, 0};
    for (const Handler& h : handlers_) total += h.type.empty() ? 0 : h.limit;
  }
  // Twice what runs at once may wait in the worker's ring (the next
  // dispatch is there when a processor finishes); not more, so the rest
  // goes to other workers. Read by the agent when the types change, next.
  worker_->set_max_inflight(2 * total);
  if (auto r = worker_->declare_type(type, batch); !r) return r.error();
  if (!take_.joinable()) take_ = std::thread([this] { take_loop(); });
  return {};
}

bool Core::admit(std::string_view type, bool batch) {
  std::lock_guard lock(calls_mu_);
  admitted_handler_ = kNoHandler;
  // A type served by a batch processor gets its single dispatches as
  // batches of one (as Worker::do_work does).
  (void)batch;
  for (uint32_t k = 0; k < handlers_.size(); ++k) {
    Handler& h = handlers_[k];
    if (h.type != type) continue;
    if (h.running >= h.limit) return false;
    ++h.running;
    admitted_handler_ = k;
    return true;
  }
  return true;  // no registration for it: handed over, and JS fails it
}

void Core::accept(std::span<const Job> jobs, std::span<const Held> held, bool batch) {
  std::lock_guard lock(calls_mu_);
  const uint32_t handler = admitted_handler_;
  if (held.empty()) {
    // Taken back by the agent before it started: the room goes back.
    if (handler != kNoHandler) --handlers_[handler].running;
    return;
  }
  Dispatch d;
  d.handler = handler;
  d.batch = handler != kNoHandler ? handlers_[handler].batch : batch;
  d.raw = handler != kNoHandler && handlers_[handler].raw;
  d.jobs.reserve(jobs.size());
  for (size_t k = 0; k < jobs.size(); ++k) {
    uint32_t t = 0;
    if (!free_tickets_.empty()) {
      t = free_tickets_.back();
      free_tickets_.pop_back();
    } else {
      t = static_cast<uint32_t>(tickets_.size());
      tickets_.emplace_back();
    }
    tickets_[t] = Ticket{held[k], handler, k == 0, true};
    JobCopy c = copy_job(jobs[k]);
    c.ticket = t;
    d.jobs.push_back(std::move(c));
  }
  calls_.push_back(std::move(d));
}

std::vector<Dispatch> Core::take_calls() {
  std::vector<Dispatch> out;
  {
    std::lock_guard lock(mu_);
    calls_signalled_ = false;
  }
  // The flag drops before the calls are taken: a batch accepted after
  // this is signalled anew.
  std::lock_guard lock(calls_mu_);
  out.swap(calls_);
  return out;
}

void Core::report(std::span<const JsReply> replies) {
  std::lock_guard wlock(worker_mu_);
  if (!worker_) return;  // closed: the agent took the attempts back
  std::vector<std::pair<Held, const JsReply*>> settle;
  settle.reserve(replies.size());
  bool freed = false;
  {
    std::lock_guard lock(calls_mu_);
    for (const JsReply& r : replies) {
      if (r.ticket >= tickets_.size() || !tickets_[r.ticket].live) continue;
      Ticket& t = tickets_[r.ticket];
      t.live = false;
      if (t.unit && t.handler != kNoHandler && handlers_[t.handler].running > 0) {
        --handlers_[t.handler].running;
        freed = true;
      }
      settle.emplace_back(t.held, &r);
      free_tickets_.push_back(r.ticket);
    }
  }
  for (const auto& [held, r] : settle) {
    worker_->report(held, r->kind == 0   ? Reply::ok(r->text)
                          : r->kind == 2 ? Reply::permanent_error(r->text)
                                         : Reply::error(r->text));
  }
  if (!settle.empty()) worker_->announce();
  if (freed) {
    // Seen by the take thread's park (which re-checks after announcing
    // itself), so a take that found no room never sleeps through this.
    room_freed_.store(true, std::memory_order_release);
    worker_->unpark();
  }
}

void Core::take_loop() {
  // worker_ is set before this thread starts and reset only after it is
  // joined (shutdown), so it is read here without worker_mu_.
  Worker& w = *worker_;
  const auto admit_fn = [this](std::string_view type, bool batch) { return admit(type, batch); };
  const auto sink = [this](std::span<const Job> jobs, std::span<const Held> held, bool batch) {
    accept(jobs, held, batch);
  };
  while (!closing()) {
    room_freed_.store(false, std::memory_order_relaxed);
    const int n = w.take(kTakeMax, admit_fn, sink);
    bool handed = false;
    {
      std::lock_guard lock(calls_mu_);
      handed = !calls_.empty();
    }
    if (handed) {
      std::lock_guard lock(mu_);
      signal(calls_tsfn_, calls_signalled_);
    }
    if (n > 0) continue;
    // Nothing started: the ring is empty, or every registration whose type
    // waits is full. Wait for either to change, bounded.
    w.park(kTakePark, [this] { return closing() || room_freed_.load(std::memory_order_acquire); });
  }
}

void Core::shutdown() {
  std::lock_guard once(shutdown_mu_);
  if (closed()) return;
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  events_cv_.notify_all();
  closing_.store(true, std::memory_order_release);
  {
    std::lock_guard wlock(worker_mu_);
    if (worker_) worker_->unpark();
    if (take_.joinable()) take_.join();
    // The worker deregisters: the agent takes back what it held (unstarted
    // attempts uncounted, started ones as WORKER_DIED, retried).
    worker_.reset();
  }
  {
    std::lock_guard lock(calls_mu_);
    calls_.clear();
  }
  // stop_ is set: connect() no longer creates a pump, so pump_ is stable.
  // Closed without mu_, which its completion thread takes to signal.
  if (pump_) pump_->close();  // joins the completion thread, drops the futures
  if (events_.joinable()) events_.join();
  std::unique_ptr<CompletionPump> pump;
  std::shared_ptr<Producer> producer;
  {
    std::lock_guard lock(mu_);
    event_batches_.clear();
    pump.swap(pump_);
    producer.swap(producer_);
  }
  pump.reset();  // a waiting submit still holding it releases it last
  closed_.store(true, std::memory_order_release);
}

napi_status Core::ref_settled(napi_env env, bool on) {
  std::lock_guard lock(mu_);
  if (tsfns_released_) return napi_ok;
  return on ? napi_ref_threadsafe_function(env, settled_tsfn_)
            : napi_unref_threadsafe_function(env, settled_tsfn_);
}

napi_status Core::ref_events(napi_env env, bool on) {
  std::lock_guard lock(mu_);
  if (tsfns_released_) return napi_ok;
  return on ? napi_ref_threadsafe_function(env, events_tsfn_)
            : napi_unref_threadsafe_function(env, events_tsfn_);
}

napi_status Core::ref_calls(napi_env env, bool on) {
  std::lock_guard lock(mu_);
  if (tsfns_released_) return napi_ok;
  return on ? napi_ref_threadsafe_function(env, calls_tsfn_)
            : napi_unref_threadsafe_function(env, calls_tsfn_);
}

napi_status Core::release_tsfns() {
  std::lock_guard lock(mu_);
  if (tsfns_released_) return napi_ok;
  tsfns_released_ = true;
  napi_status s = napi_release_threadsafe_function(settled_tsfn_, napi_tsfn_release);
  const napi_status s2 = napi_release_threadsafe_function(events_tsfn_, napi_tsfn_release);
  const napi_status s3 = napi_release_threadsafe_function(calls_tsfn_, napi_tsfn_release);
  if (s == napi_ok) s = s2;
  if (s == napi_ok) s = s3;
  return s;
}

}  // namespace perfq::node
