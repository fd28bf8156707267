#pragma once
// Worker: registers processors for request types and runs them on what the
// agent dispatches to it. The run loop heart-beats; a worker that stops
// heart-beating, closes, or dies has its attempts dispatched again.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "perfq/core/clock.hpp"
#include "perfq/core/errc.hpp"
#include "perfq/core/idle_strategy.hpp"
#include "perfq/core/request.hpp"
#include "perfq/core/result.hpp"

namespace perfq::shm {
class Segment;
}

namespace perfq {

// What a processor sees of one attempt. Views into shared memory, valid only
// during the call.
struct Job {
  uint64_t request_id = 0;
  std::string_view type;
  std::string_view user_id;
  Mode mode = Mode::kFifo;
  uint8_t priority = kPriorityDefault;
  uint8_t attempt = 1;  // 1-based
  std::span<const std::byte> payload;
  std::string_view metadata;
};

// What a processor returns for one attempt.
struct Reply {
  AttemptResult kind = AttemptResult::kOk;
  std::string body;  // result bytes (kOk) or error message (errors)

  [[nodiscard]] static Reply ok(std::string body = {}) {
    return {AttemptResult::kOk, std::move(body)};
  }
  [[nodiscard]] static Reply error(std::string message) {
    return {AttemptResult::kError, std::move(message)};
  }
  // Not worth retrying: goes straight to the dead-letter queue.
  [[nodiscard]] static Reply permanent_error(std::string message) {
    return {AttemptResult::kPermanentError, std::move(message)};
  }
};

using Processor = std::function<Reply(const Job&)>;
// A batch processor returns one Reply per job, in order. Jobs it returns no
// Reply for fail their attempt (an error, retried like any other).
using BatchProcessor = std::function<std::vector<Reply>(std::span<const Job>)>;

struct WorkerOptions {
  IdleKind idle = IdleKind::kPark;
  // Attempts the agent may hand this worker at once, started or not. Those
  // not started yet cost no processing time (SPEC §4 processing_timeout_ms
  // counts from an attempt's start); one still unstarted a processing
  // timeout after its dispatch goes back to the queue, uncounted.
  uint32_t max_inflight = 64;
  // The clock the agent's time rules go by, for the start time written into
  // each attempt (tests that drive the agent's clock by hand). Must outlive
  // the worker.
  const Clock* clock = nullptr;  // nullptr: the system clock
};

// An attempt take() started and handed on, until report() settles it.
struct Held {
  uint32_t slot = 0;
  uint32_t client = 0;  // the worker record it was dispatched to
  uint64_t ctl = 0;     // its control word once started (PROCESSING)
  uint64_t ref = 0;     // the ref the agent dispatched
};

class Worker {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Worker>> connect(std::string_view queue,
                                                               WorkerOptions opt = {});
  [[nodiscard]] static Result<std::unique_ptr<Worker>> connect(std::shared_ptr<shm::Segment> seg,
                                                               WorkerOptions opt = {});
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Declares `type`; the agent dispatches it here from the next duty cycle.
  [[nodiscard]] Result<void> register_processor(std::string_view type, Processor fn);

  // Declares `type` with a batch processor: the agent hands it batch-mode
  // requests of the type together (SPEC §5 batch mode), and any other
  // request of the type as a batch of one. Replaces a single processor for
  // the same type.
  [[nodiscard]] Result<void> register_batch_processor(std::string_view type, BatchProcessor fn);

  // One duty cycle: runs what is dispatched, reports results. Returns how
  // many attempts it ran. Single thread only (the worker's run thread).
  int do_work();

  // Runs duty cycles until `stop` is true, parking when idle (bounded, so
  // the heartbeat continues). Single thread only. Once `stop` is true it
  // finishes the dispatch it is running and takes no other: attempts still
  // waiting in its ring go back to the agent when the worker closes,
  // without costing an attempt.
  void run(const std::atomic<bool>& stop);

  // ---- for bindings whose processors run on another thread than the one
  // taking dispatches (Node.js, Python): one worker per process serves any
  // number of processors at once.
  //
  // Declares `type` without a C++ processor (the caller runs it).
  [[nodiscard]] Result<void> declare_type(std::string_view type, bool batch);
  // Raises (or lowers) what the agent may hand this worker at once; the
  // agent reads it again when the worker's types change (declare next).
  void set_max_inflight(uint32_t n) noexcept;
  // Asked once per dispatch (a single attempt, or a batch) before it starts:
  // whether there is room to run it now. A dispatch refused stays unstarted,
  // kept here, and is offered again first on the next take().
  using Admit = std::function<bool(std::string_view type, bool batch)>;
  // Gets each dispatch admitted and started: its jobs (views valid during
  // the call only: copy what is kept) and what report() needs for each.
  using Sink =
      std::function<void(std::span<const Job> jobs, std::span<const Held> held, bool batch)>;
  // Takes up to `max_dispatches` dispatches, those kept from earlier takes
  // first, then the dispatch ring (bounded by one lap of it). Returns the
  // attempts started. One thread only (the one taking dispatches). Rejoins
  // first if the agent evicted this worker (what was kept is dropped then:
  // the agent took it back).
  int take(int max_dispatches, const Admit& admit, const Sink& sink);
  // Settles an attempt take() started. Any thread, but one thread at a time
  // for the worker's life, ordered by the caller (the result ring has a
  // single writer). Call announce() after a batch of reports.
  void report(const Held& h, const Reply& reply);
  // Wakes the agent to collect what report() wrote.
  void announce() noexcept;
  // Parks the taking thread until the ring has work, `wake()` says true or
  // `timeout_ns` passes (bounded, so the caller rechecks its own state).
  void park(uint64_t timeout_ns, const std::function<bool()>& wake);
  // Wakes a thread in park() (after what its `wake` reads changed).
  void unpark() noexcept;

  [[nodiscard]] uint32_t client_id() const noexcept { return id_.load(std::memory_order_relaxed); }
  // Registrations after the first (the agent evicted this worker while it
  // was frozen, and it came back).
  [[nodiscard]] uint32_t rejoins() const noexcept { return rejoins_; }
  [[nodiscard]] uint64_t processed() const noexcept {
    return processed_.load(std::memory_order_relaxed);
  }

 private:
  Worker(std::shared_ptr<shm::Segment> seg, uint32_t id, WorkerOptions opt);
  void beat_loop();
  bool rejoin_if_evicted();
  int do_work(const std::atomic<bool>* stop);
  [[nodiscard]] Result<void> add_type(std::string_view type, Processor fn, BatchProcessor batch_fn);
  bool start(uint64_t ref, Held& out, std::vector<std::byte>& copy, Job& job);
  // Starts the attempts of one dispatch (a single ref, or a batch's refs)
  // and hands them to `sink`; false (nothing started) when `admit` says no.
  bool start_dispatch(std::span<const uint64_t> refs, bool batch, const Admit& admit,
                      const Sink& sink, int& started);
  // The type a dispatch is of, read before it starts (empty: none known).
  std::string_view peek_type(uint64_t ref, std::string& scratch) const;
  // Runs a started dispatch's processors here and reports (do_work).
  void run_here(std::span<const Job> jobs, std::span<const Held> held);

  std::shared_ptr<shm::Segment> seg_;
  std::atomic<uint32_t> id_;  // changes only on the run thread (rejoin)
  WorkerOptions opt_;
  struct Registered {
    std::string type;
    Processor fn;             // either this
    BatchProcessor batch_fn;  // or this
  };
  const Clock& clock_;
  // take()'s, on the taking thread only.
  std::vector<Held> started_;  // scratch of start_dispatch
  std::vector<Job> jobs_;
  std::vector<std::vector<std::byte>> copies_;  // per job of a dispatch: its bytes
  std::vector<uint64_t> refs_;
  std::string type_scratch_;
  // Dispatches taken from the ring but refused by admit: unstarted, each a
  // ref or a batch header followed by its refs.
  std::vector<std::vector<uint64_t>> kept_;
  std::vector<std::vector<uint64_t>> kept_next_;
  std::vector<Registered> processors_;  // at most kMaxTypesPerWorker
  std::atomic<uint64_t> processed_{0};
  uint32_t rejoins_ = 0;
  // The heartbeat runs on its own thread, so a long processor is not taken
  // for a frozen process; a stopped or frozen process stops it too.
  std::mutex beat_mu_;
  std::condition_variable beat_cv_;
  bool beat_stop_ = false;
  std::thread beat_;
};

}  // namespace perfq
