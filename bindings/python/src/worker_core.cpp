#include "worker_core.hpp"

#include <span>
#include <utility>

namespace perfq::python {

namespace {

py::tuple job_context(const perfq::Job& job) {
  return py::make_tuple(format_id(job.request_id), std::string(job.type), std::string(job.user_id),
                        std::string(perfq::mode_name(job.mode)), int{job.priority},
                        int{job.attempt}, std::string(job.metadata), job.payload.size());
}

py::bytes job_payload(const perfq::Job& job) {
  return py::bytes(reinterpret_cast<const char*>(job.payload.data()), job.payload.size());
}

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
  perfq::Worker& w = worker();
  PyObject* fn = keep(adapter);
  auto r = w.register_processor(type, [this, fn](const perfq::Job& job) {
    py::gil_scoped_acquire gil;
    if (stopping()) return perfq::Reply::error("the worker is stopping");
    try {
      py::object answer =
          py::reinterpret_borrow<py::object>(fn)(job_payload(job), job_context(job));
      return to_reply(answer);
    } catch (py::error_already_set& e) {
      return interrupted(e);
    } catch (const std::exception&) {
      return perfq::Reply::error("the processor's answer could not be read");
    }
  });
  if (!r) raise_error(r.error());
}

void WorkerCore::register_batch_processor(const std::string& type, const py::object& adapter) {
  perfq::Worker& w = worker();
  PyObject* fn = keep(adapter);
  auto r = w.register_batch_processor(type, [this, fn](std::span<const perfq::Job> jobs) {
    py::gil_scoped_acquire gil;
    std::vector<perfq::Reply> replies;
    if (stopping()) {
      replies.assign(jobs.size(), perfq::Reply::error("the worker is stopping"));
      return replies;
    }
    try {
      py::list items;
      for (const perfq::Job& job : jobs) {
        items.append(py::make_tuple(job_payload(job), job_context(job)));
      }
      py::object answers = py::reinterpret_borrow<py::object>(fn)(items);
      for (const py::handle a : answers) replies.push_back(to_reply(a));
    } catch (py::error_already_set& e) {
      replies.assign(jobs.size(), interrupted(e));
    } catch (const std::exception&) {
      replies.assign(jobs.size(),
                     perfq::Reply::error("the batch processor's answer could not be read"));
    }
    return replies;
  });
  if (!r) raise_error(r.error());
}

void WorkerCore::run(const py::object& stop) {
  begin_run();
  pending_.reset();
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
    worker_->run(slice_stop_);
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
    // One dispatch at a time: run_worker serves one attempt at a time, and
    // an attempt's processing time counts from its dispatch, so attempts
    // queued behind a slow processor would time out unstarted.
    perfq::WorkerOptions opt;
    opt.max_inflight = 1;
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
