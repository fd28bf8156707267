/*
 * perfq C API: producers, workers and event readers of a perfq queue.
 *
 * Conventions
 * - Handles are opaque; each *_open has a matching *_close.
 * - Options and requests are plain structs; call their *_init() first, then
 *   set what differs from the defaults (fields added later keep working).
 * - Calls that can fail return perfq_errc. PERFQ_OK is 0; the other values
 *   are SPEC's error codes (perfq_errc_name() gives the wire name, e.g.
 *   "QUEUE_FULL"). On failure, perfq_last_error() holds a message for the
 *   calling thread until its next failing call. Messages never quote a
 *   payload or an idempotency key.
 * - Nothing throws across this boundary: a C++ exception inside the library
 *   becomes PERFQ_INTERNAL. A C++ exception escaping a processor callback
 *   fails that attempt (PROCESSOR_ERROR, retried), like an error reply.
 * - Thread safety: a producer may be used by any number of threads at once.
 *   A worker's run/do_work belong to one thread; perfq_worker_stop() may be
 *   called from any thread or a signal handler. An event reader belongs to
 *   one thread at a time.
 * - Strings are NUL-terminated UTF-8 unless a length is given beside them.
 */
#ifndef PERFQ_PERFQ_H
#define PERFQ_PERFQ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define PERFQ_API __attribute__((visibility("default")))
#else
#define PERFQ_API
#endif

/* ------------------------------------------------------------- codes */

/* SPEC's error codes, with the numbers they carry in shared memory. */
typedef enum perfq_errc {
  PERFQ_OK = 0,
  PERFQ_INVALID_REQUEST = 1,
  PERFQ_INVALID_MODE = 2,
  PERFQ_INVALID_PRIORITY = 3,
  PERFQ_QUEUE_FULL = 4,
  PERFQ_RATE_LIMIT_EXCEEDED = 5,
  PERFQ_NOT_FOUND = 6,
  PERFQ_UNAUTHORIZED = 7,
  PERFQ_FORBIDDEN = 8,
  PERFQ_INVALID_STATUS = 9,
  PERFQ_WORKER_UNAVAILABLE = 10,
  PERFQ_PROCESSING_TIMEOUT = 11,
  PERFQ_PROCESSOR_ERROR = 12,
  PERFQ_WORKER_DIED = 13,
  PERFQ_QUEUE_TIMEOUT = 14,
  PERFQ_CANCELLED = 15,
  PERFQ_AGENT_UNAVAILABLE = 16,
  PERFQ_SEGMENT_INVALID = 17,
  PERFQ_CONFLICT = 18,
  PERFQ_INTERNAL = 19,
  /* Not a SPEC code: the call's own timeout passed before the awaited
   * outcome arrived (the request itself is unaffected). */
  PERFQ_TIMED_OUT = 100
} perfq_errc;

typedef enum perfq_mode {
  PERFQ_MODE_FIFO = 0,
  PERFQ_MODE_PRIORITY = 1,
  PERFQ_MODE_BATCH = 2
} perfq_mode;

/* Bands in service order. */
typedef enum perfq_band {
  PERFQ_BAND_CRITICAL = 0,
  PERFQ_BAND_HIGH = 1,
  PERFQ_BAND_NORMAL = 2,
  PERFQ_BAND_LOW = 3
} perfq_band;

typedef enum perfq_status {
  PERFQ_STATUS_PENDING = 0,
  PERFQ_STATUS_ASSIGNED = 1,
  PERFQ_STATUS_PROCESSING = 2,
  PERFQ_STATUS_COMPLETED = 3,
  PERFQ_STATUS_FAILED = 4,
  PERFQ_STATUS_TIMEOUT = 5,
  PERFQ_STATUS_CANCELLED = 6,
  /* A duplicate submit whose original the status table no longer holds. */
  PERFQ_STATUS_UNKNOWN = 255
} perfq_status;

/* How a thread that waits spends the time (see docs/DECISIONS.md). */
typedef enum perfq_idle {
  PERFQ_IDLE_BUSY_SPIN = 0,
  PERFQ_IDLE_BACKOFF = 1,
  PERFQ_IDLE_PARK = 2
} perfq_idle;

typedef enum perfq_event_kind {
  PERFQ_EVENT_SUBMITTED = 0,
  PERFQ_EVENT_ASSIGNED = 1,
  PERFQ_EVENT_PROCESSING = 2,
  PERFQ_EVENT_COMPLETED = 3,
  PERFQ_EVENT_FAILED = 4,
  PERFQ_EVENT_TIMEOUT = 5,
  PERFQ_EVENT_CANCELLED = 6,
  PERFQ_EVENT_RETRYING = 7,
  PERFQ_EVENT_DEAD_LETTERED = 8,
  PERFQ_EVENT_QUEUE_FULL = 9,
  PERFQ_EVENT_QUEUE_EMPTY = 10
} perfq_event_kind;

/* Field limits (SPEC §3), without the terminating NUL. */
#define PERFQ_TYPE_MAX 64
#define PERFQ_USER_ID_MAX 64
#define PERFQ_IDEMPOTENCY_KEY_MAX 128
#define PERFQ_METADATA_MAX 512
#define PERFQ_PRIORITY_MIN 1
#define PERFQ_PRIORITY_MAX 20
#define PERFQ_PRIORITY_DEFAULT 5

/* The library's version, "MAJOR.MINOR.PATCH". */
PERFQ_API const char* perfq_version(void);
/* Wire names: "QUEUE_FULL", "fifo", "CRITICAL", "pending",
 * "request.completed". Never NULL ("UNKNOWN" for a value out of range). */
PERFQ_API const char* perfq_errc_name(perfq_errc code);
PERFQ_API const char* perfq_mode_name(perfq_mode mode);
PERFQ_API const char* perfq_band_name(perfq_band band);
PERFQ_API const char* perfq_status_name(perfq_status status);
PERFQ_API const char* perfq_event_name(perfq_event_kind kind);
/* The HTTP status SPEC §6 answers a code with (400, 404, 429, 503, ...). */
PERFQ_API int perfq_errc_http_status(perfq_errc code);

/* The calling thread's last failure: a message ("" if none), and for
 * PERFQ_RATE_LIMIT_EXCEEDED the milliseconds until a submit may be accepted
 * again (0 otherwise). Valid until the thread's next failing call. */
PERFQ_API const char* perfq_last_error(void);
PERFQ_API uint64_t perfq_last_retry_after_ms(void);

/* Request ids print as 16 lower-case hex digits (out: 17 bytes with NUL).
 * parse returns 1 on success, 0 for text that is not such an id. */
PERFQ_API void perfq_format_request_id(uint64_t id, char out[17]);
PERFQ_API int perfq_parse_request_id(const char* text, uint64_t* out);

/* ------------------------------------------------------------- producer */

typedef struct perfq_producer perfq_producer;

typedef struct perfq_producer_options {
  perfq_idle idle; /* how perfq_wait waits; default PERFQ_IDLE_PARK */
} perfq_producer_options;

PERFQ_API void perfq_producer_options_init(perfq_producer_options* opt);

/* Attaches to queue `queue`'s segment as a producer. opt may be NULL.
 * PERFQ_AGENT_UNAVAILABLE: no segment of that name; PERFQ_SEGMENT_INVALID:
 * it is not a perfq segment of this layout. */
PERFQ_API perfq_errc perfq_producer_open(const char* queue, const perfq_producer_options* opt,
                                         perfq_producer** out);
/* Detaches. Outcomes not yet awaited are dropped (the requests carry on in
 * the queue). NULL is ignored. */
PERFQ_API void perfq_producer_close(perfq_producer* p);

typedef struct perfq_request {
  const char* type;            /* required */
  const char* user_id;         /* required */
  perfq_mode mode;             /* default PERFQ_MODE_FIFO */
  uint8_t priority;            /* default PERFQ_PRIORITY_DEFAULT */
  const void* payload;         /* payload_len bytes; NULL when 0 */
  size_t payload_len;          /* at most the segment's slot_payload_bytes */
  const char* idempotency_key; /* NULL: none */
  const char* metadata;        /* NULL: none; else a JSON object text */
} perfq_request;

PERFQ_API void perfq_request_init(perfq_request* r);

typedef struct perfq_submitted {
  uint64_t request_id;
  perfq_status status;
  perfq_mode mode;
  perfq_band band;
  uint8_t priority;
  uint64_t created_at_unix_ns;
  uint64_t queue_position; /* requests to be served before it (estimate) */
  /* 1: an earlier submit of this user with the same idempotency key; the
   * fields are the original's, and its outcome goes to its own submitter. */
  int duplicate;
} perfq_submitted;

/* SPEC §5 submit: validate, idempotency, rate limit, admission (waits up to
 * rope_drop_timeout_ms for room), enqueue. On PERFQ_RATE_LIMIT_EXCEEDED,
 * perfq_last_retry_after_ms() says when to try again. */
PERFQ_API perfq_errc perfq_submit(perfq_producer* p, const perfq_request* r, perfq_submitted* out);
/* As perfq_submit, but never waits: PERFQ_QUEUE_FULL at once. */
PERFQ_API perfq_errc perfq_try_submit(perfq_producer* p, const perfq_request* r,
                                      perfq_submitted* out);

/* Flags of perfq_submit_many. */
#define PERFQ_SUBMIT_TRY 1u    /* never wait for room: as perfq_try_submit */
#define PERFQ_SUBMIT_FORGET 2u /* keep no outcomes: as perfq_forget on each */

/* One request's answer in perfq_submit_many. */
typedef struct perfq_submit_result {
  perfq_errc error;          /* PERFQ_OK: accepted, or a duplicate */
  uint64_t retry_after_ms;   /* PERFQ_RATE_LIMIT_EXCEEDED: when to try again; else 0 */
  perfq_submitted submitted; /* when error is PERFQ_OK; zeroed otherwise */
} perfq_submit_result;

/* SPEC §5 submit for `count` requests at once: results[i] answers
 * requests[i] as perfq_submit (or, with PERFQ_SUBMIT_TRY, perfq_try_submit)
 * would, and a request refused for any reason (invalid, duplicate-in-flight
 * CONFLICT, rate limit, QUEUE_FULL) fails no other; a key repeated inside
 * the batch answers as a duplicate of its first accepted use. When the
 * queue fills part-way, the requests that fit are accepted first; the call
 * then waits for room at most rope_drop_timeout_ms for the whole batch
 * (not at all with PERFQ_SUBMIT_TRY), and the requests still without room
 * answer PERFQ_QUEUE_FULL. Cheaper than a loop of perfq_submit: one ring
 * claim per band and group of up to 64 requests, one wake-up of the agent
 * per call. With PERFQ_SUBMIT_FORGET no outcome is kept (perfq_wait says
 * PERFQ_NOT_FOUND for these ids): call perfq_poll regularly to collect and
 * drop them, which frees their slots. `accepted` (may be NULL) gets how
 * many results are PERFQ_OK. Returns PERFQ_OK once every request has its
 * answer, whatever the answers; another code (a NULL argument, an unknown
 * flag) means nothing was submitted. perfq_last_error() then holds the
 * message of the last refused request, if any. */
PERFQ_API perfq_errc perfq_submit_many(perfq_producer* p, const perfq_request* requests,
                                       size_t count, unsigned flags, perfq_submit_result* results,
                                       size_t* accepted);

typedef struct perfq_outcome {
  uint64_t request_id;
  perfq_status status; /* completed, failed, timeout or cancelled */
  perfq_errc error;    /* why it did not complete; PERFQ_OK when completed */
  uint8_t attempts;
  void* result; /* the processor's reply or last error text; owned */
  size_t result_len;
  uint64_t wait_ns;       /* publish -> last dispatch */
  uint64_t processing_ns; /* last dispatch -> settled */
} perfq_outcome;

/* Outcomes come back to the producer that submitted them, and each holds
 * its request's slot until this producer collects it: perfq_wait,
 * perfq_wait_any or perfq_poll. A producer that submits and never waits
 * must still call perfq_poll regularly (and perfq_forget what it will never
 * wait for), or the queue runs out of slots. */

/* Waits up to timeout_ms (negative, or more than 10^12: no limit) for the
 * outcome of a request this producer submitted, and hands it over: a
 * request's outcome is delivered once. PERFQ_TIMED_OUT: not yet (wait
 * again); PERFQ_NOT_FOUND: not submitted here, forgotten, or already
 * delivered. Free with perfq_outcome_free. */
PERFQ_API perfq_errc perfq_wait(perfq_producer* p, uint64_t request_id, int64_t timeout_ms,
                                perfq_outcome* out);
/* Waits up to timeout_ms (negative, or more than 10^12: no limit) until
 * outcomes arrive, and writes up to `max` ids of requests whose outcome
 * perfq_wait now returns at once; returns how many (0: the timeout passed).
 * Ids beyond `max` are kept for the next call. For event loops that await
 * many requests from one thread. It reports what it and perfq_poll
 * collected: while a perfq_wait with a timeout runs on another thread,
 * outcomes that perfq_wait collects are not reported here, so use one
 * style per producer. Returns 0 and sets the last error on failure. */
PERFQ_API size_t perfq_wait_any(perfq_producer* p, int64_t timeout_ms, uint64_t* ids, size_t max);
/* Collects the outcomes that have arrived, without waiting (they are then
 * reported by perfq_wait_any and returned at once by perfq_wait); returns
 * how many it collected, forgotten ones included. */
PERFQ_API size_t perfq_poll(perfq_producer* p);
/* Drops the outcome of a request this producer submitted: nobody will wait
 * for it (fire and forget). PERFQ_NOT_FOUND if there is none to drop. */
PERFQ_API perfq_errc perfq_forget(perfq_producer* p, uint64_t request_id);
PERFQ_API void perfq_outcome_free(perfq_outcome* o);

/* Who asks: the owner sees and cancels their requests; an admin any. */
typedef struct perfq_caller {
  const char* user_id;
  int admin;
} perfq_caller;

typedef struct perfq_request_status {
  uint64_t request_id;
  perfq_status status;
  perfq_errc error; /* final: why not completed; pending: WORKER_UNAVAILABLE
                       while no worker has a processor for its type */
  perfq_mode mode;
  perfq_band band;
  uint8_t priority;
  uint8_t attempts;
  char type[PERFQ_TYPE_MAX + 1];
  char user_id[PERFQ_USER_ID_MAX + 1];
  uint64_t created_at_unix_ns;
  uint64_t finished_at_unix_ns; /* 0 while not final */
} perfq_request_status;

/* PERFQ_NOT_FOUND for unknown ids and other users' requests (the same
 * answer, so ids cannot be probed). */
PERFQ_API perfq_errc perfq_lookup_status(perfq_producer* p, uint64_t request_id,
                                         const perfq_caller* who, perfq_request_status* out);
/* Cancels a pending request. PERFQ_INVALID_STATUS once it was dispatched or
 * finished; PERFQ_NOT_FOUND as for perfq_status. */
PERFQ_API perfq_errc perfq_cancel(perfq_producer* p, uint64_t request_id, const perfq_caller* who);

/* ------------------------------------------------------------- worker */

typedef struct perfq_worker perfq_worker;

typedef struct perfq_worker_options {
  perfq_idle idle;       /* default PERFQ_IDLE_PARK */
  uint32_t max_inflight; /* dispatches the agent may queue here; default 64 */
} perfq_worker_options;

PERFQ_API void perfq_worker_options_init(perfq_worker_options* opt);

/* One attempt, as a processor sees it. Pointers are valid only during the
 * processor call; text fields are not NUL-terminated (use the lengths). */
typedef struct perfq_job {
  uint64_t request_id;
  const char* type;
  size_t type_len;
  const char* user_id;
  size_t user_id_len;
  perfq_mode mode;
  uint8_t priority;
  uint8_t attempt; /* 1-based */
  const void* payload;
  size_t payload_len;
  const char* metadata; /* JSON object text, or empty */
  size_t metadata_len;
} perfq_job;

/* Where a processor puts its answer for one attempt: one of the three
 * calls below (the last one counts; the bytes are copied). A processor that
 * sets none fails the attempt with PROCESSOR_ERROR. */
typedef struct perfq_reply perfq_reply;
PERFQ_API void perfq_reply_ok(perfq_reply* r, const void* body, size_t len);
/* A failed attempt: retried with backoff until max_retry_attempts. */
PERFQ_API void perfq_reply_error(perfq_reply* r, const char* message);
/* Not worth retrying: straight to the dead-letter queue. */
PERFQ_API void perfq_reply_permanent_error(perfq_reply* r, const char* message);

typedef void (*perfq_processor_fn)(void* user, const perfq_job* job, perfq_reply* reply);
/* replies[i] answers jobs[i]. */
typedef void (*perfq_batch_processor_fn)(void* user, const perfq_job* jobs, size_t count,
                                         perfq_reply* const* replies);

/* opt may be NULL. */
PERFQ_API perfq_errc perfq_worker_open(const char* queue, const perfq_worker_options* opt,
                                       perfq_worker** out);
/* Stops heart-beating and leaves; attempts it still held are dispatched
 * again. Call after perfq_worker_run has returned. NULL is ignored. */
PERFQ_API void perfq_worker_close(perfq_worker* w);

/* Declares `type`; `fn(user, ...)` runs on the thread in perfq_worker_run. */
PERFQ_API perfq_errc perfq_worker_register(perfq_worker* w, const char* type, perfq_processor_fn fn,
                                           void* user);
/* Declares `type` with a batch processor (SPEC §5 batch mode). */
PERFQ_API perfq_errc perfq_worker_register_batch(perfq_worker* w, const char* type,
                                                 perfq_batch_processor_fn fn, void* user);
/* Runs duty cycles until perfq_worker_stop; parks when idle (bounded). */
PERFQ_API perfq_errc perfq_worker_run(perfq_worker* w);
/* Any thread, or a signal handler: makes perfq_worker_run return soon. */
PERFQ_API void perfq_worker_stop(perfq_worker* w);
/* One duty cycle without waiting: returns how many attempts it ran. */
PERFQ_API int perfq_worker_do_work(perfq_worker* w);

/* ------------------------------------------------------------- events */

typedef struct perfq_events perfq_events;

typedef struct perfq_event {
  uint64_t position; /* in the queue's event ring; the SSE id */
  uint64_t at_unix_ns;
  uint64_t request_id; /* 0 for queue events */
  perfq_event_kind kind;
  perfq_status status; /* after the event */
  perfq_mode mode;
  perfq_errc error;
  uint8_t priority;
  uint8_t attempt;
  char type[PERFQ_TYPE_MAX + 1];
  char user_id[PERFQ_USER_ID_MAX + 1];
} perfq_event;

/* Follows the queue's events from now on (SPEC §5; never payloads). */
PERFQ_API perfq_errc perfq_events_open(const char* queue, perfq_events** out);
PERFQ_API void perfq_events_close(perfq_events* e);
/* Writes up to `max` new events; returns how many. Never blocks. Poll at
 * least every 10 s, or the agent stops writing events. */
PERFQ_API size_t perfq_events_poll(perfq_events* e, perfq_event* out, size_t max);
/* Events lost by falling more than the ring's capacity behind, so far. */
PERFQ_API uint64_t perfq_events_missed(const perfq_events* e);

#ifdef __cplusplus
}
#endif

#endif /* PERFQ_PERFQ_H */
