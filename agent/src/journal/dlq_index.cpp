#include "journal/dlq_index.hpp"

#include <utility>

#include "perfq/core/assert.hpp"

namespace perfq::agent {

namespace {

Error not_found(uint64_t dlq_id) {
  return {Errc::kNotFound, "no DLQ entry " + std::to_string(dlq_id)};
}

Error replayed_already(uint64_t dlq_id) {
  return {Errc::kConflict, "DLQ entry " + std::to_string(dlq_id) + " was replayed already"};
}

}  // namespace

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

void DlqIndex::load_segment(uint64_t seq, std::span<const std::byte> data, JournalReport& report,
                            uint64_t& next_dlq_id) {
  walk(
      segment_name(seq), data, report,
      [&](const JournalEntry& e, uint64_t offset) {
        next_dlq_id = std::max(next_dlq_id, e.dlq_id + 1);
        (void)add(summarize(e, seq, offset));
      },
      [&](const ReviewRecord& v) { return apply(v); },
      [&](const ReplayRecord& v) { return apply(v); }, &next_dlq_id);
}

bool DlqIndex::add(DlqSummary entry) {
  const uint64_t id = entry.dlq_id;
  const uint64_t request_id = entry.request_id;
  if (!entries_.emplace(id, std::move(entry)).second) return false;
  by_request_.emplace(request_id, id);
  ++unreviewed_;
  PERFQ_ASSERT(unreviewed_ <= entries_.size());
  return true;
}

bool DlqIndex::apply(const ReviewRecord& review) {
  auto it = entries_.find(review.dlq_id);
  if (it == entries_.end()) return false;
  DlqSummary& e = it->second;
  if (e.reviewed) return true;
  e.reviewed = true;
  e.reviewed_by = review.reviewed_by;
  e.reviewed_at_unix_ns = review.reviewed_at_unix_ns;
  e.resolution = review.resolution;
  PERFQ_ENFORCE(unreviewed_ > 0);  // this entry was counted unreviewed
  --unreviewed_;
  return true;
}

bool DlqIndex::apply(const ReplayRecord& replay) {
  auto it = entries_.find(replay.dlq_id);
  if (it == entries_.end()) return false;
  if (it->second.replayed_as == 0) it->second.replayed_as = replay.replayed_as;
  return true;
}

const DlqSummary* DlqIndex::find(uint64_t dlq_id) const {
  auto it = entries_.find(dlq_id);
  return it == entries_.end() ? nullptr : &it->second;
}

bool DlqIndex::holds_request(uint64_t request_id) const {
  return by_request_.contains(request_id);
}

std::vector<DlqSummary> DlqIndex::list(std::size_t limit, bool all) const {
  std::vector<DlqSummary> out;
  for (int pass = 0; pass < (all ? 2 : 1); ++pass) {
    for (auto it = entries_.rbegin(); it != entries_.rend() && out.size() < limit; ++it) {
      if (it->second.reviewed == (pass == 0)) continue;
      out.push_back(it->second);
    }
  }
  return out;
}

Result<void> DlqIndex::claim_review(uint64_t dlq_id) {
  const DlqSummary* e = find(dlq_id);
  if (e == nullptr) return not_found(dlq_id);
  if (e->reviewed) {
    return {Errc::kConflict, "DLQ entry " + std::to_string(dlq_id) + " was reviewed already"};
  }
  if (!reviewing_.insert(dlq_id).second) {
    return {Errc::kConflict, "DLQ entry " + std::to_string(dlq_id) + " is being reviewed"};
  }
  return {};
}

void DlqIndex::end_review(uint64_t dlq_id) {
  reviewing_.erase(dlq_id);
}

Result<void> DlqIndex::check_replayable(uint64_t dlq_id) const {
  const DlqSummary* e = find(dlq_id);
  if (e == nullptr) return not_found(dlq_id);
  if (e->replayed_as != 0) {
    char as[17];
    format_request_id(e->replayed_as, as);
    return {Errc::kConflict,
            "DLQ entry " + std::to_string(dlq_id) + " was replayed already as " + std::string(as)};
  }
  return {};
}

Result<void> DlqIndex::begin_replay(uint64_t dlq_id) {
  const DlqSummary* e = find(dlq_id);
  if (e == nullptr) return not_found(dlq_id);
  if (e->replayed_as != 0 || !replaying_.insert(dlq_id).second) return replayed_already(dlq_id);
  return {};
}

Result<void> DlqIndex::claim_replay_record(uint64_t dlq_id) {
  const DlqSummary* e = find(dlq_id);
  if (e == nullptr) return not_found(dlq_id);
  if (e->replayed_as != 0) return replayed_already(dlq_id);
  replaying_.insert(dlq_id);
  return {};
}

void DlqIndex::end_replay(uint64_t dlq_id) {
  replaying_.erase(dlq_id);
}

std::unordered_set<uint64_t> DlqIndex::held_segments(uint64_t now_ns, uint64_t keep_ns) const {
  std::unordered_set<uint64_t> held;
  for (const auto& [id, e] : entries_) {
    if (!e.reviewed || e.reviewed_at_unix_ns + keep_ns > now_ns) held.insert(e.segment);
  }
  return held;
}

void DlqIndex::forget_segment(uint64_t seq) {
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (it->second.segment != seq) {
      ++it;
      continue;
    }
    // An unreviewed entry would leave unreviewed_ counting a lost entry.
    PERFQ_ENFORCE(it->second.reviewed);
    by_request_.erase(it->second.request_id);
    it = entries_.erase(it);
  }
  PERFQ_ASSERT(unreviewed_ <= entries_.size());
}

}  // namespace perfq::agent
