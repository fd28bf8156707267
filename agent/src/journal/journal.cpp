#include "journal/journal.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <span>
#include <utility>

#include "journal/files.hpp"
#include "perfq/core/assert.hpp"
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

// What one round took from the queues. After the appends the vectors hold
// what the writers' queues refused, in order: it goes back in front.
struct Journal::Round {
  bool audit_due = false;
  uint64_t next_dlq_id = 0;  // the id the next letter gets
  std::vector<std::pair<uint64_t, DeadLetter>> letters;
  std::vector<std::shared_ptr<Op>> ops;
  std::vector<std::string> lines;
};

Journal::Journal(JournalOptions options)
    : options_(std::move(options)),
      dir_(options_.data_dir + "/dlq"),
      retention_(dir_, options_.retention_ms) {
  if (options_.clock == nullptr) options_.clock = &system_clock();
  options_.segment_bytes = std::max<uint64_t>(options_.segment_bytes, 4096);
  options_.retry_ms = std::max<uint64_t>(options_.retry_ms, 1);
  options_.retry_max_ms = std::max(options_.retry_max_ms, options_.retry_ms);
  backoff_ = Backoff{options_.retry_ms, options_.retry_max_ms};
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
    AuditLogOptions o;
    o.backoff = j->backoff_;
    auto a = AuditLog::open(j->options_.data_dir + "/audit.log", o);
    if (!a) return a.error();
    j->audit_ = std::move(*a);
  }
  j->thread_ = std::thread([p = j.get()] { p->run(); });
  return j;
}

// Rebuilds the index from every segment, oldest first, then opens the newest
// for appending (which cuts its torn tail). A format-1 newest segment is
// read, never appended to: the next number starts a format-2 file.
Result<void> Journal::recover() {
  auto seqs = list_segments(dir_);
  if (!seqs) return seqs.error();
  JournalReport& rep = recovery_;
  check_numbering(dir_, rep);
  bool newest_legacy = false;
  for (const uint64_t seq : *seqs) {
    auto data = read_file(segment_path(seq), UINT64_MAX);
    if (!data) return data.error();
    const std::size_t problems_before = rep.problems.size();
    index_.load_segment(seq, *data, rep, next_dlq_id_);
    if (seq != seqs->back()) continue;
    newest_legacy = legacy_format(*data);
    if (newest_legacy) continue;
    // The writer's own scan cuts the active segment's torn tail; it is
    // reported once, here.
    for (std::size_t p = problems_before; p < rep.problems.size(); ++p) {
      if (rep.problems[p].what == "torn tail") rep.problems[p].what = "torn tail truncated";
    }
  }
  rep.segments = seqs->size();
  const uint64_t active = seqs->empty() ? 1 : seqs->back() + (newest_legacy ? 1 : 0);
  retention_.adopt(*seqs);
  if (auto r = open_segment(active); !r) return r;
  rep.truncated_bytes = dlq_->recovery().truncated_bytes;
  if (seqs->empty() || newest_legacy) retention_.add(active);
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
  if (recovered && index_.holds_request(letter.request_id)) return durable_ticket_;
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
  if (!audit_) return;
  std::replace(line.begin(), line.end(), '\n', ' ');
  {
    std::lock_guard lock(mu_);
    if (!audit_->push(std::move(line))) return;  // dropped; said in an audit.dropped line
  }
  work_cv_.notify_one();
}

// mu_ held.
void Journal::publish_view() {
  shm::JournalView* v = view_;
  if (v == nullptr) return;
  const auto health = [](const JournalState& s) {
    return s.health == JournalHealth::kHealthy ? shm::JournalHealthState::kHealthy
                                               : shm::JournalHealthState::kFailing;
  };
  store_relaxed(v->state, static_cast<uint32_t>(health(state_)));
  store_relaxed(v->last_errno, static_cast<int32_t>(state_.last_errno));
  store_relaxed(v->unreviewed, index_.unreviewed());
  store_relaxed(v->entries, static_cast<uint64_t>(index_.size()));
  store_relaxed(v->awaiting, next_ticket_ - 1 - durable_ticket_);
  store_relaxed(v->failed_flushes, state_.failed_flushes);
  store_relaxed(v->durable_records, durable_records_);
  store_relaxed(v->segments, static_cast<uint64_t>(retention_.segments().size()));
  store_relaxed(v->audit_state, static_cast<uint32_t>(audit_ ? health(audit_->state())
                                                             : shm::JournalHealthState::kOff));
  store_relaxed(v->audit_errno, static_cast<int32_t>(audit_ ? audit_->state().last_errno : 0));
}

void Journal::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    const auto now = std::chrono::steady_clock::now();
    const bool dlq_work = !letters_.empty() || !ops_.empty() || !written_.empty();
    const bool audit_work = audit_ && audit_->has_work();
    const bool audit_due = audit_work && audit_->due(now, stop_);
    if (!dlq_work && !audit_due) {
      if (stop_) return;
      // The view in the segment is republished at least once a second: any
      // member of the segment's group can write over it (PROTOCOL §17).
      const auto republish = now + std::chrono::seconds(1);
      work_cv_.wait_until(lock, audit_work ? std::min(audit_->retry_at(), republish) : republish);
      publish_view();
      continue;
    }
    if (dlq_work && backoff_.wait_ms > 0 && !stop_) {
      // The DLQ is failing: wait before writing again (new work does not cut
      // it short).
      const auto until = now + std::chrono::milliseconds(backoff_.wait_ms);
      work_cv_.wait_until(lock, until, [&] { return stop_; });
    }
    round_locked(lock, audit_due);
    if (stop_ && !last_round_ok_) return;  // failing: what is queued cannot land now
  }
}

// One round (see the header). Called with mu_ held; the I/O runs unlocked.
void Journal::round_locked(std::unique_lock<std::mutex>& lock, bool audit_due) {
  Round round = take_locked(audit_due);
  lock.unlock();

  const uint64_t ticket_before = dlq_->durable_ticket();
  const uint64_t end_before = dlq_->durable_end();
  append_letters(round);
  append_ops(round);
  // The audit log backs off on its own: its failures never delay a dead letter.
  const bool audit_ok = !audit_due || audit_->write(round.lines);
  const Result<uint64_t> flushed = dlq_->flush();
  PERFQ_ENFORCE(dlq_->durable_ticket() >= ticket_before);
  PERFQ_ENFORCE(dlq_->durable_end() >= end_before);
  PERFQ_ENFORCE(dlq_->durable_end() <= dlq_->written_end());
  const bool rotate = flushed && dlq_->durable_end() >= options_.segment_bytes;

  lock.lock();
  put_back_locked(round);
  const std::size_t applied = finish_locked(flushed, audit_ok);
  std::function<void()> waker = waker_;
  lock.unlock();
  // The agent concludes what is durable before any housekeeping below.
  round_cv_.notify_all();
  if (applied > 0 && waker) waker();
  if (rotate) housekeep();
  lock.lock();
}

// mu_ held. Everything queued; bounded by the writers' queues, which refuse
// what does not fit (it waits for the next round).
Journal::Round Journal::take_locked(bool audit_due) {
  Round round;
  round.audit_due = audit_due;
  round.next_dlq_id = next_dlq_id_;
  round.letters.swap(letters_);
  round.ops.swap(ops_);
  if (audit_due) round.lines = audit_->take(now_unix_ns());
  return round;
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

// Thread, unlocked: each letter becomes a dead-letter record with the next
// dlq id, until the writer's queue is full; the rest stay in the round.
void Journal::append_letters(Round& round) {
  std::size_t taken = 0;
  for (; taken < round.letters.size(); ++taken) {
    auto& [ticket, letter] = round.letters[taken];
    JournalEntry e{round.next_dlq_id, std::move(letter)};
    sanitize(e.letter);
    auto body = encode_dead_letter(e);
    if (!body) {
      // Cannot happen after sanitize; never let one letter hold the others.
      e.letter.payload.clear();
      e.letter.metadata.clear();
      e.letter.history.clear();
      body = encode_dead_letter(e);
    }
    Written w;
    w.type = RecordType::kDeadLetter;
    w.entry = summarize(e, active_seq_, dlq_->durable_end() + dlq_->pending_bytes());
    w.sink_ticket = ticket;
    if (!body || !append(std::move(w), *body)) {
      letter = std::move(e.letter);  // the writer's queue is full
      break;
    }
    ++round.next_dlq_id;
  }
  round.letters.erase(round.letters.begin(),
                      round.letters.begin() + static_cast<std::ptrdiff_t>(taken));
}

// Thread, unlocked: each review or replay record, until the writer's queue
// is full; the rest stay in the round.
void Journal::append_ops(Round& round) {
  std::size_t taken = 0;
  for (; taken < round.ops.size(); ++taken) {
    const std::shared_ptr<Op>& op = round.ops[taken];
    Written w;
    w.type = op->type;
    w.op = op;
    if (!append(std::move(w), op->body)) break;
  }
  round.ops.erase(round.ops.begin(), round.ops.begin() + static_cast<std::ptrdiff_t>(taken));
}

// Thread, unlocked: appends one record to the active segment and remembers
// it until it is durable. False: the writer's queue is full. Tickets count up
// by one per append, so written_ stays in ticket order and the durable
// records are always a prefix of it.
bool Journal::append(Written w, std::span<const std::byte> body) {
  const uint64_t next = dlq_->last_ticket() + 1;
  auto t = dlq_->append(w.type, body);
  if (!t) return false;
  PERFQ_ENFORCE(*t == next);
  PERFQ_ENFORCE(written_.empty() || written_.back().ticket < *t);  // checkpoints take tickets too
  w.ticket = *t;
  written_.push_back(std::move(w));
  return true;
}

// mu_ held: what the writers refused goes back in front of anything queued
// meanwhile, in order.
void Journal::put_back_locked(Round& round) {
  PERFQ_ENFORCE(round.next_dlq_id >= next_dlq_id_);  // dlq ids are never given twice
  next_dlq_id_ = round.next_dlq_id;
  if (!round.letters.empty()) {
    round.letters.insert(round.letters.end(), std::make_move_iterator(letters_.begin()),
                         std::make_move_iterator(letters_.end()));
    letters_.swap(round.letters);
  }
  if (!round.ops.empty()) {
    round.ops.insert(round.ops.end(), ops_.begin(), ops_.end());
    ops_.swap(round.ops);
  }
  if (round.audit_due) audit_->put_back(std::move(round.lines));
}

// mu_ held: applies what became durable, takes the files' health, ends the
// round.
std::size_t Journal::finish_locked(const Result<uint64_t>& flushed, bool audit_ok) {
  const uint64_t durable_ticket = dlq_->durable_ticket();
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
  last_round_ok_ = flushed && audit_ok;
  if (flushed) {
    backoff_.succeeded();
  } else {
    backoff_.failed();
    for (auto& w : written_) {
      if (w.op) w.op->error = flushed.error().message;
    }
  }
  PERFQ_ENFORCE(dlq_->durable_end() >= active_durable_end_);
  active_durable_end_ = dlq_->durable_end();
  ++round_;
  publish_view();
  return applied;
}

// Thread, unlocked: starts the next segment, then applies retention. A
// failure leaves the active segment as it is and is retried after the next
// round that finds it full.
void Journal::housekeep() {
  // Every record of the full segment is durable and applied: the new
  // writer's tickets start again from 1.
  PERFQ_ENFORCE(written_.empty());
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
    retention_.add(next);
    publish_view();
  }
  (void)sweep(now_unix_ns());
}

// mu_ held. A durable record changes the index, once.
void Journal::apply(const Written& w) {
  switch (w.type) {
    case RecordType::kDeadLetter:
      // Letters are appended in ticket order, each once.
      PERFQ_ENFORCE(w.sink_ticket == durable_ticket_ + 1);
      durable_ticket_ = w.sink_ticket;
      (void)index_.add(w.entry);
      break;
    case RecordType::kReview:
      PERFQ_ENFORCE(!w.op->durable);
      (void)index_.apply(w.op->review);
      index_.end_review(w.op->review.dlq_id);
      w.op->durable = true;
      w.op->error.clear();
      break;
    case RecordType::kReplay:
      PERFQ_ENFORCE(!w.op->durable);
      (void)index_.apply(w.op->replay);
      index_.end_replay(w.op->replay.dlq_id);
      w.op->durable = true;
      w.op->error.clear();
      break;
    case RecordType::kCheckpoint:
      break;
  }
}

// Thread or open(), never with mu_ held: the plan is made under the lock,
// the files are removed outside it (the data plane takes mu_ on every
// failure), the index forgets them under it again.
std::size_t Journal::sweep(uint64_t now_ns) {
  std::vector<uint64_t> plan;
  {
    std::lock_guard lock(mu_);
    plan = retention_.plan(index_, active_seq_, now_ns);
  }
  if (plan.empty()) return 0;
  // The ids of the entries about to go must never be given again: the active
  // segment records the high-water mark first.
  if (!retention_.checkpointed()) {
    if (!write_checkpoint()) return 0;  // retried at the next rotation or start
    retention_.mark_checkpointed();
  }
  const std::size_t removed = retention_.remove(plan);
  if (removed == 0) return 0;
  std::lock_guard lock(mu_);
  retention_.forget(std::span(plan).first(removed), index_);
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
  return index_.list(limit, all);
}

Result<DlqEntry> Journal::show(uint64_t dlq_id) const {
  DlqSummary s;
  {
    std::lock_guard lock(mu_);
    const DlqSummary* e = index_.find(dlq_id);
    if (e == nullptr) return {Errc::kNotFound, "no DLQ entry " + std::to_string(dlq_id)};
    s = *e;
  }
  // The record is durable and never rewritten: read it back from its file.
  auto rec = read_record(segment_path(s.segment), s.offset);
  if (!rec && rec.error().code == Errc::kNotFound) {
    return {Errc::kNotFound, "no DLQ entry " + std::to_string(dlq_id)};  // retention took it
  }
  if (rec && rec->type == RecordType::kDeadLetter) {
    if (auto e = decode_dead_letter(rec->body); e && e->dlq_id == dlq_id) {
      return DlqEntry{std::move(s), std::move(e->letter)};
    }
  }
  return {Errc::kInternal, "journal: cannot read DLQ entry " + std::to_string(dlq_id)};
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
    // Claimed in the same critical section as the checks: one review wins.
    std::lock_guard lock(mu_);
    if (auto r = index_.claim_review(dlq_id); !r) return r;
  }
  auto body = encode_review(op->review);
  if (!body) {
    std::lock_guard lock(mu_);
    index_.end_review(dlq_id);
    return body.error();
  }
  op->body = std::move(*body);
  return wait_durable(op, timeout_ms);
}

Result<void> Journal::check_replayable(uint64_t dlq_id) const {
  std::lock_guard lock(mu_);
  return index_.check_replayable(dlq_id);
}

Result<void> Journal::begin_replay(uint64_t dlq_id) {
  std::lock_guard lock(mu_);
  return index_.begin_replay(dlq_id);
}

void Journal::abandon_replay(uint64_t dlq_id) {
  std::lock_guard lock(mu_);
  index_.end_replay(dlq_id);
}

Result<void> Journal::record_replay(uint64_t dlq_id, uint64_t replayed_as, uint64_t timeout_ms) {
  {
    std::lock_guard lock(mu_);
    if (auto r = index_.claim_replay_record(dlq_id); !r) return r;
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
  return index_.unreviewed();
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
