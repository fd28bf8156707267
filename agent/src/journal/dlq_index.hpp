#pragma once
// DlqIndex: every dead-letter entry of every DLQ segment, by dlq id, without
// the payload, metadata and errorHistory (Journal::show reads those back
// from the file). Rebuilt at open from the segment files, oldest first
// (load_segment); changed afterwards only by records that became durable
// (add, apply). Beside the entries it holds the operator claims on their way
// to disk, so that one review and one replay win:
//
//   claim_review ----------------------------> end_review   (record durable)
//   begin_replay -> claim_replay_record -----> end_replay   (record durable,
//   (admin: the entry is being replayed)                     or abandoned)
//
// Role: not thread-safe. The Journal holds its lock around every call.
//
// Invariants (checked): unreviewed() <= size(); a review turns an entry
// reviewed once and nothing turns it back, so retention may forget only
// reviewed entries (forget_segment).
#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "journal/files.hpp"
#include "journal/format.hpp"
#include "perfq/agent/dead_letter.hpp"
#include "perfq/core/result.hpp"

namespace perfq::agent {

// One entry of the index: the SPEC §5 entry without payload, metadata and
// errorHistory.
struct DlqSummary {
  uint64_t dlq_id = 0;
  uint64_t request_id = 0;
  std::string user_id;
  std::string type;
  Mode mode = Mode::kFifo;
  uint8_t priority = kPriorityDefault;
  Status status = Status::kFailed;
  Errc reason = Errc::kInternal;
  uint32_t attempt_count = 0;
  uint64_t first_attempt_unix_ns = 0;
  uint64_t last_attempt_unix_ns = 0;
  bool reviewed = false;
  std::string reviewed_by;
  uint64_t reviewed_at_unix_ns = 0;
  std::string resolution;
  uint64_t replayed_as = 0;  // 0: never replayed
  uint64_t segment = 0;      // file sequence number
  uint64_t offset = 0;       // of the record in that file
};

struct DlqEntry {
  DlqSummary summary;
  DeadLetter letter;  // every field, as journaled
};

// The index's view of a dead-letter record at `offset` of segment `seq`.
[[nodiscard]] DlqSummary summarize(const JournalEntry& e, uint64_t seq, uint64_t offset);

class DlqIndex {
 public:
  // Recovery: applies every record of segment `seq` (the bytes of its file)
  // to the index and `report`; raises `next_dlq_id` past every id and
  // checkpoint seen. Segments go oldest first.
  void load_segment(uint64_t seq, std::span<const std::byte> data, JournalReport& report,
                    uint64_t& next_dlq_id);

  // A durable dead-letter record. False, and no change: its id is indexed
  // already (never written twice; the first one stays).
  bool add(DlqSummary entry);
  // A durable review or replay record. False: it names no entry (an orphan).
  // The first review and the first replay of an entry stay.
  bool apply(const ReviewRecord& review);
  bool apply(const ReplayRecord& replay);

  [[nodiscard]] const DlqSummary* find(uint64_t dlq_id) const;
  [[nodiscard]] bool holds_request(uint64_t request_id) const;
  // Unreviewed first, then (with `all`) reviewed; newest first in each.
  [[nodiscard]] std::vector<DlqSummary> list(std::size_t limit, bool all) const;
  [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }
  [[nodiscard]] uint64_t unreviewed() const noexcept { return unreviewed_; }

  // kNotFound; kConflict (reviewed before, or a review of it is on its way).
  [[nodiscard]] Result<void> claim_review(uint64_t dlq_id);
  void end_review(uint64_t dlq_id);
  // kNotFound; kConflict (replayed before).
  [[nodiscard]] Result<void> check_replayable(uint64_t dlq_id) const;
  // check_replayable, and claims the entry: a second claim is a kConflict.
  [[nodiscard]] Result<void> begin_replay(uint64_t dlq_id);
  // Holds the claim (taken here or by begin_replay) while the replay record
  // goes to disk. kNotFound; kConflict (replayed before).
  [[nodiscard]] Result<void> claim_replay_record(uint64_t dlq_id);
  void end_replay(uint64_t dlq_id);

  // Retention: the segments holding an entry it must keep (unreviewed, or
  // reviewed less than keep_ns before now_ns).
  [[nodiscard]] std::unordered_set<uint64_t> held_segments(uint64_t now_ns, uint64_t keep_ns) const;
  // Forgets every entry of segment `seq`, whose file retention deleted. Each
  // must be reviewed: retention never deletes a held segment.
  void forget_segment(uint64_t seq);

 private:
  std::map<uint64_t, DlqSummary> entries_;             // by dlq_id
  std::unordered_map<uint64_t, uint64_t> by_request_;  // request id -> dlq_id
  std::unordered_set<uint64_t> reviewing_;             // a review record on its way
  std::unordered_set<uint64_t> replaying_;             // between begin_replay and its record
  uint64_t unreviewed_ = 0;
};

}  // namespace perfq::agent
