#pragma once
// EventRing: a lossy single-writer broadcast ring of fixed-size events
// (SPEC §5 events). The agent writes; any number of readers in any process
// follow it at their own pace. A reader that falls a lap behind loses the
// oldest events and is told how many; it never slows the writer.
//
// Each entry is 32 words; word 0 is its sequence lock (core/seqlock.hpp,
// marked form: the stable value is the position + 1, the marker kWriting):
//   writer: seq = kWriting; words 1..31; seq = position + 1   (all atomic)
//   reader at position p: s1 = seq; copy words; s2 = recheck(seq);
//           s1 == s2 == p + 1  -> the event at p
//           s1 > p + 1 (later lap) or kWriting at a lap ahead -> p was lost
// Words are copied with relaxed atomic loads between an acquire load of seq
// and its re-check, so a torn read is always detected and never a data race.
//
// A writer that died mid-write left kWriting in the entry at tail (tail
// moves only after the entry is whole). repair() gives that entry a value
// that reads as "lost" to a reader a lap behind and "not yet" to one at
// tail, so a reader a lap behind is not held until the next event.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "perfq/core/assert.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/core/cache_line.hpp"
#include "perfq/core/request.hpp"
#include "perfq/core/seqlock.hpp"

namespace perfq {

enum class EventKind : uint8_t {
  kSubmitted = 0,
  kAssigned = 1,
  kProcessing = 2,
  kCompleted = 3,
  kFailed = 4,
  kTimeout = 5,
  kCancelled = 6,
  kRetrying = 7,
  kDeadLettered = 8,
  kQueueFull = 9,
  kQueueEmpty = 10,
};
inline constexpr uint8_t kEventKindCount = 11;

[[nodiscard]] constexpr const char* event_name(EventKind k) noexcept {
  switch (k) {
    case EventKind::kSubmitted:
      return "request.submitted";
    case EventKind::kAssigned:
      return "request.assigned";
    case EventKind::kProcessing:
      return "request.processing";
    case EventKind::kCompleted:
      return "request.completed";
    case EventKind::kFailed:
      return "request.failed";
    case EventKind::kTimeout:
      return "request.timeout";
    case EventKind::kCancelled:
      return "request.cancelled";
    case EventKind::kRetrying:
      return "request.retrying";
    case EventKind::kDeadLettered:
      return "request.dead_lettered";
    case EventKind::kQueueFull:
      return "queue.full";
    case EventKind::kQueueEmpty:
      return "queue.empty";
  }
  return "unknown";
}

// One event: ids, type, user, status and times; never a payload.
struct Event {
  uint64_t seq_word;  // the entry's sequence lock (not part of the event)
  uint64_t at_unix_ns;
  uint64_t request_id;  // 0 for queue events
  uint8_t kind;         // EventKind
  uint8_t status;       // Status after the event
  uint8_t priority;
  uint8_t attempt;
  uint8_t error;  // Errc
  uint8_t mode;
  uint8_t type_len;
  uint8_t user_len;
  char type[kTypeMaxBytes];
  char user_id[kUserIdMaxBytes];
  uint8_t reserved[96];
};
static_assert(sizeof(Event) == 256);
static_assert(std::is_trivially_copyable_v<Event>);
static_assert(offsetof(Event, type) == 32);
static_assert(offsetof(Event, user_id) == 96);

struct EventRingHeader {
  alignas(kCacheLine) uint64_t tail;  // next position the writer fills
  uint32_t capacity;                  // power of two, set at format
  uint32_t reserved;
  alignas(kCacheLine) uint64_t last_reader_poll_mono_ns;  // readers: any poll
};
static_assert(sizeof(EventRingHeader) == 2 * kCacheLine);

class EventRing {
 public:
  static constexpr uint64_t kWriting = ~uint64_t{0};
  static constexpr std::size_t kWords = sizeof(Event) / sizeof(uint64_t);

  [[nodiscard]] static constexpr std::size_t entries_bytes(uint32_t capacity) noexcept {
    return std::size_t{capacity} * sizeof(Event);
  }
  static void format(EventRingHeader& h, Event* entries, uint32_t capacity) noexcept {
    h.tail = 0;
    h.capacity = capacity;  // for readers' information; nobody sizes the ring from it
    h.last_reader_poll_mono_ns = 0;
    std::memset(static_cast<void*>(entries), 0, entries_bytes(capacity));
  }

  EventRing() = default;
  // `capacity` comes from the geometry the process computed, never from
  // the header: a scribbled size cannot send anyone out of the ring.
  EventRing(EventRingHeader* h, Event* entries, uint32_t capacity) noexcept
      : h_(h), e_(entries), capacity_(capacity) {
    PERFQ_ASSERT(capacity > 0 && (capacity & (capacity - 1)) == 0);
    tail_ = load_relaxed(h_->tail);
  }

  // Writer only (the agent). The position is the writer's own, taken from
  // the header once (construction, or repair()); the header's copy is for
  // readers.
  void publish(const Event& ev) noexcept {
    const uint64_t pos = tail_;
    auto* words = reinterpret_cast<uint64_t*>(&e_[pos & (capacity_ - 1)]);
    const auto* src = reinterpret_cast<const uint64_t*>(&ev);
    // acq_rel: the word stores below cannot move before the lock.
    seqlock::begin_write_marked(words[0], kWriting, std::memory_order_acq_rel);
    for (std::size_t i = 1; i < kWords; ++i)
      aref(words[i]).store(src[i], std::memory_order_relaxed);
    // release (in end_write_marked): pairs with the reader's acquire load
    // of the lock.
    seqlock::end_write_marked(words[0], kWriting, pos + 1);
    tail_ = pos + 1;
    // release: pairs with tail()'s acquire load.
    aref(h_->tail).store(tail_, std::memory_order_release);
  }

  // Writer only, on taking over a ring a dead writer left: the entry at
  // tail, if left kWriting, reads "tail": below tail + 1 (not yet, for the
  // reader at tail) and above tail - capacity + 1 (lost, for the reader a
  // lap behind). Its words are whatever the dead writer left; no reader
  // copies them, as no position p has p + 1 == tail at this entry. True if
  // it repaired.
  bool repair() noexcept {
    // relaxed: the writer's own tail.
    const uint64_t pos = aref(h_->tail).load(std::memory_order_relaxed);
    tail_ = pos;
    auto* words = reinterpret_cast<uint64_t*>(&e_[pos & (capacity_ - 1)]);
    // With one entry, tail would be the lock of the event before it, at
    // this same entry: leave it for the next publish to rewrite.
    if (capacity_ < 2 || load_relaxed(words[0]) != kWriting) return false;
    // release (in end_write_marked): pairs with the reader's acquire load.
    seqlock::end_write_marked(words[0], kWriting, pos);
    return true;
  }

  [[nodiscard]] uint64_t tail() const noexcept {
    return aref(h_->tail).load(std::memory_order_acquire);
  }
  [[nodiscard]] uint32_t capacity() const noexcept { return capacity_; }

  enum class Read : uint8_t { kEvent, kNotYet, kLost };
  // Any reader: the event at `pos`.
  [[nodiscard]] Read read(uint64_t pos, Event& out) const noexcept {
    const auto* words = reinterpret_cast<const uint64_t*>(&e_[pos & (capacity_ - 1)]);
    auto* dst = reinterpret_cast<uint64_t*>(&out);
    uint64_t s1 = 0;
    // acquire load, copy, recheck (seqlock::read_exact): pairs with the
    // writer's release store of pos + 1.
    if (seqlock::read_exact(words[0], pos + 1, s1, [&] {
          for (std::size_t i = 1; i < kWords; ++i) dst[i] = load_relaxed(words[i]);
        })) {
      out.seq_word = 0;
      return Read::kEvent;
    }
    if (s1 == pos + 1) return Read::kLost;  // overwritten while we copied
    if (s1 != kWriting && s1 > pos + 1) return Read::kLost;
    if (s1 == kWriting && tail() > pos + capacity_) return Read::kLost;
    return Read::kNotYet;
  }

  void note_reader(uint64_t now_mono_ns) noexcept {
    aref(h_->last_reader_poll_mono_ns).store(now_mono_ns, std::memory_order_relaxed);
  }
  [[nodiscard]] uint64_t last_reader_poll() const noexcept {
    return aref(h_->last_reader_poll_mono_ns).load(std::memory_order_relaxed);
  }

 private:
  EventRingHeader* h_ = nullptr;
  Event* e_ = nullptr;
  uint32_t capacity_ = 0;
  uint64_t tail_ = 0;  // the writer's
};

}  // namespace perfq
