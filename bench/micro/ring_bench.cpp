// Micro benchmarks of the perfq rings, with in-process baselines beside them.
//
// Scenario table. Every scenario runs each queue in the same process, so a
// perfq row can always be read against a baseline row of the same run.
//
//   scenario  threads                                  one iteration
//   --------  ---------------------------------------  -------------------------
//   pair      1, on CPU 0                              push one entry, pop it
//   spsc      producer on CPU 0 -> consumer on CPU 1   one entry crosses cores
//   mpsc2     2 producers on CPU 0 -> consumer CPU 1   one entry crosses cores
//
//   queue        what it is
//   -----------  ---------------------------------------------------------------
//   band_ring    perfq::BandRing (MPSC; the agent is its consumer)
//   spsc_ring    perfq::SpscRing (not in mpsc2: it has one writer by contract)
//   mutex_deque  baseline: std::deque behind a std::mutex, bounded like the rings
//   moodycamel   baseline: moodycamel::ConcurrentQueue with producer/consumer
//                tokens, try_enqueue only, bounded per producer (see below)
//
// All queues hold about kRingCapacity entries: the band ring capacity of a
// segment created with the default 20000 slots (next power of two). Ring
// memory is ordinary process memory laid out as in the segment (128-byte
// aligned header, 128-byte aligned cell array) and set up by the rings' own
// format(); the views are built per thread, as each process builds its own.
//
// pair is timed in thread CPU time (the default), so preemption by unrelated
// load on the machine does not inflate it. In spsc and mpsc2 the runner's
// thread is the consumer; "Time" and items_per_second are per entry
// delivered, in wall-clock time (UseRealTime: both sides count). The
// consumer checks every entry right after popping it: entries carry
// {producer:2 | sequence:30} and must arrive in order per producer.
//
// mpsc2 on a 2-core machine oversubscribes: both producers share CPU 0 and
// time-slice, so a producer preempted between its claim and its publish on
// the band ring stalls the consumer until the scheduler runs it again. The
// numbers show that cost; they are not a measure of two-core scaling. The
// consumer here just waits for a stalled claim (the producer is alive); it
// never revokes it as the agent does after its bound.
#include <benchmark/benchmark.h>

// GCC 12 reports -Wnull-dereference inside moodycamel's inlined dequeue path
// (a producer-list walk it cannot prove non-null); the code is not ours.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <concurrentqueue/concurrentqueue.h>
#pragma GCC diagnostic pop

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "perfq/core/band_ring.hpp"
#include "perfq/core/cache_line.hpp"
#include "perfq/core/spsc_ring.hpp"

namespace perfq::bench::micro {
namespace {

inline constexpr uint32_t kRingCapacity = 32768;
inline constexpr uint32_t kMaxProducers = 2;

// Entry tag: {producer:2 | sequence:30}. Stays below BandRing::kMaxValue.
inline constexpr uint32_t kProducerShift = 30;
inline constexpr uint32_t kSeqMask = (uint32_t{1} << kProducerShift) - 1;
static_assert((((kMaxProducers - 1) << kProducerShift) | kSeqMask) <= BandRing::kMaxValue);

[[nodiscard]] constexpr uint32_t tag(uint32_t producer, uint64_t seq) noexcept {
  return (producer << kProducerShift) | (static_cast<uint32_t>(seq) & kSeqMask);
}

enum class Pop : uint8_t {
  kValue,   // `out` holds an entry
  kNone,    // nothing to take now (empty, or a claim not yet published)
  kBroken,  // the queue handed back something no producer wrote
};

// ---------------------------------------------------------------------------
// Queues under test. Each owns its memory and offers per-thread handles:
//   Queue(max_producers)   formats the memory
//   Queue::Producer(q)     try_push(uint32_t) -> bool     (any producer thread)
//   Queue::Consumer(q)     try_pop(uint32_t&) -> Pop      (the one consumer)

class BandRingQueue {
 public:
  explicit BandRingQueue(uint32_t /*max_producers*/) noexcept {
    BandRing::format(header_, cells_, kRingCapacity);
  }

  class Producer {
   public:
    explicit Producer(BandRingQueue& q) noexcept : ring_(&q.header_, q.cells_, kRingCapacity) {}
    // kFull and kContended both mean "try again"; neither is an error here.
    [[nodiscard]] bool try_push(uint32_t v) noexcept {
      return ring_.try_push(v) == BandRing::PushResult::kOk;
    }

   private:
    BandRing ring_;
  };

  class Consumer {
   public:
    explicit Consumer(BandRingQueue& q) noexcept : ring_(&q.header_, q.cells_, kRingCapacity) {}
    [[nodiscard]] Pop try_pop(uint32_t& out) noexcept {
      const BandRing::Pop p = ring_.try_pop();
      switch (p.kind) {
        case BandRing::PopKind::kValue:
          out = p.value;
          return Pop::kValue;
        case BandRing::PopKind::kEmpty:
        case BandRing::PopKind::kStalled:  // a live producer between claim and publish
          return Pop::kNone;
        case BandRing::PopKind::kSkipped:  // nobody revokes claims in these benchmarks
        case BandRing::PopKind::kCorrupt:
        case BandRing::PopKind::kDesync:
          return Pop::kBroken;
      }
      return Pop::kBroken;
    }

   private:
    BandRing ring_;
  };

 private:
  BandRingHeader header_{};
  alignas(kCacheLine) uint64_t cells_[BandRing::cells_bytes(kRingCapacity) / sizeof(uint64_t)];
};

class SpscRingQueue {
 public:
  explicit SpscRingQueue(uint32_t /*max_producers*/) noexcept {
    SpscRing::format(header_, entries_, kRingCapacity);
  }

  class Producer {
   public:
    explicit Producer(SpscRingQueue& q) noexcept : ring_(&q.header_, q.entries_, kRingCapacity) {}
    [[nodiscard]] bool try_push(uint32_t v) noexcept { return ring_.try_push(v); }

   private:
    SpscRing ring_;
  };

  class Consumer {
   public:
    explicit Consumer(SpscRingQueue& q) noexcept : ring_(&q.header_, q.entries_, kRingCapacity) {}
    [[nodiscard]] Pop try_pop(uint32_t& out) noexcept {
      uint64_t e = 0;
      if (!ring_.try_pop(e)) return Pop::kNone;
      if (e > UINT32_MAX) return Pop::kBroken;
      out = static_cast<uint32_t>(e);
      return Pop::kValue;
    }

   private:
    SpscRing ring_;
  };

 private:
  SpscRingHeader header_{};
  alignas(kCacheLine) uint64_t entries_[SpscRing::entries_bytes(kRingCapacity) / sizeof(uint64_t)];
};

// Baseline: the queue a programmer writes first.
class MutexDequeQueue {
 public:
  explicit MutexDequeQueue(uint32_t /*max_producers*/) noexcept {}

  class Producer {
   public:
    explicit Producer(MutexDequeQueue& q) noexcept : q_(&q) {}
    [[nodiscard]] bool try_push(uint32_t v) {
      const std::lock_guard lock(q_->mutex_);
      if (q_->entries_.size() >= kRingCapacity) return false;
      q_->entries_.push_back(v);
      return true;
    }

   private:
    MutexDequeQueue* q_;
  };

  class Consumer {
   public:
    explicit Consumer(MutexDequeQueue& q) noexcept : q_(&q) {}
    [[nodiscard]] Pop try_pop(uint32_t& out) {
      const std::lock_guard lock(q_->mutex_);
      if (q_->entries_.empty()) return Pop::kNone;
      out = q_->entries_.front();
      q_->entries_.pop_front();
      return Pop::kValue;
    }

   private:
    MutexDequeQueue* q_;
  };

 private:
  std::mutex mutex_;
  std::deque<uint32_t> entries_;
};

// Baseline: the best-known general-purpose lock-free queue, on its fast path
// (explicit tokens, try_enqueue: never allocates after construction).
//
// Bounding it takes two things. Explicit producers keep the blocks they take
// from the shared pool and never hand them back, so with a pool alone a
// producer that runs ahead takes every block and starves the other one for
// good (mpsc2 hung that way). Hence a per-producer bound, MAX_SUBQUEUE_SIZE =
// kRingCapacity / kProducers (the same total as the rings), and a pool large
// enough that every producer can reach it.
template <uint32_t kProducers>
class MoodycamelQueue {
  struct Traits : moodycamel::ConcurrentQueueDefaultTraits {
    static constexpr std::size_t MAX_SUBQUEUE_SIZE = kRingCapacity / kProducers;
  };
  using Impl = moodycamel::ConcurrentQueue<uint32_t, Traits>;
  // The constructor's pool: (minCapacity/BLOCK_SIZE - 1) * (producers + 1)
  // + 2 * producers blocks. Each producer needs its bound plus a partly
  // consumed block, and one spare.
  static constexpr std::size_t kBlock = Traits::BLOCK_SIZE;
  static_assert((kRingCapacity / kBlock - 1) * (kProducers + 1) + 2 * kProducers >=
                kProducers * (Traits::MAX_SUBQUEUE_SIZE / kBlock + 2));

 public:
  explicit MoodycamelQueue(uint32_t /*max_producers*/) : q_(kRingCapacity, kProducers, 0) {}

  class Producer {
   public:
    explicit Producer(MoodycamelQueue& q) : q_(&q.q_), token_(q.q_) {}
    [[nodiscard]] bool try_push(uint32_t v) { return q_->try_enqueue(token_, v); }

   private:
    Impl* q_;
    moodycamel::ProducerToken token_;
  };

  class Consumer {
   public:
    explicit Consumer(MoodycamelQueue& q) : q_(&q.q_), token_(q.q_) {}
    [[nodiscard]] Pop try_pop(uint32_t& out) {
      return q_->try_dequeue(token_, out) ? Pop::kValue : Pop::kNone;
    }

   private:
    Impl* q_;
    moodycamel::ConsumerToken token_;
  };

 private:
  Impl q_;
};

// ---------------------------------------------------------------------------
// pair: the uncontended cost of one push plus one pop on one thread.

template <class Queue>
void bm_pair(benchmark::State& state) {
  const ScopedPin pin(kSoloCpu);
  if (!pin.pinned()) {
    state.SkipWithError("cannot pin to CPU 0");
    return;
  }
  auto queue = std::make_unique<Queue>(1);
  typename Queue::Producer producer(*queue);
  typename Queue::Consumer consumer(*queue);
  uint64_t seq = 0;
  for (auto _ : state) {
    const uint32_t v = tag(0, seq++);
    if (!producer.try_push(v)) {
      state.SkipWithError("push into an empty queue failed");
      break;
    }
    uint32_t out = 0;
    if (consumer.try_pop(out) != Pop::kValue || out != v) {
      state.SkipWithError("pop did not return the entry just pushed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

// ---------------------------------------------------------------------------
// spsc / mpsc2: entries cross from producer threads on CPU 0 to the consumer
// (this thread) on CPU 1. One iteration = one entry delivered; the producers
// push exactly state.max_iterations entries between them.

template <class Queue>
void bm_transfer(benchmark::State& state, uint32_t producers) {
  const ScopedPin pin(kConsumerCpu);
  if (!pin.pinned()) {
    state.SkipWithError("cannot pin the consumer to CPU 1");
    return;
  }
  auto queue = std::make_unique<Queue>(producers);
  const auto total = static_cast<uint64_t>(state.max_iterations);

  std::atomic<uint32_t> ready{0};
  std::atomic<bool> go{false};
  std::atomic<bool> stop{false};
  std::atomic<bool> pin_failed{false};
  std::vector<std::thread> threads;
  threads.reserve(producers);
  for (uint32_t p = 0; p < producers; ++p) {
    const uint64_t quota = total / producers + (p < total % producers ? 1 : 0);
    threads.emplace_back([&, p, quota] {
      if (!pin_this_thread(kProducerCpu)) pin_failed.store(true, std::memory_order_relaxed);
      typename Queue::Producer producer(*queue);
      // release: pairs with the consumer's acquire load of `ready`; the
      // producer's handle (moodycamel registers its token) exists before go.
      ready.fetch_add(1, std::memory_order_release);
      // acquire: pairs with the consumer's release store of `go`.
      while (!go.load(std::memory_order_acquire)) {
        if (stop.load(std::memory_order_relaxed)) return;
        cpu_relax();
      }
      for (uint64_t i = 0; i < quota; ++i) {
        const uint32_t v = tag(p, i);
        PeerWait wait;
        while (!producer.try_push(v)) {
          // The consumer stopped early (error) or stopped taking entries.
          if (stop.load(std::memory_order_relaxed) || !wait.pause()) return;
        }
      }
    });
  }

  const auto finish = [&] {
    stop.store(true, std::memory_order_relaxed);
    for (auto& t : threads) t.join();
  };
  {
    PeerWait wait;
    // acquire: pairs with each producer's release increment of `ready`.
    while (ready.load(std::memory_order_acquire) < producers) {
      if (!wait.pause()) {
        finish();
        state.SkipWithError("producer threads did not start");
        return;
      }
    }
  }
  if (pin_failed.load(std::memory_order_relaxed)) {
    finish();
    state.SkipWithError("cannot pin the producers to CPU 0");
    return;
  }

  typename Queue::Consumer consumer(*queue);
  std::array<uint32_t, 1u << (32 - kProducerShift)> next{};  // per producer
  uint64_t out_of_order = 0;
  // release: pairs with the producers' acquire load of `go`.
  go.store(true, std::memory_order_release);
  for (auto _ : state) {
    uint32_t v = 0;
    Pop r = Pop::kNone;
    PeerWait wait;
    while ((r = consumer.try_pop(v)) == Pop::kNone) {
      if (!wait.pause()) break;
    }
    if (r != Pop::kValue) {
      state.SkipWithError(r == Pop::kBroken ? "queue returned an entry no producer wrote"
                                            : "producers made no progress for 5 s");
      break;
    }
    const uint32_t p = v >> kProducerShift;
    out_of_order += (p >= producers || (v & kSeqMask) != next[p]) ? 1 : 0;
    next[p] = (v + 1) & kSeqMask;
  }
  finish();
  if (out_of_order != 0 && !state.error_occurred()) {
    state.SkipWithError("entries arrived out of per-producer order");
  }
  state.SetItemsProcessed(state.iterations());
}

template <class Queue>
void register_pair(const char* name) {
  benchmark::RegisterBenchmark(name, bm_pair<Queue>);
}

template <class Queue>
void register_transfer(const char* name, uint32_t producers) {
  benchmark::RegisterBenchmark(name, bm_transfer<Queue>, producers)->UseRealTime();
}

[[maybe_unused]] const bool kRegistered = [] {
  register_pair<BandRingQueue>("pair/band_ring");
  register_pair<SpscRingQueue>("pair/spsc_ring");
  register_pair<MutexDequeQueue>("pair/mutex_deque");
  register_pair<MoodycamelQueue<1>>("pair/moodycamel");

  register_transfer<BandRingQueue>("spsc/band_ring", 1);
  register_transfer<SpscRingQueue>("spsc/spsc_ring", 1);
  register_transfer<MutexDequeQueue>("spsc/mutex_deque", 1);
  register_transfer<MoodycamelQueue<1>>("spsc/moodycamel", 1);

  // Oversubscribes CPU 0 on a 2-core machine; see the header comment.
  register_transfer<BandRingQueue>("mpsc2/band_ring", 2);
  register_transfer<MutexDequeQueue>("mpsc2/mutex_deque", 2);
  register_transfer<MoodycamelQueue<2>>("mpsc2/moodycamel", 2);
  return true;
}();

}  // namespace
}  // namespace perfq::bench::micro
