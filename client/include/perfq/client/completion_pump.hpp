#pragma once
// CompletionPump: the outcome tracker a binding puts beside its Producer.
// One completion thread of its own loops over Producer::wait_any while
// requests are due, and keeps, per request the binding tracks, its Future
// until it settles and then its Outcome until the binding collects it.
//
//   track(id, future) --> pending --settles--> settled --collect()--> gone
//                            |                    |
//                        forget(id)           forget(id), or evicted past
//                            v                max_uncollected (oldest first)
//                        forgotten --settles--> gone
//
// A forgotten request that has not settled still counts as due: draining its
// outcome is what frees its slot, so the thread keeps waiting for it.
//
// Threads: every method may be called from any thread. `notify` runs on the
// completion thread without the pump's lock, so it may call back into the
// pump, take the binding's own locks (which may be held while calling the
// pump: binding lock, then pump lock) and even close() or destroy the pump
// (the thread then leaves without touching it again).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "perfq/client/outcome.hpp"
#include "perfq/client/producer.hpp"

namespace perfq {

struct CompletionPumpOptions {
  // The longest single Producer::wait_any: how late close() is noticed.
  std::chrono::nanoseconds slice = std::chrono::milliseconds(50);
  // Settled outcomes kept uncollected; past it the oldest is dropped, so a
  // binding that never collects cannot grow without bound. Unsettled
  // requests are bounded by the producer's slots.
  size_t max_uncollected = std::numeric_limits<size_t>::max();
};

class CompletionPump {
 public:
  // Called on the completion thread with the ids of tracked requests that
  // settled in one wait_any (never forgotten ones); never with the lock held.
  using Notify = std::function<void(std::span<const uint64_t> settled)>;

  enum class State : uint8_t {
    kUnknown,  // never tracked, collected, forgotten or evicted
    kPending,  // tracked, outcome not in yet
    kSettled,  // outcome in, waiting for collect()
  };

  // `producer` must outlive the pump's use of it: until close() returns (or,
  // called on the completion thread, until `notify` returns).
  CompletionPump(Producer& producer, Notify notify, CompletionPumpOptions opt = {});
  ~CompletionPump();  // close()
  CompletionPump(const CompletionPump&) = delete;
  CompletionPump& operator=(const CompletionPump&) = delete;

  // Keeps the future of request `id` and starts the completion thread on
  // first need. Returns true when the outcome is in already (settled before
  // it was tracked): it is kept as settled and `notify` is NOT called for
  // it. Once closed, drops the future and returns false.
  bool track(uint64_t id, Future future);
  [[nodiscard]] State state(uint64_t id) const;
  // The settled outcome of `id`, which the pump then forgets; nullopt unless
  // state(id) is kSettled.
  [[nodiscard]] std::optional<Outcome> collect(uint64_t id);
  // Every settled outcome, oldest first, all of which the pump then forgets.
  [[nodiscard]] std::vector<Outcome> collect_all();
  // Drops request `id` (fire and forget); false unless it was tracked. An
  // unsettled one stays due (counted in forgotten()) until it settles.
  bool forget(uint64_t id);

  // Requests tracked and not collected or forgotten, settled or not.
  [[nodiscard]] size_t tracked() const;
  // Forgotten requests whose outcome has not arrived yet.
  [[nodiscard]] size_t forgotten() const;
  [[nodiscard]] bool closed() const;
  // Whether the caller runs on the completion thread (inside `notify`).
  [[nodiscard]] bool on_completion_thread() const;

  // Idempotent: stops the completion thread and drops every future and
  // outcome. Joins the thread (at most about one slice) unless called on
  // it, from `notify`: then the thread is detached and leaves as soon as
  // `notify` returns. Call it before the producer goes away.
  void close();

 private:
  struct Entry {
    Future future;                        // valid while pending
    std::optional<Outcome> outcome;       // set once settled
    std::list<uint64_t>::iterator order;  // its place in settled_order_, once settled
  };
  using Entries = std::unordered_map<uint64_t, Entry>;

  void run(const std::shared_ptr<std::atomic<bool>>& alive);
  // Under mu_: the outcome of one id wait_any settled; whether it is news.
  bool settle_locked(uint64_t id);
  // Under mu_: marks `it` settled with `o`, evicting the oldest past the bound.
  void note_settled_locked(Entries::iterator it, Outcome o);
  void erase_locked(Entries::iterator it);

  Producer& producer_;
  Notify notify_;
  CompletionPumpOptions opt_;

  mutable std::mutex mu_;
  std::condition_variable due_cv_;  // a request became due, or closed
  bool closed_ = false;
  size_t due_ = 0;  // pending and forgotten-unsettled requests
  Entries entries_;
  std::list<uint64_t> settled_order_;       // settled uncollected ids, oldest first
  std::unordered_set<uint64_t> forgotten_;  // forgotten before their outcome arrived
  std::thread thread_;
  std::thread::id thread_id_;  // of thread_, kept after a detach
  // False once the pump no longer waits for its thread (detached by a
  // close() on it): the thread then never touches the pump again.
  std::shared_ptr<std::atomic<bool>> alive_ = std::make_shared<std::atomic<bool>>(true);
};

}  // namespace perfq
