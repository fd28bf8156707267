#include "future_state_pool.hpp"

#include "perfq/core/assert.hpp"

namespace perfq::detail {

namespace {

constexpr uint32_t index_of(uint64_t head) noexcept {
  return static_cast<uint32_t>(head);
}
constexpr uint64_t next_head(uint64_t head, uint32_t index) noexcept {
  return (((head >> 32) + 1) << 32) | index;  // the tag wraps after 2^32 changes
}

}  // namespace

void FutureState::unref() noexcept {
  // acq_rel: the last owner sees every write of the other before the state
  // goes back to the pool (and on to its next request).
  const uint32_t before = refs.fetch_sub(1, std::memory_order_acq_rel);
  PERFQ_ASSERT(before != 0);  // let go more often than handed out
  if (before == 1) pool_->release(this);
}

FutureStatePool* FutureStatePool::create(uint32_t capacity) {
  return new FutureStatePool(capacity);
}

FutureStatePool::FutureStatePool(uint32_t capacity)
    : capacity_(capacity), states_(std::make_unique<FutureState[]>(capacity)) {
  PERFQ_ASSERT(capacity < kNone);
  // Pushed from the top down: index 0 is handed out first.
  for (uint32_t i = capacity; i-- > 0;) {
    states_[i].pool_ = this;
    states_[i].index_ = i;
    states_[i].free_.store(1, std::memory_order_relaxed);
    push(i);
  }
}

FutureState* FutureStatePool::acquire(uint64_t request_id) {
  holders_.fetch_add(1, std::memory_order_relaxed);  // the owner holds one: never from zero
  FutureState* st = nullptr;
  const uint32_t i = pop();
  if (i == kNone) {
    st = new FutureState();
    st->pool_ = this;
    overflowed_.fetch_add(1, std::memory_order_relaxed);
  } else {
    st = &states_[i];
    const uint8_t was_free = st->free_.exchange(0, std::memory_order_relaxed);
    PERFQ_ASSERT(was_free == 1);  // a free state is in the list once
    PERFQ_ASSERT(st->refs.load(std::memory_order_relaxed) == 0);  // nobody holds it
  }
  st->refs.store(2, std::memory_order_relaxed);  // the Future's and the producer's
  st->ready.store(0, std::memory_order_relaxed);
  Outcome& o = st->outcome;
  o.request_id = request_id;
  o.status = Status::kPending;
  o.error = Errc::kOk;
  o.attempts = 0;
  o.result.clear();  // keeps its capacity: the next result of that size allocates nothing
  o.wait_ns = 0;
  o.processing_ns = 0;
  return st;
}

void FutureStatePool::discard(FutureState* st) noexcept {
  PERFQ_ASSERT(st->refs.load(std::memory_order_relaxed) == 2);  // nobody else was handed it
  st->refs.store(0, std::memory_order_relaxed);
  release(st);
}

void FutureStatePool::retire() noexcept {
  drop_holder();
}

void FutureStatePool::release(FutureState* st) noexcept {
  PERFQ_ASSERT(st->pool_ == this);
  if (st->index_ == FutureState::kHeap) {
    delete st;
  } else {
    PERFQ_ASSERT(st->index_ < capacity_);
    PERFQ_ASSERT(st == &states_[st->index_]);
    const uint8_t was_free = st->free_.exchange(1, std::memory_order_relaxed);
    PERFQ_ASSERT(was_free == 0);  // returned twice
    push(st->index_);
  }
  drop_holder();
}

void FutureStatePool::drop_holder() noexcept {
  // acq_rel: whoever deletes the pool sees every state's last writes.
  if (holders_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
}

// Lock-free: a failed CAS means another thread pushed or popped meanwhile
// (the loop is bounded by the other threads' progress, not by a count).
void FutureStatePool::push(uint32_t index) noexcept {
  PERFQ_ASSERT(index < capacity_);
  // Counted before it is linked, so available() never undercounts into a wrap.
  available_.fetch_add(1, std::memory_order_relaxed);
  FutureState& st = states_[index];
  uint64_t head = head_.load(std::memory_order_relaxed);
  for (;;) {
    st.next_free_.store(index_of(head), std::memory_order_relaxed);
    // release: pairs with the acquire in pop(): the next owner of the state
    // sees it (and its link) as it was let go. Every later change of head_
    // is a CAS, so this heads a release sequence a later pop reads from.
    if (head_.compare_exchange_weak(head, next_head(head, index), std::memory_order_release,
                                    std::memory_order_relaxed)) {
      return;
    }
  }
}

uint32_t FutureStatePool::pop() noexcept {
  // acquire: pairs with the release CAS in push() (see there).
  uint64_t head = head_.load(std::memory_order_acquire);
  for (;;) {
    const uint32_t i = index_of(head);
    if (i == kNone) return kNone;
    PERFQ_ASSERT(i < capacity_);
    // A state popped and pushed again meanwhile changes the tag: the CAS
    // then fails, so a stale link is never installed.
    const uint32_t next = states_[i].next_free_.load(std::memory_order_relaxed);
    if (head_.compare_exchange_weak(head, next_head(head, next), std::memory_order_acquire,
                                    std::memory_order_acquire)) {
      available_.fetch_sub(1, std::memory_order_relaxed);
      return i;
    }
  }
}

}  // namespace perfq::detail
