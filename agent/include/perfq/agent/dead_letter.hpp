#pragma once
// Dead letters: requests that failed every attempt or timed out (SPEC §5).
// The agent hands each one to a DeadLetterSink: the durable journal on
// io_uring (journal.hpp) in perfq-agent, or the bounded in-memory list below,
// which tests read and which Conductor::open uses when given no sink.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "perfq/core/errc.hpp"
#include "perfq/core/request.hpp"

namespace perfq::agent {

struct AttemptFailure {
  uint64_t at_unix_ns = 0;
  Errc code = Errc::kInternal;
  std::string message;  // never logged: it may echo request data
};

struct DeadLetter {
  uint64_t request_id = 0;
  std::string user_id;
  std::string type;
  Mode mode = Mode::kFifo;
  uint8_t priority = kPriorityDefault;
  std::vector<std::byte> payload;
  std::string metadata;
  Status status = Status::kFailed;  // kFailed or kTimeout
  Errc reason = Errc::kInternal;    // failureReason
  uint32_t attempt_count = 0;
  uint64_t first_attempt_unix_ns = 0;  // 0: never dispatched
  uint64_t last_attempt_unix_ns = 0;
  std::vector<AttemptFailure> history;  // errorHistory, oldest first (the last kAttemptHistory)
};

// Where dead letters go. A request the agent fails or times out is held in
// the slot state SEALING (owner agent) until its letter's ticket is durable;
// only then does it become failed/timeout and is its outcome delivered
// (SPEC §5: "a request becomes failed/timeout only after its DLQ record is
// durable").
class DeadLetterSink {
 public:
  virtual ~DeadLetterSink() = default;
  // Data-plane thread; must not block on I/O. Returns the letter's ticket:
  // tickets count up from 1 in accept order, and every ticket <= durable()
  // is durable. `recovered`: a restarted agent found the request SEALING and
  // hands it again; a sink that already holds a letter for that request id
  // must not store a second one (it returns a ticket that is already durable).
  [[nodiscard]] virtual uint64_t accept(DeadLetter&& letter, bool recovered) = 0;
  // Any thread.
  [[nodiscard]] virtual uint64_t durable() const noexcept = 0;
  // The agent's doorbell: a sink that makes tickets durable on another
  // thread calls it after durable() moves. Set once, before the first accept.
  virtual void set_waker(std::function<void()> waker) { (void)waker; }
};

// The newest `capacity` dead letters in memory; the oldest are dropped (and
// counted) beyond that. Durable at once (for tests and embedders that journal
// elsewhere). Thread-safe readers.
class MemoryDeadLetters final : public DeadLetterSink {
 public:
  explicit MemoryDeadLetters(size_t capacity = 1000) : capacity_(capacity) {}
  uint64_t accept(DeadLetter&& letter, bool recovered) override {
    std::lock_guard lock(mu_);
    if (recovered) {
      for (const DeadLetter& d : letters_) {
        if (d.request_id == letter.request_id) return ticket_;
      }
    }
    if (letters_.size() == capacity_) {
      letters_.pop_front();
      ++dropped_;
    }
    letters_.push_back(std::move(letter));
    return ++ticket_;
  }
  uint64_t durable() const noexcept override {
    std::lock_guard lock(mu_);
    return ticket_;
  }
  [[nodiscard]] std::vector<DeadLetter> snapshot() const {
    std::lock_guard lock(mu_);
    return {letters_.begin(), letters_.end()};
  }
  [[nodiscard]] uint64_t dropped() const {
    std::lock_guard lock(mu_);
    return dropped_;
  }

 private:
  mutable std::mutex mu_;
  size_t capacity_;
  std::deque<DeadLetter> letters_;
  uint64_t dropped_ = 0;
  uint64_t ticket_ = 0;
};

}  // namespace perfq::agent
