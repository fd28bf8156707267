#pragma once
// Retention (docs/DECISIONS.md): whole segments only, oldest first. A segment
// other than the active one is deleted once every dead-letter entry in it has
// been reviewed for at least retention_ms; the first segment that does not
// qualify stops the sweep, so a review or replay record can only be lost
// together with, or after, the entry it names. Unreviewed entries are never
// deleted.
//
//   segments():  s1   s2   s3   s4   s5 (active)
//                 ^^^^^^^^   ^ held: an entry of s3 is unreviewed
//                 plan()     (so s4 stays too, however old)
//
// Before the first deletion under an active segment, that segment records a
// checkpoint of the next dlq id (the Journal writes it), so the ids of the
// deleted entries are never given again.
//
// Roles: the segment list (adopt, add, segments, plan, forget) is guarded by
// the Journal's lock, which the caller holds; remove() and the checkpoint
// flag belong to the journal thread (or Journal::open), without the lock.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "journal/dlq_index.hpp"

namespace perfq::agent {

class Retention {
 public:
  Retention(std::string dir, uint64_t retention_ms);

  // Recovery: the segment files found on disk, ascending.
  void adopt(std::vector<uint64_t> seqs);
  // A new active segment, newer than every other; it holds no checkpoint yet.
  void add(uint64_t seq);
  [[nodiscard]] const std::vector<uint64_t>& segments() const noexcept { return segments_; }

  // The segments to delete now, oldest first (see the rule above).
  [[nodiscard]] std::vector<uint64_t> plan(const DlqIndex& index, uint64_t active_seq,
                                           uint64_t now_ns) const;
  // Unlinks the planned files oldest first, stopping at the first that
  // fails, and makes the directory durable. Returns how many went.
  [[nodiscard]] std::size_t remove(std::span<const uint64_t> plan) const;
  // Forgets deleted segments and their entries.
  void forget(std::span<const uint64_t> removed, DlqIndex& index);

  [[nodiscard]] bool checkpointed() const noexcept { return checkpointed_; }
  void mark_checkpointed() noexcept { checkpointed_ = true; }

 private:
  std::string dir_;  // <data_dir>/dlq
  uint64_t keep_ns_;
  std::vector<uint64_t> segments_;  // on disk, ascending; the last is the active one
  bool checkpointed_ = false;       // the active segment holds a durable checkpoint
};

}  // namespace perfq::agent
