#pragma once
// TypeQueues: requests waiting by type, outside the bands, each queue in
// eligible order, with how many wait per band (they count in the band's
// published depth). Two of them: the scheduler's requests whose type has no
// worker yet, and the dispatcher's batch requests gathering into a batch.
//
//   "resize" -> [ p(slot 7, NORMAL), p(slot 2, HIGH) ]     in_band: HIGH 1, NORMAL 1
//   "mail"   -> [ p(slot 4, LOW) ]                          LOW 1
//
// Every entry pushed is counted in its band and every entry popped leaves
// the count, so a count never goes below zero (enforced).
#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <iterator>
#include <string>
#include <string_view>
#include <unordered_map>

#include "dataplane/pending.hpp"
#include "perfq/core/assert.hpp"
#include "perfq/core/request.hpp"

namespace perfq::agent {

// Lets maps keyed by std::string be searched with a string_view (no
// allocation per dispatch).
struct TypeHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
template <class V>
using TypeMap = std::unordered_map<std::string, V, TypeHash, std::equal_to<>>;

class TypeQueues {
 public:
  using Queue = std::deque<Pending>;

  // The queue of `type`, created empty on first use.
  Queue& of(std::string_view type) {
    auto q = queues_.find(type);
    if (q == queues_.end()) q = queues_.emplace(std::string(type), Queue{}).first;
    return q->second;
  }

  void push_back(Queue& q, const Pending& p) {
    count(p);
    q.push_back(p);
  }
  void push_front(Queue& q, const Pending& p) {
    count(p);
    q.push_front(p);
  }
  // Keeps `q` in eligible order when requests arrive from several bands.
  // Usually an append; bounded by the length of `q`.
  void insert_by_eligible(Queue& q, const Pending& p) {
    count(p);
    auto at = q.end();
    while (at != q.begin() && std::prev(at)->eligible_ns > p.eligible_ns) --at;
    q.insert(at, p);
  }
  Pending pop_front(Queue& q) noexcept {
    PERFQ_ASSERT(!q.empty());
    const Pending p = q.front();
    q.pop_front();
    uncount(p);
    return p;
  }

  // Pops from the front of every queue each entry that became eligible at
  // least `limit_ns` before `now_ns`, handing it to `expired(p)`, which says
  // whether it counted (the entry was still current). Returns that count.
  template <class Expired>
  int expire(uint64_t now_ns, uint64_t limit_ns, Expired&& expired) {
    int n = 0;
    for (auto& [_, q] : queues_) {
      while (!q.empty() && now_ns - std::min(q.front().eligible_ns, now_ns) >= limit_ns) {
        if (expired(pop_front(q))) ++n;
      }
    }
    return n;
  }

  // Empties the queue of every type for which `release(type)` says so,
  // handing its entries to `to(p)` newest first (so pushing each to the
  // front of its band leaves them oldest first).
  template <class Release, class To>
  void release_if(Release&& release, To&& to) {
    for (auto it = queues_.begin(); it != queues_.end();) {
      if (!release(std::string_view(it->first))) {
        ++it;
        continue;
      }
      for (auto p = it->second.rbegin(); p != it->second.rend(); ++p) {
        uncount(*p);
        to(*p);
      }
      it = queues_.erase(it);
    }
  }

  // Iteration over {type, queue}; a queue may be empty.
  [[nodiscard]] auto begin() noexcept { return queues_.begin(); }
  [[nodiscard]] auto end() noexcept { return queues_.end(); }

  [[nodiscard]] uint64_t in_band(uint8_t band) const noexcept {
    PERFQ_ASSERT(band < kBandCount);
    return in_band_[band];
  }

 private:
  void count(const Pending& p) noexcept {
    PERFQ_ASSERT(p.band < kBandCount);
    ++in_band_[p.band];
  }
  void uncount(const Pending& p) noexcept {
    PERFQ_ASSERT(p.band < kBandCount);
    PERFQ_ENFORCE(in_band_[p.band] > 0);  // it was counted when pushed
    --in_band_[p.band];
  }

  TypeMap<Queue> queues_;
  uint64_t in_band_[kBandCount] = {};
};

}  // namespace perfq::agent
