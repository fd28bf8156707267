#pragma once
// Scheduler: where the requests the agent holds wait, and when they are due.
//
// It owns, in agent memory only (no segment: a test drives it directly):
//   - one FIFO per band, each in eligible order, and pick_band() (SPEC §5:
//     bands in order, except that a front eligible for aging_ms goes before
//     younger fronts of higher bands);
//   - the requests whose type has no worker yet, by type;
//   - the timers: retry backoffs (a heap, by time) and processing deadlines
//     (a FIFO: every dispatch adds processing_timeout_ms to the cycle's
//     clock, so dispatch order is deadline order; an attempt found started
//     late when its turn comes moves to a heap, by its start), and the queue timeout of
//     the queues' fronts.
// Entries are not removed when their request moves on (settled, cancelled,
// reclaimed): whoever pops one checks its slot and drops it if stale.
#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <queue>
#include <string_view>
#include <vector>

#include "dataplane/pending.hpp"
#include "dataplane/type_queues.hpp"
#include "perfq/agent/config.hpp"
#include "perfq/core/assert.hpp"
#include "perfq/core/request.hpp"

namespace perfq::agent {

// A failed attempt's backoff, or an attempt's processing deadline.
struct Timer {
  uint64_t at_ns;
  uint32_t slot;
  uint32_t generation;
  uint8_t attempt;
  friend bool operator>(const Timer& a, const Timer& b) { return a.at_ns > b.at_ns; }
};

class Scheduler {
 public:
  explicit Scheduler(const Config& cfg) noexcept;

  // ---- bands
  // To the back of its band (taken, or back from a backoff).
  void enqueue(const Pending& p) {
    PERFQ_ASSERT(p.band < kBandCount);
    bands_[p.band].push_back(p);
  }
  // Back to the front of its band: taken back from a worker unstarted, or
  // released from a queue outside the bands (in newest-first order).
  void return_front(const Pending& p) {
    PERFQ_ASSERT(p.band < kBandCount);
    bands_[p.band].push_front(p);
  }
  // The band to serve next at `now_ns`, or -1 when every band not `blocked`
  // (its workers full this cycle) is empty.
  [[nodiscard]] int pick_band(uint64_t now_ns, const bool blocked[kBandCount]) const noexcept {
    int first = -1;
    int aged = -1;
    for (int b = 0; b < kBandCount; ++b) {
      if (blocked[b] || bands_[b].empty()) continue;
      if (first < 0) first = b;
      const uint64_t e = bands_[b].front().eligible_ns;
      if (now_ns - std::min(e, now_ns) >= aging_ns_ &&
          (aged < 0 || e < bands_[aged].front().eligible_ns)) {
        aged = b;
      }
    }
    return aged >= 0 ? aged : first;
  }
  [[nodiscard]] const Pending& front(int band) const noexcept {
    PERFQ_ASSERT(band >= 0 && band < kBandCount && !bands_[band].empty());
    return bands_[band].front();
  }
  void pop_front(int band) noexcept {
    PERFQ_ASSERT(band >= 0 && band < kBandCount && !bands_[band].empty());
    bands_[band].pop_front();
  }
  [[nodiscard]] size_t band_size(uint8_t band) const noexcept {
    PERFQ_ASSERT(band < kBandCount);
    return bands_[band].size();
  }

  // ---- requests whose type has no worker
  void wait_for_worker(std::string_view type, const Pending& p) {
    no_worker_.push_back(no_worker_.of(type), p);
  }
  // Requests of every type for which `has_worker(type)` holds go back to the
  // front of their bands, oldest first.
  template <class HasWorker>
  void release_waiting(HasWorker&& has_worker) {
    no_worker_.release_if(has_worker, [this](const Pending& p) { return_front(p); });
  }
  [[nodiscard]] uint64_t waiting_for_worker(uint8_t band) const noexcept {
    return no_worker_.in_band(band);
  }

  // ---- queue timeouts (SPEC §4 queue_timeout_ms)
  // Pops every band's fronts eligible for queue_timeout_ms, handing each to
  // `expired(p)`, which says whether it counted (was still pending).
  template <class Expired>
  int expire_bands(uint64_t now_ns, Expired&& expired) {
    int n = 0;
    for (auto& q : bands_) {
      while (!q.empty() && now_ns - std::min(q.front().eligible_ns, now_ns) >= queue_timeout_ns_) {
        const Pending p = q.front();
        q.pop_front();
        if (expired(p)) ++n;
      }
    }
    return n;
  }
  // The same for the requests waiting for a worker.
  template <class Expired>
  int expire_waiting(uint64_t now_ns, Expired&& expired) {
    return no_worker_.expire(now_ns, queue_timeout_ns_, expired);
  }
  [[nodiscard]] uint64_t queue_timeout_ns() const noexcept { return queue_timeout_ns_; }

  // ---- retry backoffs (SPEC §4 retry_backoff_ms, retry_jitter)
  // The delay after failed attempt `failed_attempt`: retry_backoff_ms x 2^k,
  // spread by +- retry_jitter.
  [[nodiscard]] uint64_t backoff_ns(uint8_t failed_attempt) noexcept;
  void schedule_retry(const Timer& t) { retries_.push(t); }
  // The earliest backoff ended by `now_ns`, if any (each taken once).
  [[nodiscard]] bool pop_due_retry(uint64_t now_ns, Timer& t) {
    if (retries_.empty() || retries_.top().at_ns > now_ns) return false;
    t = retries_.top();
    retries_.pop();
    return true;
  }

  // ---- processing deadlines (SPEC §4 processing_timeout_ms)
  [[nodiscard]] uint64_t deadline_for(uint64_t dispatched_ns) const noexcept {
    return dispatched_ns + processing_timeout_ns_;
  }
  // The deadline of an attempt dispatched now: later than every one before.
  void start_deadline(const Timer& t) { deadlines_.push_back(t); }
  // Deadlines found in the segment at re-attach, in any order.
  void restore_deadlines(std::vector<Timer> ts);
  [[nodiscard]] bool pop_due_deadline(uint64_t now_ns, Timer& t) {
    if (deadlines_.empty() || deadlines_.front().at_ns > now_ns) return false;
    t = deadlines_.front();
    deadlines_.pop_front();
    return true;
  }
  // An attempt that started after its dispatch has until processing_timeout
  // after its start: its deadline moves here (in any order), once.
  void defer_deadline(const Timer& t) { deferred_.push(t); }
  [[nodiscard]] bool pop_due_deferred(uint64_t now_ns, Timer& t) {
    if (deferred_.empty() || deferred_.top().at_ns > now_ns) return false;
    t = deferred_.top();
    deferred_.pop();
    return true;
  }
  // Deadlines of settled attempts stay queued until they are due; once the
  // queue is much longer than what can be in flight, only those for which
  // `live(t)` holds are kept.
  template <class Live>
  void trim_deadlines(Live&& live) {
    if (deadlines_.size() <= deadline_bound_) return;
    std::deque<Timer> kept;
    for (const Timer& t : deadlines_) {
      if (live(t)) kept.push_back(t);
    }
    deadlines_.swap(kept);
  }
  [[nodiscard]] size_t deadline_count() const noexcept { return deadlines_.size(); }

 private:
  uint64_t aging_ns_;
  uint64_t queue_timeout_ns_;
  uint64_t processing_timeout_ns_;
  uint64_t retry_backoff_ms_;
  double retry_jitter_;
  size_t deadline_bound_;
  std::deque<Pending> bands_[kBandCount];  // each in eligible order
  TypeQueues no_worker_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> retries_;
  std::deque<Timer> deadlines_;  // in dispatch order
  // Deadlines counted from a start later than the dispatch. At most one per
  // attempt, each popped when due: bounded by the attempts in flight over
  // one processing timeout.
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> deferred_;
  uint64_t rng_ = 0x9e37'79b9'7f4a'7c15ull;  // retry jitter (xorshift64)
};

}  // namespace perfq::agent
