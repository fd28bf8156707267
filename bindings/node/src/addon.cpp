// perfq.node: the functions index.js builds PerformanceQueue from. Each
// takes the queue's native handle (an external around a Core) first.
//
//   open(queue, onSettled, onEvents, onCalls, rawResults) -> handle
//     onCalls([[handlerId, batch, items], ...]): the dispatches taken since
//     the last call; each item {payload, ctx, ticket}
//   connect(h)                      attach as a producer (throws coded errors)
//   trySubmit(h, req, forget) -> response | null   never waits; null: use submitWait
//   submitWait(h, req, forget) -> Promise<response> waits for room off the main thread
//   trySubmitMany(h, reqs, forget) -> [[ok, response | error]]  one crossing, never waits
//   status(h, id, userId, admin) -> record;  cancel(h, id, userId, admin)
//   tracked(h, id) -> bool;  awaiting(h, bool);  events(h, bool)
//   addProcessor(h, type, batch, concurrency, handlerId, raw)  raw: payloads as Buffers
//   report(h, tickets, kinds, texts)  settles processor results (main thread)
//   close(h) -> Promise<void>
#include <node_api.h>

#include <cmath>
#include <cstdio>
#include <ctime>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core.hpp"
#include "napi_util.hpp"
#include "perfq/core/iso_time.hpp"

namespace perfq::node {

namespace {

CodedError closed_error() {
  return {"ERR_PERFQ_CLOSED", "the PerformanceQueue is closed", 0, 0};
}

napi_value id_string(napi_env env, uint64_t id) {
  char text[17];
  format_request_id(id, text);
  return make_string(env, std::string_view(text, 16));
}

struct Args {
  static constexpr size_t kMax = 6;
  napi_value argv[kMax];
  size_t argc = kMax;
};

Args args_of(napi_env env, napi_callback_info info, size_t need) {
  Args a;
  check(napi_get_cb_info(env, info, &a.argc, a.argv, nullptr, nullptr), "callback info");
  if (a.argc < need) throw CodedError{"ERR_INVALID_ARG_TYPE", "missing arguments", 0, 0};
  return a;
}

Core* core_of(napi_env env, napi_value v) {
  if (type_of(env, v) != napi_external) {
    throw CodedError{"ERR_INVALID_ARG_TYPE", "not a perfq handle", 0, 0};
  }
  void* p = nullptr;
  check(napi_get_value_external(env, v, &p), "external value");
  return static_cast<Core*>(p);
}

bool bool_of(napi_env env, napi_value v) {
  bool b = false;
  if (type_of(env, v) == napi_boolean) check(napi_get_value_bool(env, v, &b), "bool value");
  return b;
}

uint32_t u32_of(napi_env env, napi_value v, const CodedError& bad) {
  if (type_of(env, v) != napi_number) throw bad;
  double d = 0;
  check(napi_get_value_double(env, v, &d), "number value");
  if (!(d >= 0 && d <= 4294967295.0) || std::floor(d) != d) throw bad;
  return static_cast<uint32_t>(d);
}

uint64_t request_id_of(napi_env env, napi_value v) {
  const CodedError bad = coded(Errc::kInvalidRequest, "a request id is 16 hex digits");
  const std::string text = to_string(env, v, bad);
  uint64_t id = 0;
  if (!parse_request_id(text, id)) throw bad;
  return id;
}

// A request as index.js hands it over: payload and metadata already JSON
// text. Owns its bytes, so a waiting submit can use it off the main thread.
struct OwnedRequest {
  std::string type, user_id, payload, key, metadata;
  Mode mode = Mode::kFifo;
  uint8_t priority = kPriorityDefault;

  [[nodiscard]] RequestView view() const {
    RequestView v;
    v.type = type;
    v.user_id = user_id;
    v.mode = mode;
    v.priority = priority;
    v.payload = std::as_bytes(std::span(payload.data(), payload.size()));
    v.idempotency_key = key;
    v.metadata = metadata;
    return v;
  }
};

OwnedRequest request_of(napi_env env, napi_value obj) {
  if (type_of(env, obj) != napi_object) {
    throw coded(Errc::kInvalidRequest, "a request is an object");
  }
  OwnedRequest r;
  r.type = to_string(env, get(env, obj, "type"), coded(Errc::kInvalidRequest, "type is a string"));
  r.user_id =
      to_string(env, get(env, obj, "userId"), coded(Errc::kInvalidRequest, "userId is a string"));
  const napi_value mode = get(env, obj, "mode");
  if (!is_nullish(env, mode)) {
    const CodedError bad = coded(Errc::kInvalidMode, "mode must be fifo, priority or batch");
    if (!parse_mode(to_string(env, mode, bad), r.mode)) throw bad;
  }
  const napi_value prio = get(env, obj, "priority");
  if (!is_nullish(env, prio)) {
    const CodedError bad =
        coded(Errc::kInvalidPriority, "priority must be an integer from 1 to 20");
    if (type_of(env, prio) != napi_number) throw bad;
    double d = 0;
    check(napi_get_value_double(env, prio, &d), "number value");
    if (!(d >= kPriorityMin && d <= kPriorityMax) || std::floor(d) != d) throw bad;
    r.priority = static_cast<uint8_t>(d);
  }
  // JSON text from index.js, or raw bytes (a Buffer or Uint8Array), as sent.
  const napi_value payload = get(env, obj, "payload");
  if (auto raw = bytes_of(env, payload)) {
    r.payload = std::move(*raw);
  } else {
    r.payload =
        to_string(env, payload, coded(Errc::kInvalidRequest, "payload must be JSON text or bytes"));
  }
  const napi_value key = get(env, obj, "idempotencyKey");
  if (!is_nullish(env, key)) {
    const CodedError bad =
        coded(Errc::kInvalidRequest, "idempotencyKey must be 1 to 128 printable ASCII characters");
    r.key = to_string(env, key, bad);
    if (r.key.empty()) throw bad;
  }
  const napi_value meta = get(env, obj, "metadata");
  if (!is_nullish(env, meta)) {
    r.metadata = to_string(env, meta, coded(Errc::kInvalidRequest, "metadata must be an object"));
  }
  return r;
}

napi_value submitted_object(napi_env env, const Submitted& s, const std::string& type) {
  napi_value o = make_object(env);
  set(env, o, "requestId", id_string(env, s.request_id));
  set(env, o, "status", make_string(env, s.status_known ? status_name(s.status) : "unknown"));
  set(env, o, "mode", make_string(env, mode_name(s.mode)));
  set(env, o, "type", make_string(env, type));
  set(env, o, "priority", make_number(env, s.priority));
  set(env, o, "createdAt", make_string(env, iso_time(s.created_at_unix_ns)));
  set(env, o, "queuePosition", make_number(env, static_cast<double>(s.queue_position)));
  if (s.duplicate) set(env, o, "duplicate", make_bool(env, true));
  return o;
}

// Keeps the future of a fresh request; answers the response object.
// `forget`: nobody will collect the outcome (fire and forget): the
// completion thread drains it to free the slot, and it never crosses into
// JavaScript.
napi_value accept(napi_env env, Core& core, Submitted& s, const std::string& type, bool forget) {
  napi_value o = submitted_object(env, s, type);
  if (!s.duplicate && s.outcome.valid()) core.track(s.request_id, std::move(s.outcome), forget);
  return o;
}

bool forget_of(napi_env env, const Args& a, size_t i) {
  return a.argc > i && type_of(env, a.argv[i]) == napi_boolean && bool_of(env, a.argv[i]);
}

// ---------------------------------------------------------------- callbacks
// of the threadsafe functions (main thread; env is null when Node tears the
// environment down, and then only the data is freed).

void report_exception(napi_env env) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) != napi_ok || !pending) return;
  napi_value e;
  if (napi_get_and_clear_last_exception(env, &e) == napi_ok) {
    // A throwing listener: 'uncaughtException', as a throw inside emit() would.
    best_effort(napi_fatal_exception(env, e), "fatal exception");
  }
}

void call_with(napi_env env, napi_value fn, size_t argc, const napi_value* argv) {
  napi_value recv = undefined(env);
  napi_value ignored;
  if (napi_call_function(env, recv, fn, argc, argv, &ignored) != napi_ok) report_exception(env);
}

void on_settled(napi_env env, napi_value js_cb, void* context, void*) {
  if (env == nullptr) return;
  guarded(env, [&]() -> napi_value {
    auto* core = static_cast<Core*>(context);
    std::vector<Outcome> outs = core->take_settled();
    if (outs.empty()) return nullptr;
    napi_value arr;
    check(napi_create_array_with_length(env, outs.size(), &arr), "create array");
    uint32_t i = 0;
    for (const Outcome& o : outs) {
      napi_value v = make_object(env);
      set(env, v, "requestId", id_string(env, o.request_id));
      set(env, v, "status", make_string(env, status_name(o.status)));
      if (o.error != Errc::kOk) set(env, v, "error", make_string(env, errc_name(o.error)));
      // A completed request's result as a Buffer when the queue asked for
      // raw results (no JSON); messages are always text.
      set(env, v, "text",
          core->raw_results() && o.status == Status::kCompleted
              ? make_buffer(env, o.result_text())
              : make_string(env, o.result_text()));
      set(env, v, "attempts", make_number(env, o.attempts));
      set(env, v, "waitTimeMs", make_number(env, static_cast<double>(o.wait_ns) / 1e6));
      set(env, v, "processingTimeMs", make_number(env, static_cast<double>(o.processing_ns) / 1e6));
      check(napi_set_element(env, arr, i++, v), "set element");
    }
    call_with(env, js_cb, 1, &arr);
    return nullptr;
  });
}

napi_value event_object(napi_env env, const TimedEvent& te) {
  const Event& e = te.event;
  napi_value o = make_object(env);
  set(env, o, "id", make_number(env, static_cast<double>(te.position)));
  set(env, o, "event",
      make_string(
          env, e.kind < kEventKindCount ? event_name(static_cast<EventKind>(e.kind)) : "unknown"));
  set(env, o, "at", make_string(env, iso_time(e.at_unix_ns)));
  if (e.request_id == 0) return o;  // queue.full, queue.empty
  set(env, o, "requestId", id_string(env, e.request_id));
  set(env, o, "type",
      make_string(env, std::string_view(e.type, std::min<size_t>(e.type_len, kTypeMaxBytes))));
  set(env, o, "userId",
      make_string(env, std::string_view(e.user_id, std::min<size_t>(e.user_len, kUserIdMaxBytes))));
  set(env, o, "status",
      make_string(
          env, e.status < kStatusCount ? status_name(static_cast<Status>(e.status)) : "unknown"));
  set(env, o, "priority", make_number(env, e.priority));
  set(env, o, "mode",
      make_string(env, e.mode < kModeCount ? mode_name(static_cast<Mode>(e.mode)) : "unknown"));
  set(env, o, "attempt", make_number(env, e.attempt));
  if (e.error != 0) {
    set(env, o, "error",
        make_string(env, errc_valid(e.error) ? errc_name(static_cast<Errc>(e.error)) : "UNKNOWN"));
  }
  return o;
}

void on_events(napi_env env, napi_value js_cb, void* context, void*) {
  if (env == nullptr) return;
  guarded(env, [&]() -> napi_value {
    auto* core = static_cast<Core*>(context);
    for (const EventBatch& b : core->take_events()) {
      napi_value argv[2];
      argv[0] = make_number(env, static_cast<double>(b.missed_before));
      check(napi_create_array_with_length(env, b.events.size(), &argv[1]), "create array");
      uint32_t i = 0;
      for (const TimedEvent& te : b.events) {
        check(napi_set_element(env, argv[1], i++, event_object(env, te)), "set element");
      }
      call_with(env, js_cb, 2, argv);
    }
    return nullptr;
  });
}

void on_calls(napi_env env, napi_value js_cb, void* context, void*) {
  if (env == nullptr) return;
  guarded(env, [&]() -> napi_value {
    auto* core = static_cast<Core*>(context);
    std::vector<Dispatch> calls = core->take_calls();
    if (calls.empty()) return nullptr;
    napi_value list;
    check(napi_create_array_with_length(env, calls.size(), &list), "create array");
    uint32_t n = 0;
    for (const Dispatch& d : calls) {
      napi_value items;
      check(napi_create_array_with_length(env, d.jobs.size(), &items), "create array");
      uint32_t i = 0;
      for (const JobCopy& j : d.jobs) {
        napi_value ctx = make_object(env);
        set(env, ctx, "requestId", id_string(env, j.request_id));
        set(env, ctx, "type", make_string(env, j.type));
        set(env, ctx, "userId", make_string(env, j.user_id));
        set(env, ctx, "mode", make_string(env, mode_name(j.mode)));
        set(env, ctx, "priority", make_number(env, j.priority));
        set(env, ctx, "attempt", make_number(env, j.attempt));
        set(env, ctx, "metadata",
            j.metadata.empty() ? undefined(env) : make_string(env, j.metadata));
        napi_value item = make_object(env);
        set(env, item, "payload",
            d.raw ? make_buffer(env, j.payload) : make_string(env, j.payload));
        set(env, item, "ctx", ctx);
        set(env, item, "ticket", make_number(env, j.ticket));
        check(napi_set_element(env, items, i++, item), "set element");
      }
      napi_value entry;
      check(napi_create_array_with_length(env, 3, &entry), "create array");
      check(
          napi_set_element(env, entry, 0,
                           d.handler == kNoHandler ? undefined(env) : make_number(env, d.handler)),
          "set element");
      check(napi_set_element(env, entry, 1, make_bool(env, d.batch)), "set element");
      check(napi_set_element(env, entry, 2, items), "set element");
      check(napi_set_element(env, list, n++, entry), "set element");
    }
    napi_value ignored;
    check(napi_call_function(env, undefined(env), js_cb, 1, &list, &ignored),
          "call processor dispatch");
    return nullptr;
  });
}

// ---------------------------------------------------------------- lifetime

void cleanup_core(void* arg) {
  // Environment teardown (process exit, worker_threads end): join every
  // native thread before Node goes away.
  static_cast<Core*>(arg)->shutdown();
}

void finalize_core(napi_env env, void* data, void*) {
  auto* core = static_cast<Core*>(data);
  core->shutdown();
  best_effort(napi_remove_env_cleanup_hook(env, cleanup_core, core), "remove cleanup hook");
  delete core;
}

napi_threadsafe_function make_tsfn(napi_env env, napi_value fn, const char* name, Core* core,
                                   napi_threadsafe_function_call_js cb) {
  if (type_of(env, fn) != napi_function) {
    throw CodedError{"ERR_INVALID_ARG_TYPE", "callback expected", 0, 0};
  }
  napi_threadsafe_function t;
  check(napi_create_threadsafe_function(env, fn, nullptr, make_string(env, name), 0, 1, nullptr,
                                        nullptr, core, cb, &t),
        "create threadsafe function");
  // An idle queue never keeps the process alive; index.js refs while needed.
  check(napi_unref_threadsafe_function(env, t), "unref threadsafe function");
  return t;
}

napi_value js_open(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = args_of(env, info, 4);
    std::string queue =
        to_string(env, a.argv[0], coded(Errc::kInvalidRequest, "queue is a string"));
    auto core = std::make_unique<Core>(std::move(queue));
    if (a.argc > 4 && type_of(env, a.argv[4]) == napi_boolean && bool_of(env, a.argv[4])) {
      core->set_raw_results();
    }
    napi_threadsafe_function s = make_tsfn(env, a.argv[1], "perfq.settled", core.get(), on_settled);
    napi_threadsafe_function e = make_tsfn(env, a.argv[2], "perfq.events", core.get(), on_events);
    napi_threadsafe_function c = make_tsfn(env, a.argv[3], "perfq.calls", core.get(), on_calls);
    core->adopt_tsfns(s, e, c);
    napi_value ext;
    check(napi_create_external(env, core.get(), finalize_core, nullptr, &ext), "create external");
    Core* raw = core.release();  // the external's finalizer owns it now
    check(napi_add_env_cleanup_hook(env, cleanup_core, raw), "add cleanup hook");
    return ext;
  });
}

napi_value js_connect(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = args_of(env, info, 1);
    Core* core = core_of(env, a.argv[0]);
    if (core->closed()) throw closed_error();
    auto r = core->connect();
    if (!r) throw coded(r.error());
    return undefined(env);
  });
}

std::shared_ptr<Producer> producer_of(Core* core) {
  auto p = core->producer();
  if (!p) throw closed_error();
  return p;
}

napi_value js_try_submit(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = args_of(env, info, 2);
    Core* core = core_of(env, a.argv[0]);
    const OwnedRequest req = request_of(env, a.argv[1]);
    auto p = producer_of(core);
    auto r = p->try_submit(req.view());
    if (!r) {
      // Full (or an equal key being submitted concurrently): index.js
      // falls back to submitWait, which may wait off the main thread.
      if (r.code() == Errc::kQueueFull || r.code() == Errc::kConflict) return null(env);
      throw coded(r.error());
    }
    return accept(env, *core, *r, req.type, forget_of(env, a, 2));
  });
}

// trySubmitMany(h, reqs, forget) -> [[ok, answer | error], ...]: one
// crossing for the lot, one ring claim per band and group, one doorbell
// (Producer::try_submit_many). Never waits: a request without room answers
// QUEUE_FULL (index.js submits those one by one, which may wait). A request
// malformed here answers its own error; the others go on.
napi_value js_try_submit_many(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = args_of(env, info, 2);
    Core* core = core_of(env, a.argv[0]);
    const bool forget = forget_of(env, a, 2);
    bool is_array = false;
    check(napi_is_array(env, a.argv[1], &is_array), "is array");
    if (!is_array) throw coded(Errc::kInvalidRequest, "requests is an array");
    uint32_t n = 0;
    check(napi_get_array_length(env, a.argv[1], &n), "array length");
    std::vector<OwnedRequest> reqs;
    std::vector<RequestView> views;
    std::vector<uint32_t> at;  // index in the input of each view
    std::vector<std::optional<CodedError>> refused(n);
    reqs.reserve(n);
    for (uint32_t i = 0; i < n; ++i) {
      napi_value el;
      check(napi_get_element(env, a.argv[1], i, &el), "get element");
      try {
        reqs.push_back(request_of(env, el));
        at.push_back(i);
      } catch (const CodedError& e) {
        refused[i] = e;
      }
    }
    views.reserve(reqs.size());
    for (const OwnedRequest& r : reqs) views.push_back(r.view());
    auto p = producer_of(core);
    std::vector<Result<Submitted>> out;
    (void)p->try_submit_many(views, out);
    napi_value list;
    check(napi_create_array_with_length(env, n, &list), "create array");
    size_t k = 0;
    for (uint32_t i = 0; i < n; ++i) {
      napi_value pair;
      check(napi_create_array_with_length(env, 2, &pair), "create array");
      napi_value ok;
      napi_value value;
      if (refused[i]) {
        ok = make_bool(env, false);
        value = make_error(env, *refused[i]);
      } else {
        Result<Submitted>& r = out[k];
        const std::string& type = reqs[k].type;
        ++k;
        if (r) {
          ok = make_bool(env, true);
          value = accept(env, *core, r.value(), type, forget);
        } else {
          ok = make_bool(env, false);
          value = make_error(env, coded(r.error()));
        }
      }
      check(napi_set_element(env, pair, 0, ok), "set element");
      check(napi_set_element(env, pair, 1, value), "set element");
      check(napi_set_element(env, list, i, pair), "set element");
    }
    return list;
  });
}

struct SubmitWork {
  napi_async_work work = nullptr;
  napi_deferred deferred = nullptr;
  napi_ref handle = nullptr;  // keeps the Core's external alive meanwhile
  Core* core = nullptr;
  std::shared_ptr<Producer> producer;
  OwnedRequest req;
  bool forget = false;
  std::optional<Result<Submitted>> result;
};

void submit_execute(napi_env, void* data) {
  auto* w = static_cast<SubmitWork*>(data);
  try {
    // The wait's slices notice close(): it never holds the process open.
    Core* core = w->core;
    w->result.emplace(w->producer->submit(w->req.view(), [core] { return core->closing(); }));
  } catch (...) {
    w->result.emplace(Error{Errc::kInternal, "submit failed"});
  }
  w->producer.reset();
}

void submit_complete(napi_env env, napi_status status, void* data) {
  std::unique_ptr<SubmitWork> w(static_cast<SubmitWork*>(data));
  bool settled = false;
  guarded(env, [&]() -> napi_value {
    napi_value out;
    bool ok = false;
    if (status != napi_ok || !w->result) {
      out = make_error(env, coded(Errc::kInternal, "submit was not run"));
    } else if (w->core->closing()) {
      // Also when the wait gave up because of close() (its QUEUE_FULL says
      // nothing about the queue).
      out = make_error(env, closed_error());
    } else if (!*w->result) {
      out = make_error(env, coded(w->result->error()));
    } else {
      out = accept(env, *w->core, w->result->value(), w->req.type, w->forget);
      ok = true;
    }
    if (ok) {
      check(napi_resolve_deferred(env, w->deferred, out), "resolve");
    } else {
      check(napi_reject_deferred(env, w->deferred, out), "reject");
    }
    settled = true;
    return nullptr;
  });
  if (!settled) {
    // Building the answer failed: the promise must still settle.
    napi_value err = nullptr;
    napi_value msg = nullptr;
    if (napi_create_string_utf8(env, "submit: could not build the answer", NAPI_AUTO_LENGTH,
                                &msg) == napi_ok &&
        napi_create_error(env, nullptr, msg, &err) == napi_ok) {
      best_effort(napi_reject_deferred(env, w->deferred, err), "reject");
    }
  }
  best_effort(napi_delete_reference(env, w->handle), "delete reference");
  best_effort(napi_delete_async_work(env, w->work), "delete async work");
}

napi_value js_submit_wait(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = args_of(env, info, 2);
    auto w = std::make_unique<SubmitWork>();
    w->core = core_of(env, a.argv[0]);
    w->req = request_of(env, a.argv[1]);
    w->forget = forget_of(env, a, 2);
    w->producer = producer_of(w->core);
    napi_value promise;
    check(napi_create_promise(env, &w->deferred, &promise), "create promise");
    check(napi_create_reference(env, a.argv[0], 1, &w->handle), "create reference");
    if (napi_create_async_work(env, nullptr, make_string(env, "perfq.submit"), submit_execute,
                               submit_complete, w.get(), &w->work) != napi_ok ||
        napi_queue_async_work(env, w->work) != napi_ok) {
      best_effort(napi_delete_reference(env, w->handle), "delete reference");
      if (w->work != nullptr)
        best_effort(napi_delete_async_work(env, w->work), "delete async work");
      napi_value err = make_error(env, coded(Errc::kInternal, "could not queue the submit"));
      check(napi_reject_deferred(env, w->deferred, err), "reject");
      return promise;
    }
    w.release();  // submit_complete owns it
    return promise;
  });
}

shm::Caller caller_of(napi_env env, const Args& a, std::string& user) {
  user = to_string(env, a.argv[2], coded(Errc::kInvalidRequest, "userId is a string"));
  return shm::Caller{user, bool_of(env, a.argv[3])};
}

napi_value js_status(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = args_of(env, info, 4);
    Core* core = core_of(env, a.argv[0]);
    const uint64_t id = request_id_of(env, a.argv[1]);
    std::string user;
    const shm::Caller who = caller_of(env, a, user);
    auto r = producer_of(core)->status(id, who);
    if (!r) throw coded(r.error());
    const shm::RequestStatus& st = *r;
    napi_value o = make_object(env);
    set(env, o, "requestId", id_string(env, st.request_id));
    set(env, o, "status", make_string(env, status_name(st.status)));
    set(env, o, "mode", make_string(env, mode_name(st.mode)));
    set(env, o, "type", make_string(env, st.type));
    set(env, o, "priority", make_number(env, st.priority));
    set(env, o, "band", make_string(env, band_name(st.band)));
    set(env, o, "userId", make_string(env, st.user_id));
    set(env, o, "attempts", make_number(env, st.attempts));
    set(env, o, "createdAt", make_string(env, iso_time(st.created_at_unix_ns)));
    if (is_final(st.status)) {
      set(env, o, "finishedAt", make_string(env, iso_time(st.finished_at_unix_ns)));
    }
    if (st.error != Errc::kOk) set(env, o, "error", make_string(env, errc_name(st.error)));
    return o;
  });
}

napi_value js_cancel(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = args_of(env, info, 4);
    Core* core = core_of(env, a.argv[0]);
    const uint64_t id = request_id_of(env, a.argv[1]);
    std::string user;
    const shm::Caller who = caller_of(env, a, user);
    auto r = producer_of(core)->cancel(id, who);
    if (!r) throw coded(r.error());
    return undefined(env);
  });
}

napi_value js_tracked(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = args_of(env, info, 2);
    Core* core = core_of(env, a.argv[0]);
    return make_bool(env, core->tracked(request_id_of(env, a.argv[1])));
  });
}

napi_value js_awaiting(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = args_of(env, info, 2);
    check(core_of(env, a.argv[0])->ref_settled(env, bool_of(env, a.argv[1])), "ref settled");
    return undefined(env);
  });
}

napi_value js_events(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = args_of(env, info, 2);
    Core* core = core_of(env, a.argv[0]);
    if (core->closed()) throw closed_error();
    const bool on = bool_of(env, a.argv[1]);
    if (auto r = core->events_enable(on); !r) throw coded(r.error());
    check(core->ref_events(env, on), "ref events");
    return undefined(env);
  });
}

napi_value js_add_processor(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = args_of(env, info, 5);
    Core* core = core_of(env, a.argv[0]);
    if (core->closed()) throw closed_error();
    const CodedError bad_type = coded(Errc::kInvalidRequest, "type is a string");
    const std::string type = to_string(env, a.argv[1], bad_type);
    if (!valid_type(type)) {
      throw coded(Errc::kInvalidRequest, "type must be 1 to 64 characters of [A-Za-z0-9._:-]");
    }
    const CodedError bad_n = {"ERR_INVALID_ARG_VALUE",
                              "concurrency must be an integer from 1 to 100000", 0, 0};
    const uint32_t n = u32_of(env, a.argv[3], bad_n);
    if (n < 1 || n > 100000) throw bad_n;
    const uint32_t handler = u32_of(env, a.argv[4], bad_n);
    const bool raw =
        a.argc > 5 && type_of(env, a.argv[5]) == napi_boolean && bool_of(env, a.argv[5]);
    auto r = core->add_processor(type, bool_of(env, a.argv[2]), n, handler, raw);
    if (!r) throw coded(r.error());
    // A registered worker keeps the process alive (a worker is a server).
    check(core->ref_calls(env, true), "ref calls");
    return undefined(env);
  });
}

// report(h, tickets, kinds, texts): parallel arrays, one entry per attempt.
napi_value js_report(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = args_of(env, info, 4);
    Core* core = core_of(env, a.argv[0]);
    const CodedError bad = {"ERR_INVALID_ARG_TYPE", "report(h, tickets, kinds, texts)", 0, 0};
    uint32_t len = 0;
    uint32_t len2 = 0;
    uint32_t len3 = 0;
    if (napi_get_array_length(env, a.argv[1], &len) != napi_ok ||
        napi_get_array_length(env, a.argv[2], &len2) != napi_ok ||
        napi_get_array_length(env, a.argv[3], &len3) != napi_ok || len2 != len || len3 != len) {
      throw bad;
    }
    std::vector<JsReply> replies(len);
    for (uint32_t i = 0; i < len; ++i) {
      napi_value t, k, x;
      check(napi_get_element(env, a.argv[1], i, &t), "get element");
      check(napi_get_element(env, a.argv[2], i, &k), "get element");
      check(napi_get_element(env, a.argv[3], i, &x), "get element");
      replies[i].ticket = u32_of(env, t, bad);
      replies[i].kind = u32_of(env, k, bad);
      if (auto raw = bytes_of(env, x)) {
        replies[i].text = std::move(*raw);  // a processor's Buffer: its bytes, as they are
      } else {
        replies[i].text = to_string(env, x, bad);
      }
    }
    core->report(replies);
    return undefined(env);
  });
}

struct CloseWork {
  napi_async_work work = nullptr;
  napi_deferred deferred = nullptr;
  napi_ref handle = nullptr;
  Core* core = nullptr;
};

void close_execute(napi_env, void* data) {
  static_cast<CloseWork*>(data)->core->shutdown();
}

void close_complete(napi_env env, napi_status, void* data) {
  std::unique_ptr<CloseWork> w(static_cast<CloseWork*>(data));
  guarded(env, [&]() -> napi_value {
    w->core->shutdown();  // no-op unless the work was cancelled
    // Reported, not thrown: the promise resolves whatever the release says.
    best_effort(w->core->release_tsfns(), "release threadsafe functions");
    check(napi_resolve_deferred(env, w->deferred, undefined(env)), "resolve");
    return nullptr;
  });
  best_effort(napi_delete_reference(env, w->handle), "delete reference");
  best_effort(napi_delete_async_work(env, w->work), "delete async work");
}

// The first step of close(), synchronous: workers take no more dispatches
// and waiting submits give up, while calls in progress may finish.
napi_value js_begin_close(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = args_of(env, info, 1);
    core_of(env, a.argv[0])->begin_close();
    return undefined(env);
  });
}

napi_value js_close(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = args_of(env, info, 1);
    auto w = std::make_unique<CloseWork>();
    w->core = core_of(env, a.argv[0]);
    w->core->begin_close();  // also frees the pool threads of waiting submits
    napi_value promise;
    check(napi_create_promise(env, &w->deferred, &promise), "create promise");
    check(napi_create_reference(env, a.argv[0], 1, &w->handle), "create reference");
    // Joining threads may take a bounded wait of each: off the main thread.
    check(napi_create_async_work(env, nullptr, make_string(env, "perfq.close"), close_execute,
                                 close_complete, w.get(), &w->work),
          "create async work");
    check(napi_queue_async_work(env, w->work), "queue async work");
    w.release();
    return promise;
  });
}

napi_value init(napi_env env, napi_value exports) {
  return guarded(env, [&] {
    const napi_property_descriptor props[] = {
        {"open", nullptr, js_open, nullptr, nullptr, nullptr, napi_default, nullptr},
        {"connect", nullptr, js_connect, nullptr, nullptr, nullptr, napi_default, nullptr},
        {"trySubmit", nullptr, js_try_submit, nullptr, nullptr, nullptr, napi_default, nullptr},
        {"submitWait", nullptr, js_submit_wait, nullptr, nullptr, nullptr, napi_default, nullptr},
        {"trySubmitMany", nullptr, js_try_submit_many, nullptr, nullptr, nullptr, napi_default,
         nullptr},
        {"status", nullptr, js_status, nullptr, nullptr, nullptr, napi_default, nullptr},
        {"cancel", nullptr, js_cancel, nullptr, nullptr, nullptr, napi_default, nullptr},
        {"tracked", nullptr, js_tracked, nullptr, nullptr, nullptr, napi_default, nullptr},
        {"awaiting", nullptr, js_awaiting, nullptr, nullptr, nullptr, napi_default, nullptr},
        {"events", nullptr, js_events, nullptr, nullptr, nullptr, napi_default, nullptr},
        {"addProcessor", nullptr, js_add_processor, nullptr, nullptr, nullptr, napi_default,
         nullptr},
        {"report", nullptr, js_report, nullptr, nullptr, nullptr, napi_default, nullptr},
        {"beginClose", nullptr, js_begin_close, nullptr, nullptr, nullptr, napi_default, nullptr},
        {"close", nullptr, js_close, nullptr, nullptr, nullptr, napi_default, nullptr},
    };
    check(napi_define_properties(env, exports, sizeof props / sizeof props[0], props),
          "define properties");
    return exports;
  });
}

}  // namespace

}  // namespace perfq::node

NAPI_MODULE_INIT() {
  return perfq::node::init(env, exports);
}
