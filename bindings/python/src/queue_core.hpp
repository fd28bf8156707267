#pragma once
// QueueCore: the producer side of a perfq.Queue: submit, result (outcomes
// kept by a perfq::CompletionPump, whose completion thread owns the
// completion ring through Producer::wait_any), watch, forget, status,
// cancel.
//
// Lock order: the GIL, then mu_, then the pump's lock. The pump calls back
// (on_settled) without its lock; a thread holding mu_ never waits for the GIL.
#include <pybind11/pybind11.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "perfq/client/completion_pump.hpp"
#include "perfq/client/producer.hpp"
#include "py_util.hpp"

namespace perfq::python {

// Settled outcomes nobody collected that a Queue keeps; older ones are
// dropped (their result() is NOT_FOUND), so a producer that never collects
// cannot grow without bound. Unsettled requests are bounded by the slots.
inline constexpr size_t kDefaultMaxUncollected = 65536;

class QueueCore {
 public:
  QueueCore(std::shared_ptr<SegmentHandle> seg, std::optional<std::string> user_id, bool admin,
            size_t max_uncollected);
  ~QueueCore() { close(); }
  QueueCore(const QueueCore&) = delete;
  QueueCore& operator=(const QueueCore&) = delete;

  // Returns (request_id, status, mode, type, priority, created_at,
  // queue_position, duplicate, band).
  py::tuple submit(const std::string& type, const py::bytes& payload_obj, const std::string& mode,
                   int64_t priority, const std::optional<std::string>& key,
                   const std::optional<std::string>& metadata, bool wait_for_room);

  // Many submits in one call: `requests` is a list of (type, payload bytes,
  // mode, priority, key or None, metadata or None). One entry per request,
  // in order: (True, the submit tuple) or (False, code, http status,
  // message, retry_after_ms). Refusals are per request. `wait_for_room`:
  // what finds the queue full waits (at most rope_drop_timeout_ms for the
  // whole call) without the GIL.
  py::list submit_many(const py::list& requests, bool wait_for_room);
  // The outcome of a request this core submitted, as (request_id, status,
  // result bytes, error, attempts, wait_ms, processing_ms), or None when
  // `timeout_s` passes first (negative: no limit). Collecting an outcome
  // forgets the request.
  py::object result(const std::string& id_text, double timeout_s);

  // Calls `callback()` (with the GIL, from the completion thread) once the
  // request's outcome is in, or at close(). Returns true instead, without
  // keeping the callback, when it is in already.
  bool watch(const std::string& id_text, const py::object& callback);
  // Withdraws a callback watch() registered that was not called yet (a
  // result_async() that timed out or was cancelled); returns whether it did.
  bool unwatch(const std::string& id_text, const py::object& callback);
  // Callbacks registered by watch() and not called yet (tests).
  size_t watchers();
  // Forgotten requests whose outcome has not arrived yet (tests).
  size_t forgotten();
  // Drops the outcome of a request this core submitted (fire and forget).
  // An unsettled one stays due in the pump until its outcome arrives: the
  // completion thread must still drain it, since draining frees its slot.
  bool forget(const std::string& id_text);

  // (request_id, status, mode, type, priority, band, user_id, attempts,
  // created_at, finished_at or None, error or None)
  py::tuple status(const std::string& id_text);
  void cancel(const std::string& id_text);

  // Requests submitted here whose outcome nobody collected yet (settled or not).
  size_t tracked();
  // Threads inside result(), or inside a submit that may wait for room,
  // right now (tests wait for them to be there).
  int waiting() const { return waiting_.load(std::memory_order_relaxed); }

  // Ends every wait (they raise ClosedError), calls pending watchers, stops
  // the completion thread and leaves the queue. Idempotent. A submit
  // waiting for room gives up (ClosedError) within one 20 ms slice.
  void close();

 private:
  // Keeps the producer alive during a call; refused after close().
  class Use {
   public:
    explicit Use(QueueCore& q);
    ~Use();
    Use(const Use&) = delete;
    Use& operator=(const Use&) = delete;

   private:
    QueueCore& q_;
  };

  class Waiting {
   public:
    explicit Waiting(QueueCore& q) : q_(q) { q_.waiting_.fetch_add(1, std::memory_order_relaxed); }
    ~Waiting() { q_.waiting_.fetch_sub(1, std::memory_order_relaxed); }
    Waiting(const Waiting&) = delete;
    Waiting& operator=(const Waiting&) = delete;

   private:
    QueueCore& q_;
  };

  void require_user() const;
  void require_user_or_admin() const;
  // The producer (and its pump), joined on first use. Caller holds a Use.
  perfq::Producer& producer();
  void track(uint64_t id, perfq::Future future);
  // With the GIL: tracks a submit's outcome and builds submit's answer.
  py::tuple submitted(perfq::Submitted& s, const std::string& type);
  // Under mu_: where the pump has request `id`.
  [[nodiscard]] perfq::CompletionPump::State state_locked(uint64_t id) const;
  // The pump's notify, on the completion thread: wakes result() and calls
  // the watchers of the requests that settled. Touches nothing of this
  // object after calling a watcher (one may destroy it).
  void on_settled(std::span<const uint64_t> ids);
  // With the GIL: calls and releases each watcher. Errors are reported as
  // unraisable (they belong to no caller).
  static void call_watchers(std::vector<PyObject*>& fire);

  size_t max_uncollected_;
  std::shared_ptr<SegmentHandle> seg_;
  std::string user_id_;
  bool has_user_;
  bool admin_;

  std::mutex mu_;
  std::condition_variable cv_;       // an outcome settled, a request was forgotten, or closed
  std::condition_variable idle_cv_;  // users_ reached 0
  bool closed_ = false;
  int users_ = 0;
  std::vector<std::thread::id> user_threads_;  // one per Use, its thread
  bool reset_producer_at_idle_ = false;  // close() ran inside a call: the last Use resets producer_
  std::atomic<int> waiting_{0};
  std::unique_ptr<perfq::Producer> producer_;  // set once (under mu_), reset in close()
  // Set with producer_ (under mu_), closed in close(), destroyed before producer_.
  std::unique_ptr<perfq::CompletionPump> pump_;
  // Owned references, per pending request (guarded by mu_; released with the GIL).
  std::unordered_map<uint64_t, std::vector<PyObject*>> watchers_;
  // result() calls waiting on one id at once (guarded by mu_): the first to
  // collect the outcome leaves a copy here for the others, so every call
  // that was waiting when it settled gets it. Erased with the last of them.
  struct SharedWait {
    int waiters = 0;
    std::optional<perfq::Outcome> outcome;
  };
  std::unordered_map<uint64_t, SharedWait> shared_waits_;
};

}  // namespace perfq::python
