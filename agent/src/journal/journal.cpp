#include "journal/journal.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <utility>

#include "journal/files.hpp"
#include "perfq/core/iso_time.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/shm/layout.hpp"

namespace perfq::agent {

namespace fs = std::filesystem;

struct Journal::Op {
  RecordType type = RecordType::kReview;
  std::vector<std::byte> body;
  ReviewRecord review;  // kReview
  ReplayRecord replay;  // kReplay
  bool durable = false;
  std::string error;  // set while the journal fails
};

// What an appended record does to the index once durable.
struct Journal::Written {
  uint64_t ticket = 0;  // JournalWriter ticket
  RecordType type = RecordType::kDeadLetter;
  DlqSummary entry;          // kDeadLetter
  uint64_t sink_ticket = 0;  // kDeadLetter: the data plane's ticket
  std::shared_ptr<Op> op;    // kReview, kReplay
};

namespace {

DlqSummary summarize(const JournalEntry& e, uint64_t seq, uint64_t offset) {
  DlqSummary s;
  s.dlq_id = e.dlq_id;
  s.request_id = e.letter.request_id;
  s.user_id = e.letter.user_id;
  s.type = e.letter.type;
  s.mode = e.letter.mode;
  s.priority = e.letter.priority;
  s.status = e.letter.status;
  s.reason = e.letter.reason;
  s.attempt_count = e.letter.attempt_count;
  s.first_attempt_unix_ns = e.letter.first_attempt_unix_ns;
  s.last_attempt_unix_ns = e.letter.last_attempt_unix_ns;
  s.segment = seq;
  s.offset = offset;
  return s;
}

Result<void> sync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return {Errc::kInternal, dir + ": " + std::strerror(errno)};
  const int r = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (r != 0) return {Errc::kInternal, dir + ": fsync: " + std::strerror(err)};
  return {};
}

}  // namespace

Journal::Journal(JournalOptions options)
    : options_(std::move(options)), dir_(options_.data_dir + "/dlq") {
  if (options_.clock == nullptr) options_.clock = &system_clock();
  options_.segment_bytes = std::max<uint64_t>(options_.segment_bytes, 4096);
  options_.retry_ms = std::max<uint64_t>(options_.retry_ms, 1);
  options_.retry_max_ms = std::max(options_.retry_max_ms, options_.retry_ms);
}

uint64_t Journal::now_unix_ns() const noexcept {
  return options_.clock->now_unix_ns();
}

std::string Journal::segment_path(uint64_t seq) const {
  return dir_ + "/" + segment_name(seq);
}

Result<std::unique_ptr<Journal>> Journal::open(JournalOptions options) {
  std::unique_ptr<Journal> j(new Journal(std::move(options)));
  std::error_code ec;
  fs::create_directories(j->dir_, ec);
  if (ec) return {Errc::kInternal, "journal: cannot create " + j->dir_ + ": " + ec.message()};
  if (auto r = j->recover(); !r) return r.error();
  if (j->options_.audit) {
    JournalWriterOptions o;
    o.lines = true;
    auto w = JournalWriter::open(j->options_.data_dir + "/audit.log", nullptr, o);
    if (!w) return w.error();
    j->audit_ = std::move(*w);
  }
  j->thread_ = std::thread([p = j.get()] { p->run(); });
  return j;
}

// Rebuilds the index from every segment, oldest first, then opens the newest
// for appending (which cuts its torn tail).
Result<void> Journal::recover() {
  std::vector<uint64_t> seqs;
  std::error_code ec;
  for (const auto& de : fs::directory_iterator(dir_, ec)) {
    uint64_t seq = 0;
    if (de.is_regular_file() && parse_segment_name(de.path().filename().string(), seq)) {
      seqs.push_back(seq);
    }
  }
  if (ec) return {Errc::kInternal, "journal: cannot list " + dir_ + ": " + ec.message()};
  std::sort(seqs.begin(), seqs.end());
  JournalReport& rep = recovery_;
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    const uint64_t seq = seqs[i];
    const bool active = i + 1 == seqs.size();
    auto data = read_file(segment_path(seq), UINT64_MAX);
    if (!data) return data.error();
    const std::size_t problems_before = rep.problems.size();
    walk(
        segment_name(seq), *data, rep,
        [&](const JournalEntry& e, uint64_t offset) {
          next_dlq_id_ = std::max(next_dlq_id_, e.dlq_id + 1);
          if (entries_.contains(e.dlq_id)) return;  // never written twice; keep the first
          entries_.emplace(e.dlq_id, summarize(e, seq, offset));
          by_request_.emplace(e.letter.request_id, e.dlq_id);
          ++unreviewed_;
        },
        [&](const ReviewRecord& v) {
          auto it = entries_.find(v.dlq_id);
          if (it == entries_.end()) return false;
          if (!it->second.reviewed) {
            it->second.reviewed = true;
            it->second.reviewed_by = v.reviewed_by;
            it->second.reviewed_at_unix_ns = v.reviewed_at_unix_ns;
            it->second.resolution = v.resolution;
            --unreviewed_;
          }
          return true;
        },
        [&](const ReplayRecord& v) {
          auto it = entries_.find(v.dlq_id);
          if (it == entries_.end()) return false;
          if (it->second.replayed_as == 0) it->second.replayed_as = v.replayed_as;
          return true;
        },
        &next_dlq_id_);
    if (active) {
      // The writer's own scan cuts the torn tail; it is reported once, here.
      for (std::size_t p = problems_before; p < rep.problems.size(); ++p) {
        if (rep.problems[p].what == "torn tail") {
          rep.problems[p].what = "torn tail truncated";
        }
      }
    }
  }
  rep.segments = seqs.size();
  segments_ = seqs;
  const uint64_t active = seqs.empty() ? 1 : seqs.back();
  if (auto r = open_segment(active); !r) return r;
  rep.truncated_bytes = dlq_->recovery().truncated_bytes;
  if (seqs.empty()) segments_.push_back(active);
  active_checkpointed_ = false;
  rep.removed_segments = sweep(now_unix_ns());
  return {};
}

Result<void> Journal::open_segment(uint64_t seq) {
  JournalWriterOptions o;
  auto w = JournalWriter::open(segment_path(seq), options_.seam, o);
  if (!w) return w.error();
  dlq_ = std::move(*w);
  active_seq_ = seq;
  std::lock_guard lock(mu_);
  active_seq_public_ = seq;
  active_durable_end_ = dlq_->durable_end();
  return {};
}

Journal::~Journal() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

uint64_t Journal::accept(DeadLetter&& letter, bool recovered) {
  std::unique_lock lock(mu_);
  if (recovered && by_request_.contains(letter.request_id)) return durable_ticket_;
  const uint64_t ticket = next_ticket_++;
  letters_.emplace_back(ticket, std::move(letter));
  lock.unlock();
  work_cv_.notify_one();
  return ticket;
}

uint64_t Journal::durable() const noexcept {
  std::lock_guard lock(mu_);
  return durable_ticket_;
}

void Journal::set_waker(std::function<void()> waker) {
  std::lock_guard lock(mu_);
  waker_ = std::move(waker);
}

void Journal::attach_view(shm::JournalView* view) {
  std::lock_guard lock(mu_);
  view_ = view;
  publish_view();
}

void Journal::audit(std::string line) {
  if (!options_.audit) return;
  std::replace(line.begin(), line.end(), '\n', ' ');
  {
    std::lock_guard lock(mu_);
    if (audit_lines_.size() >= kAuditQueueMax) {
      ++audit_dropped_;  // said in an audit.dropped line once the log takes lines again
      return;
    }
    audit_lines_.push_back(std::move(line));
  }
  work_cv_.notify_one();
}

// mu_ held.
void Journal::publish_view() {
  shm::JournalView* v = view_;
  if (v == nullptr) return;
  const uint32_t st = static_cast<uint32_t>(state_.health == JournalHealth::kHealthy
                                                ? shm::JournalHealthState::kHealthy
                                                : shm::JournalHealthState::kFailing);
  store_relaxed(v->state, st);
  store_relaxed(v->last_errno, static_cast<int32_t>(state_.last_errno));
  store_relaxed(v->unreviewed, unreviewed_);
  store_relaxed(v->entries, static_cast<uint64_t>(entries_.size()));
  store_relaxed(v->awaiting, next_ticket_ - 1 - durable_ticket_);
  store_relaxed(v->failed_flushes, state_.failed_flushes);
  store_relaxed(v->durable_records, durable_records_);
  store_relaxed(v->segments, static_cast<uint64_t>(segments_.size()));
  store_relaxed(v->audit_state,
                static_cast<uint32_t>(!audit_ ? shm::JournalHealthState::kOff
                                      : audit_state_.health == JournalHealth::kHealthy
                                          ? shm::JournalHealthState::kHealthy
                                          : shm::JournalHealthState::kFailing));
  store_relaxed(v->audit_errno, static_cast<int32_t>(audit_state_.last_errno));
}

void Journal::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    const auto now = std::chrono::steady_clock::now();
    const bool dlq_work = !letters_.empty() || !ops_.empty() || !written_.empty();
    const bool audit_work = audit_ && (!audit_lines_.empty() || audit_->pending_records() > 0);
    const bool audit_due = audit_work && (now >= audit_retry_at_ || stop_);
    if (!dlq_work && !audit_due) {
      if (stop_) return;
      if (audit_work) {
        work_cv_.wait_until(lock, audit_retry_at_);
      } else {
        work_cv_.wait(lock);
      }
      continue;
    }
    if (dlq_work && retry_wait_ms_ > 0 && !stop_) {
      // The DLQ is failing: wait before writing again (new work does not cut
      // it short).
      const auto until = now + std::chrono::milliseconds(retry_wait_ms_);
      work_cv_.wait_until(lock, until, [&] { return stop_; });
    }
    round_locked(lock, audit_due);
    if (stop_ && !last_round_ok_) return;  // failing: what is queued cannot land now
  }
}

// Clamps what encode_dead_letter would refuse, so that a letter can never
// block the journal: the agent already bounds every field it copies from
// the slot; this is the second line.
static void sanitize(DeadLetter& d) {
  if (static_cast<uint8_t>(d.mode) >= kModeCount) d.mode = Mode::kFifo;
  if (d.priority < kPriorityMin || d.priority > kPriorityMax) d.priority = kPriorityDefault;
  if (d.status != Status::kFailed && d.status != Status::kTimeout) d.status = Status::kFailed;
  if (!errc_valid(static_cast<uint8_t>(d.reason))) d.reason = Errc::kInternal;
  if (d.user_id.size() > kUserIdMaxBytes) d.user_id.resize(kUserIdMaxBytes);
  if (d.type.size() > kTypeMaxBytes) d.type.resize(kTypeMaxBytes);
  if (d.metadata.size() > kMetadataMaxBytes) d.metadata.resize(kMetadataMaxBytes);
  if (d.payload.size() > kJournalPayloadMax) d.payload.resize(kJournalPayloadMax);
  if (d.history.size() > kJournalHistoryMax) {
    d.history.erase(d.history.begin(),
                    d.history.end() - static_cast<std::ptrdiff_t>(kJournalHistoryMax));
  }
  for (AttemptFailure& f : d.history) {
    if (!errc_valid(static_cast<uint8_t>(f.code))) f.code = Errc::kInternal;
    if (f.message.size() > kJournalMessageMax) f.message.resize(kJournalMessageMax);
  }
}

// One round: take what is queued, append it, one group commit per file,
// apply what became durable and wake the agent; then the housekeeping
// (rotation, retention). Called with mu_ held; I/O runs unlocked.
void Journal::round_locked(std::unique_lock<std::mutex>& lock, bool audit_due) {
  std::vector<std::pair<uint64_t, DeadLetter>> letters;
  std::vector<std::shared_ptr<Op>> ops;
  std::vector<std::string> lines;
  // Bounded by the writer's queue: what does not fit waits for this round.
  letters.swap(letters_);
  ops.swap(ops_);
  if (audit_due) {
    lines.swap(audit_lines_);
    if (audit_dropped_ > 0) {
      lines.insert(lines.begin(), "{\"at\":\"" + iso_time(now_unix_ns()) +
                                      "\",\"event\":\"audit.dropped\",\"count\":" +
                                      std::to_string(audit_dropped_) + "}");
      audit_dropped_ = 0;
    }
  }
  uint64_t dlq_id = next_dlq_id_;
  lock.unlock();

  std::vector<std::pair<uint64_t, DeadLetter>> left;
  for (auto& [ticket, letter] : letters) {
    if (!left.empty()) {
      left.emplace_back(ticket, std::move(letter));
      continue;
    }
    JournalEntry e{dlq_id, std::move(letter)};
    sanitize(e.letter);
    auto body = encode_dead_letter(e);
    if (!body) {
      // Cannot happen after sanitize; never let one letter hold the others.
      e.letter.payload.clear();
      e.letter.metadata.clear();
      e.letter.history.clear();
      body = encode_dead_letter(e);
    }
    const uint64_t offset = dlq_->durable_end() + dlq_->pending_bytes();
    auto t =
        body ? dlq_->append(RecordType::kDeadLetter, *body) : Result<uint64_t>{Errc::kInternal, ""};
    if (!t) {
      left.emplace_back(ticket, std::move(e.letter));  // the writer's queue is full
      continue;
    }
    Written w;
    w.ticket = *t;
    w.type = RecordType::kDeadLetter;
    w.entry = summarize(e, active_seq_, offset);
    w.sink_ticket = ticket;
    written_.push_back(std::move(w));
    ++dlq_id;
  }
  std::vector<std::shared_ptr<Op>> ops_left;
  for (auto& op : ops) {
    auto t = ops_left.empty() ? dlq_->append(op->type, op->body)
                              : Result<uint64_t>{Errc::kQueueFull, ""};
    if (!t) {
      ops_left.push_back(std::move(op));
      continue;
    }
    Written w;
    w.ticket = *t;
    w.type = op->type;
    w.op = std::move(op);
    written_.push_back(std::move(w));
  }
  std::vector<std::string> lines_left;
  for (auto& l : lines) {
    if (!lines_left.empty() || !audit_->append_line(l)) lines_left.push_back(std::move(l));
  }

  Result<uint64_t> flushed = dlq_->flush();
  // The audit log backs off on its own: its failures never delay a dead letter.
  bool audit_ok = true;
  if (audit_due) {
    audit_ok = audit_->flush().ok();
    if (audit_ok) {
      audit_wait_ms_ = 0;
    } else {
      audit_wait_ms_ = audit_wait_ms_ == 0 ? options_.retry_ms
                                           : std::min(audit_wait_ms_ * 2, options_.retry_max_ms);
      audit_retry_at_ =
          std::chrono::steady_clock::now() + std::chrono::milliseconds(audit_wait_ms_);
    }
  }
  const uint64_t durable_ticket = dlq_->durable_ticket();
  const bool rotate = flushed && dlq_->durable_end() >= options_.segment_bytes;

  lock.lock();
  next_dlq_id_ = dlq_id;
  // What did not fit goes back in front of anything queued meanwhile.
  if (!left.empty()) {
    left.insert(left.end(), std::make_move_iterator(letters_.begin()),
                std::make_move_iterator(letters_.end()));
    letters_.swap(left);
  }
  if (!ops_left.empty()) {
    ops_left.insert(ops_left.end(), ops_.begin(), ops_.end());
    ops_.swap(ops_left);
  }
  if (!lines_left.empty()) {
    lines_left.insert(lines_left.end(), std::make_move_iterator(audit_lines_.begin()),
                      std::make_move_iterator(audit_lines_.end()));
    audit_lines_.swap(lines_left);
  }
  std::size_t applied = 0;
  for (; applied < written_.size() && written_[applied].ticket <= durable_ticket; ++applied) {
    apply(written_[applied]);
    ++durable_records_;
  }
  written_.erase(written_.begin(), written_.begin() + static_cast<std::ptrdiff_t>(applied));
  state_ = dlq_->state();
  if (!rotation_error_.empty() && state_.health == JournalHealth::kHealthy) {
    state_.health = JournalHealth::kFailing;  // the active segment cannot rotate
    state_.last_error = rotation_error_;
  }
  if (audit_) audit_state_ = audit_->state();
  last_round_ok_ = flushed && audit_ok;
  if (flushed) {
    retry_wait_ms_ = 0;
  } else {
    retry_wait_ms_ = retry_wait_ms_ == 0 ? options_.retry_ms
                                         : std::min(retry_wait_ms_ * 2, options_.retry_max_ms);
    for (auto& w : written_) {
      if (w.op) w.op->error = flushed.error().message;
    }
  }
  active_durable_end_ = dlq_->durable_end();
  ++round_;
  publish_view();
  std::function<void()> waker = waker_;
  lock.unlock();
  // The agent concludes what is durable before any housekeeping below.
  round_cv_.notify_all();
  if (applied > 0 && waker) waker();
  if (rotate) housekeep();
  lock.lock();
}

// Thread, unlocked: starts the next segment, then applies retention. A
// failure leaves the active segment as it is and is retried after the next
// round that finds it full.
void Journal::housekeep() {
  const uint64_t next = active_seq_ + 1;
  auto r = open_segment(next);  // takes mu_ itself
  {
    std::lock_guard lock(mu_);
    if (!r) {
      rotation_error_ = r.error().message;
      state_.health = JournalHealth::kFailing;
      state_.last_error = rotation_error_;
      publish_view();
      return;
    }
    rotation_error_.clear();
    segments_.push_back(next);
    active_checkpointed_ = false;
    publish_view();
  }
  (void)sweep(now_unix_ns());
}

// mu_ held. A durable record changes the index.
void Journal::apply(const Written& w) {
  switch (w.type) {
    case RecordType::kDeadLetter:
      durable_ticket_ = std::max(durable_ticket_, w.sink_ticket);
      if (!entries_.contains(w.entry.dlq_id)) {
        entries_.emplace(w.entry.dlq_id, w.entry);
        by_request_.emplace(w.entry.request_id, w.entry.dlq_id);
        ++unreviewed_;
      }
      break;
    case RecordType::kReview: {
      auto it = entries_.find(w.op->review.dlq_id);
      if (it != entries_.end() && !it->second.reviewed) {
        it->second.reviewed = true;
        it->second.reviewed_by = w.op->review.reviewed_by;
        it->second.reviewed_at_unix_ns = w.op->review.reviewed_at_unix_ns;
        it->second.resolution = w.op->review.resolution;
        --unreviewed_;
      }
      reviewing_.erase(w.op->review.dlq_id);
      w.op->durable = true;
      w.op->error.clear();
      break;
    }
    case RecordType::kCheckpoint:
      break;
    case RecordType::kReplay: {
      auto it = entries_.find(w.op->replay.dlq_id);
      if (it != entries_.end() && it->second.replayed_as == 0) {
        it->second.replayed_as = w.op->replay.replayed_as;
      }
      replaying_.erase(w.op->replay.dlq_id);
      w.op->durable = true;
      w.op->error.clear();
      break;
    }
  }
}

// Thread or open(), never with mu_ held: the plan is made under the lock,
// the files are removed outside it (the data plane takes mu_ on every
// failure), the index forgets them under it again. See the retention rule in
// the header.
std::size_t Journal::sweep(uint64_t now_ns) {
  const uint64_t keep_ns = options_.retention_ms * 1'000'000;
  std::vector<uint64_t> plan;
  {
    std::lock_guard lock(mu_);
    std::unordered_map<uint64_t, bool> expired;  // by segment: every entry reviewed long ago
    for (const uint64_t seq : segments_) expired[seq] = true;
    for (const auto& [id, e] : entries_) {
      if (!e.reviewed || e.reviewed_at_unix_ns + keep_ns > now_ns) expired[e.segment] = false;
    }
    for (const uint64_t seq : segments_) {
      if (seq == active_seq_ || !expired[seq]) break;
      plan.push_back(seq);
    }
  }
  if (plan.empty()) return 0;
  // The ids of the entries about to go must never be given again: the active
  // segment records the high-water mark first.
  if (!active_checkpointed_) {
    if (!write_checkpoint()) return 0;  // retried at the next rotation or start
    active_checkpointed_ = true;
  }
  std::size_t removed = 0;
  for (; removed < plan.size(); ++removed) {
    if (::unlink(segment_path(plan[removed]).c_str()) != 0 && errno != ENOENT) break;
  }
  if (removed == 0) return 0;
  (void)sync_dir(dir_);
  std::lock_guard lock(mu_);
  for (std::size_t k = 0; k < removed; ++k) {
    for (auto it = entries_.begin(); it != entries_.end();) {
      if (it->second.segment == plan[k]) {
        by_request_.erase(it->second.request_id);
        it = entries_.erase(it);
      } else {
        ++it;
      }
    }
    segments_.erase(std::find(segments_.begin(), segments_.end(), plan[k]));
  }
  publish_view();
  return removed;
}

bool Journal::write_checkpoint() {
  const std::vector<std::byte> body = encode_checkpoint({next_dlq_id_});
  if (!dlq_->append(RecordType::kCheckpoint, body)) return false;
  return dlq_->flush().ok();
}

std::vector<DlqSummary> Journal::list(std::size_t limit, bool all) const {
  std::lock_guard lock(mu_);
  std::vector<DlqSummary> out;
  // Unreviewed first, newest first; then (with `all`) reviewed, newest first.
  for (int pass = 0; pass < (all ? 2 : 1); ++pass) {
    for (auto it = entries_.rbegin(); it != entries_.rend() && out.size() < limit; ++it) {
      if (it->second.reviewed == (pass == 0)) continue;
      out.push_back(it->second);
    }
  }
  return out;
}

Result<DlqEntry> Journal::show(uint64_t dlq_id) const {
  DlqSummary s;
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(dlq_id);
    if (it == entries_.end()) return {Errc::kNotFound, "no DLQ entry " + std::to_string(dlq_id)};
    s = it->second;
  }
  // The record is durable and never rewritten: read it back from its file.
  const std::string path = segment_path(s.segment);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) {
    return {Errc::kNotFound, "no DLQ entry " + std::to_string(dlq_id)};  // retention took it
  }
  if (fd < 0) return {Errc::kInternal, "journal: " + path + ": " + std::strerror(errno)};
  std::byte header[kRecordHeaderBytes];
  Result<DlqEntry> out{Errc::kInternal, "journal: cannot read DLQ entry " + std::to_string(dlq_id)};
  if (::pread(fd, header, sizeof header, static_cast<off_t>(s.offset)) ==
      static_cast<ssize_t>(sizeof header)) {
    uint32_t len = 0;
    std::memcpy(&len, header + 4, 4);
    if (len <= kRecordBodyMax) {
      std::vector<std::byte> rec(kRecordHeaderBytes + len);
      if (::pread(fd, rec.data(), rec.size(), static_cast<off_t>(s.offset)) ==
          static_cast<ssize_t>(rec.size())) {
        const ScanResult one = scan(rec);
        if (one.records.size() == 1 && one.records[0].type == RecordType::kDeadLetter) {
          if (auto e = decode_dead_letter(one.records[0].body); e && e->dlq_id == dlq_id) {
            out = DlqEntry{std::move(s), std::move(e->letter)};
          }
        }
      }
    }
  }
  ::close(fd);
  return out;
}

Result<void> Journal::wait_durable(const std::shared_ptr<Op>& op, uint64_t timeout_ms) {
  std::unique_lock lock(mu_);
  ops_.push_back(op);
  work_cv_.notify_one();
  const bool done =
      round_cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return op->durable; });
  if (done) return {};
  return {Errc::kInternal, "journal not durable yet (" +
                               (op->error.empty() ? std::string("timed out") : op->error) +
                               "); the record stays queued"};
}

Result<void> Journal::review(uint64_t dlq_id, std::string reviewed_by, std::string resolution,
                             uint64_t timeout_ms) {
  if (resolution.empty()) return {Errc::kInvalidRequest, "resolution must not be empty"};
  if (resolution.size() > kJournalResolutionMax) {
    return {Errc::kInvalidRequest,
            "resolution longer than " + std::to_string(kJournalResolutionMax) + " bytes"};
  }
  if (reviewed_by.size() > kJournalReviewerMax) reviewed_by.resize(kJournalReviewerMax);
  auto op = std::make_shared<Op>();
  op->type = RecordType::kReview;
  op->review = ReviewRecord{dlq_id, std::move(reviewed_by), now_unix_ns(), std::move(resolution)};
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(dlq_id);
    if (it == entries_.end()) return {Errc::kNotFound, "no DLQ entry " + std::to_string(dlq_id)};
    if (it->second.reviewed) {
      return {Errc::kConflict, "DLQ entry " + std::to_string(dlq_id) + " was reviewed already"};
    }
    // Claimed in the same critical section as the checks: one review wins.
    if (!reviewing_.insert(dlq_id).second) {
      return {Errc::kConflict, "DLQ entry " + std::to_string(dlq_id) + " is being reviewed"};
    }
  }
  auto body = encode_review(op->review);
  if (!body) {
    std::lock_guard lock(mu_);
    reviewing_.erase(dlq_id);
    return body.error();
  }
  op->body = std::move(*body);
  return wait_durable(op, timeout_ms);
}

Result<void> Journal::check_replayable(uint64_t dlq_id) const {
  std::lock_guard lock(mu_);
  auto it = entries_.find(dlq_id);
  if (it == entries_.end()) return {Errc::kNotFound, "no DLQ entry " + std::to_string(dlq_id)};
  if (it->second.replayed_as != 0) {
    char as[17];
    format_request_id(it->second.replayed_as, as);
    return {Errc::kConflict,
            "DLQ entry " + std::to_string(dlq_id) + " was replayed already as " + std::string(as)};
  }
  return {};
}

Result<void> Journal::begin_replay(uint64_t dlq_id) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(dlq_id);
  if (it == entries_.end()) return {Errc::kNotFound, "no DLQ entry " + std::to_string(dlq_id)};
  if (it->second.replayed_as != 0 || !replaying_.insert(dlq_id).second) {
    return {Errc::kConflict, "DLQ entry " + std::to_string(dlq_id) + " was replayed already"};
  }
  return {};
}

void Journal::abandon_replay(uint64_t dlq_id) {
  std::lock_guard lock(mu_);
  replaying_.erase(dlq_id);
}

Result<void> Journal::record_replay(uint64_t dlq_id, uint64_t replayed_as, uint64_t timeout_ms) {
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(dlq_id);
    if (it == entries_.end()) return {Errc::kNotFound, "no DLQ entry " + std::to_string(dlq_id)};
    if (it->second.replayed_as != 0) {
      return {Errc::kConflict, "DLQ entry " + std::to_string(dlq_id) + " was replayed already"};
    }
    replaying_.insert(dlq_id);
  }
  auto op = std::make_shared<Op>();
  op->type = RecordType::kReplay;
  op->replay = ReplayRecord{dlq_id, replayed_as, now_unix_ns()};
  op->body = encode_replay(op->replay);
  return wait_durable(op, timeout_ms);
}

Result<JournalReport> Journal::verify() const {
  uint64_t active = 0;
  uint64_t active_end = 0;
  {
    std::lock_guard lock(mu_);
    active = active_seq_public_;
    active_end = active_durable_end_;
  }
  return verify_journal(options_.data_dir, active, active_end);
}

uint64_t Journal::unreviewed() const {
  std::lock_guard lock(mu_);
  return unreviewed_;
}

JournalState Journal::state() const {
  std::lock_guard lock(mu_);
  return state_;
}

uint64_t Journal::round() const {
  std::lock_guard lock(mu_);
  return round_;
}

uint64_t Journal::wait_round(uint64_t round, uint64_t timeout_ms) {
  std::unique_lock lock(mu_);
  round_cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return round_ > round; });
  return round_;
}

}  // namespace perfq::agent
