#pragma once
// Inflight: the dispatches out, by slot and by worker.
//
// A dispatch is one push to a worker's dispatch ring: a single attempt, or a
// batch of them. Each counts once against max_concurrent_workers (total())
// and its worker's max_inflight (of(worker)) until it is released: a single
// one when its attempt settles or is taken back, a batch when its last item
// does. The agent records, by slot, which worker it dispatched to, so a
// release is keyed on what the agent did, never on an owner read from the
// segment: a late, duplicate or forged report releases nothing.
//
//   open(slot 5, w 2)           by_slot[5] = {w 2}          of(2) + 1, total + 1
//   open_batch({3, 9}, w 1)      by_slot[3,9] = {w 1, b 7}   of(1) + 1, total + 1
//   release(5)                  by_slot[5] = none           of(2) - 1, total - 1
//   release(3)                  by_slot[3] = none           (batch 7: 1 item left)
//   release(9)                  by_slot[9] = none           of(1) - 1, total - 1
//   write_off(w)                every by_slot naming w -> none, of(w) -> 0
//
// Invariants: total() is the sum of of(w); of(w) is the number of open
// dispatches recorded for w. So a release never finds a count at zero
// (enforced: that would be a bug here, not bad input).
#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "dataplane/pending.hpp"
#include "perfq/core/assert.hpp"

namespace perfq::agent {

class Inflight {
 public:
  void resize(uint32_t workers, uint32_t slots) {
    by_worker_.assign(workers, 0);
    by_slot_.assign(slots, Out{});
  }

  // Whether `slot` is dispatched and not yet settled or taken back.
  [[nodiscard]] bool out(uint32_t slot) const noexcept {
    PERFQ_ASSERT(slot < by_slot_.size());
    return by_slot_[slot].worker != kNone;
  }

  // `slot` went to `worker` on its own.
  void open(uint32_t slot, uint32_t worker) noexcept {
    PERFQ_ASSERT(slot < by_slot_.size() && worker < by_worker_.size());
    PERFQ_ASSERT(by_slot_[slot].worker == kNone);  // a slot is dispatched once at a time
    by_slot_[slot] = Out{worker, 0};
    ++by_worker_[worker];
    ++total_;
  }
  // `items` went to `worker` as one batch dispatch (two or more).
  void open_batch(std::span<const Pending> items, uint32_t worker);

  // The attempt in `slot` settled or was taken back. Returns whether the
  // agent had a dispatch out for it.
  bool release(uint32_t slot) noexcept {
    PERFQ_ASSERT(slot < by_slot_.size());
    const Out out = by_slot_[slot];
    if (out.worker == kNone) return false;
    by_slot_[slot] = Out{};
    if (out.batch != 0 && !last_of_batch(out.batch)) return true;
    PERFQ_ENFORCE(by_worker_[out.worker] > 0);
    PERFQ_ENFORCE(total_ > 0);
    --by_worker_[out.worker];
    --total_;
    return true;
  }

  // The worker is gone: its dispatches leave the counts now, and a later
  // report from one of their slots releases nothing.
  void write_off(uint32_t worker) noexcept;

  [[nodiscard]] uint64_t total() const noexcept { return total_; }
  [[nodiscard]] uint32_t of(uint32_t worker) const noexcept {
    PERFQ_ASSERT(worker < by_worker_.size());
    return by_worker_[worker];
  }
  [[nodiscard]] bool holds(uint32_t slot) const noexcept {
    PERFQ_ASSERT(slot < by_slot_.size());
    return by_slot_[slot].worker != kNone;
  }

 private:
  static constexpr uint32_t kNone = UINT32_MAX;
  struct Out {
    uint32_t worker = kNone;
    uint32_t batch = 0;  // 0: dispatched on its own
  };
  // An item of `batch` settled; whether it was the batch's last.
  bool last_of_batch(uint32_t batch) noexcept;

  std::vector<Out> by_slot_;
  std::vector<uint32_t> by_worker_;
  uint64_t total_ = 0;
  std::unordered_map<uint32_t, uint32_t> remaining_;  // by open batch: its items not yet settled
  uint32_t next_batch_ = 1;
};

}  // namespace perfq::agent
