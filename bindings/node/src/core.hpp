#pragma once
// Core: the native side of one PerformanceQueue. It owns the producer, the
// completion pump that keeps the outcomes of the requests it submitted
// (perfq/client/completion_pump.hpp, with the completion thread), the native
// threads, and the three threadsafe functions through which those threads
// reach the main thread:
//
//   completion thread --settled-->  main thread: takeSettled()
//   (the pump's)
//   event thread      --events--->  main thread: takeEvents()
//   take thread       --calls---->  main thread: JS processors ... report()
//
// The worker: one segment client per Core, whatever the concurrency. Its
// take thread takes dispatches from the worker's ring as long as the
// registration of their type has room (its `concurrency`: processors in
// flight, as BullMQ means it), starts them, copies their bytes, and hands
// them to the main thread in batches, one wake-up per batch. The main
// thread runs the processors and reports their results in batches with a
// synchronous call, report(). The result ring has a single writer: only
// report() writes it, and report() is reached only from JS, on the main
// thread (N-API calls run on the thread of their env; a worker_threads
// Worker has its own env and its own Core). The take thread never reports.
//
// Threads: every method says who may call it. "main" is the JS thread.
#include <node_api.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "perfq/client/completion_pump.hpp"
#include "perfq/client/events.hpp"
#include "perfq/client/outcome.hpp"
#include "perfq/client/producer.hpp"
#include "perfq/client/worker.hpp"

namespace perfq::node {

// One attempt the take thread hands to a JS processor.
struct JobCopy {
  uint64_t request_id = 0;
  std::string type;
  std::string user_id;
  Mode mode = Mode::kFifo;
  uint8_t priority = 0;
  uint8_t attempt = 0;
  std::string payload;
  std::string metadata;
  uint32_t ticket = 0;  // what report() names it by
};

// One dispatch (a single attempt, or a batch) for a JS processor.
struct Dispatch {
  uint32_t handler = 0;  // kNoHandler: no registration for its type
  bool batch = false;
  bool raw = false;  // its payloads go to JS as Buffers
  std::vector<JobCopy> jobs;
};

inline constexpr uint32_t kNoHandler = UINT32_MAX;

// One result from JS: kind 0 ok, 1 error, 2 permanent error.
struct JsReply {
  uint32_t ticket = 0;
  uint32_t kind = 0;
  std::string text;
};

struct TimedEvent {
  uint64_t position = 0;  // the ring position: the event's id (as the SSE id)
  Event event{};
};

struct EventBatch {
  std::vector<TimedEvent> events;
  uint64_t missed_before = 0;  // events lost before `events` (0: none)
};

class Core {
 public:
  explicit Core(std::string queue) : queue_(std::move(queue)) {}
  // main, once, right after construction: the threadsafe functions are the
  // Core's until release_tsfns().
  void adopt_tsfns(napi_threadsafe_function settled, napi_threadsafe_function events,
                   napi_threadsafe_function calls) noexcept {
    settled_tsfn_ = settled;
    events_tsfn_ = events;
    calls_tsfn_ = calls;
  }
  ~Core();
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;

  [[nodiscard]] const std::string& queue() const noexcept { return queue_; }

  // main: attaches as a producer once (later calls return at once).
  [[nodiscard]] Result<void> connect();
  // main: the producer, shared with waiting submits; null once closed.
  [[nodiscard]] std::shared_ptr<Producer> producer();
  // main: keeps the future of a request this queue submitted; its outcome
  // arrives through takeSettled() (at once if it is ready already). With
  // `forget`, the completion thread only drains it: nothing reaches JS.
  void track(uint64_t request_id, Future f, bool forget = false);
  // main: whether `request_id` is tracked and its outcome not yet handed
  // to the main thread.
  [[nodiscard]] bool tracked(uint64_t request_id);
  // main: outcomes settled since the last call.
  [[nodiscard]] std::vector<Outcome> take_settled();

  // main: starts (or resumes) / pauses the event thread's polling. Turning
  // it on attaches an event reader here, so a queue without a segment is
  // an error for the caller, not a thread retrying in the background.
  [[nodiscard]] Result<void> events_enable(bool on);
  [[nodiscard]] std::vector<EventBatch> take_events();

  // main: registers the JS handler `handler` for `type`, running at most
  // `concurrency` processors (batch calls, for a batch handler) at once.
  // The first registration attaches the worker and starts the take thread.
  // `raw`: its payloads reach JS as Buffers, not text.
  [[nodiscard]] Result<void> add_processor(const std::string& type, bool batch,
                                           uint32_t concurrency, uint32_t handler, bool raw);
  // main, right after construction: completed results reach JS as Buffers.
  void set_raw_results() noexcept { raw_results_ = true; }
  [[nodiscard]] bool raw_results() const noexcept { return raw_results_; }
  // main: the dispatches taken since the last call.
  [[nodiscard]] std::vector<Dispatch> take_calls();
  // main (the result ring's only writer): settles what the processors
  // returned, one wake-up of the agent for the lot. Unknown or already
  // reported tickets are ignored; after shutdown() nothing is written.
  void report(std::span<const JsReply> replies);

  // Any thread, idempotent: stops and joins every thread, abandons the
  // calls in progress, closes the pump (dropping the futures) and drops the
  // producer. Blocks for at
  // most about one bounded wait of each thread (~50 ms) plus whatever a
  // processor call running in C++ takes.
  void shutdown();
  [[nodiscard]] bool closed() const noexcept { return closed_.load(std::memory_order_acquire); }
  // main, at the start of close(): the workers take no more dispatches
  // (what is still in their rings goes back to the agent, uncounted, when
  // they leave) and waiting submits give up; calls in progress go on.
  void begin_close() noexcept { closing_.store(true, std::memory_order_release); }
  // Any thread: close() has begun.
  [[nodiscard]] bool closing() const noexcept { return closing_.load(std::memory_order_acquire); }

  // main: refs/unrefs (idempotent) and releases the threadsafe functions.
  [[nodiscard]] napi_status ref_settled(napi_env env, bool on);
  [[nodiscard]] napi_status ref_events(napi_env env, bool on);
  [[nodiscard]] napi_status ref_calls(napi_env env, bool on);
  [[nodiscard]] napi_status release_tsfns();

 private:
  void events_loop();
  void take_loop();
  // Take thread, under calls_mu_: whether `type` may start one more call.
  bool admit(std::string_view type, bool batch);
  void accept(std::span<const Job> jobs, std::span<const Held> held, bool batch);
  void signal(napi_threadsafe_function fn, bool& pending);

  std::string queue_;
  bool raw_results_ = false;
  napi_threadsafe_function settled_tsfn_ = nullptr;
  napi_threadsafe_function events_tsfn_ = nullptr;
  napi_threadsafe_function calls_tsfn_ = nullptr;
  bool tsfns_released_ = false;

  // Lock order: mu_, then the pump's own lock (the pump calls back into
  // the Core without its lock held).
  std::mutex mu_;  // guards everything below but the workers
  std::condition_variable events_cv_;
  bool stop_ = false;
  std::shared_ptr<Producer> producer_;
  std::unique_ptr<CompletionPump> pump_;  // set with producer_; closed in shutdown()
  bool settled_signalled_ = false;
  bool events_on_ = false;
  std::unique_ptr<EventReader> fresh_reader_;  // attached by events_enable, for the thread
  bool reader_held_ = false;                   // the thread holds a reader
  std::vector<EventBatch> event_batches_;
  size_t events_queued_ = 0;
  uint64_t events_dropped_ = 0;  // dropped here because the main thread lagged
  bool events_signalled_ = false;
  std::thread events_;

  // ---- the worker
  // Lock order: worker_mu_, then calls_mu_, then mu_.
  std::mutex worker_mu_;  // guards worker_'s lifetime (shutdown vs report)
  std::unique_ptr<Worker> worker_;
  std::thread take_;
  struct Handler {
    std::string type;
    bool batch = false;
    bool raw = false;
    uint32_t limit = 1;    // concurrency
    uint32_t running = 0;  // calls handed to JS and not yet reported
  };
  struct Ticket {
    Held held{};
    uint32_t handler = kNoHandler;
    bool unit = false;  // the first attempt of its call: reporting it frees the call's room
    bool live = false;
  };
  std::mutex calls_mu_;            // guards everything down to calls_signalled_
  std::vector<Handler> handlers_;  // by JS handler id
  std::vector<Ticket> tickets_;
  std::vector<uint32_t> free_tickets_;
  std::vector<Dispatch> calls_;             // taken, not yet handed to the main thread
  bool calls_signalled_ = false;            // under mu_ (not calls_mu_), like the other signals
  uint32_t admitted_handler_ = kNoHandler;  // admit() -> accept(), take thread
  std::atomic<bool> room_freed_{false};     // report() gave room back since the last take
  std::atomic<bool> closing_{false};        // the take thread takes no more dispatches

  std::mutex shutdown_mu_;
  std::atomic<bool> closed_{false};
};

}  // namespace perfq::node
