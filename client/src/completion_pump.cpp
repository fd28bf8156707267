#include "perfq/client/completion_pump.hpp"

#include <utility>

#include "perfq/core/assert.hpp"

namespace perfq {

CompletionPump::CompletionPump(Producer& producer, Notify notify, CompletionPumpOptions opt)
    : producer_(producer), notify_(std::move(notify)), opt_(opt) {
  PERFQ_ENFORCE(notify_ != nullptr);
  PERFQ_ENFORCE(opt_.max_uncollected >= 1);  // the newest settled outcome is never evicted
  PERFQ_ENFORCE(opt_.slice.count() > 0);
}

CompletionPump::~CompletionPump() {
  close();
}

bool CompletionPump::track(uint64_t id, Future future) {
  PERFQ_ASSERT(future.valid());
  {
    std::lock_guard lock(mu_);
    if (closed_) return false;  // nobody can collect it any more
    if (auto old = entries_.find(id); old != entries_.end()) {
      // Cannot happen (request ids are unique); keeps due_ honest if it does.
      if (!old->second.outcome) --due_;
      erase_locked(old);
    }
    auto it = entries_.try_emplace(id).first;
    if (future.ready()) {
      // Settled before it was tracked: the thread drained it for another
      // request and found no entry (ready() is read under mu_, which the
      // thread holds while it looks entries up).
      note_settled_locked(it, future.get());
      return true;
    }
    it->second.future = std::move(future);
    ++due_;
    if (!thread_.joinable()) {
      thread_ = std::thread([this, alive = alive_] { run(alive); });
      thread_id_ = thread_.get_id();
    }
  }
  due_cv_.notify_one();
  return false;
}

CompletionPump::State CompletionPump::state(uint64_t id) const {
  std::lock_guard lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return State::kUnknown;
  return it->second.outcome ? State::kSettled : State::kPending;
}

std::optional<Outcome> CompletionPump::collect(uint64_t id) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end() || !it->second.outcome) return std::nullopt;
  std::optional<Outcome> o = std::move(it->second.outcome);
  erase_locked(it);
  return o;
}

std::vector<Outcome> CompletionPump::collect_all() {
  std::lock_guard lock(mu_);
  std::vector<Outcome> out;
  out.reserve(settled_order_.size());
  for (const uint64_t id : settled_order_) {
    auto it = entries_.find(id);
    PERFQ_ENFORCE(it != entries_.end() && it->second.outcome);  // erase_locked keeps them in step
    out.push_back(std::move(*it->second.outcome));
    entries_.erase(it);
  }
  settled_order_.clear();
  return out;
}

bool CompletionPump::forget(uint64_t id) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return false;
  // Unsettled: it stays due, since draining its outcome frees its slot.
  if (!it->second.outcome) forgotten_.insert(id);
  erase_locked(it);
  return true;
}

size_t CompletionPump::tracked() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

size_t CompletionPump::forgotten() const {
  std::lock_guard lock(mu_);
  return forgotten_.size();
}

bool CompletionPump::closed() const {
  std::lock_guard lock(mu_);
  return closed_;
}

bool CompletionPump::on_completion_thread() const {
  std::lock_guard lock(mu_);
  return thread_id_ != std::thread::id{} && thread_id_ == std::this_thread::get_id();
}

void CompletionPump::close() {
  std::thread joining;
  Entries entries;
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    closed_ = true;
    if (thread_.joinable()) {
      if (thread_.get_id() == std::this_thread::get_id()) {
        // Inside notify_: the thread cannot join itself. release: pairs with
        // the acquire load in run() once notify_ returns.
        alive_->store(false, std::memory_order_release);
        thread_.detach();
      } else {
        joining = std::move(thread_);
      }
    }
    entries.swap(entries_);
    settled_order_.clear();
    forgotten_.clear();
    due_ = 0;
  }
  due_cv_.notify_all();
  if (joining.joinable()) joining.join();  // bounded: one slice of wait_any
  entries.clear();  // the futures go back to the producer, which is still there
}

// The only caller of wait_any, so every outcome the ring delivers is seen
// here. Waits (no wait_any) while nothing is due.
void CompletionPump::run(const std::shared_ptr<std::atomic<bool>>& alive) {
  // A copy of its own: notify_ may destroy the pump while it runs.
  const Notify notify = notify_;
  std::vector<uint64_t> ids;
  std::vector<uint64_t> fresh;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      due_cv_.wait(lock, [&] { return closed_ || due_ > 0; });
      if (closed_) return;
    }
    ids.clear();
    producer_.wait_any(opt_.slice, ids);
    if (ids.empty()) continue;
    fresh.clear();
    {
      std::lock_guard lock(mu_);
      for (const uint64_t id : ids) {
        if (settle_locked(id)) fresh.push_back(id);
      }
    }
    if (fresh.empty()) continue;
    notify(fresh);
    // acquire: pairs with the release store in close() called from notify.
    if (!alive->load(std::memory_order_acquire)) return;  // the pump may be gone
  }
}

bool CompletionPump::settle_locked(uint64_t id) {
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second.outcome) {
    // Forgotten before it settled: its slot is free now, nothing to deliver.
    // Otherwise not tracked yet, or settled when tracked: track() kept it.
    if (forgotten_.erase(id) != 0) {
      PERFQ_ENFORCE(due_ > 0);
      --due_;
    }
    return false;
  }
  // wait_any reports only the requests it settled, so this is ready.
  PERFQ_ENFORCE(it->second.future.ready());
  PERFQ_ENFORCE(due_ > 0);
  --due_;
  note_settled_locked(it, it->second.future.get());
  return true;
}

void CompletionPump::note_settled_locked(Entries::iterator it, Outcome o) {
  it->second.future = Future{};  // its state goes back to the producer now
  it->second.outcome = std::move(o);
  it->second.order = settled_order_.insert(settled_order_.end(), it->first);
  // settled_order_ holds exactly the settled entries still in entries_, so
  // only uncollected outcomes count; the newest (at the back) is kept.
  while (settled_order_.size() > opt_.max_uncollected) {
    auto oldest = entries_.find(settled_order_.front());
    PERFQ_ENFORCE(oldest != entries_.end());
    erase_locked(oldest);
  }
}

void CompletionPump::erase_locked(Entries::iterator it) {
  if (it->second.outcome) settled_order_.erase(it->second.order);
  entries_.erase(it);
}

}  // namespace perfq
