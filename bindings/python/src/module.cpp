// perfq._perfq: the native half of the Python binding (bindings/python/perfq
// is the other half). Three cores share one attached segment:
//
//   QueueCore   producer side: submit, result (outcomes delivered by one
//               completion thread that owns the completion ring through
//               Producer::wait_any), status, cancel
//   WorkerCore  worker side: processors and the run loop
//   EventsCore  an EventReader, polled by the Python layer
//
// The GIL is released around everything that may wait; waits run in bounded
// slices so KeyboardInterrupt (PyErr_CheckSignals) and close() are noticed.
// perfq errors leave as NativeError and become perfq.Error subclasses in the
// translator registered below; no C++ exception escapes unconverted.
//
// Lock order: the GIL may be held when taking a core's mutex, never the
// other way round (a thread holding a core mutex never waits for the GIL).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "perfq/core/iso_time.hpp"
#include "perfq/perfq.hpp"
#include "perfq/shm/segment.hpp"
#include "perfq/shm/status.hpp"

namespace py = pybind11;

namespace {

using namespace std::chrono_literals;

// How long a blocked call waits without the GIL before it checks for
// signals and close().
constexpr auto kSlice = 100ms;
// How long the completion thread waits in one Producer::wait_any call.
constexpr auto kCompletionSlice = 50ms;
// Settled outcomes nobody collected that a Queue keeps; older ones are
// dropped (their result() is NOT_FOUND), so a producer that never collects
// cannot grow without bound. Unsettled requests are bounded by the slots.
constexpr size_t kDefaultMaxUncollected = 65536;

// A perfq error on its way to Python (see the translator in the module).
// `code` is an errc_name, or "CLOSED" for use after close().
struct NativeError {
  std::string code;
  int status_code = 0;
  std::string message;
  uint64_t retry_after_ms = 0;
};

[[noreturn]] void raise_error(const perfq::Error& e) {
  throw NativeError{std::string(perfq::errc_name(e.code)), perfq::http_status(e.code), e.message,
                    e.code == perfq::Errc::kRateLimitExceeded ? e.retry_after_ms : 0};
}

[[noreturn]] void raise_code(perfq::Errc code, std::string message) {
  raise_error(perfq::Error{code, std::move(message), 0});
}

[[noreturn]] void raise_closed() {
  throw NativeError{"CLOSED", 0, "this perfq.Queue is closed", 0};
}

bool finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing() != 0;
#else
  return _Py_IsFinalizing() != 0;
#endif
}

std::string format_id(uint64_t id) {
  char buf[17];
  perfq::format_request_id(id, buf);
  return {buf, 16};
}

uint64_t parse_id(const std::string& text) {
  uint64_t id = 0;
  if (!perfq::parse_request_id(text, id)) {
    raise_code(perfq::Errc::kInvalidRequest, "a request id is 16 hexadecimal digits");
  }
  return id;
}

py::object error_or_none(perfq::Errc e) {
  if (e == perfq::Errc::kOk) return py::none();
  return py::str(std::string(perfq::errc_name(e)));
}

// The attached segment, shared by the cores of one perfq.Queue.
struct SegmentHandle {
  std::shared_ptr<perfq::shm::Segment> seg;
  std::string queue;
};

std::shared_ptr<SegmentHandle> attach(const std::string& queue) {
  perfq::Result<std::unique_ptr<perfq::shm::Segment>> r = [&] {
    py::gil_scoped_release nogil;
    return perfq::shm::Segment::attach(queue);
  }();
  if (!r) raise_error(r.error());
  auto h = std::make_shared<SegmentHandle>();
  h->seg = std::shared_ptr<perfq::shm::Segment>(std::move(r.value()));
  h->queue = queue;
  return h;
}

// ------------------------------------------------------------------ QueueCore

class QueueCore {
 public:
  QueueCore(std::shared_ptr<SegmentHandle> seg, std::optional<std::string> user_id, bool admin,
            size_t max_uncollected)
      : max_uncollected_(std::max<size_t>(1, max_uncollected)),
        seg_(std::move(seg)),
        user_id_(user_id.value_or("")),
        has_user_(user_id.has_value()),
        admin_(admin) {
    if (has_user_ && !perfq::valid_user_id(user_id_)) {
      raise_code(perfq::Errc::kInvalidRequest, "user_id must be 1..64 bytes of [A-Za-z0-9._:@-]");
    }
  }
  ~QueueCore() { close(); }
  QueueCore(const QueueCore&) = delete;
  QueueCore& operator=(const QueueCore&) = delete;

  // Returns (request_id, status, mode, type, priority, created_at,
  // queue_position, duplicate, band).
  py::tuple submit(const std::string& type, const py::bytes& payload_obj, const std::string& mode,
                   int64_t priority, const std::optional<std::string>& key,
                   const std::optional<std::string>& metadata, bool wait_for_room) {
    perfq::Mode m{};
    if (!perfq::parse_mode(mode, m)) {
      raise_code(perfq::Errc::kInvalidMode, "mode must be fifo, priority or batch");
    }
    if (priority < perfq::kPriorityMin || priority > perfq::kPriorityMax) {
      raise_code(perfq::Errc::kInvalidPriority, "priority must be an integer from 1 to 20");
    }
    if (key && key->empty()) {
      raise_code(perfq::Errc::kInvalidRequest,
                 "idempotency_key must be 1..128 printable ASCII bytes");
    }
    require_user();
    const std::string_view payload = payload_obj;  // the bytes object outlives the call
    perfq::RequestView v;
    v.type = type;
    v.user_id = user_id_;
    v.mode = m;
    v.priority = static_cast<uint8_t>(priority);
    v.payload = std::as_bytes(std::span<const char>(payload.data(), payload.size()));
    if (key) v.idempotency_key = *key;
    if (metadata) v.metadata = *metadata;

    Use use(*this);
    perfq::Producer& p = producer();
    bool interrupted = false;
    perfq::Result<perfq::Submitted> r = [&] {
      py::gil_scoped_release nogil;  // may wait for room (rope drop)
      if (!wait_for_room) return p.try_submit(v);
      // The wait's slices notice close() and signals (Ctrl-C).
      Waiting counted(*this);
      return p.submit(v, [&] {
        {
          std::lock_guard lock(mu_);
          if (closed_) return true;
        }
        py::gil_scoped_acquire gil;
        interrupted = PyErr_CheckSignals() != 0;
        return interrupted;
      });
    }();
    if (interrupted) throw py::error_already_set();
    if (!r) {
      bool closed = false;
      {
        std::lock_guard lock(mu_);
        closed = closed_;
      }
      if (closed) raise_closed();
      raise_error(r.error());
    }
    perfq::Submitted& s = r.value();
    if (s.outcome.valid()) track(s.request_id, std::move(s.outcome));
    const std::string_view status =
        s.status_known ? perfq::status_name(s.status) : std::string_view("unknown");
    return py::make_tuple(format_id(s.request_id), std::string(status),
                          std::string(perfq::mode_name(s.mode)), type, int{s.priority},
                          perfq::iso_time(s.created_at_unix_ns), s.queue_position, s.duplicate,
                          std::string(perfq::band_name(s.band)));
  }

  // The outcome of a request this core submitted, as (request_id, status,
  // result bytes, error, attempts, wait_ms, processing_ms), or None when
  // `timeout_s` passes first (negative: no limit). Collecting an outcome
  // forgets the request.
  py::object result(const std::string& id_text, double timeout_s) {
    const uint64_t id = parse_id(id_text);
    std::shared_ptr<Entry> e;
    Use use(*this);
    {
      std::lock_guard lock(mu_);
      auto it = entries_.find(id);
      if (it == entries_.end()) {
        raise_code(perfq::Errc::kNotFound,
                   "no request with this id awaits its result here (not submitted through "
                   "this Queue, or its result was already collected)");
      }
      e = it->second;
    }
    // Beyond ~31 years the deadline would overflow the clock: no limit.
    const bool forever = timeout_s < 0 || timeout_s > 1e9;
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                              std::chrono::duration<double>(forever ? 0.0 : timeout_s));
    Waiting waiting(*this);
    for (;;) {
      bool settled = false;
      bool forgotten = false;
      bool closed = false;
      bool timed_out = false;
      {
        py::gil_scoped_release nogil;
        std::unique_lock lock(mu_);
        const auto slice_end = std::chrono::steady_clock::now() + kSlice;
        const auto until = forever ? slice_end : std::min(slice_end, deadline);
        cv_.wait_until(lock, until, [&] { return e->settled || e->forgotten || closed_; });
        settled = e->settled;
        forgotten = e->forgotten && !settled;
        closed = closed_;
        if (settled) {
          auto it = entries_.find(id);
          if (it != entries_.end() && it->second == e) erase_locked(it);
        }
        timed_out = !forever && std::chrono::steady_clock::now() >= deadline;
      }
      if (settled) break;
      if (closed) raise_closed();
      if (forgotten) raise_code(perfq::Errc::kNotFound, "the request was forgotten meanwhile");
      if (PyErr_CheckSignals() != 0) throw py::error_already_set();
      if (timed_out) return py::none();
    }
    // Ready: Future::get returns at once. The producer lives while `use` does.
    const perfq::Outcome& o = e->future.get();
    return py::make_tuple(
        format_id(o.request_id), std::string(perfq::status_name(o.status)),
        py::bytes(reinterpret_cast<const char*>(o.result.data()), o.result.size()),
        error_or_none(o.error), int{o.attempts}, static_cast<double>(o.wait_ns) / 1e6,
        static_cast<double>(o.processing_ns) / 1e6);
  }

  // Calls `callback()` (with the GIL, from the completion thread) once the
  // request's outcome is in, or at close(). Returns true instead, without
  // keeping the callback, when it is in already.
  bool watch(const std::string& id_text, const py::object& callback) {
    const uint64_t id = parse_id(id_text);
    std::lock_guard lock(mu_);
    if (closed_) raise_closed();
    auto it = entries_.find(id);
    if (it == entries_.end()) {
      raise_code(perfq::Errc::kNotFound,
                 "no request with this id awaits its result here (not submitted through "
                 "this Queue, or its result was already collected)");
    }
    if (it->second->settled) return true;
    it->second->watchers.push_back(callback.inc_ref().ptr());
    return false;
  }

  // Withdraws a callback watch() registered that was not called yet (a
  // result_async() that timed out or was cancelled); returns whether it did.
  bool unwatch(const std::string& id_text, const py::object& callback) {
    const uint64_t id = parse_id(id_text);
    PyObject* dropped = nullptr;
    {
      std::lock_guard lock(mu_);
      auto it = entries_.find(id);
      if (it == entries_.end()) return false;
      auto& ws = it->second->watchers;
      auto w = std::find(ws.begin(), ws.end(), callback.ptr());
      if (w == ws.end()) return false;
      dropped = *w;
      ws.erase(w);
    }
    Py_DECREF(dropped);  // outside mu_: it may run Python code
    return true;
  }

  // Callbacks registered by watch() and not called yet (tests).
  size_t watchers() {
    std::lock_guard lock(mu_);
    size_t n = 0;
    for (const auto& [id, e] : entries_) n += e->watchers.size();
    return n;
  }

  // Forgotten requests whose outcome has not arrived yet (tests).
  size_t forgotten() {
    std::lock_guard lock(mu_);
    return forgotten_.size();
  }

  // Drops the outcome of a request this core submitted (fire and forget).
  // An unsettled one stays counted in unsettled_ (as an id in forgotten_)
  // until its outcome arrives: the completion thread must still drain it,
  // since draining is what frees its slot.
  bool forget(const std::string& id_text) {
    const uint64_t id = parse_id(id_text);
    std::vector<PyObject*> drop;
    {
      std::lock_guard lock(mu_);
      if (closed_) raise_closed();
      auto it = entries_.find(id);
      if (it == entries_.end()) return false;
      if (!it->second->settled) forgotten_.insert(id);
      it->second->forgotten = true;
      drop = std::move(it->second->watchers);
      erase_locked(it);
    }
    cv_.notify_all();     // result() waits for it end with NOT_FOUND,
    call_watchers(drop);  // and result_async() awaits too
    return true;
  }

  // (request_id, status, mode, type, priority, band, user_id, attempts,
  // created_at, finished_at or None, error or None)
  py::tuple status(const std::string& id_text) {
    const uint64_t id = parse_id(id_text);
    require_user_or_admin();
    Use use(*this);
    auto r = perfq::shm::lookup_status(*seg_->seg, id, perfq::shm::Caller{user_id_, admin_});
    if (!r) raise_error(r.error());
    const perfq::shm::RequestStatus& st = r.value();
    py::object finished = py::none();
    if (perfq::is_final(st.status)) finished = py::str(perfq::iso_time(st.finished_at_unix_ns));
    return py::make_tuple(format_id(st.request_id), std::string(perfq::status_name(st.status)),
                          std::string(perfq::mode_name(st.mode)), st.type, int{st.priority},
                          std::string(perfq::band_name(st.band)), st.user_id, int{st.attempts},
                          perfq::iso_time(st.created_at_unix_ns), finished,
                          error_or_none(st.error));
  }

  void cancel(const std::string& id_text) {
    const uint64_t id = parse_id(id_text);
    require_user_or_admin();
    Use use(*this);
    perfq::Producer& p = producer();
    auto r = p.cancel(id, perfq::shm::Caller{user_id_, admin_});
    if (!r) raise_error(r.error());
  }

  // Requests submitted here whose outcome nobody collected yet (settled or not).
  size_t tracked() {
    std::lock_guard lock(mu_);
    return entries_.size();
  }

  // Threads inside result(), or inside a submit that may wait for room,
  // right now (tests wait for them to be there).
  int waiting() const { return waiting_.load(std::memory_order_relaxed); }

  // Ends every wait (they raise ClosedError), calls pending watchers, joins
  // the completion thread and leaves the queue. Idempotent. A submit
  // waiting for room gives up (ClosedError) within one 20 ms slice.
  void close() {
    size_t mine = 0;  // calls of this core in progress on this thread
    {
      std::lock_guard lock(mu_);
      if (closed_) return;
      closed_ = true;
      mine = static_cast<size_t>(
          std::count(user_threads_.begin(), user_threads_.end(), std::this_thread::get_id()));
    }
    cv_.notify_all();
    completer_cv_.notify_all();
    if (completer_.joinable() && completer_.get_id() == std::this_thread::get_id()) {
      // A watcher the completion thread released held the last reference to
      // the Queue, so this runs on that thread, inside its watcher call: it
      // cannot join itself, and nobody else uses a Queue being destroyed.
      // Keep the GIL (releasing it here could let the interpreter finish
      // while this thread still has work); the thread leaves once the
      // watcher returns, without touching this object again.
      alive_->store(false, std::memory_order_release);
      completer_.detach();
    } else {
      // close() may run inside a call of this core on this very thread (a
      // signal handler that calls close() runs inside the result() or
      // submit() whose wait checked for signals): those calls cannot end
      // before close() returns, so wait only for the others. They leave at
      // once when they get back (closed_), and the last one leaves the
      // queue as a producer (~Use), since its caller still uses producer_.
      py::gil_scoped_release nogil;
      {
        std::unique_lock lock(mu_);
        idle_cv_.wait(lock, [&] { return static_cast<size_t>(users_) == mine; });
        if (mine > 0) reset_producer_at_idle_ = true;
      }
      // No call is left to start the thread (track() runs inside a Use and
      // refuses to once closed_).
      if (completer_.joinable()) completer_.join();
    }
    std::vector<PyObject*> fire;
    std::unordered_map<uint64_t, std::shared_ptr<Entry>> entries;
    {
      std::lock_guard lock(mu_);
      for (auto& [id, e] : entries_) {
        for (PyObject* cb : e->watchers) fire.push_back(cb);
        e->watchers.clear();
      }
      entries.swap(entries_);
      settled_order_.clear();
      forgotten_.clear();
      unsettled_ = 0;
    }
    entries.clear();
    if (mine == 0) producer_.reset();  // bounded: one pass over the slots
    call_watchers(fire);
  }

 private:
  struct Entry {
    perfq::Future future;
    bool settled = false;                 // guarded by mu_
    bool forgotten = false;               // guarded by mu_
    bool in_order = false;                // `order` is valid; guarded by mu_
    std::list<uint64_t>::iterator order;  // its place in settled_order_
    std::vector<PyObject*> watchers;      // owned references; touched with the GIL and mu_
  };

  // Keeps the producer alive during a call; refused after close().
  class Use {
   public:
    explicit Use(QueueCore& q) : q_(q) {
      std::lock_guard lock(q_.mu_);
      if (q_.closed_) raise_closed();
      ++q_.users_;
      q_.user_threads_.push_back(std::this_thread::get_id());
    }
    ~Use() {
      std::unique_ptr<perfq::Producer> leave;
      {
        std::lock_guard lock(q_.mu_);
        auto t =
            std::find(q_.user_threads_.begin(), q_.user_threads_.end(), std::this_thread::get_id());
        if (t != q_.user_threads_.end()) q_.user_threads_.erase(t);
        q_.idle_cv_.notify_all();  // close() may wait for all but its own thread's calls
        if (--q_.users_ == 0 && q_.reset_producer_at_idle_) {
          q_.reset_producer_at_idle_ = false;
          leave = std::move(q_.producer_);
        }
      }
      leave.reset();  // close() ran inside this call (see close())
    }
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

  void require_user() const {
    if (!has_user_) {
      raise_code(perfq::Errc::kInvalidRequest, "this Queue was opened without a user_id");
    }
  }
  void require_user_or_admin() const {
    if (!has_user_ && !admin_) {
      raise_code(perfq::Errc::kInvalidRequest, "this Queue was opened without a user_id");
    }
  }

  // The producer, joined on first use. Caller holds a Use.
  perfq::Producer& producer() {
    std::lock_guard lock(mu_);
    if (!producer_) {
      auto p = perfq::Producer::connect(seg_->seg);
      if (!p) raise_error(p.error());
      producer_ = std::move(p.value());
    }
    return *producer_;
  }

  void track(uint64_t id, perfq::Future future) {
    auto e = std::make_shared<Entry>();
    e->future = std::move(future);
    {
      std::lock_guard lock(mu_);
      // Settled before we got here (the completion thread drained it and
      // found no entry): ready() tells, under mu_ (see completion_loop).
      e->settled = e->future.ready();
      auto [it, inserted] = entries_.insert_or_assign(id, e);
      (void)inserted;
      if (e->settled) {
        note_settled_locked(it);
      } else {
        ++unsettled_;
      }
      if (!completer_.joinable() && !closed_) {
        completer_ = std::thread([this, alive = alive_] { completion_loop(alive); });
      }
    }
    completer_cv_.notify_one();
  }

  // Under mu_: drops an entry, and its id from settled_order_.
  void erase_locked(std::unordered_map<uint64_t, std::shared_ptr<Entry>>::iterator it) {
    if (it->second->in_order) {
      settled_order_.erase(it->second->order);
      it->second->in_order = false;
    }
    entries_.erase(it);
  }

  // Under mu_: remembers the settled entry `it` in order and drops the
  // oldest settled outcome once more than max_uncollected_ are kept.
  // settled_order_ holds exactly the settled entries still in entries_
  // (collecting or forgetting one removes it), so only uncollected outcomes
  // count. Watchers were handed out when it settled, so an entry dropped
  // here has none.
  void note_settled_locked(std::unordered_map<uint64_t, std::shared_ptr<Entry>>::iterator it) {
    it->second->order = settled_order_.insert(settled_order_.end(), it->first);
    it->second->in_order = true;
    while (settled_order_.size() > max_uncollected_) {
      auto oldest = entries_.find(settled_order_.front());
      if (oldest == entries_.end()) {  // cannot happen: erase_locked keeps them in step
        settled_order_.pop_front();
        continue;
      }
      erase_locked(oldest);
    }
  }

  // The completion thread: the only caller of wait_any, so every settled
  // outcome is reported here. Runs wait_any only while outcomes are due.
  void completion_loop(const std::shared_ptr<std::atomic<bool>>& alive) {
    std::vector<uint64_t> ids;
    std::vector<PyObject*> fire;
    for (;;) {
      {
        std::unique_lock lock(mu_);
        completer_cv_.wait(lock, [&] { return closed_ || unsettled_ > 0; });
        if (closed_) return;
      }
      ids.clear();
      producer_->wait_any(kCompletionSlice, ids);
      if (ids.empty()) continue;
      fire.clear();
      {
        std::lock_guard lock(mu_);
        for (const uint64_t id : ids) {
          auto it = entries_.find(id);
          if (it == entries_.end() || it->second->settled) {
            // A forgotten request: its slot is free now, nothing to deliver.
            if (forgotten_.erase(id) != 0) --unsettled_;
            continue;
          }
          it->second->settled = true;
          --unsettled_;
          note_settled_locked(it);
          for (PyObject* cb : it->second->watchers) fire.push_back(cb);
          it->second->watchers.clear();
        }
      }
      cv_.notify_all();
      if (!fire.empty()) {
        if (finalizing()) return;  // the interpreter is going away: leak, never touch it
        py::gil_scoped_acquire gil;
        call_watchers(fire);
        if (!alive->load(std::memory_order_acquire)) return;  // destroyed by a watcher
      }
    }
  }

  // With the GIL: calls and releases each watcher. Errors are reported as
  // unraisable (they belong to no caller).
  static void call_watchers(std::vector<PyObject*>& fire) {
    for (PyObject* cb : fire) {
      PyObject* r = PyObject_CallNoArgs(cb);
      if (r == nullptr) {
        PyErr_WriteUnraisable(cb);
      } else {
        Py_DECREF(r);
      }
      Py_DECREF(cb);
    }
    fire.clear();
  }

  size_t max_uncollected_;
  std::shared_ptr<SegmentHandle> seg_;
  std::string user_id_;
  bool has_user_;
  bool admin_;

  std::mutex mu_;
  std::condition_variable cv_;            // an entry settled, or closed
  std::condition_variable completer_cv_;  // outcomes are due, or closed
  std::condition_variable idle_cv_;       // users_ reached 0
  bool closed_ = false;
  int users_ = 0;
  std::vector<std::thread::id> user_threads_;  // one per Use, its thread
  bool reset_producer_at_idle_ = false;  // close() ran inside a call: the last Use resets producer_
  std::atomic<int> waiting_{0};
  size_t unsettled_ = 0;  // tracked and forgotten requests whose outcome is due
  std::unique_ptr<perfq::Producer> producer_;  // set once (under mu_), reset in close()
  std::unordered_map<uint64_t, std::shared_ptr<Entry>> entries_;
  std::list<uint64_t> settled_order_;       // settled uncollected ids, oldest first
  std::unordered_set<uint64_t> forgotten_;  // forgotten before their outcome arrived
  std::thread completer_;
  // False once this object no longer waits for the completion thread.
  std::shared_ptr<std::atomic<bool>> alive_ = std::make_shared<std::atomic<bool>>(true);
};

// ----------------------------------------------------------------- WorkerCore

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
  void register_processor(const std::string& type, const py::object& adapter) {
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

  // `adapter(items: list[(payload, ctx)]) -> list[(kind, body)]`
  void register_batch_processor(const std::string& type, const py::object& adapter) {
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

  // Runs the worker loop on this thread with the GIL released, in slices of
  // about kSlice: between slices it checks signals (KeyboardInterrupt, a
  // SIGTERM handler that raises) and `stop.is_set()`. Returns when `stop`
  // is set or close() is called; raises what a signal handler or a
  // processor raised that was not an Exception (KeyboardInterrupt, ...).
  void run(const py::object& stop) {
    {
      std::lock_guard lock(mu_);
      if (closed_) raise_closed();
      if (running_) raise_code(perfq::Errc::kConflict, "run_worker is already running");
      if (!worker_) {
        raise_code(perfq::Errc::kInvalidRequest, "register a processor before run_worker");
      }
      running_ = true;
      run_thread_ = std::this_thread::get_id();
    }
    pending_.reset();
    std::optional<py::error_already_set> raised;
    bool timer_stop = false;
    std::mutex timer_mu;
    std::condition_variable timer_cv;
    {
      py::gil_scoped_release nogil;
      // Ends each slice: Worker::run returns when `slice_stop_` is set.
      std::thread timer([&] {
        std::unique_lock lock(timer_mu);
        while (!timer_stop) {
          timer_cv.wait_for(lock, kSlice, [&] { return timer_stop; });
          slice_stop_.store(true, std::memory_order_release);
        }
      });
      for (;;) {
        worker_->run(slice_stop_);
        if (closing_.load(std::memory_order_acquire)) break;
        {
          py::gil_scoped_acquire gil;
          if (pending_) break;
          if (PyErr_CheckSignals() != 0) {
            raised.emplace();
            break;
          }
          try {
            if (!stop.is_none() && stop.attr("is_set")().cast<bool>()) break;
          } catch (py::error_already_set& e) {
            raised.emplace(std::move(e));
            break;
          }
        }
        // A signal handler above may have called close().
        if (closing_.load(std::memory_order_acquire)) break;
        slice_stop_.store(false, std::memory_order_release);
      }
      {
        std::lock_guard lock(timer_mu);
        timer_stop = true;
      }
      timer_cv.notify_all();
      timer.join();
      slice_stop_.store(false, std::memory_order_release);
      std::lock_guard lock(mu_);
      running_ = false;
      run_thread_ = {};
    }
    idle_cv_.notify_all();
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

  // Stops run_worker (wherever it runs) and leaves the queue: the agent
  // redispatches nothing, since no attempt is held between slices. On the
  // thread running run_worker (a processor, or a signal handler that runs
  // between slices) it cannot wait for run_worker to return: it asks it to
  // stop and returns; run_worker leaves the queue before it returns.
  void close() { shutdown(/*release_gil=*/true); }

 private:
  void shutdown(bool release_gil) {
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

  // With the GIL, once run_worker is not running.
  void leave(bool release_gil) {
    if (release_gil) {
      py::gil_scoped_release nogil;
      worker_.reset();  // joins the heartbeat thread
    } else {
      worker_.reset();  // bounded: the heartbeat thread needs no GIL to stop
    }
    kept_.clear();
  }

  perfq::Worker& worker() {
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

  // With the GIL.
  bool stopping() const { return pending_.has_value() || closing_.load(std::memory_order_acquire); }

  PyObject* keep(const py::object& fn) {
    kept_.push_back(fn);
    return fn.ptr();
  }

  // The adapter lets only BaseExceptions that are not Exceptions through
  // (KeyboardInterrupt, SystemExit): they stop run_worker, which re-raises.
  perfq::Reply interrupted(py::error_already_set& e) {
    if (e.matches(PyExc_Exception)) {
      // The adapter catches these; one that slips through still only fails the attempt.
      return perfq::Reply::error("the processor adapter raised");
    }
    if (!pending_) pending_.emplace(std::move(e));
    slice_stop_.store(true, std::memory_order_release);
    return perfq::Reply::error("the worker was interrupted");
  }

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
};

// ----------------------------------------------------------------- EventsCore

class EventsCore {
 public:
  explicit EventsCore(const std::shared_ptr<SegmentHandle>& seg) {
    auto r = perfq::EventReader::connect(seg->seg);
    if (!r) raise_error(r.error());
    reader_ = std::move(r.value());
  }

  // Never blocks. Returns (missed, [event tuples]); `missed` counts events
  // lost before these by falling behind. An event tuple: (id, event, at,
  // request_id, type, user_id, status, priority, mode, attempt, error);
  // the request fields are None for queue events.
  py::tuple poll(size_t max) {
    const uint64_t missed_before = reader_->missed();
    batch_.clear();
    const size_t n = reader_->poll(batch_, max);
    uint64_t id = reader_->position() - n;
    py::list out;
    for (const perfq::Event& e : batch_) {
      const auto kind =
          static_cast<perfq::EventKind>(e.kind < perfq::kEventKindCount ? e.kind : uint8_t{0});
      const bool request_event =
          kind != perfq::EventKind::kQueueFull && kind != perfq::EventKind::kQueueEmpty;
      if (!request_event) {
        out.append(py::make_tuple(id++, perfq::event_name(kind), perfq::iso_time(e.at_unix_ns)));
        continue;
      }
      const auto status =
          static_cast<perfq::Status>(e.status < perfq::kStatusCount ? e.status : uint8_t{0});
      const auto mode = static_cast<perfq::Mode>(e.mode < perfq::kModeCount ? e.mode : uint8_t{0});
      const auto error =
          perfq::errc_valid(e.error) ? static_cast<perfq::Errc>(e.error) : perfq::Errc::kInternal;
      out.append(py::make_tuple(
          id++, perfq::event_name(kind), perfq::iso_time(e.at_unix_ns), format_id(e.request_id),
          std::string(e.type, std::min<size_t>(e.type_len, perfq::kTypeMaxBytes)),
          std::string(e.user_id, std::min<size_t>(e.user_len, perfq::kUserIdMaxBytes)),
          std::string(perfq::status_name(status)), int{e.priority},
          std::string(perfq::mode_name(mode)), int{e.attempt}, error_or_none(error)));
    }
    return py::make_tuple(reader_->missed() - missed_before, out);
  }

 private:
  std::unique_ptr<perfq::EventReader> reader_;
  std::vector<perfq::Event> batch_;
};

}  // namespace

PYBIND11_MODULE(_perfq, m) {
  m.doc() = "perfq native module; use the perfq package instead";

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const NativeError& e) {
      try {
        py::object factory = py::module_::import("perfq._errors").attr("_from_native");
        py::object exc = factory(e.code, e.status_code, e.message, e.retry_after_ms);
        PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
      } catch (py::error_already_set& err) {
        err.restore();
      }
    }
  });

  py::class_<SegmentHandle, std::shared_ptr<SegmentHandle>>(m, "Segment")
      .def_readonly("queue", &SegmentHandle::queue);
  m.def("attach", &attach, py::arg("queue"));

  py::class_<QueueCore>(m, "QueueCore")
      .def(py::init<std::shared_ptr<SegmentHandle>, std::optional<std::string>, bool, size_t>(),
           py::arg("segment"), py::arg("user_id"), py::arg("admin"),
           py::arg("max_uncollected") = kDefaultMaxUncollected)
      .def("submit", &QueueCore::submit, py::arg("type"), py::arg("payload"), py::arg("mode"),
           py::arg("priority"), py::arg("idempotency_key"), py::arg("metadata"),
           py::arg("wait_for_room"))
      .def("result", &QueueCore::result, py::arg("request_id"), py::arg("timeout_s"))
      .def("watch", &QueueCore::watch, py::arg("request_id"), py::arg("callback"))
      .def("unwatch", &QueueCore::unwatch, py::arg("request_id"), py::arg("callback"))
      .def("watchers", &QueueCore::watchers)
      .def("forgotten", &QueueCore::forgotten)
      .def("forget", &QueueCore::forget, py::arg("request_id"))
      .def("status", &QueueCore::status, py::arg("request_id"))
      .def("cancel", &QueueCore::cancel, py::arg("request_id"))
      .def("tracked", &QueueCore::tracked)
      .def("waiting", &QueueCore::waiting)
      .def("close", &QueueCore::close);

  py::class_<WorkerCore>(m, "WorkerCore")
      .def(py::init<std::shared_ptr<SegmentHandle>>(), py::arg("segment"))
      .def("register_processor", &WorkerCore::register_processor, py::arg("type"),
           py::arg("adapter"))
      .def("register_batch_processor", &WorkerCore::register_batch_processor, py::arg("type"),
           py::arg("adapter"))
      .def("run", &WorkerCore::run, py::arg("stop"))
      .def("close", &WorkerCore::close);

  py::class_<EventsCore>(m, "EventsCore")
      .def(py::init<const std::shared_ptr<SegmentHandle>&>(), py::arg("segment"))
      .def("poll", &EventsCore::poll, py::arg("max") = 1024);
}
