#include "perfq/shm/status.hpp"

#include <algorithm>
#include <cstring>

#include "perfq/core/atomic.hpp"
#include "perfq/core/seqlock.hpp"
#include "perfq/core/slot_pool.hpp"
#include "perfq/shm/client_registry.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq::shm {

namespace {

constexpr size_t kWords = sizeof(StatusEntry) / 8;
// Torn reads retried before the entry is taken as being rewritten (no
// yielding: the lookup then looks in the slots, and reads the table again).
constexpr seqlock::ReadBound kReadBound{.tries = 16, .yield_ns = 0};

uint64_t* words(StatusEntry& e) noexcept {
  return reinterpret_cast<uint64_t*>(&e);
}

// Copies the entry for `id` if the table holds it, consistently.
bool read_entry(Segment& seg, uint64_t id, StatusEntry& out) noexcept {
  if (seg.status_capacity() == 0) return false;
  StatusEntry& e = seg.status_entry(id);
  const uint64_t* w = words(e);
  uint64_t* o = words(out);
  uint64_t seq = 0;
  const bool whole = seqlock::read(w[0], kReadBound, seq, [&] {
    for (size_t i = 1; i < kWords; ++i) o[i] = load_relaxed(w[i]);
  });
  return whole && seq != 0 && out.request_id == id;
}

RequestStatus from_entry(const StatusEntry& e) {
  RequestStatus r;
  r.request_id = e.request_id;
  r.status = static_cast<Status>(e.status < kStatusCount ? e.status : 4);
  r.error = errc_valid(e.error) ? static_cast<Errc>(e.error) : Errc::kInternal;
  r.mode = static_cast<Mode>(e.mode < kModeCount ? e.mode : 0);
  r.band = static_cast<Band>(e.band < kBandCount ? e.band : 2);
  r.priority = e.priority;
  r.attempts = e.attempts;
  r.type.assign(e.type, std::min<size_t>(e.type_len, kTypeMaxBytes));
  r.user_id.assign(e.user_id, std::min<size_t>(e.user_len, kUserIdMaxBytes));
  r.created_at_unix_ns = e.created_unix_ns;
  r.finished_at_unix_ns = e.finished_unix_ns;
  return r;
}

enum class SlotRead : uint8_t { kOther, kMoved, kFound };

// The request in a slot, if the slot holds `id` while we look; kMoved when
// the slot changed state while we read it (read it again).
SlotRead from_slot(Segment& seg, uint32_t slot, uint64_t id, RequestStatus& r) {
  SlotPool& pool = seg.pool();
  // acquire: the producer's fields were written before it published.
  const uint64_t ctl = pool.load(slot);
  const SlotCtl c = SlotCtl::unpack(ctl);
  if (c.state == SlotState::kFree || c.state == SlotState::kClaimed) return SlotRead::kOther;
  const RequestRecord& rec = seg.record(slot);
  if (load_relaxed(rec.request_id) != id) return SlotRead::kOther;
  r = RequestStatus{};
  r.request_id = id;
  const uint8_t mode = load_relaxed(rec.mode);
  const uint8_t band = load_relaxed(rec.band);
  r.mode = static_cast<Mode>(mode < kModeCount ? mode : 0);
  r.band = static_cast<Band>(band < kBandCount ? band : 2);
  r.priority = load_relaxed(rec.priority);
  r.attempts = c.attempt;
  r.created_at_unix_ns = load_relaxed(rec.created_at_unix_ns);
  const size_t tl = std::min<size_t>(load_relaxed(rec.type_len), kTypeMaxBytes);
  const size_t ul = std::min<size_t>(load_relaxed(rec.user_len), kUserIdMaxBytes);
  r.type.resize(tl);
  r.user_id.resize(ul);
  load_shared_text(rec.type, tl, r.type.data());
  load_shared_text(rec.user_id, ul, r.user_id.data());
  switch (c.state) {
    case SlotState::kAssigned:
      r.status = Status::kAssigned;
      break;
    case SlotState::kProcessing:
    case SlotState::kReporting:
    case SlotState::kReported:
      r.status = Status::kProcessing;
      break;
    case SlotState::kSealing:
      // Failed or timed out, but not until its DLQ record is durable: until
      // then it reads as the step it was at.
      r.status = c.attempt > 0 ? Status::kProcessing : Status::kPending;
      break;
    case SlotState::kCancelling:
      r.status = Status::kCancelled;
      r.error = Errc::kCancelled;
      break;
    case SlotState::kDone: {
      // Final, and written before the slot became DONE; the table has it too.
      const uint8_t st = load_relaxed(rec.status);
      const uint8_t er = load_relaxed(rec.error);
      r.status = static_cast<Status>(st < kStatusCount ? st : 4);
      r.error = errc_valid(er) ? static_cast<Errc>(er) : Errc::kInternal;
      break;
    }
    default:
      r.status = Status::kPending;
      if (!type_has_worker(seg, r.type)) r.error = Errc::kWorkerUnavailable;
      break;
  }
  // The same control word: the slot held this request while we read it.
  return pool.load(slot) == ctl ? SlotRead::kFound : SlotRead::kMoved;
}

// Reads to try on a slot that keeps changing under us (each change is the
// request moving on: QUEUED -> PENDING -> ASSIGNED -> ...).
constexpr int kSlotTries = 32;

}  // namespace

void record_final(Segment& seg, const StatusEntry& e) noexcept {
  if (seg.status_capacity() == 0) return;
  StatusEntry& dst = seg.status_entry(e.request_id);
  uint64_t* w = words(dst);
  const uint64_t* src = reinterpret_cast<const uint64_t*>(&e);
  // seq_cst: the stores below cannot move before the odd seq.
  const uint64_t odd = seqlock::begin_write(w[0], std::memory_order_seq_cst);
  for (size_t i = 1; i < kWords; ++i) aref(w[i]).store(src[i], std::memory_order_relaxed);
  // release (in end_write): readers that see the even seq see every word.
  seqlock::end_write(w[0], odd);
}

void repair_status_table(Segment& seg) noexcept {
  for (uint32_t i = 0; i < seg.status_capacity(); ++i) {  // bound: the table's size
    uint64_t* w = words(seg.status_entry(i));
    // A half-written entry is emptied: request_id 0 matches no lookup.
    (void)seqlock::repair(w[0], [w] { aref(w[1]).store(0, std::memory_order_relaxed); });
  }
}

bool type_has_worker(Segment& seg, std::string_view type) noexcept {
  const uint32_t n = seg.geometry().max_clients;
  for (uint32_t id = 0; id < n; ++id) {
    ClientRecord& c = seg.client(id);
    if (static_cast<ClientState>(load_acquire(c.state)) != ClientState::kActive) continue;
    if ((load_relaxed(c.roles) & kRoleWorker) == 0) continue;
    // acquire: pairs with the release store of type_count in add_client_type.
    const uint32_t tc = std::min(load_acquire(c.type_count), kMaxTypesPerWorker);
    for (uint32_t k = 0; k < tc; ++k) {
      const TypeName& t = c.types[k];
      if (std::string_view(t.text, std::min<size_t>(t.len, kTypeMaxBytes)) == type) return true;
    }
  }
  return false;
}

Result<RequestStatus> lookup_status(Segment& seg, uint64_t request_id, const Caller& who) {
  auto visible = [&](RequestStatus r) -> Result<RequestStatus> {
    if (!who.admin && r.user_id != who.user_id) return Error{Errc::kNotFound, "no such request"};
    return r;
  };
  StatusEntry e{};
  if (read_entry(seg, request_id, e)) return visible(from_entry(e));
  // Live: its slot. A request that finishes during the pass is in the
  // table by the time its slot is released, so the table is read again.
  SlotPool& pool = seg.pool();
  RequestStatus r;
  for (uint32_t s = 0; s < pool.count(); ++s) {
    // Bounded: kSlotTries reads of a slot that holds the id.
    for (int tries = 0; tries < kSlotTries; ++tries) {
      const SlotRead got = from_slot(seg, s, request_id, r);
      if (got == SlotRead::kFound) return visible(std::move(r));
      if (got == SlotRead::kOther) break;
    }
  }
  if (read_entry(seg, request_id, e)) return visible(from_entry(e));
  return Error{Errc::kNotFound, "no such request"};
}

}  // namespace perfq::shm
