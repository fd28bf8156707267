#pragma once
// JournalWriter: appends framed records (journal_format.hpp) to one DLQ
// segment file through its own io_uring, with group commit (issue 4).
//
// Role: owned by one thread (the agent's journal thread). Not thread-safe.
// append() never does I/O; flush() blocks until the kernel has completed the
// write and the fdatasync it submitted.
//
// The file and the in-memory queue, as file offsets:
//
//   0                durable_end      written_end         durable_end + pending
//   |== durable ========|~~ written ~~~~|-- not yet written --|
//                       |<----------- queued records -------->|
//
//   durable:  covered by an fdatasync whose CQE succeeded; tickets up to
//             durable_ticket() live here and only here.
//   written:  write CQEs succeeded, no successful fdatasync yet. Still queued.
//   Records leave the queue only when an fdatasync covering them succeeds.
//
// Writes are positional (at written_end, never O_APPEND), so writing a range
// again puts the same bytes at the same offsets: a retry can never duplicate a
// record. After a failed flush (a failed fdatasync above all) the next flush
// rewrites from durable_end rather than only syncing again: Linux may have
// dropped the dirty pages when writeback failed (marking them clean), so a
// second fdatasync alone could succeed without the data on disk.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "journal/format.hpp"
#include "perfq/core/result.hpp"

namespace perfq::agent {

// Makes the entries of directory `dir` durable (fsync): a file created or
// deleted in it survives a crash. kInternal with the strerror text.
[[nodiscard]] Result<void> sync_dir(const std::string& dir);

// Test seam: shapes every CQE result before the writer acts on it, in
// submission order (a round's write, then its fdatasync, whose result is
// ignored when the write came back short or failed). A seam may return a
// short count (0 <= n <= res) for a write, or a negative errno (-EAGAIN,
// -EINTR, -EIO, ...) for either op; production passes none.
class IoSeam {
 public:
  enum class Op : uint8_t { kWrite, kFsync };
  virtual ~IoSeam() = default;
  // `res` is the kernel's CQE result: bytes written, 0 (fsync) or -errno.
  [[nodiscard]] virtual int on_result(Op op, int res) = 0;
};

struct JournalWriterOptions {
  // Bound on queued bytes (not yet durable); append() refuses past it. Also
  // keeps every write SQE's length well below UINT32_MAX.
  std::size_t max_pending_bytes = std::size_t{64} << 20;
  // The largest existing file open() will read into memory to scan.
  std::size_t max_scan_bytes = std::size_t{1} << 30;
  unsigned queue_depth = 8;
  // A file of text lines (the audit log) instead of framed records: open()
  // keeps everything up to the last '\n' (reading only the tail, so no size
  // limit) and truncates a torn last line; append_line() queues. Same
  // io_uring path, same group commit. recovery().records stays 0.
  bool lines = false;
};

// What open() found in an existing file, for the caller to log.
struct JournalRecovery {
  uint64_t records = 0;               // valid records kept
  std::vector<CorruptRange> corrupt;  // skipped mid-file ranges, left in place
  uint64_t truncated_bytes = 0;       // torn tail cut off (0: none)
  uint64_t valid_end = 0;             // where the first append lands
  bool created = false;               // the file did not exist
};

enum class JournalHealth : uint8_t { kHealthy, kFailing };

struct JournalState {
  JournalHealth health = JournalHealth::kHealthy;
  std::string last_error;  // "journal fdatasync: Input/output error"; empty when healthy
  uint64_t failed_flushes = 0;
  int last_errno = 0;  // of the last failure when it was a system error; 0 otherwise
};

class JournalWriter {
 public:
  // Opens or creates `path` (mode 0640, O_CLOEXEC); a new file's directory
  // entry is made durable. An existing file is scanned; a torn tail is
  // truncated to valid_end (and synced) so appends follow the last valid
  // record; corrupt ranges mid-file are reported in recovery() and left.
  // kInternal (with strerror text) on any system-call failure.
  [[nodiscard]] static Result<std::unique_ptr<JournalWriter>> open(
      const std::string& path, IoSeam* seam = nullptr, JournalWriterOptions options = {});

  ~JournalWriter();  // queued, non-durable records are discarded: flush first
  JournalWriter(const JournalWriter&) = delete;
  JournalWriter& operator=(const JournalWriter&) = delete;

  // Queues one encoded record; no I/O. Tickets count up from 1 per writer.
  // kInvalidRequest: body larger than kRecordBodyMax. kQueueFull: the queue
  // would exceed max_pending_bytes (flush, or the journal is failing).
  [[nodiscard]] Result<uint64_t> append(RecordType type, std::span<const std::byte> body);
  // Lines mode: queues `line` and a '\n' (the line must hold none).
  [[nodiscard]] Result<uint64_t> append_line(std::string_view line);

  // Group commit: all queued records in ONE write SQE linked to ONE
  // fdatasync, one submit, then waits for both CQEs. A short write is
  // resubmitted from where it stopped; -EAGAIN/-EINTR are retried (bounded).
  // Any other error: kInternal with the strerror text (never record bytes),
  // state() turns failing, and every record stays queued. Returns the
  // durable ticket: every ticket <= it is on disk. Blocks.
  [[nodiscard]] Result<uint64_t> flush();

  // Baseline for the benchmark: one write + one fdatasync per queued record,
  // same error handling; stops at the first failure.
  [[nodiscard]] Result<uint64_t> flush_each();

  [[nodiscard]] uint64_t durable_ticket() const noexcept { return durable_ticket_; }
  [[nodiscard]] uint64_t last_ticket() const noexcept {
    return durable_ticket_ + pending_records();
  }
  [[nodiscard]] std::size_t pending_records() const noexcept { return ends_.size() - ends_head_; }
  [[nodiscard]] std::size_t pending_bytes() const noexcept { return buf_.size() - buf_head_; }
  [[nodiscard]] uint64_t durable_end() const noexcept { return durable_end_; }
  [[nodiscard]] uint64_t written_end() const noexcept { return written_end_; }
  [[nodiscard]] const JournalState& state() const noexcept { return state_; }
  [[nodiscard]] const JournalRecovery& recovery() const noexcept { return recovery_; }

 private:
  struct Ring;  // io_uring, kept out of this header

  JournalWriter(int fd, std::unique_ptr<Ring> ring, IoSeam* seam, JournalWriterOptions options);
  [[nodiscard]] static Result<std::unique_ptr<JournalWriter>> finish_open(
      int fd, IoSeam* seam, JournalWriterOptions options, JournalRecovery recovery);

  struct Pass;  // one linked write -> fdatasync, submitted and reaped
  enum class Step : uint8_t { kDurable, kProgress, kStall };

  // Makes the first `records` queued records durable (writes whatever of them
  // is not written yet, then fdatasync), one pass at a time.
  [[nodiscard]] Result<void> commit(std::size_t records);
  [[nodiscard]] Result<void> run_pass(uint64_t target_end, Pass& pass);
  void submit(Pass& pass);
  [[nodiscard]] Result<void> reap(Pass& pass);
  [[nodiscard]] Result<Step> judge(const Pass& pass);
  void mark_durable(std::size_t records, std::size_t bytes);
  [[nodiscard]] Result<void> fail(std::string message, int err = 0);
  void drop_durable(std::size_t records, std::size_t bytes) noexcept;

  int fd_ = -1;
  std::unique_ptr<Ring> ring_;
  IoSeam* seam_ = nullptr;
  JournalWriterOptions options_;

  // Queued bytes are buf_[buf_head_, size); buf_[buf_head_] sits at file
  // offset durable_end_. ends_[i] (i >= ends_head_) is the end of queued
  // record i as an index into buf_; its ticket is durable_ticket_ + 1 +
  // (i - ends_head_). The heads move on commit; the vectors compact lazily.
  std::vector<std::byte> buf_;
  std::size_t buf_head_ = 0;
  std::vector<std::size_t> ends_;
  std::size_t ends_head_ = 0;

  uint64_t durable_end_ = 0;
  uint64_t written_end_ = 0;  // durable_end_ <= written_end_ <= durable_end_ + pending_bytes()
  uint64_t durable_ticket_ = 0;
  JournalState state_;
  JournalRecovery recovery_;
};

}  // namespace perfq::agent
