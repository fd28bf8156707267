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
  uint32_t max_inflight = 64;  // dispatches the agent may queue to this worker
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

  [[nodiscard]] uint32_t client_id() const noexcept { return id_.load(std::memory_order_relaxed); }
  // Registrations after the first (the agent evicted this worker while it
  // was frozen, and it came back).
  [[nodiscard]] uint32_t rejoins() const noexcept { return rejoins_; }
  [[nodiscard]] uint64_t processed() const noexcept { return processed_; }

 private:
  Worker(std::shared_ptr<shm::Segment> seg, uint32_t id, WorkerOptions opt);
  void beat_loop();
  bool rejoin_if_evicted();
  int do_work(const std::atomic<bool>* stop);
  // An attempt this worker holds, started (ASSIGNED -> PROCESSING).
  struct Started {
    uint32_t slot;
    uint64_t ctl;
    uint64_t ref;
  };
  [[nodiscard]] Result<void> add_type(std::string_view type, Processor fn, BatchProcessor batch_fn);
  bool start(uint64_t ref, Started& out, std::vector<std::byte>& copy, Job& job);
  void report(const Started& s, const Reply& reply);
  // Runs the attempts of one dispatch (a single ref, or a batch's refs).
  int run_dispatch(std::span<const uint64_t> refs);

  std::shared_ptr<shm::Segment> seg_;
  std::atomic<uint32_t> id_;  // changes only on the run thread (rejoin)
  WorkerOptions opt_;
  struct Registered {
    std::string type;
    Processor fn;             // either this
    BatchProcessor batch_fn;  // or this
  };
  std::vector<Started> started_;  // scratch for run_dispatch
  std::vector<Job> jobs_;
  std::vector<std::vector<std::byte>> copies_;  // per job of a dispatch: its bytes
  std::vector<uint64_t> refs_;
  std::vector<Registered> processors_;  // at most kMaxTypesPerWorker
  uint64_t processed_ = 0;
  uint32_t rejoins_ = 0;
  // The heartbeat runs on its own thread, so a long processor is not taken
  // for a frozen process; a stopped or frozen process stops it too.
  std::mutex beat_mu_;
  std::condition_variable beat_cv_;
  bool beat_stop_ = false;
  std::thread beat_;
};

}  // namespace perfq
