#pragma once
// AuditLog: <data_dir>/audit.log, one JSON object per line (SPEC §7),
// written by the journal thread through a JournalWriter of its own in lines
// mode: the same group commit as the DLQ, and a backoff of its own, so that
// a failing audit log never delays a dead letter.
//
//   push (any thread) --> queue (<= queue_max lines) --take--> write (flush)
//                           ^                                    |
//                           +--------- put_back (what the -------+
//                                      writer's queue refused)
//
// The queue is bounded: a line past queue_max is dropped and counted, and the
// count is said in one audit.dropped line once the log takes lines again.
//
// Roles: the queue side (push, has_work, due, take, put_back, state) is
// guarded by the Journal's lock, which the caller holds; push may come from
// any thread, the rest from the journal thread. write() runs on the journal
// thread without the lock.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "journal/backoff.hpp"
#include "journal/writer.hpp"
#include "perfq/core/result.hpp"

namespace perfq::agent {

struct AuditLogOptions {
  std::size_t queue_max = 65536;                          // lines waiting to be written
  std::size_t max_pending_bytes = std::size_t{64} << 20;  // written, not yet durable
  Backoff backoff;                                        // after a failed flush
};

class AuditLog {
 public:
  // Opens or creates `path`; a torn last line is cut (JournalWriter).
  [[nodiscard]] static Result<std::unique_ptr<AuditLog>> open(const std::string& path,
                                                              AuditLogOptions options = {});

  // Lock held. Queues one line (without '\n'). False: the queue is full, the
  // line is dropped and counted.
  bool push(std::string line);
  // Lock held, journal thread.
  [[nodiscard]] bool has_work() const noexcept;  // lines queued or not yet durable
  // has_work, and no backoff running (a stopping journal writes at once).
  [[nodiscard]] bool due(std::chrono::steady_clock::time_point now, bool stopping) const noexcept;
  [[nodiscard]] std::chrono::steady_clock::time_point retry_at() const noexcept {
    return retry_at_;
  }
  // Every queued line, behind an audit.dropped line when some were dropped.
  [[nodiscard]] std::vector<std::string> take(uint64_t now_unix_ns);
  // What write() left goes back in front of what was queued meanwhile; past
  // queue_max the newest lines are dropped and counted, as push does. Takes
  // the writer's state for state().
  void put_back(std::vector<std::string> left);
  // As of the last put_back; any thread with the lock held.
  [[nodiscard]] const JournalState& state() const noexcept { return state_; }

  // Journal thread, unlocked: appends `lines` in order until the writer's
  // queue is full (the rest stays in `lines`), then one group commit. False:
  // the flush failed; the backoff runs and everything stays queued.
  [[nodiscard]] bool write(std::vector<std::string>& lines);

  // Any thread: once the current file is flushed, the next write() opens
  // the path anew (logrotate renamed the file: SIGHUP). If the path cannot
  // be opened, the old file goes on.
  void request_reopen() noexcept { reopen_.store(true, std::memory_order_relaxed); }

 private:
  AuditLog(std::string path, std::unique_ptr<JournalWriter> writer, AuditLogOptions options);
  [[nodiscard]] static JournalWriterOptions writer_options(const AuditLogOptions& options);

  std::string path_;
  std::atomic<bool> reopen_{false};
  AuditLogOptions options_;
  // Journal thread only.
  std::unique_ptr<JournalWriter> writer_;
  Backoff backoff_;
  std::chrono::steady_clock::time_point retry_at_{};
  // Journal lock held.
  std::vector<std::string> queue_;
  uint64_t dropped_ = 0;
  JournalState state_;
};

}  // namespace perfq::agent
