#include "dataplane/inflight.hpp"

namespace perfq::agent {

void Inflight::open_batch(std::span<const Pending> items, uint32_t worker) {
  PERFQ_ASSERT(items.size() >= 2 && worker < by_worker_.size());
  const uint32_t batch = next_batch_++;
  if (next_batch_ == 0) next_batch_ = 1;
  for (const Pending& p : items) {
    PERFQ_ASSERT(p.slot < by_slot_.size() && by_slot_[p.slot].worker == kNone);
    by_slot_[p.slot] = Out{worker, batch};
  }
  remaining_[batch] = static_cast<uint32_t>(items.size());
  ++by_worker_[worker];
  ++total_;
}

bool Inflight::last_of_batch(uint32_t batch) noexcept {
  auto it = remaining_.find(batch);
  // Every item recorded with a batch id keeps it open (write_off clears the
  // items with their batch).
  PERFQ_ENFORCE(it != remaining_.end() && it->second > 0);
  if (--it->second > 0) return false;
  remaining_.erase(it);
  return true;
}

void Inflight::write_off(uint32_t worker) noexcept {
  PERFQ_ASSERT(worker < by_worker_.size());
  if (by_worker_[worker] == 0) return;  // then no slot names it (the invariants, inflight.hpp)
  // Bounded by the slot count; a worker dies rarely.
  for (Out& out : by_slot_) {
    if (out.worker != worker) continue;
    if (out.batch != 0) remaining_.erase(out.batch);
    out = Out{};
  }
  PERFQ_ENFORCE(total_ >= by_worker_[worker]);
  total_ -= by_worker_[worker];
  by_worker_[worker] = 0;
}

}  // namespace perfq::agent
