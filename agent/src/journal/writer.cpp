#include "journal/writer.hpp"

#include <fcntl.h>
#include <liburing.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "perfq/core/assert.hpp"
#include "perfq/shm/fd_guard.hpp"

namespace perfq::agent {

namespace {

using shm::FdGuard;

constexpr uint64_t kWriteTag = 1;
constexpr uint64_t kFsyncTag = 2;
// Consecutive rounds without progress (-EAGAIN, -EINTR, a zero-byte write, a
// split submit) before flush gives up and reports failing.
constexpr int kMaxStalls = 64;
// io_uring_submit / io_uring_wait_cqe retries on -EAGAIN / -EINTR.
constexpr int kMaxSyscallRetries = 1024;
// One write SQE carries the whole queue; its length is a u32.
constexpr std::size_t kPendingBytesCap = std::size_t{1} << 30;

std::string errno_text(const char* what, int err) {
  return std::string(what) + ": " + std::strerror(err);
}

bool retryable(int res) noexcept {
  return res == -EAGAIN || res == -EINTR;
}

// A new file's name must be durable too, or a crash can lose the whole file.
Result<void> sync_parent_dir(const std::string& path) {
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  return sync_dir(dir.empty() ? "." : dir.string());
}

Result<std::vector<std::byte>> read_whole(int fd, std::size_t max_bytes) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return {Errc::kInternal, errno_text("journal fstat", errno)};
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size > max_bytes) {
    return {Errc::kInternal, "journal segment larger than max_scan_bytes: " + std::to_string(size)};
  }
  std::vector<std::byte> file(static_cast<std::size_t>(size));
  std::size_t got = 0;
  // Each pass reads >= 1 byte or ends; EINTR retries are bounded too.
  for (int eintr = 0; got < file.size();) {
    const ssize_t r = ::pread(fd, file.data() + got, file.size() - got, static_cast<off_t>(got));
    if (r < 0) {
      if (errno == EINTR && ++eintr < kMaxSyscallRetries) continue;
      return {Errc::kInternal, errno_text("journal read", errno)};
    }
    if (r == 0) break;  // shrank under us: scan what is there
    got += static_cast<std::size_t>(r);
  }
  file.resize(got);
  return file;
}

// The offset just past the file's last '\n' (0: none), reading backwards
// in chunks from the end.
Result<uint64_t> last_line_end(int fd, uint64_t& size) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return {Errc::kInternal, errno_text("journal fstat", errno)};
  size = static_cast<uint64_t>(st.st_size);
  char buf[64 * 1024];
  for (uint64_t end = size; end > 0;) {
    const uint64_t begin = end > sizeof buf ? end - sizeof buf : 0;
    const auto want = static_cast<std::size_t>(end - begin);
    std::size_t got = 0;
    for (int eintr = 0; got < want;) {
      const ssize_t r = ::pread(fd, buf + got, want - got, static_cast<off_t>(begin + got));
      if (r < 0 && errno == EINTR && ++eintr < kMaxSyscallRetries) continue;
      if (r < 0) return {Errc::kInternal, errno_text("journal read", errno)};
      if (r == 0) break;
      got += static_cast<std::size_t>(r);
    }
    for (std::size_t i = got; i > 0; --i) {
      if (buf[i - 1] == '\n') return begin + i;
    }
    end = begin;
  }
  return uint64_t{0};
}

}  // namespace

Result<void> sync_dir(const std::string& dir) {
  FdGuard dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.get() < 0) return {Errc::kInternal, errno_text("journal open dir", errno)};
  if (::fsync(dfd.get()) != 0) return {Errc::kInternal, errno_text("journal fsync dir", errno)};
  return {};
}

struct JournalWriter::Ring {
  io_uring ring{};
  bool ready = false;
  bool broken = false;  // SQEs may be stuck in the SQ: refuse further I/O
  ~Ring() {
    if (ready) io_uring_queue_exit(&ring);
  }
};

JournalWriter::JournalWriter(int fd, std::unique_ptr<Ring> ring, IoSeam* seam,
                             JournalWriterOptions options)
    : fd_(fd), ring_(std::move(ring)), seam_(seam), options_(options) {
  options_.max_pending_bytes = std::min(options_.max_pending_bytes, kPendingBytesCap);
}

JournalWriter::~JournalWriter() {
  ring_.reset();  // no SQE is in flight: commit() always reaps what it submitted
  if (fd_ >= 0) ::close(fd_);
}

Result<std::unique_ptr<JournalWriter>> JournalWriter::open(const std::string& path, IoSeam* seam,
                                                           JournalWriterOptions options) {
  JournalRecovery recovery;
  FdGuard fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640));
  if (fd.get() >= 0) {
    recovery.created = true;
    if (auto r = sync_parent_dir(path); !r) return r.error();
  } else {
    if (errno != EEXIST) return {Errc::kInternal, errno_text("journal create", errno)};
    FdGuard existing(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (existing.get() < 0) return {Errc::kInternal, errno_text("journal open", errno)};
    ScanResult scanned;
    uint64_t file_size = 0;
    if (options.lines) {
      // Everything up to the last newline; a torn last line is cut. Only the
      // tail is read, however long the file has grown.
      auto end = last_line_end(existing.get(), file_size);
      if (!end) return end.error();
      scanned.valid_end = *end;
      scanned.torn_tail = scanned.valid_end < file_size;
    } else {
      auto file = read_whole(existing.get(), options.max_scan_bytes);
      if (!file) return file.error();
      file_size = file->size();
      scanned = scan(file.value());
      if (scanned.format != kRecordVersion) {
        return {Errc::kInternal, "journal segment " + path + " is in format " +
                                     std::to_string(scanned.format) + ": appends go to format " +
                                     std::to_string(kRecordVersion) + " files only"};
      }
      recovery.records = scanned.records.size();
    }
    recovery.corrupt = scanned.corrupt;
    recovery.valid_end = scanned.valid_end;
    if (scanned.torn_tail) {
      recovery.truncated_bytes = file_size - scanned.valid_end;
      if (::ftruncate(existing.get(), static_cast<off_t>(scanned.valid_end)) != 0) {
        return {Errc::kInternal, errno_text("journal truncate", errno)};
      }
      // The cut must be durable before anything is appended after it.
      if (::fsync(existing.get()) != 0)
        return {Errc::kInternal, errno_text("journal fsync", errno)};
    }
    return finish_open(existing.release(), seam, options, std::move(recovery));
  }
  return finish_open(fd.release(), seam, options, std::move(recovery));
}

Result<std::unique_ptr<JournalWriter>> JournalWriter::finish_open(int raw_fd, IoSeam* seam,
                                                                  JournalWriterOptions options,
                                                                  JournalRecovery recovery) {
  FdGuard fd(raw_fd);
  auto ring = std::make_unique<Ring>();
  const int r = io_uring_queue_init(std::max(options.queue_depth, 2u), &ring->ring, 0);
  if (r < 0) return {Errc::kInternal, errno_text("journal io_uring_queue_init", -r)};
  ring->ready = true;

  std::unique_ptr<JournalWriter> w(new JournalWriter(fd.release(), std::move(ring), seam, options));
  w->durable_end_ = recovery.valid_end;
  w->written_end_ = recovery.valid_end;
  w->recovery_ = std::move(recovery);
  return w;
}

Result<uint64_t> JournalWriter::append(RecordType type, std::span<const std::byte> body) {
  if (body.size() > kRecordBodyMax) {
    return {Errc::kInvalidRequest, "journal record body larger than kRecordBodyMax"};
  }
  const std::vector<std::byte> rec = encode_record(type, body);
  if (pending_bytes() + rec.size() > options_.max_pending_bytes) {
    return {Errc::kQueueFull,
            "journal queue full: " + std::to_string(pending_bytes()) + " bytes not yet durable"};
  }
  buf_.insert(buf_.end(), rec.begin(), rec.end());
  ends_.push_back(buf_.size());
  return last_ticket();
}

Result<uint64_t> JournalWriter::append_line(std::string_view line) {
  PERFQ_ASSERT(options_.lines);
  PERFQ_ASSERT(line.find('\n') == std::string_view::npos);
  const std::size_t size = line.size() + 1;
  if (size > kRecordBodyMax)
    return {Errc::kInvalidRequest, "journal line longer than kRecordBodyMax"};
  if (pending_bytes() + size > options_.max_pending_bytes) {
    return {Errc::kQueueFull,
            "journal queue full: " + std::to_string(pending_bytes()) + " bytes not yet durable"};
  }
  const auto* b = reinterpret_cast<const std::byte*>(line.data());
  buf_.insert(buf_.end(), b, b + line.size());
  buf_.push_back(std::byte{'\n'});
  ends_.push_back(buf_.size());
  return last_ticket();
}

Result<uint64_t> JournalWriter::flush() {
  if (pending_records() == 0) return durable_ticket_;
  if (auto r = commit(pending_records()); !r) return r.error();
  return durable_ticket_;
}

Result<uint64_t> JournalWriter::flush_each() {
  // Bounded by the queue length at entry: nothing is appended meanwhile.
  for (std::size_t n = pending_records(); n > 0; --n) {
    if (auto r = commit(1); !r) return r.error();
  }
  return durable_ticket_;
}

Result<void> JournalWriter::fail(std::string message, int err) {
  state_.health = JournalHealth::kFailing;
  state_.last_error = message;
  state_.last_errno = err;
  ++state_.failed_flushes;
  // Rewrite from the durable end next time: after a failed flush, written
  // bytes may have been dropped from the page cache (see the header).
  written_end_ = durable_end_;
  return {Errc::kInternal, std::move(message)};
}

void JournalWriter::drop_durable(std::size_t records, std::size_t bytes) noexcept {
  ends_head_ += records;
  buf_head_ += bytes;
  if (buf_head_ == buf_.size()) {
    buf_.clear();
    ends_.clear();
    buf_head_ = 0;
    ends_head_ = 0;
  } else if (buf_head_ > buf_.size() / 2) {
    // Compact: amortized O(1) per byte, so flush_each() stays linear.
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(buf_head_));
    ends_.erase(ends_.begin(), ends_.begin() + static_cast<std::ptrdiff_t>(ends_head_));
    for (std::size_t& e : ends_) e -= buf_head_;
    buf_head_ = 0;
    ends_head_ = 0;
  }
}

// One pass of commit(): [write of the unwritten rest, IOSQE_IO_LINK] ->
// fdatasync, submitted together and reaped together.
struct JournalWriter::Pass {
  unsigned len = 0;        // bytes the write asks for; 0: no write, the pass only syncs
  unsigned queued = 0;     // SQEs prepared
  unsigned submitted = 0;  // SQEs the kernel took
  // Taken by more than one io_uring_submit: the link is broken, so the
  // fdatasync may have run before the write and its result is not trusted.
  bool split = false;
  int submit_err = 0;
  int write_res = -ECANCELED;  // CQE results; -ECANCELED until reaped
  int fsync_res = -ECANCELED;
};

// Makes the first `records` queued records durable. Bounded: a pass that
// moves no byte counts a stall, and kMaxStalls of them in a row give up; a
// pass that moves bytes writes at least one of the finite target.
Result<void> JournalWriter::commit(std::size_t records) {
  PERFQ_ASSERT(records >= 1 && records <= pending_records());
  if (ring_->broken) return fail("journal io_uring unusable after a failed submit");
  const std::size_t target_bytes = ends_[ends_head_ + records - 1] - buf_head_;
  const uint64_t target_end = durable_end_ + target_bytes;
  for (int stalls = 0; stalls < kMaxStalls;) {
    Pass pass;
    if (auto r = run_pass(target_end, pass); !r) return r;
    auto step = judge(pass);
    if (!step) return step.error();
    switch (*step) {
      case Step::kDurable:
        mark_durable(records, target_bytes);
        return {};
      case Step::kProgress:
        stalls = 0;
        break;
      case Step::kStall:
        ++stalls;
        break;
    }
  }
  return fail("journal flush: no progress after " + std::to_string(kMaxStalls) + " retries");
}

// Queues the pass's SQEs, submits them and reaps exactly what was submitted
// (before buf_ may change or commit return: in-flight SQEs point into it).
// The queue depth is >= 2 and every pass reaps all it submits, so the SQ has
// room. A failure here leaves the ring unusable when SQEs may be stuck in it.
Result<void> JournalWriter::run_pass(uint64_t target_end, Pass& pass) {
  io_uring* ring = &ring_->ring;
  // A short write leaves written_end_ inside the target: the rest is written
  // from there, positionally, from the bytes still queued.
  PERFQ_ENFORCE(durable_end_ <= written_end_ && written_end_ <= target_end);
  if (written_end_ < target_end) {
    io_uring_sqe* sqe = io_uring_get_sqe(ring);
    if (sqe == nullptr) return fail("journal io_uring: no free SQE");  // nothing queued yet
    pass.len = static_cast<unsigned>(target_end - written_end_);
    const std::size_t from = buf_head_ + static_cast<std::size_t>(written_end_ - durable_end_);
    PERFQ_ENFORCE(from + pass.len <= buf_.size());
    io_uring_prep_write(sqe, fd_, buf_.data() + from, pass.len, written_end_);
    sqe->flags |= IOSQE_IO_LINK;  // the fdatasync runs only after the whole write
    io_uring_sqe_set_data64(sqe, kWriteTag);
    ++pass.queued;
  }
  io_uring_sqe* fsq = io_uring_get_sqe(ring);
  if (fsq == nullptr) {
    ring_->broken = true;  // a write SQE may sit unsubmitted in the SQ
    return fail("journal io_uring: no free SQE");
  }
  io_uring_prep_fsync(fsq, fd_, IORING_FSYNC_DATASYNC);
  io_uring_sqe_set_data64(fsq, kFsyncTag);
  ++pass.queued;
  submit(pass);
  if (auto r = reap(pass); !r) return r;
  if (pass.submitted < pass.queued) {
    ring_->broken = true;  // the rest sits in the SQ and would run later
    const int err = pass.submit_err != 0 ? pass.submit_err : EAGAIN;
    return fail(errno_text("journal io_uring_submit", err), err);
  }
  return {};
}

// One submit per pass; -EAGAIN, -EINTR and -EBUSY are retried (bounded).
void JournalWriter::submit(Pass& pass) {
  io_uring* ring = &ring_->ring;
  for (int tries = 0; pass.submitted < pass.queued && tries < kMaxSyscallRetries; ++tries) {
    const int r = io_uring_submit(ring);
    if (r >= 0) {
      pass.submitted += static_cast<unsigned>(r);
      if (pass.submitted < pass.queued) pass.split = true;
      continue;
    }
    if (r != -EAGAIN && r != -EINTR && r != -EBUSY) {
      pass.submit_err = -r;
      return;
    }
  }
}

Result<void> JournalWriter::reap(Pass& pass) {
  io_uring* ring = &ring_->ring;
  for (unsigned reaped = 0, eintr = 0; reaped < pass.submitted;) {
    io_uring_cqe* cqe = nullptr;
    const int r = io_uring_wait_cqe(ring, &cqe);
    if (r < 0) {
      if (r == -EINTR && ++eintr < static_cast<unsigned>(kMaxSyscallRetries)) continue;
      // Unreachable in practice; the in-flight SQEs still point into buf_.
      ring_->broken = true;
      return fail(errno_text("journal io_uring_wait_cqe", -r), -r);
    }
    (io_uring_cqe_get_data64(cqe) == kWriteTag ? pass.write_res : pass.fsync_res) = cqe->res;
    io_uring_cqe_seen(ring, cqe);
    ++reaped;
  }
  return {};
}

// What a reaped pass achieved. The seam sees every CQE, in submission order.
//   -EAGAIN / -EINTR on either op: a stall; the same write is queued again.
//   a short write: written_end_ moves by what was written; the next pass
//     writes the rest (a progress, or a stall when nothing was written).
//   a split submit, a cancelled fdatasync: a stall; the next pass syncs.
//   any other error: fail() (every record stays queued).
Result<JournalWriter::Step> JournalWriter::judge(const Pass& pass) {
  int fsync_res = pass.fsync_res;
  if (pass.len > 0) {
    const int w =
        seam_ != nullptr ? seam_->on_result(IoSeam::Op::kWrite, pass.write_res) : pass.write_res;
    if (seam_ != nullptr) fsync_res = seam_->on_result(IoSeam::Op::kFsync, fsync_res);
    if (w < 0) {
      if (retryable(w)) return Step::kStall;
      return fail(errno_text("journal write", -w), -w).error();
    }
    // A write never completes more than it asked for.
    PERFQ_ENFORCE(static_cast<unsigned>(w) <= pass.len);
    written_end_ += static_cast<unsigned>(w);
    if (static_cast<unsigned>(w) < pass.len) return w == 0 ? Step::kStall : Step::kProgress;
  } else if (seam_ != nullptr) {
    fsync_res = seam_->on_result(IoSeam::Op::kFsync, fsync_res);
  }
  if (pass.split) return Step::kStall;  // any write is complete now; the next pass syncs alone
  if (fsync_res < 0) {
    if (retryable(fsync_res) || fsync_res == -ECANCELED) return Step::kStall;
    return fail(errno_text("journal fdatasync", -fsync_res), -fsync_res).error();
  }
  return Step::kDurable;
}

// The fdatasync succeeded after the write of [durable_end_, written_end_)
// completed: the first `records` queued records are durable.
void JournalWriter::mark_durable(std::size_t records, std::size_t bytes) {
  const uint64_t target_end = durable_end_ + bytes;
  PERFQ_ENFORCE(bytes > 0 && written_end_ == target_end);
  durable_ticket_ += records;
  durable_end_ = target_end;
  drop_durable(records, bytes);
  PERFQ_ASSERT(written_end_ <= durable_end_ + pending_bytes());
  state_.health = JournalHealth::kHealthy;
  state_.last_error.clear();
  state_.last_errno = 0;
}

}  // namespace perfq::agent
