// The C API over the C++ client library. Every entry point catches at this
// edge: no exception crosses into C, and every failure leaves its message in
// the calling thread's last error.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "perfq/perfq.h"
#include "perfq/perfq.hpp"

namespace {

using perfq::Errc;

// The C enums carry the C++ values: casts between them are the identity.
static_assert(PERFQ_INTERNAL == static_cast<int>(Errc::kInternal) &&
              PERFQ_CONFLICT == static_cast<int>(Errc::kConflict) &&
              PERFQ_QUEUE_FULL == static_cast<int>(Errc::kQueueFull) &&
              PERFQ_INTERNAL + 1 == perfq::kErrcCount);
static_assert(PERFQ_MODE_BATCH == static_cast<int>(perfq::Mode::kBatch) &&
              PERFQ_MODE_BATCH + 1 == perfq::kModeCount);
static_assert(PERFQ_BAND_LOW == static_cast<int>(perfq::Band::kLow) &&
              PERFQ_BAND_LOW + 1 == perfq::kBandCount);
static_assert(PERFQ_STATUS_CANCELLED == static_cast<int>(perfq::Status::kCancelled) &&
              PERFQ_STATUS_CANCELLED + 1 == perfq::kStatusCount);
static_assert(PERFQ_EVENT_QUEUE_EMPTY == static_cast<int>(perfq::EventKind::kQueueEmpty) &&
              PERFQ_EVENT_QUEUE_EMPTY + 1 == perfq::kEventKindCount);
static_assert(PERFQ_IDLE_PARK == static_cast<int>(perfq::IdleKind::kPark) &&
              PERFQ_IDLE_BACKOFF == static_cast<int>(perfq::IdleKind::kBackoff));
static_assert(PERFQ_TYPE_MAX == perfq::kTypeMaxBytes &&
              PERFQ_USER_ID_MAX == perfq::kUserIdMaxBytes &&
              PERFQ_IDEMPOTENCY_KEY_MAX == perfq::kIdempotencyKeyMaxBytes &&
              PERFQ_METADATA_MAX == perfq::kMetadataMaxBytes);

thread_local std::string t_error;
thread_local uint64_t t_retry_after_ms = 0;

perfq_errc fail(Errc code, std::string message, uint64_t retry_after_ms = 0) noexcept {
  try {
    t_error = std::move(message);
  } catch (...) {
    t_error.clear();  // no room for the message; the code still tells
  }
  t_retry_after_ms = retry_after_ms;
  return static_cast<perfq_errc>(code);
}

perfq_errc fail(const perfq::Error& e) noexcept {
  return fail(e.code, e.message, e.retry_after_ms);
}

// Runs `f` (returning perfq_errc) with every exception turned into INTERNAL.
template <class F>
perfq_errc guarded(F&& f) noexcept {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return fail(Errc::kInternal, "out of memory");
  } catch (const std::exception& e) {
    return fail(Errc::kInternal, e.what());
  } catch (...) {
    return fail(Errc::kInternal, "unknown exception");
  }
}

perfq_errc null_argument() noexcept {
  return fail(Errc::kInvalidRequest, "a required argument is NULL");
}

std::string_view text(const char* s) noexcept {
  return s != nullptr ? std::string_view(s) : std::string_view();
}

void copy_text(char* out, std::size_t cap, std::string_view s) noexcept {
  const std::size_t n = std::min(cap - 1, s.size());
  std::memcpy(out, s.data(), n);
  out[n] = '\0';
}

perfq::IdleKind idle_of(perfq_idle i) noexcept {
  switch (i) {
    case PERFQ_IDLE_BUSY_SPIN:
      return perfq::IdleKind::kBusySpin;
    case PERFQ_IDLE_BACKOFF:
      return perfq::IdleKind::kBackoff;
    case PERFQ_IDLE_PARK:
      break;
  }
  return perfq::IdleKind::kPark;
}

// A C caller may put any int in an enum field, while C++ only gives meaning
// to the values of the enum's bit width: read the bytes as the underlying
// integer, then check the range, before the value is used as the enum.
template <class E>
bool below(const E& value, uint8_t count) noexcept {
  std::underlying_type_t<E> raw;
  std::memcpy(&raw, &value, sizeof raw);
  const auto v = static_cast<long long>(raw);
  return v >= 0 && v < count;
}

// A timeout in ms from C: negative or beyond ~31 years means none (and
// keeps the arithmetic on time points clear of overflow).
constexpr int64_t kNoLimitAboveMs = 1'000'000'000'000;
bool no_limit(int64_t timeout_ms) noexcept {
  return timeout_ms < 0 || timeout_ms > kNoLimitAboveMs;
}

perfq::shm::Caller caller_of(const perfq_caller* who) noexcept {
  return perfq::shm::Caller{text(who->user_id), who->admin != 0};
}

}  // namespace

// ---------------------------------------------------------------- handles

// A request's outcome, shared by the map and the threads awaiting it.
struct PendingOutcome {
  perfq::Future future;
};

struct perfq_producer {
  std::unique_ptr<perfq::Producer> producer;
  std::mutex mu;  // guards `pending`
  std::unordered_map<uint64_t, std::shared_ptr<PendingOutcome>> pending;
  std::mutex any_mu;            // one perfq_wait_any at a time
  std::deque<uint64_t> ready;   // settled ids perfq_wait_any has not returned yet
  std::vector<uint64_t> batch;  // scratch for Producer::wait_any
};

struct perfq_reply {
  perfq::Reply reply = perfq::Reply::error("the processor gave no reply");
};

struct perfq_worker {
  std::unique_ptr<perfq::Worker> worker;
  std::atomic<bool> stop{false};
};

struct perfq_events {
  std::unique_ptr<perfq::EventReader> reader;
  std::vector<perfq::Event> scratch;
};

// ---------------------------------------------------------------- names

extern "C" {

const char* perfq_version(void) {
  return "0.1.0";
}

const char* perfq_errc_name(perfq_errc code) {
  if (code == PERFQ_TIMED_OUT) return "TIMED_OUT";
  if (!below(code, perfq::kErrcCount)) return "UNKNOWN";
  return perfq::errc_name(static_cast<Errc>(code)).data();
}

int perfq_errc_http_status(perfq_errc code) {
  if (code == PERFQ_TIMED_OUT) return 504;
  if (!below(code, perfq::kErrcCount)) return 500;
  return perfq::http_status(static_cast<Errc>(code));
}

const char* perfq_mode_name(perfq_mode mode) {
  if (!below(mode, perfq::kModeCount)) return "UNKNOWN";
  return perfq::mode_name(static_cast<perfq::Mode>(mode)).data();
}

const char* perfq_band_name(perfq_band band) {
  if (!below(band, perfq::kBandCount)) return "UNKNOWN";
  return perfq::band_name(static_cast<perfq::Band>(band)).data();
}

const char* perfq_status_name(perfq_status status) {
  if (!below(status, perfq::kStatusCount)) return "unknown";
  return perfq::status_name(static_cast<perfq::Status>(status)).data();
}

const char* perfq_event_name(perfq_event_kind kind) {
  if (!below(kind, perfq::kEventKindCount)) return "UNKNOWN";
  return perfq::event_name(static_cast<perfq::EventKind>(kind));
}

const char* perfq_last_error(void) {
  return t_error.c_str();
}

uint64_t perfq_last_retry_after_ms(void) {
  return t_retry_after_ms;
}

void perfq_format_request_id(uint64_t id, char out[17]) {
  char buf[17];
  perfq::format_request_id(id, buf);
  std::memcpy(out, buf, sizeof buf);
}

int perfq_parse_request_id(const char* text_in, uint64_t* out) {
  if (text_in == nullptr || out == nullptr) return 0;
  return perfq::parse_request_id(text_in, *out) ? 1 : 0;
}

// ---------------------------------------------------------------- producer

void perfq_producer_options_init(perfq_producer_options* opt) {
  if (opt == nullptr) return;
  std::memset(opt, 0, sizeof *opt);
  opt->idle = PERFQ_IDLE_PARK;
}

perfq_errc perfq_producer_open(const char* queue, const perfq_producer_options* opt,
                               perfq_producer** out) {
  return guarded([&] {
    if (queue == nullptr || out == nullptr) return null_argument();
    *out = nullptr;
    perfq::ProducerOptions o;
    if (opt != nullptr) o.idle = idle_of(opt->idle);
    auto p = perfq::Producer::connect(queue, o);
    if (!p) return fail(p.error());
    auto h = std::make_unique<perfq_producer>();
    h->producer = std::move(p.value());
    *out = h.release();
    return PERFQ_OK;
  });
}

void perfq_producer_close(perfq_producer* p) {
  delete p;  // Futures go before the Producer they point into (member order)
}

void perfq_request_init(perfq_request* r) {
  if (r == nullptr) return;
  std::memset(r, 0, sizeof *r);
  r->mode = PERFQ_MODE_FIFO;
  r->priority = PERFQ_PRIORITY_DEFAULT;
}

// The view of a C request; false (and `why`) for what C++ cannot hold.
static bool view_of(const perfq_request* r, perfq::RequestView& v, perfq::Error& why) noexcept {
  if (!below(r->mode, perfq::kModeCount)) {
    why = {Errc::kInvalidMode, "mode must be fifo, priority or batch"};
    return false;
  }
  if (r->payload == nullptr && r->payload_len != 0) {
    why = {Errc::kInvalidRequest, "a required argument is NULL"};
    return false;
  }
  v.type = text(r->type);
  v.user_id = text(r->user_id);
  v.mode = static_cast<perfq::Mode>(r->mode);
  v.priority = r->priority;
  v.payload = {static_cast<const std::byte*>(r->payload), r->payload_len};
  v.idempotency_key = text(r->idempotency_key);
  v.metadata = text(r->metadata);
  return true;
}

static void fill_submitted(perfq_submitted* out, const perfq::Submitted& s) noexcept {
  std::memset(out, 0, sizeof *out);
  out->request_id = s.request_id;
  out->status = s.status_known ? static_cast<perfq_status>(s.status) : PERFQ_STATUS_UNKNOWN;
  out->mode = static_cast<perfq_mode>(s.mode);
  out->band = static_cast<perfq_band>(s.band);
  out->priority = s.priority;
  out->created_at_unix_ns = s.created_at_unix_ns;
  out->queue_position = s.queue_position;
  out->duplicate = s.duplicate ? 1 : 0;
}

static perfq_errc submit_impl(perfq_producer* p, const perfq_request* r, perfq_submitted* out,
                              bool wait_for_room) {
  return guarded([&] {
    if (p == nullptr || r == nullptr || out == nullptr) return null_argument();
    perfq::RequestView v;
    perfq::Error why;
    if (!view_of(r, v, why)) return fail(why);
    auto s = wait_for_room ? p->producer->submit(v) : p->producer->try_submit(v);
    if (!s) return fail(s.error());
    fill_submitted(out, *s);
    if (s->outcome.valid()) {
      auto entry = std::make_shared<PendingOutcome>();
      entry->future = std::move(s->outcome);
      std::lock_guard lock(p->mu);
      p->pending[s->request_id] = std::move(entry);
    }
    return PERFQ_OK;
  });
}

perfq_errc perfq_submit(perfq_producer* p, const perfq_request* r, perfq_submitted* out) {
  return submit_impl(p, r, out, true);
}

perfq_errc perfq_try_submit(perfq_producer* p, const perfq_request* r, perfq_submitted* out) {
  return submit_impl(p, r, out, false);
}

// Scratch of perfq_submit_many, kept per thread so a batch allocates only
// for the outcomes it keeps.
struct ManyScratch {
  std::vector<perfq::RequestView> views;
  std::vector<size_t> index;  // views[k] is requests[index[k]]
  std::vector<perfq::Result<perfq::Submitted>> answers;
};

perfq_errc perfq_submit_many(perfq_producer* p, const perfq_request* requests, size_t count,
                             unsigned flags, perfq_submit_result* results, size_t* accepted) {
  return guarded([&] {
    if (accepted != nullptr) *accepted = 0;
    if (p == nullptr || ((requests == nullptr || results == nullptr) && count > 0)) {
      return null_argument();
    }
    if ((flags & ~(PERFQ_SUBMIT_TRY | PERFQ_SUBMIT_FORGET)) != 0) {
      return fail(Errc::kInvalidRequest, "unknown perfq_submit_many flag");
    }
    thread_local ManyScratch m;
    m.views.clear();
    m.index.clear();
    // results may be null when there are no requests.
    if (count > 0) std::memset(results, 0, count * sizeof *results);
    perfq::Error last{Errc::kOk, {}};
    for (size_t i = 0; i < count; ++i) {
      perfq::RequestView v;
      perfq::Error why;
      if (!view_of(&requests[i], v, why)) {
        results[i].error = static_cast<perfq_errc>(why.code);
        last = std::move(why);
        continue;
      }
      m.views.push_back(v);
      m.index.push_back(i);
    }
    perfq::SubmitManyOptions opt;
    opt.wait_for_room = (flags & PERFQ_SUBMIT_TRY) == 0;
    // PERFQ_SUBMIT_FORGET is perfq_forget at once: the Futures are dropped
    // (never entered in `pending`), so perfq_poll collects and counts the
    // outcomes as it does forgotten ones.
    const bool keep = (flags & PERFQ_SUBMIT_FORGET) == 0;
    const size_t ok = p->producer->submit_many(m.views, m.answers, opt);
    std::vector<std::pair<uint64_t, std::shared_ptr<PendingOutcome>>> kept;
    for (size_t k = 0; k < m.answers.size(); ++k) {
      perfq_submit_result& res = results[m.index[k]];
      auto& a = m.answers[k];
      if (!a) {
        res.error = static_cast<perfq_errc>(a.error().code);
        res.retry_after_ms = a.error().retry_after_ms;
        last = a.error();
        continue;
      }
      fill_submitted(&res.submitted, *a);
      if (keep && a->outcome.valid()) {
        auto entry = std::make_shared<PendingOutcome>();
        entry->future = std::move(a->outcome);
        kept.emplace_back(a->request_id, std::move(entry));
      }
    }
    m.answers.clear();  // no Future outlives the call here
    if (!kept.empty()) {
      std::lock_guard lock(p->mu);
      for (auto& [id, entry] : kept) p->pending[id] = std::move(entry);
    }
    if (accepted != nullptr) *accepted = ok;
    if (last.code != Errc::kOk) (void)fail(last);
    return PERFQ_OK;
  });
}

perfq_errc perfq_wait(perfq_producer* p, uint64_t request_id, int64_t timeout_ms,
                      perfq_outcome* out) {
  return guarded([&] {
    if (p == nullptr || out == nullptr) return null_argument();
    std::memset(out, 0, sizeof *out);
    std::shared_ptr<PendingOutcome> entry;
    {
      std::lock_guard lock(p->mu);
      auto it = p->pending.find(request_id);
      if (it == p->pending.end()) {
        return fail(Errc::kNotFound, "no outcome awaited for this request by this producer");
      }
      entry = it->second;
    }
    if (no_limit(timeout_ms)) {
      while (!entry->future.wait_for(std::chrono::seconds(1))) {
      }
    } else if (!entry->future.wait_for(std::chrono::milliseconds(timeout_ms))) {
      t_error = "the outcome has not arrived yet";
      t_retry_after_ms = 0;
      return PERFQ_TIMED_OUT;
    }
    {
      // The first thread to take the outcome delivers it.
      std::lock_guard lock(p->mu);
      auto it = p->pending.find(request_id);
      if (it == p->pending.end() || it->second != entry) {
        return fail(Errc::kNotFound, "the outcome was delivered to another caller");
      }
      p->pending.erase(it);
    }
    const perfq::Outcome& o = entry->future.get();
    void* bytes = nullptr;
    if (!o.result.empty()) {
      bytes = std::malloc(o.result.size());
      if (bytes == nullptr) throw std::bad_alloc();
      std::memcpy(bytes, o.result.data(), o.result.size());
    }
    out->request_id = o.request_id;
    out->status = static_cast<perfq_status>(o.status);
    out->error = static_cast<perfq_errc>(o.error);
    out->attempts = o.attempts;
    out->result = bytes;
    out->result_len = o.result.size();
    out->wait_ns = o.wait_ns;
    out->processing_ns = o.processing_ns;
    return PERFQ_OK;
  });
}

// Collects arrived outcomes into p->ready (caller holds any_mu), waiting up
// to `slice`; ids nobody awaits any more (forgotten) are not kept.
static void collect(perfq_producer* p, std::chrono::milliseconds slice) {
  p->batch.clear();
  (void)p->producer->wait_any(slice, p->batch);
  if (p->batch.empty()) return;
  std::lock_guard lock(p->mu);
  for (uint64_t id : p->batch) {
    if (p->pending.count(id) != 0) p->ready.push_back(id);
  }
  // Ids perfq_wait took meanwhile linger until wait_any passes them; a
  // producer that polls but never calls wait_any must not pile them up.
  if (p->ready.size() > 2 * p->pending.size() + 64) {
    std::erase_if(p->ready, [p](uint64_t id) { return p->pending.count(id) == 0; });
  }
}

size_t perfq_wait_any(perfq_producer* p, int64_t timeout_ms, uint64_t* ids, size_t max) {
  size_t n = 0;
  const perfq_errc rc = guarded([&] {
    if (p == nullptr || (ids == nullptr && max > 0)) return null_argument();
    std::lock_guard lock(p->any_mu);
    const bool forever = no_limit(timeout_ms);
    for (;;) {
      {
        // Taken by perfq_wait or forgotten meanwhile: not reported.
        std::lock_guard pending(p->mu);
        while (!p->ready.empty() && p->pending.count(p->ready.front()) == 0) {
          p->ready.pop_front();
        }
      }
      if (!p->ready.empty()) break;
      collect(p, forever ? std::chrono::milliseconds(1000) : std::chrono::milliseconds(timeout_ms));
      if (!forever) break;
    }
    std::lock_guard pending(p->mu);
    while (n < max && !p->ready.empty()) {
      const uint64_t id = p->ready.front();
      p->ready.pop_front();
      if (p->pending.count(id) != 0) ids[n++] = id;
    }
    return PERFQ_OK;
  });
  return rc == PERFQ_OK ? n : 0;
}

size_t perfq_poll(perfq_producer* p) {
  size_t n = 0;
  (void)guarded([&] {
    if (p == nullptr) return null_argument();
    std::lock_guard lock(p->any_mu);
    collect(p, std::chrono::milliseconds(0));
    n = p->batch.size();
    return PERFQ_OK;
  });
  return n;
}

perfq_errc perfq_forget(perfq_producer* p, uint64_t request_id) {
  return guarded([&] {
    if (p == nullptr) return null_argument();
    std::lock_guard lock(p->mu);
    if (p->pending.erase(request_id) == 0) {
      return fail(Errc::kNotFound, "no outcome awaited for this request by this producer");
    }
    return PERFQ_OK;
  });
}

void perfq_outcome_free(perfq_outcome* o) {
  if (o == nullptr) return;
  std::free(o->result);
  o->result = nullptr;
  o->result_len = 0;
}

perfq_errc perfq_lookup_status(perfq_producer* p, uint64_t request_id, const perfq_caller* who,
                               perfq_request_status* out) {
  return guarded([&] {
    if (p == nullptr || who == nullptr || out == nullptr) return null_argument();
    auto st = p->producer->status(request_id, caller_of(who));
    if (!st) return fail(st.error());
    std::memset(out, 0, sizeof *out);
    out->request_id = st->request_id;
    out->status = static_cast<perfq_status>(st->status);
    out->error = static_cast<perfq_errc>(st->error);
    out->mode = static_cast<perfq_mode>(st->mode);
    out->band = static_cast<perfq_band>(st->band);
    out->priority = st->priority;
    out->attempts = st->attempts;
    copy_text(out->type, sizeof out->type, st->type);
    copy_text(out->user_id, sizeof out->user_id, st->user_id);
    out->created_at_unix_ns = st->created_at_unix_ns;
    out->finished_at_unix_ns = st->finished_at_unix_ns;
    return PERFQ_OK;
  });
}

perfq_errc perfq_cancel(perfq_producer* p, uint64_t request_id, const perfq_caller* who) {
  return guarded([&] {
    if (p == nullptr || who == nullptr) return null_argument();
    auto r = p->producer->cancel(request_id, caller_of(who));
    if (!r) return fail(r.error());
    return PERFQ_OK;
  });
}

// ---------------------------------------------------------------- worker

void perfq_worker_options_init(perfq_worker_options* opt) {
  if (opt == nullptr) return;
  std::memset(opt, 0, sizeof *opt);
  opt->idle = PERFQ_IDLE_PARK;
  opt->max_inflight = perfq::WorkerOptions{}.max_inflight;
}

perfq_errc perfq_worker_open(const char* queue, const perfq_worker_options* opt,
                             perfq_worker** out) {
  return guarded([&] {
    if (queue == nullptr || out == nullptr) return null_argument();
    *out = nullptr;
    perfq::WorkerOptions o;
    if (opt != nullptr) {
      o.idle = idle_of(opt->idle);
      if (opt->max_inflight != 0) o.max_inflight = opt->max_inflight;
    }
    auto w = perfq::Worker::connect(queue, o);
    if (!w) return fail(w.error());
    auto h = std::make_unique<perfq_worker>();
    h->worker = std::move(w.value());
    *out = h.release();
    return PERFQ_OK;
  });
}

void perfq_worker_close(perfq_worker* w) {
  delete w;
}

void perfq_reply_ok(perfq_reply* r, const void* body, size_t len) {
  if (r == nullptr) return;
  try {
    r->reply = perfq::Reply::ok(body != nullptr ? std::string(static_cast<const char*>(body), len)
                                                : std::string());
  } catch (...) {
    r->reply = perfq::Reply::error({});  // out of memory: the attempt fails and is retried
  }
}

static void set_error(perfq_reply* r, perfq::AttemptResult kind, const char* message) noexcept {
  if (r == nullptr) return;
  try {
    r->reply = perfq::Reply{kind, std::string(text(message))};
  } catch (...) {
    r->reply = perfq::Reply{kind, {}};
  }
}

void perfq_reply_error(perfq_reply* r, const char* message) {
  set_error(r, perfq::AttemptResult::kError, message);
}

void perfq_reply_permanent_error(perfq_reply* r, const char* message) {
  set_error(r, perfq::AttemptResult::kPermanentError, message);
}

static perfq_job job_of(const perfq::Job& j) noexcept {
  perfq_job c{};
  c.request_id = j.request_id;
  c.type = j.type.data();
  c.type_len = j.type.size();
  c.user_id = j.user_id.data();
  c.user_id_len = j.user_id.size();
  c.mode = static_cast<perfq_mode>(j.mode);
  c.priority = j.priority;
  c.attempt = j.attempt;
  c.payload = j.payload.data();
  c.payload_len = j.payload.size();
  c.metadata = j.metadata.data();
  c.metadata_len = j.metadata.size();
  return c;
}

perfq_errc perfq_worker_register(perfq_worker* w, const char* type, perfq_processor_fn fn,
                                 void* user) {
  return guarded([&] {
    if (w == nullptr || type == nullptr || fn == nullptr) return null_argument();
    auto r = w->worker->register_processor(type, [fn, user](const perfq::Job& j) {
      const perfq_job c = job_of(j);
      perfq_reply reply;
      fn(user, &c, &reply);
      return std::move(reply.reply);
    });
    if (!r) return fail(r.error());
    return PERFQ_OK;
  });
}

perfq_errc perfq_worker_register_batch(perfq_worker* w, const char* type,
                                       perfq_batch_processor_fn fn, void* user) {
  return guarded([&] {
    if (w == nullptr || type == nullptr || fn == nullptr) return null_argument();
    auto r = w->worker->register_batch_processor(type, [fn, user](std::span<const perfq::Job> js) {
      std::vector<perfq_job> jobs;
      jobs.reserve(js.size());
      for (const perfq::Job& j : js) jobs.push_back(job_of(j));
      std::vector<perfq_reply> replies(js.size());
      std::vector<perfq_reply*> slots;
      slots.reserve(js.size());
      for (perfq_reply& each : replies) slots.push_back(&each);
      fn(user, jobs.data(), jobs.size(), slots.data());
      std::vector<perfq::Reply> out;
      out.reserve(js.size());
      for (perfq_reply& each : replies) out.push_back(std::move(each.reply));
      return out;
    });
    if (!r) return fail(r.error());
    return PERFQ_OK;
  });
}

perfq_errc perfq_worker_run(perfq_worker* w) {
  return guarded([&] {
    if (w == nullptr) return null_argument();
    w->worker->run(w->stop);
    w->stop.store(false, std::memory_order_relaxed);
    return PERFQ_OK;
  });
}

void perfq_worker_stop(perfq_worker* w) {
  static_assert(std::atomic<bool>::is_always_lock_free, "perfq_worker_stop is signal-safe");
  if (w != nullptr) w->stop.store(true, std::memory_order_relaxed);
}

int perfq_worker_do_work(perfq_worker* w) {
  int n = 0;
  (void)guarded([&] {
    if (w == nullptr) return null_argument();
    n = w->worker->do_work();
    return PERFQ_OK;
  });
  return n;
}

// ---------------------------------------------------------------- events

perfq_errc perfq_events_open(const char* queue, perfq_events** out) {
  return guarded([&] {
    if (queue == nullptr || out == nullptr) return null_argument();
    *out = nullptr;
    auto r = perfq::EventReader::connect(queue);
    if (!r) return fail(r.error());
    auto h = std::make_unique<perfq_events>();
    h->reader = std::move(r.value());
    *out = h.release();
    return PERFQ_OK;
  });
}

void perfq_events_close(perfq_events* e) {
  delete e;
}

size_t perfq_events_poll(perfq_events* e, perfq_event* out, size_t max) {
  size_t n = 0;
  (void)guarded([&] {
    if (e == nullptr || (out == nullptr && max > 0)) return null_argument();
    e->scratch.clear();
    n = e->reader->poll(e->scratch, max);
    const uint64_t first = e->reader->position() - n;
    size_t kept = 0;
    for (size_t i = 0; i < n; ++i) {
      const perfq::Event& ev = e->scratch[i];
      // An entry a broken writer scribbled on is dropped, never passed on.
      if (ev.kind >= perfq::kEventKindCount || ev.status >= perfq::kStatusCount ||
          ev.mode >= perfq::kModeCount || !perfq::errc_valid(ev.error)) {
        continue;
      }
      perfq_event& c = out[kept++];
      std::memset(&c, 0, sizeof c);
      c.position = first + i;
      c.at_unix_ns = ev.at_unix_ns;
      c.request_id = ev.request_id;
      c.kind = static_cast<perfq_event_kind>(ev.kind);
      c.status = static_cast<perfq_status>(ev.status);
      c.mode = static_cast<perfq_mode>(ev.mode);
      c.error = static_cast<perfq_errc>(ev.error);
      c.priority = ev.priority;
      c.attempt = ev.attempt;
      copy_text(c.type, sizeof c.type,
                {ev.type, std::min<size_t>(ev.type_len, perfq::kTypeMaxBytes)});
      copy_text(c.user_id, sizeof c.user_id,
                {ev.user_id, std::min<size_t>(ev.user_len, perfq::kUserIdMaxBytes)});
    }
    n = kept;
    return PERFQ_OK;
  });
  return n;
}

uint64_t perfq_events_missed(const perfq_events* e) {
  return e != nullptr ? e->reader->missed() : 0;
}

}  // extern "C"
