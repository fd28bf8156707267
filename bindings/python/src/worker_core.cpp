#include "worker_core.hpp"

#include <span>
#include <utility>

namespace perfq::python {

namespace {

// Dispatches a worker may hold, and takes (then runs under one GIL hold).
constexpr uint32_t kMaxInflight = 16;
constexpr int kTakeMax = 16;
// The longest park of an idle run_worker (the slice timer also wakes it).
constexpr uint64_t kParkNs = 20'000'000;

// The Python adapter answers (kind, body): 0 ok, 1 error (retried),
// 2 permanent error (straight to the DLQ).
perfq::Reply to_reply(const py::handle& answer) {
  auto t = answer.cast<py::tuple>();
  const int kind = t[0].cast<int>();
  std::string body = t[1].cast<std::string>();
  if (kind == 0) return perfq::Reply::ok(std::move(body));
  if (kind == 2) return perfq::Reply::permanent_error(std::move(body));
  return perfq::Reply::error(std::move(body));
}

// Ends each slice of Worker::run: sets `slice_stop` every kSlice until it
// goes away (then joins its thread).
class SliceTimer {
 public:
  explicit SliceTimer(std::atomic<bool>& slice_stop)
      : thread_([this, &slice_stop] { loop(slice_stop); }) {}
  ~SliceTimer() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  SliceTimer(const SliceTimer&) = delete;
  SliceTimer& operator=(const SliceTimer&) = delete;

 private:
  void loop(std::atomic<bool>& slice_stop) {
    std::unique_lock lock(mu_);
    while (!stop_) {
      cv_.wait_for(lock, kSlice, [&] { return stop_; });
      slice_stop.store(true, std::memory_order_release);
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

}  // namespace

void WorkerCore::register_processor(const std::string& type, const py::object& adapter) {
  add(type, false, adapter);
}

void WorkerCore::register_batch_processor(const std::string& type, const py::object& adapter) {
  add(type, true, adapter);
}

void WorkerCore::add(const std::string& type, bool batch, const py::object& adapter) {
  perfq::Worker& w = worker();
  if (auto r = w.declare_type(type, batch); !r) raise_error(r.error());
  PyObject* fn = keep(adapter);
  for (Registered& reg : registered_) {
    if (reg.type == type) {
      reg.adapter = fn;  // declare_type refused a change of kind above
      return;
    }
  }
  registered_.push_back({type, batch, fn});
}

namespace {

py::tuple context_of(const TakenJob& j) {
  return py::make_tuple(format_id(j.request_id), j.type, j.user_id,
                        std::string(perfq::mode_name(j.mode)), j.priority, j.attempt, j.metadata,
                        j.payload.size());
}

}  // namespace

// With the GIL: runs one dispatch's processor and appends one reply per
// attempt to replies_.
void WorkerCore::run_taken(const Taken& t, py::list& awaitables, std::vector<Awaited>& awaited) {
  const size_t n = t.held.size();
  // A type served by a batch processor gets its single dispatches as
  // batches of one (as Worker::do_work does).
  const std::string& type = t.jobs.front().type;
  const Registered* reg = nullptr;
  for (const Registered& r : registered_) {
    if (r.type == type) reg = &r;
  }
  if (reg == nullptr) {
    replies_.insert(replies_.end(), n,
                    perfq::Reply::error("no processor registered for this type in this worker"));
    return;
  }
  if (stopping()) {
    // Interrupted earlier in this batch (KeyboardInterrupt): the attempts
    // started but are not run.
    replies_.insert(replies_.end(), n, perfq::Reply::error("the worker is stopping"));
    return;
  }
  const auto fn = py::reinterpret_borrow<py::object>(reg->adapter);
  const size_t base = replies_.size();
  // A dispatch's replies, all of them `r` (what it appended so far dropped).
  const auto fail_all = [&](const perfq::Reply& r) {
    replies_.resize(base);
    replies_.insert(replies_.end(), n, r);
  };
  try {
    if (!reg->batch) {
      // One call per attempt (a dispatch for a single processor holds one).
      for (const TakenJob& j : t.jobs) {
        py::object answer = fn(py::bytes(j.payload), context_of(j));
        if (!py::isinstance<py::tuple>(answer)) {
          // An async processor: awaited with the rest of the batch.
          awaitables.append(answer);
          awaited.push_back({replies_.size(), 1, false});
          replies_.push_back(perfq::Reply::error("the processor was not awaited"));
          continue;
        }
        replies_.push_back(to_reply(answer));
      }
      return;
    }
    py::list items;
    for (const TakenJob& j : t.jobs) {
      items.append(py::make_tuple(py::bytes(j.payload), context_of(j)));
    }
    py::object answers = fn(items);
    if (!py::isinstance<py::list>(answers)) {
      awaitables.append(answers);
      awaited.push_back({base, n, true});
      replies_.insert(replies_.end(), n, perfq::Reply::error("the processor was not awaited"));
      return;
    }
    size_t got = 0;
    for (const py::handle a : answers) {
      if (got == n) break;
      replies_.push_back(to_reply(a));
      ++got;
    }
    replies_.insert(replies_.end(), n - got,
                    perfq::Reply::error("the batch processor gave no result for this item"));
  } catch (py::error_already_set& e) {
    fail_all(interrupted(e));
  } catch (const std::exception&) {
    fail_all(perfq::Reply::error("the processor's answer could not be read"));
  }
}

// With the GIL: awaits every awaitable of the batch at once and puts each
// answer where its placeholder replies are.
void WorkerCore::settle_awaited(const py::list& awaitables, const std::vector<Awaited>& awaited) {
  const auto fill = [&](const Awaited& a, const perfq::Reply& r) {
    for (size_t k = 0; k < a.count; ++k) replies_[a.at + k] = r;
  };
  try {
    py::object answers = gather_(awaitables);
    size_t i = 0;
    for (const py::handle answer : answers) {
      if (i == awaited.size()) break;
      const Awaited& a = awaited[i++];
      try {
        if (!a.batch) {
          replies_[a.at] = to_reply(answer);
          continue;
        }
        size_t k = 0;
        for (const py::handle r : answer) {
          if (k == a.count) break;
          replies_[a.at + k++] = to_reply(r);
        }
        for (; k < a.count; ++k) {
          replies_[a.at + k] =
              perfq::Reply::error("the batch processor gave no result for this item");
        }
      } catch (const std::exception&) {
        fill(a, perfq::Reply::error("the processor's answer could not be read"));
      }
    }
  } catch (py::error_already_set& e) {
    // Only what is not an Exception gets here (the adapters catch the rest):
    // every awaited attempt fails and run_worker stops.
    const perfq::Reply r = interrupted(e);
    for (const Awaited& a : awaited) fill(a, r);
  } catch (const std::exception&) {
    for (const Awaited& a : awaited) {
      fill(a, perfq::Reply::error("the processor's answer could not be read"));
    }
  }
}

int WorkerCore::serve_batch() {
  taken_.clear();
  // Without the GIL: take and copy. A stop asked for leaves the rest
  // unstarted (it goes back to the agent uncounted when the worker leaves).
  const auto admit = [this](std::string_view, bool) {
    return !slice_stop_.load(std::memory_order_acquire) &&
           !closing_.load(std::memory_order_acquire);
  };
  const auto sink = [this](std::span<const perfq::Job> jobs, std::span<const perfq::Held> held,
                           bool batch) {
    if (held.empty()) return;
    Taken& t = taken_.emplace_back();
    t.batch = batch;
    t.held.assign(held.begin(), held.end());
    t.jobs.reserve(jobs.size());
    for (const perfq::Job& j : jobs) {
      TakenJob& d = t.jobs.emplace_back();
      d.request_id = j.request_id;
      d.type = std::string(j.type);
      d.user_id = std::string(j.user_id);
      d.metadata = std::string(j.metadata);
      d.payload.assign(reinterpret_cast<const char*>(j.payload.data()), j.payload.size());
      d.mode = j.mode;
      d.priority = j.priority;
      d.attempt = j.attempt;
    }
  };
  const int n = worker_->take(kTakeMax, admit, sink);
  if (taken_.empty()) return n;
  replies_.clear();
  {
    // The GIL once for everything taken.
    py::gil_scoped_acquire gil;
    gil_holds_.fetch_add(1, std::memory_order_relaxed);
    py::list awaitables;
    std::vector<Awaited> awaited;
    for (const Taken& t : taken_) run_taken(t, awaitables, awaited);
    if (!awaited.empty()) settle_awaited(awaitables, awaited);
  }
  // This thread is the result ring's only writer (run_worker runs on one
  // thread at a time, and nothing else reports).
  size_t k = 0;
  for (const Taken& t : taken_) {
    for (const perfq::Held& h : t.held) worker_->report(h, replies_[k++]);
  }
  worker_->announce();
  return n;
}

void WorkerCore::run(const py::object& stop, const py::object& gather) {
  begin_run();
  pending_.reset();
  gather_ = gather;
  std::optional<py::error_already_set> raised;
  {
    py::gil_scoped_release nogil;
    {
      SliceTimer timer(slice_stop_);
      serve_slices(stop, raised);
    }
    slice_stop_.store(false, std::memory_order_release);
    std::lock_guard lock(mu_);
    running_ = false;
    run_thread_ = {};
  }
  idle_cv_.notify_all();
  gather_ = py::object();
  finish_run(raised);
}

void WorkerCore::begin_run() {
  std::lock_guard lock(mu_);
  if (closed_) raise_closed();
  if (running_) raise_code(perfq::Errc::kConflict, "run_worker is already running");
  if (!worker_) {
    raise_code(perfq::Errc::kInvalidRequest, "register a processor before run_worker");
  }
  running_ = true;
  run_thread_ = std::this_thread::get_id();
}

void WorkerCore::serve_slices(const py::object& stop,
                              std::optional<py::error_already_set>& raised) {
  for (;;) {
    // One slice: batches until the slice timer (or close()) says stop,
    // parking while nothing is dispatched.
    while (!slice_stop_.load(std::memory_order_acquire)) {
      if (serve_batch() == 0) {
        worker_->park(kParkNs, [this] {
          return slice_stop_.load(std::memory_order_acquire) ||
                 closing_.load(std::memory_order_acquire);
        });
      }
    }
    if (closing_.load(std::memory_order_acquire)) break;
    if (!between_slices(stop, raised)) break;
    // A signal handler in between_slices may have called close().
    if (closing_.load(std::memory_order_acquire)) break;
    slice_stop_.store(false, std::memory_order_release);
  }
}

bool WorkerCore::between_slices(const py::object& stop,
                                std::optional<py::error_already_set>& raised) {
  py::gil_scoped_acquire gil;
  if (pending_) return false;
  if (PyErr_CheckSignals() != 0) {
    raised.emplace();
    return false;
  }
  try {
    if (!stop.is_none() && stop.attr("is_set")().cast<bool>()) return false;
  } catch (py::error_already_set& e) {
    raised.emplace(std::move(e));
    return false;
  }
  return true;
}

void WorkerCore::finish_run(std::optional<py::error_already_set>& raised) {
  if (!raised && pending_) raised = std::move(pending_);
  pending_.reset();
  bool finish = false;
  {
    std::lock_guard lock(mu_);
    finish = std::exchange(finish_in_run_, false);
  }
  if (finish) leave(/*release_gil=*/true);  // close() ran on this thread (see close())
  if (raised) {
    raised->restore();
    throw py::error_already_set();
  }
}

void WorkerCore::shutdown(bool release_gil) {
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    closed_ = true;
    if (running_ && run_thread_ == std::this_thread::get_id()) finish_in_run_ = true;
  }
  closing_.store(true, std::memory_order_release);
  slice_stop_.store(true, std::memory_order_release);
  {
    std::lock_guard lock(mu_);
    if (finish_in_run_) return;
  }
  if (release_gil) {
    py::gil_scoped_release nogil;
    std::unique_lock lock(mu_);
    idle_cv_.wait(lock, [&] { return !running_; });
  }
  leave(release_gil);
}

void WorkerCore::leave(bool release_gil) {
  if (release_gil) {
    py::gil_scoped_release nogil;
    worker_.reset();  // joins the heartbeat thread
  } else {
    worker_.reset();  // bounded: the heartbeat thread needs no GIL to stop
  }
  kept_.clear();
}

perfq::Worker& WorkerCore::worker() {
  std::lock_guard lock(mu_);
  if (closed_) raise_closed();
  if (running_) {
    raise_code(perfq::Errc::kConflict, "register processors before run_worker, not during it");
  }
  if (!worker_) {
    // run_worker runs one attempt at a time: a few dispatches wait in the
    // ring so that each take (and each GIL hold) serves several, and the
    // rest of the queue stays with other workers. Waiting costs no
    // processing time: it counts from an attempt's start.
    perfq::WorkerOptions opt;
    opt.max_inflight = kMaxInflight;
    auto w = perfq::Worker::connect(seg_->seg, opt);
    if (!w) raise_error(w.error());
    worker_ = std::move(w.value());
  }
  return *worker_;
}

PyObject* WorkerCore::keep(const py::object& fn) {
  kept_.push_back(fn);
  return fn.ptr();
}

perfq::Reply WorkerCore::interrupted(py::error_already_set& e) {
  if (e.matches(PyExc_Exception)) {
    // The adapter catches these; one that slips through still only fails the attempt.
    return perfq::Reply::error("the processor adapter raised");
  }
  if (!pending_) pending_.emplace(std::move(e));
  slice_stop_.store(true, std::memory_order_release);
  return perfq::Reply::error("the worker was interrupted");
}

}  // namespace perfq::python
