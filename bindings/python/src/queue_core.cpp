#include "queue_core.hpp"

#include <algorithm>
#include <chrono>
#include <utility>

#include "perfq/core/iso_time.hpp"
#include "perfq/shm/status.hpp"

namespace perfq::python {

namespace {

// How long the completion thread waits in one Producer::wait_any call.
constexpr auto kCompletionSlice = 50ms;

[[noreturn]] void raise_not_tracked() {
  raise_code(perfq::Errc::kNotFound,
             "no request with this id awaits its result here (not submitted through "
             "this Queue, or its result was already collected)");
}

}  // namespace

QueueCore::QueueCore(std::shared_ptr<SegmentHandle> seg, std::optional<std::string> user_id,
                     bool admin, size_t max_uncollected)
    : max_uncollected_(std::max<size_t>(1, max_uncollected)),
      seg_(std::move(seg)),
      user_id_(user_id.value_or("")),
      has_user_(user_id.has_value()),
      admin_(admin) {
  if (has_user_ && !perfq::valid_user_id(user_id_)) {
    raise_code(perfq::Errc::kInvalidRequest, "user_id must be 1..64 bytes of [A-Za-z0-9._:@-]");
  }
}

namespace {

// One request of submit_many, copied out of its Python tuple (with the GIL)
// and checked as submit checks its arguments.
struct ManyRequest {
  std::string type, payload, mode, key, metadata;
  bool has_key = false;
  bool has_meta = false;
  int64_t priority = 0;
  perfq::RequestView view;
  std::optional<perfq::Error> refused;
};

void read_request(const py::handle& h, const std::string& user_id, ManyRequest& o) {
  try {
    auto t = h.cast<py::tuple>();
    o.type = t[0].cast<std::string>();
    o.payload = t[1].cast<std::string>();
    o.mode = t[2].cast<std::string>();
    o.priority = t[3].cast<int64_t>();
    if (!t[4].is_none()) o.key = t[4].cast<std::string>(), o.has_key = true;
    if (!t[5].is_none()) o.metadata = t[5].cast<std::string>(), o.has_meta = true;
  } catch (const std::exception&) {
    o.refused = perfq::Error{perfq::Errc::kInvalidRequest,
                             "a request is (type, payload, mode, priority, key, metadata)", 0};
    return;
  }
  perfq::RequestView& v = o.view;
  if (!perfq::parse_mode(o.mode, v.mode)) {
    o.refused = perfq::Error{perfq::Errc::kInvalidMode, "mode must be fifo, priority or batch", 0};
  } else if (o.priority < perfq::kPriorityMin || o.priority > perfq::kPriorityMax) {
    o.refused =
        perfq::Error{perfq::Errc::kInvalidPriority, "priority must be an integer from 1 to 20", 0};
  } else if (o.has_key && o.key.empty()) {
    o.refused = perfq::Error{perfq::Errc::kInvalidRequest,
                             "idempotency_key must be 1..128 printable ASCII bytes", 0};
  }
  v.type = o.type;
  v.user_id = user_id;
  v.priority = static_cast<uint8_t>(o.priority);
  v.payload = std::as_bytes(std::span<const char>(o.payload.data(), o.payload.size()));
  if (o.has_key) v.idempotency_key = o.key;
  if (o.has_meta) v.metadata = o.metadata;
}

// A refusal as submit_many answers it.
py::tuple refusal(const perfq::Error& e) {
  return py::make_tuple(false, std::string(perfq::errc_name(e.code)), perfq::http_status(e.code),
                        e.message,
                        e.code == perfq::Errc::kRateLimitExceeded ? e.retry_after_ms : uint64_t{0});
}

}  // namespace

// What submit answers: (request_id, status, mode, type, priority,
// created_at, queue_position, duplicate, band).
py::tuple QueueCore::submitted(perfq::Submitted& s, const std::string& type) {
  if (s.outcome.valid()) track(s.request_id, std::move(s.outcome));
  const std::string_view status =
      s.status_known ? perfq::status_name(s.status) : std::string_view("unknown");
  return py::make_tuple(format_id(s.request_id), std::string(status),
                        std::string(perfq::mode_name(s.mode)), type, int{s.priority},
                        perfq::iso_time(s.created_at_unix_ns), s.queue_position, s.duplicate,
                        std::string(perfq::band_name(s.band)));
}

py::list QueueCore::submit_many(const py::list& requests, bool wait_for_room) {
  require_user();
  const size_t n = requests.size();
  std::vector<ManyRequest> reqs(n);
  std::vector<perfq::RequestView> views;
  for (size_t i = 0; i < n; ++i) {
    read_request(requests[i], user_id_, reqs[i]);
    if (!reqs[i].refused) views.push_back(reqs[i].view);
  }
  Use use(*this);
  perfq::Producer& p = producer();
  bool interrupted = false;
  std::vector<perfq::Result<perfq::Submitted>> out;
  {
    py::gil_scoped_release nogil;  // may wait for room (rope drop)
    Waiting counted(*this);
    perfq::SubmitManyOptions opt;
    opt.wait_for_room = wait_for_room;
    opt.give_up = [&] {
      {
        std::lock_guard lock(mu_);
        if (closed_) return true;
      }
      py::gil_scoped_acquire gil;
      interrupted = PyErr_CheckSignals() != 0;
      return interrupted;
    };
    (void)p.submit_many(views, out, opt);
  }
  if (interrupted) {
    // What was accepted before the signal still has its outcome tracked.
    for (auto& r : out) {
      if (r && r->outcome.valid()) track(r->request_id, std::move(r->outcome));
    }
    throw py::error_already_set();
  }
  bool closed = false;
  {
    std::lock_guard lock(mu_);
    closed = closed_;
  }
  py::list answers;
  size_t k = 0;
  for (size_t i = 0; i < n; ++i) {
    if (reqs[i].refused) {
      answers.append(refusal(*reqs[i].refused));
      continue;
    }
    perfq::Result<perfq::Submitted>& r = out[k++];
    if (r) {
      answers.append(py::make_tuple(true, submitted(r.value(), reqs[i].type)));
    } else if (closed) {
      answers.append(py::make_tuple(false, "CLOSED", 0, "this perfq.Queue is closed", 0));
    } else {
      answers.append(refusal(r.error()));
    }
  }
  return answers;
}

py::tuple QueueCore::submit(const std::string& type, const py::bytes& payload_obj,
                            const std::string& mode, int64_t priority,
                            const std::optional<std::string>& key,
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
  return submitted(r.value(), type);
}

py::object QueueCore::result(const std::string& id_text, double timeout_s) {
  const uint64_t id = parse_id(id_text);
  Use use(*this);
  SharedWait* shared = nullptr;  // references into an unordered_map stay valid
  {
    std::lock_guard lock(mu_);
    if (state_locked(id) == perfq::CompletionPump::State::kUnknown) raise_not_tracked();
    shared = &shared_waits_[id];
    ++shared->waiters;
  }
  struct Leave {
    QueueCore& q;
    uint64_t id;
    ~Leave() {
      std::lock_guard lock(q.mu_);
      auto it = q.shared_waits_.find(id);
      if (it != q.shared_waits_.end() && --it->second.waiters == 0) q.shared_waits_.erase(it);
    }
  } leave{*this, id};
  // Beyond ~31 years the deadline would overflow the clock: no limit.
  const bool forever = timeout_s < 0 || timeout_s > 1e9;
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(forever ? 0.0 : timeout_s));
  Waiting waiting(*this);
  std::optional<perfq::Outcome> got;
  for (;;) {
    bool forgotten = false;
    bool closed = false;
    bool timed_out = false;
    {
      py::gil_scoped_release nogil;
      std::unique_lock lock(mu_);
      const auto slice_end = std::chrono::steady_clock::now() + kSlice;
      const auto until = forever ? slice_end : std::min(slice_end, deadline);
      cv_.wait_until(lock, until, [&] {
        return closed_ || shared->outcome ||
               state_locked(id) != perfq::CompletionPump::State::kPending;
      });
      if (shared->outcome) {
        got = shared->outcome;  // another call collected it while we waited
      } else if (pump_) {
        got = pump_->collect(id);  // settled: collecting it forgets it
        if (got && shared->waiters > 1) shared->outcome = got;
      }
      forgotten = !got && state_locked(id) == perfq::CompletionPump::State::kUnknown;
      closed = closed_;
      timed_out = !forever && std::chrono::steady_clock::now() >= deadline;
    }
    if (got) break;
    if (closed) raise_closed();
    if (forgotten) raise_code(perfq::Errc::kNotFound, "the request was forgotten meanwhile");
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    if (timed_out) return py::none();
  }
  const perfq::Outcome& o = *got;
  return py::make_tuple(format_id(o.request_id), std::string(perfq::status_name(o.status)),
                        py::bytes(reinterpret_cast<const char*>(o.result.data()), o.result.size()),
                        error_or_none(o.error), int{o.attempts},
                        static_cast<double>(o.wait_ns) / 1e6,
                        static_cast<double>(o.processing_ns) / 1e6);
}

bool QueueCore::watch(const std::string& id_text, const py::object& callback) {
  const uint64_t id = parse_id(id_text);
  std::lock_guard lock(mu_);
  if (closed_) raise_closed();
  const perfq::CompletionPump::State st = state_locked(id);
  if (st == perfq::CompletionPump::State::kUnknown) raise_not_tracked();
  // Settled: on_settled took (or will find no) watchers of it; pending: the
  // pump marks it settled before on_settled takes mu_ to call them.
  if (st == perfq::CompletionPump::State::kSettled) return true;
  watchers_[id].push_back(callback.inc_ref().ptr());
  return false;
}

bool QueueCore::unwatch(const std::string& id_text, const py::object& callback) {
  const uint64_t id = parse_id(id_text);
  PyObject* dropped = nullptr;
  {
    std::lock_guard lock(mu_);
    auto it = watchers_.find(id);
    if (it == watchers_.end()) return false;
    auto& ws = it->second;
    auto w = std::find(ws.begin(), ws.end(), callback.ptr());
    if (w == ws.end()) return false;
    dropped = *w;
    ws.erase(w);
    if (ws.empty()) watchers_.erase(it);
  }
  Py_DECREF(dropped);  // outside mu_: it may run Python code
  return true;
}

size_t QueueCore::watchers() {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (const auto& [id, ws] : watchers_) n += ws.size();
  return n;
}

size_t QueueCore::forgotten() {
  std::lock_guard lock(mu_);
  return pump_ ? pump_->forgotten() : 0;
}

bool QueueCore::forget(const std::string& id_text) {
  const uint64_t id = parse_id(id_text);
  std::vector<PyObject*> drop;
  {
    std::lock_guard lock(mu_);
    if (closed_) raise_closed();
    if (!pump_ || !pump_->forget(id)) return false;
    if (auto it = watchers_.find(id); it != watchers_.end()) {
      drop = std::move(it->second);
      watchers_.erase(it);
    }
  }
  cv_.notify_all();     // result() waits for it end with NOT_FOUND,
  call_watchers(drop);  // and result_async() awaits too
  return true;
}

py::tuple QueueCore::status(const std::string& id_text) {
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
                        perfq::iso_time(st.created_at_unix_ns), finished, error_or_none(st.error));
}

void QueueCore::cancel(const std::string& id_text) {
  const uint64_t id = parse_id(id_text);
  require_user_or_admin();
  Use use(*this);
  perfq::Producer& p = producer();
  auto r = p.cancel(id, perfq::shm::Caller{user_id_, admin_});
  if (!r) raise_error(r.error());
}

size_t QueueCore::tracked() {
  std::lock_guard lock(mu_);
  return pump_ ? pump_->tracked() : 0;
}

void QueueCore::close() {
  size_t mine = 0;  // calls of this core in progress on this thread
  perfq::CompletionPump* pump = nullptr;
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    closed_ = true;
    mine = static_cast<size_t>(
        std::count(user_threads_.begin(), user_threads_.end(), std::this_thread::get_id()));
    pump = pump_.get();
  }
  cv_.notify_all();
  if (pump != nullptr && pump->on_completion_thread()) {
    // A watcher the completion thread released held the last reference to
    // the Queue, so this runs on that thread, inside its watcher call: the
    // pump cannot join its own thread, and nobody else uses a Queue being
    // destroyed. Keep the GIL (releasing it here could let the interpreter
    // finish while this thread still has work); the pump detaches the
    // thread, which leaves once the watcher returns, touching nothing.
    pump->close();
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
      pump = pump_.get();  // no call is left to create it (a Use refuses once closed_)
    }
    if (pump != nullptr) pump->close();  // without mu_, which its thread takes: joins
  }
  std::vector<PyObject*> fire;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, ws] : watchers_) fire.insert(fire.end(), ws.begin(), ws.end());
    watchers_.clear();
  }
  if (mine == 0) producer_.reset();  // bounded: one pass over the slots
  call_watchers(fire);
}

QueueCore::Use::Use(QueueCore& q) : q_(q) {
  std::lock_guard lock(q_.mu_);
  if (q_.closed_) raise_closed();
  ++q_.users_;
  q_.user_threads_.push_back(std::this_thread::get_id());
}

QueueCore::Use::~Use() {
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

void QueueCore::require_user() const {
  if (!has_user_) {
    raise_code(perfq::Errc::kInvalidRequest, "this Queue was opened without a user_id");
  }
}

void QueueCore::require_user_or_admin() const {
  if (!has_user_ && !admin_) {
    raise_code(perfq::Errc::kInvalidRequest, "this Queue was opened without a user_id");
  }
}

perfq::Producer& QueueCore::producer() {
  std::lock_guard lock(mu_);
  if (!producer_) {
    auto p = perfq::Producer::connect(seg_->seg);
    if (!p) raise_error(p.error());
    producer_ = std::move(p.value());
    perfq::CompletionPumpOptions opt;
    opt.slice = kCompletionSlice;
    opt.max_uncollected = max_uncollected_;
    pump_ = std::make_unique<perfq::CompletionPump>(
        *producer_, [this](std::span<const uint64_t> ids) { on_settled(ids); }, opt);
  }
  return *producer_;
}

void QueueCore::track(uint64_t id, perfq::Future future) {
  std::lock_guard lock(mu_);
  // Settled already (true): kept as settled; nobody watches it yet.
  (void)pump_->track(id, std::move(future));
}

perfq::CompletionPump::State QueueCore::state_locked(uint64_t id) const {
  return pump_ ? pump_->state(id) : perfq::CompletionPump::State::kUnknown;
}

void QueueCore::on_settled(std::span<const uint64_t> ids) {
  std::vector<PyObject*> fire;
  {
    std::lock_guard lock(mu_);
    for (const uint64_t id : ids) {
      auto it = watchers_.find(id);
      if (it == watchers_.end()) continue;
      fire.insert(fire.end(), it->second.begin(), it->second.end());
      watchers_.erase(it);
    }
  }
  cv_.notify_all();
  if (fire.empty()) return;
  if (finalizing()) return;  // the interpreter is going away: leak, never touch it
  py::gil_scoped_acquire gil;
  call_watchers(fire);  // may destroy this object: nothing of it is touched after
}

void QueueCore::call_watchers(std::vector<PyObject*>& fire) {
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

}  // namespace perfq::python
