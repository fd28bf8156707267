#pragma once
// WorkerCore: the worker side of a perfq.Queue. Python processors (through
// the adapters bindings/python/perfq builds) and the run loop run_worker
// serves them with, in slices of about kSlice so signals and close() are
// noticed between them.
#include <pybind11/pybind11.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "perfq/client/worker.hpp"
#include "py_util.hpp"

namespace perfq::python {

// One attempt run_worker took, copied, waiting for the GIL.
struct TakenJob {
  uint64_t request_id = 0;
  std::string type, user_id, metadata, payload;
  perfq::Mode mode = perfq::Mode::kFifo;
  int priority = 0;
  int attempt = 0;
};

class WorkerCore {
 public:
  explicit WorkerCore(std::shared_ptr<SegmentHandle> seg) : seg_(std::move(seg)) {}
  // A core being destroyed has no run_worker caller (run() keeps it
  // alive), so there is nothing to wait for: shut down keeping the GIL. This
  // may run on a QueueCore's completion thread, inside a watcher that held
  // the last reference to the Queue; releasing the GIL there could let the
  // interpreter finish while that thread still has work (see QueueCore::close).
  ~WorkerCore() { shutdown(/*release_gil=*/false); }
  WorkerCore(const WorkerCore&) = delete;
  WorkerCore& operator=(const WorkerCore&) = delete;

  // `adapter(payload: bytes, ctx: tuple) -> (kind, body)`
  void register_processor(const std::string& type, const py::object& adapter);
  // `adapter(items: list[(payload, ctx)]) -> list[(kind, body)]`
  void register_batch_processor(const std::string& type, const py::object& adapter);

  // Runs the worker loop on this thread with the GIL released, in slices of
  // about kSlice: between slices it checks signals (KeyboardInterrupt, a
  // SIGTERM handler that raises) and `stop.is_set()`. Returns when `stop`
  // is set or close() is called; raises what a signal handler or a
  // processor raised that was not an Exception (KeyboardInterrupt, ...).
  // `gather(awaitables) -> list`: awaits what async processors returned
  // (a batch's worth at once, on run_worker's own event loop).
  void run(const py::object& stop, const py::object& gather);

  // Stops run_worker (wherever it runs) and leaves the queue: the agent
  // redispatches nothing, since no attempt is held between slices. On the
  // thread running run_worker (a processor, or a signal handler that runs
  // between slices) it cannot wait for run_worker to return: it asks it to
  // stop and returns; run_worker leaves the queue before it returns.
  void close() { shutdown(/*release_gil=*/true); }

  // How many times run_worker took the GIL to run processors (tests: it is
  // once per batch taken, not once per attempt).
  [[nodiscard]] uint64_t gil_holds() const noexcept {
    return gil_holds_.load(std::memory_order_relaxed);
  }

 private:
  // The steps of run(). With the GIL: refuses a second run_worker, or one
  // with nothing to serve, and marks this thread as running it.
  void begin_run();
  // Without the GIL: serves slices until stopped; `raised` gets what ended it.
  void serve_slices(const py::object& stop, std::optional<py::error_already_set>& raised);
  // With the GIL, between two slices: false when run_worker must stop.
  bool between_slices(const py::object& stop, std::optional<py::error_already_set>& raised);
  // With the GIL, once not running: leaves the queue if close() ran on this
  // thread, then re-raises what stopped run_worker.
  void finish_run(std::optional<py::error_already_set>& raised);

  void shutdown(bool release_gil);
  // With the GIL, once run_worker is not running.
  void leave(bool release_gil);
  perfq::Worker& worker();
  // With the GIL.
  bool stopping() const { return pending_.has_value() || closing_.load(std::memory_order_acquire); }
  PyObject* keep(const py::object& fn);
  // The adapter lets only BaseExceptions that are not Exceptions through
  // (KeyboardInterrupt, SystemExit): they stop run_worker, which re-raises.
  perfq::Reply interrupted(py::error_already_set& e);

  std::shared_ptr<SegmentHandle> seg_;
  std::mutex mu_;
  std::condition_variable idle_cv_;
  bool closed_ = false;
  bool running_ = false;
  bool finish_in_run_ = false;  // close() ran on run_worker's thread: run() leaves the queue
  std::thread::id run_thread_;
  std::atomic<bool> closing_{false};
  std::atomic<bool> slice_stop_{false};
  std::optional<py::error_already_set> pending_;  // touched with the GIL
  std::unique_ptr<perfq::Worker> worker_;
  std::vector<py::object> kept_;  // the adapters the processors call

  // The processors, by type (registration replaces), read by run_worker's
  // thread with the GIL held.
  struct Registered {
    std::string type;
    bool batch = false;
    PyObject* adapter = nullptr;  // owned by kept_
  };
  std::vector<Registered> registered_;
  // One dispatch (a single attempt, or a batch).
  struct Taken {
    bool batch = false;
    std::vector<perfq::Held> held;
    std::vector<TakenJob> jobs;
  };
  std::vector<Taken> taken_;  // run_worker's thread only

  std::vector<perfq::Reply> replies_;  // run_worker's thread only
  // run_worker's thread: one take, then the GIL once for all it took, then
  // the reports (this thread is the result ring's only writer). Returns the
  // attempts run.
  int serve_batch();
  // Awaitables an async processor returned in this batch, and where their
  // replies go (first reply, count, a batch processor's list).
  struct Awaited {
    size_t at = 0;
    size_t count = 0;
    bool batch = false;
  };
  void run_taken(const Taken& t, py::list& awaitables, std::vector<Awaited>& awaited);
  void settle_awaited(const py::list& awaitables, const std::vector<Awaited>& awaited);
  py::object gather_;  // run()'s, with the GIL
  std::atomic<uint64_t> gil_holds_{0};
  void add(const std::string& type, bool batch, const py::object& adapter);
};

}  // namespace perfq::python
