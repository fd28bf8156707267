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
constexpr auto kCallWaitSlice = 50ms;
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

void Core::track(uint64_t request_id, Future f) {
  std::lock_guard lock(mu_);
  if (stop_ || !pump_) return;  // closed meanwhile: nobody can await it any more
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

Reply Core::call_js(uint32_t handler, bool batch, std::vector<JobCopy> jobs,
                    std::vector<Reply>* batch_out) {
  auto call = std::make_shared<Call>();
  call->handler = handler;
  call->batch = batch;
  call->jobs = std::move(jobs);
  if (workers_stop_.load(std::memory_order_acquire)) {
    return Reply::error("worker closed before the attempt started");
  }
  auto* data = new std::shared_ptr<Call>(call);
  if (napi_call_threadsafe_function(calls_tsfn_, data, napi_tsfn_nonblocking) != napi_ok) {
    delete data;
    return Reply::error("worker closed before the attempt started");
  }
  std::unique_lock lock(call->mu);
  while (!call->done) {
    if (workers_stop_.load(std::memory_order_acquire)) {
      call->abandoned = true;
      return Reply::error("worker closed before the processor finished");
    }
    call->cv.wait_for(lock, kCallWaitSlice);
  }
  if (batch_out != nullptr) {
    *batch_out = std::move(call->replies);
    return {};
  }
  if (call->replies.empty()) return Reply::error("processor returned no reply");
  return std::move(call->replies.front());
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

Result<void> Core::add_workers(const std::string& type, bool batch, uint32_t n, uint32_t handler) {
  std::lock_guard lock(workers_mu_);
  if (closed()) return Error{Errc::kInternal, "closed"};
  // All or nothing: every worker attaches and registers before any runs; on
  // a failure the ones attached so far are destroyed (they deregister, and
  // the agent takes back whatever it handed them).
  std::vector<std::unique_ptr<Worker>> fresh;
  for (uint32_t i = 0; i < n; ++i) {
    // One dispatch at a time: the run thread serves one attempt at a time,
    // and an attempt's processing time counts from its dispatch, so
    // dispatches queued behind a slow processor would time out unstarted
    // (concurrency comes from more workers, not deeper rings).
    WorkerOptions opt;
    opt.max_inflight = 1;
    auto w = Worker::connect(queue_, opt);
    if (!w) return w.error();
    Result<void> r;
    if (batch) {
      r = (*w)->register_batch_processor(type, [this, handler](std::span<const Job> jobs) {
        std::vector<JobCopy> copies;
        copies.reserve(jobs.size());
        for (const Job& j : jobs) copies.push_back(copy_job(j));
        std::vector<Reply> out;
        Reply early = call_js(handler, true, std::move(copies), &out);
        if (out.empty() && early.kind != AttemptResult::kOk) {
          out.assign(jobs.size(), early);  // abandoned: every item fails its attempt
        }
        return out;
      });
    } else {
      r = (*w)->register_processor(type, [this, handler](const Job& job) {
        std::vector<JobCopy> copies;
        copies.push_back(copy_job(job));
        return call_js(handler, false, std::move(copies), nullptr);
      });
    }
    if (!r) return r.error();
    fresh.push_back(std::move(*w));
  }
  for (auto& w : fresh) {
    Running run;
    run.worker = std::move(w);
    Worker* raw = run.worker.get();
    run.thread = std::thread([this, raw] { raw->run(closing_); });
    workers_.push_back(std::move(run));
  }
  return {};
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
  workers_stop_.store(true, std::memory_order_release);
  {
    std::lock_guard lock(workers_mu_);
    for (Running& r : workers_) {
      if (r.thread.joinable()) r.thread.join();
    }
    workers_.clear();  // each Worker deregisters: the agent redispatches what it held
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
