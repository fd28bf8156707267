#pragma once
// Ledger: the requests the agent has taken and not yet concluded.
//
// Their count is the queue depth (admission compares it with
// max_queue_depth); by slot, the ledger keeps whether the request is counted
// and its metrics column, looked up once when the agent takes it. Taking and
// concluding pair up: the depth is counted, never summed from the queues, so
// a request cancelled or finished while a stale entry still names it in a
// queue or timer leaves the depth at once.
//
//   take(slot)      counted_[slot] 0 -> 1, depth + 1
//   conclude(slot)  counted_[slot] 1 -> 0, depth - 1   (0 -> 0: not taken here)
//
// It also keeps the request's Facts: what the agent decides with (band,
// mode, producer) copied from the record once, validated, when the request
// was taken. The record stays writable by every member of the segment's
// group; nothing the agent indexes or delivers with is read from it again.
#include <cstdint>
#include <vector>

#include "dataplane/records.hpp"
#include "perfq/core/assert.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/shm/metrics.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq::agent {

class Ledger {
 public:
  Ledger(shm::Segment& seg, shm::MetricsWriter& metrics) noexcept : seg_(seg), metrics_(metrics) {}

  void resize(uint32_t slots) {
    counted_.assign(slots, 0);
    column_.assign(slots, 0);
    facts_.assign(slots, Facts{});
  }

  // The request in `slot` is taken: counted in the depth until concluded.
  // Returns its metrics column. A type that fails the submit rules (a request
  // cancelled before the agent validated it) never takes a column: it counts
  // as "other".
  uint8_t take(uint32_t slot, const Facts& facts) {
    PERFQ_ASSERT(slot < counted_.size());
    PERFQ_ASSERT(facts.band < kBandCount && facts.mode < kModeCount);
    facts_[slot] = facts;
    // Once per request, unless a broken producer republished a slot the
    // agent had taken: it is not counted twice.
    if (counted_[slot] == 0) {
      counted_[slot] = 1;
      ++depth_;
    }
    // The type is copied before it is checked: the column is named by what
    // was checked.
    char text[kTypeMaxBytes];
    const std::string_view shared = type_of(seg_, slot);
    load_shared_text(shared.data(), shared.size(), text);
    const std::string_view type(text, shared.size());
    column_[slot] = valid_type(type) ? metrics_.column(type) : metrics_.other_column();
    return column_[slot];
  }

  [[nodiscard]] bool counted(uint32_t slot) const noexcept {
    PERFQ_ASSERT(slot < counted_.size());
    return counted_[slot] != 0;
  }

  // The request in `slot` reached its final state.
  void conclude(uint32_t slot) noexcept {
    PERFQ_ASSERT(slot < counted_.size());
    if (counted_[slot] == 0) return;  // rejected before it was taken
    counted_[slot] = 0;
    PERFQ_ENFORCE(depth_ > 0);  // every counted slot added one
    --depth_;
  }

  [[nodiscard]] uint8_t column(uint32_t slot) const noexcept {
    PERFQ_ASSERT(slot < column_.size());
    return column_[slot];
  }
  [[nodiscard]] const Facts& facts(uint32_t slot) const noexcept {
    PERFQ_ASSERT(slot < facts_.size());
    return facts_[slot];
  }
  [[nodiscard]] uint64_t depth() const noexcept { return depth_; }

 private:
  shm::Segment& seg_;
  shm::MetricsWriter& metrics_;
  std::vector<uint8_t> counted_;  // by slot: in depth_ (taken, not yet final)
  std::vector<uint8_t> column_;   // by slot: the request's metrics column
  std::vector<Facts> facts_;      // by slot: as validated when taken
  uint64_t depth_ = 0;
};

}  // namespace perfq::agent
