#include "journal/retention.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "journal/files.hpp"
#include "journal/writer.hpp"
#include "perfq/core/assert.hpp"

namespace perfq::agent {

Retention::Retention(std::string dir, uint64_t retention_ms)
    : dir_(std::move(dir)), keep_ns_(retention_ms * 1'000'000) {}

void Retention::adopt(std::vector<uint64_t> seqs) {
  PERFQ_ASSERT(std::is_sorted(seqs.begin(), seqs.end()));
  segments_ = std::move(seqs);
  checkpointed_ = false;
}

void Retention::add(uint64_t seq) {
  PERFQ_ENFORCE(segments_.empty() || seq > segments_.back());
  segments_.push_back(seq);
  checkpointed_ = false;
}

std::vector<uint64_t> Retention::plan(const DlqIndex& index, uint64_t active_seq,
                                      uint64_t now_ns) const {
  PERFQ_ASSERT(!segments_.empty() && segments_.back() == active_seq);
  const auto held = index.held_segments(now_ns, keep_ns_);
  std::vector<uint64_t> out;
  for (const uint64_t seq : segments_) {
    if (seq == active_seq || held.contains(seq)) break;
    out.push_back(seq);
  }
  return out;
}

std::size_t Retention::remove(std::span<const uint64_t> plan) const {
  std::size_t removed = 0;
  for (; removed < plan.size(); ++removed) {
    const std::string path = dir_ + "/" + segment_name(plan[removed]);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) break;
  }
  if (removed > 0) (void)sync_dir(dir_);
  return removed;
}

void Retention::forget(std::span<const uint64_t> removed, DlqIndex& index) {
  for (const uint64_t seq : removed) {
    index.forget_segment(seq);
    auto it = std::find(segments_.begin(), segments_.end(), seq);
    PERFQ_ENFORCE(it != segments_.end() && it + 1 != segments_.end());  // never the active one
    segments_.erase(it);
  }
}

}  // namespace perfq::agent
