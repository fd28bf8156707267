#pragma once
// Journal: the agent's durable files (SPEC §5 "DLQ journal", §7 audit log).
//
//   <data_dir>/dlq/<16 hex digits>.log   DLQ segment files, oldest first
//   <data_dir>/audit.log                 JSON lines
//
// One journal thread owns both files and writes them through JournalWriter
// (io_uring, one write linked to one fdatasync per round: group commit).
// The data plane hands it dead letters (DeadLetterSink) and learns which are
// durable; operators (the admin socket) review and replay entries and wait
// until their record is durable; anything may queue an audit line.
//
// The thread composes the parts, each in its own file:
//
//   accept/review/replay --> queues --round--> JournalWriter (writer.hpp)
//                                        |       the active segment
//                                        |---> AuditLog (audit_log.hpp)
//                            durable <---+
//                            DlqIndex (dlq_index.hpp): every entry, by id
//   after a full segment: rotation, then Retention (retention.hpp)
//
// A round (round_locked): take what is queued, append it, one group commit
// per file, apply what became durable to the index and wake the agent; then
// the housekeeping. The active segment (the newest) takes every append; once
// its durable size reaches segment_bytes the thread starts the next file.
//
// Invariants of a round (checked): tickets and durable positions never go
// back; each appended record has the writer's next ticket; the data plane's
// tickets become durable one after another; every review or replay record
// completes its operator's wait once.
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "journal/audit_log.hpp"
#include "journal/backoff.hpp"
#include "journal/dlq_index.hpp"
#include "journal/files.hpp"
#include "journal/format.hpp"
#include "journal/retention.hpp"
#include "journal/writer.hpp"
#include "perfq/agent/dead_letter.hpp"
#include "perfq/core/clock.hpp"
#include "perfq/core/result.hpp"

namespace perfq::shm {
struct JournalView;
}

namespace perfq::agent {

struct JournalOptions {
  std::string data_dir;  // the journal lives in <data_dir>/dlq, the audit log beside it
  uint64_t segment_bytes = uint64_t{64} << 20;             // rotate at this durable size
  uint64_t retention_ms = uint64_t{7} * 24 * 3600 * 1000;  // reviewed entries kept this long
  uint64_t retry_ms = 100;  // first wait after a failed flush; doubles up to retry_max_ms
  uint64_t retry_max_ms = 5000;
  bool audit = true;             // write <data_dir>/audit.log
  IoSeam* seam = nullptr;        // fault injection for the DLQ files (tests)
  const Clock* clock = nullptr;  // nullptr: the system clock
};

class Journal final : public DeadLetterSink {
 public:
  // Creates the directories, scans every segment (recovery), opens the
  // newest for appending (truncating a torn tail), sweeps retention, and
  // starts the journal thread. A corrupt record is reported in recovery(),
  // never a reason to fail.
  [[nodiscard]] static Result<std::unique_ptr<Journal>> open(JournalOptions options);
  // Stops the thread after one last round for what is queued.
  ~Journal() override;
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // DeadLetterSink (data-plane thread): never blocks on I/O.
  [[nodiscard]] uint64_t accept(DeadLetter&& letter, bool recovered) override;
  [[nodiscard]] uint64_t durable() const noexcept override;
  void set_waker(std::function<void()> waker) override;

  // Health facts go to the segment header from now on (nullptr: stop).
  void attach_view(shm::JournalView* view);

  // Queues one audit line (a JSON object without newline). Never blocks on I/O.
  void audit(std::string line);
  // Any thread: the audit log reopens its path after its next flush
  // (AuditLog::request_reopen). Queue an audit line after it so there is one.
  void reopen_audit() noexcept {
    if (audit_) audit_->request_reopen();
  }

  // Operator verbs; any thread. Newest first, unreviewed before reviewed;
  // `all` includes reviewed entries.
  [[nodiscard]] std::vector<DlqSummary> list(std::size_t limit, bool all) const;
  [[nodiscard]] Result<DlqEntry> show(uint64_t dlq_id) const;  // kNotFound
  // kInvalidRequest (empty resolution), kNotFound, kConflict (reviewed
  // before, or a review of it is on its way to disk);
  // returns once the review record is durable (kInternal: the journal is
  // failing; the review stays queued and lands when it recovers).
  [[nodiscard]] Result<void> review(uint64_t dlq_id, std::string reviewed_by,
                                    std::string resolution, uint64_t timeout_ms = 10'000);
  // kNotFound, kConflict (replayed before).
  [[nodiscard]] Result<void> check_replayable(uint64_t dlq_id) const;
  // check_replayable, and marks the entry as being replayed until
  // record_replay's record is durable or abandon_replay: a concurrent replay
  // of it is a kConflict.
  [[nodiscard]] Result<void> begin_replay(uint64_t dlq_id);
  void abandon_replay(uint64_t dlq_id);
  // Records that the entry was submitted again as `replayed_as`. kNotFound,
  // kConflict (a replay of it is recorded already).
  [[nodiscard]] Result<void> record_replay(uint64_t dlq_id, uint64_t replayed_as,
                                           uint64_t timeout_ms = 10'000);
  // Reads every segment file again and checks every record (CRC, body).
  // The active file is read up to its durable end.
  [[nodiscard]] Result<JournalReport> verify() const;

  [[nodiscard]] const JournalReport& recovery() const noexcept { return recovery_; }
  [[nodiscard]] uint64_t unreviewed() const;
  [[nodiscard]] JournalState state() const;
  // Waits until the thread has finished a round after `round` (or timeout);
  // returns the current round. Tests use it to wait on the event.
  uint64_t wait_round(uint64_t round, uint64_t timeout_ms);
  [[nodiscard]] uint64_t round() const;
  [[nodiscard]] const std::string& dir() const noexcept { return dir_; }

 private:
  struct Op;       // a review or replay record waiting to be durable
  struct Written;  // an appended record, applied to the index when durable
  struct Round;    // what one round took from the queues

  explicit Journal(JournalOptions options);
  [[nodiscard]] Result<void> recover();
  [[nodiscard]] Result<void> open_segment(uint64_t seq);
  void run();
  void round_locked(std::unique_lock<std::mutex>& lock, bool audit_due);
  [[nodiscard]] Round take_locked(bool audit_due);
  void append_letters(Round& round);                                      // thread, unlocked
  void append_ops(Round& round);                                          // thread, unlocked
  [[nodiscard]] bool append(Written w, std::span<const std::byte> body);  // thread, unlocked
  void put_back_locked(Round& round);
  // Returns how many dead letters became durable.
  [[nodiscard]] std::size_t finish_locked(const Result<uint64_t>& flushed, bool audit_ok);
  void housekeep();
  void apply(const Written& w);
  // Returns the segments it deleted.
  std::size_t sweep(uint64_t now_ns);
  void publish_view();
  [[nodiscard]] Result<void> wait_durable(const std::shared_ptr<Op>& op, uint64_t timeout_ms);
  // Thread (or open): appends a checkpoint of next_dlq_id_ to the active
  // segment and makes it durable. Before retention deletes anything.
  [[nodiscard]] bool write_checkpoint();
  [[nodiscard]] std::string segment_path(uint64_t seq) const;
  [[nodiscard]] uint64_t now_unix_ns() const noexcept;

  JournalOptions options_;
  std::string dir_;  // <data_dir>/dlq

  // Thread-owned (no lock): the active segment's writer and what it holds.
  std::unique_ptr<JournalWriter> dlq_;
  uint64_t active_seq_ = 0;
  std::vector<Written> written_;  // appended to dlq_, oldest first, not yet durable
  Backoff backoff_;               // of the DLQ files
  bool last_round_ok_ = true;     // both files flushed in the last round

  mutable std::mutex mu_;
  std::condition_variable work_cv_;   // the thread waits for work here
  std::condition_variable round_cv_;  // callers wait for durability here
  bool stop_ = false;
  std::vector<std::pair<uint64_t, DeadLetter>> letters_;  // {ticket, letter}: queued
  std::vector<std::shared_ptr<Op>> ops_;
  std::unique_ptr<AuditLog> audit_;  // null: audit off; its queue under mu_
  std::string rotation_error_;       // the last failed rotation; empty once one succeeds
  uint64_t next_ticket_ = 1;
  uint64_t durable_ticket_ = 0;
  uint64_t next_dlq_id_ = 1;
  uint64_t round_ = 0;
  uint64_t durable_records_ = 0;
  uint64_t active_durable_end_ = 0;  // of the active segment (verify reads that far)
  uint64_t active_seq_public_ = 0;
  DlqIndex index_;
  Retention retention_;  // its segment list under mu_
  JournalState state_;
  shm::JournalView* view_ = nullptr;
  std::function<void()> waker_;
  JournalReport recovery_;
  std::thread thread_;
};

}  // namespace perfq::agent
