#pragma once
// Dead letters: requests that failed every attempt or timed out (SPEC §5).
// The agent hands each one to a DeadLetterSink; the durable journal on
// io_uring is one (the DLQ issue), the bounded in-memory list below is the
// default until then and the one tests read.
#include <cstddef>
#include <cstdint>
#include <deque>
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

class DeadLetterSink {
 public:
  virtual ~DeadLetterSink() = default;
  // Data-plane thread. Must not block for long.
  virtual void accept(DeadLetter&& letter) = 0;
};

// The newest `capacity` dead letters in memory; the oldest are dropped (and
// counted) beyond that. Thread-safe readers.
class MemoryDeadLetters final : public DeadLetterSink {
 public:
  explicit MemoryDeadLetters(size_t capacity = 1000) : capacity_(capacity) {}
  void accept(DeadLetter&& letter) override {
    std::lock_guard lock(mu_);
    if (letters_.size() == capacity_) {
      letters_.pop_front();
      ++dropped_;
    }
    letters_.push_back(std::move(letter));
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
};

}  // namespace perfq::agent
